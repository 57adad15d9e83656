/*
 * The one mapping from errors to CLI exit codes (documented in docs/cli.md).
 */
import { StrataError, type ErrorKind } from '../common/errors.js';

export const exitCodes = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  conflict: 4,
  noSpace: 5,
  corrupt: 6,
  checkFailed: 7,
  auth: 8,
  cancelled: 9,
  unreachable: 10,
} as const;

const byKind: Record<ErrorKind, number> = {
  invalid: exitCodes.usage,
  'not-found': exitCodes.notFound,
  conflict: exitCodes.conflict,
  'no-space': exitCodes.noSpace,
  corrupt: exitCodes.corrupt,
  io: exitCodes.failure,
  unsupported: exitCodes.failure,
  closed: exitCodes.failure,
  unauthorized: exitCodes.auth,
  forbidden: exitCodes.auth,
  cancelled: exitCodes.cancelled,
};

export function exitCodeFor(error: unknown): number {
  if (!(error instanceof StrataError)) return exitCodes.failure;
  return error.code === 'STRATA_E_DAEMON_UNREACHABLE' ? exitCodes.unreachable : byKind[error.kind];
}
