/*
 * nbd: the NBD server (handshake, transmission, structured replies) that serves engine
 * BlockDevices as exports VOLUME and VOLUME@SNAPSHOT. May import engine, protocol and
 * common; must not import api, vm, cli or daemon.
 */
export { NbdServer, allowList } from './server.js';
export type { NbdServerOptions, NbdTlsOptions, ConnectedClient } from './server.js';
export type { ClientInfo, ExportAccess } from './connection.js';
export { poolExports, snapshotSeparator } from './exports.js';
export type { ExportEntry, ExportSource } from './exports.js';
