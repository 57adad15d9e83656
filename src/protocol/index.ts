/*
 * protocol: wire formats spoken with other programs, one folder per specification
 * (nbd/ now; qmp/ later): constants and record codecs only, no I/O and no policy.
 * Imports nothing from the rest of Strata but src/common.
 */
export * as nbd from './nbd/messages.js';
export * as nbdConstants from './nbd/constants.js';
