/*
 * nbd: the NBD server (handshake, transmission, structured replies) that serves engine
 * BlockDevices as exports VOLUME and VOLUME@SNAPSHOT. May import engine and common;
 * must not import api, vm, cli or daemon. Not built yet: see the project issues.
 */
export {};
