/*
 * cli: the `strata` command line. Talks to the engine (later: the daemon's REST API);
 * nothing below imports it.
 */
export { buildProgram, main } from './main.js';
export { exitCodeFor, exitCodes } from './exit-codes.js';
