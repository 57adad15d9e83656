/*
 * cli: the `strata` command line. Talks to the daemon through its REST API (and runs it:
 * `strata serve`); nothing below imports it.
 */
export { buildProgram, main } from './main.js';
export { exitCodeFor, exitCodes } from './exit-codes.js';
