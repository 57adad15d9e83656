/*
 * The one mapping from errors to HTTP: status by error kind, and the JSON body
 * {code, message, details} every error response carries.
 */
import { StrataError, type ErrorKind } from '../common/errors.js';

const statusByKind: Record<ErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  cancelled: 409,
  corrupt: 500,
  io: 500,
  unsupported: 501,
  closed: 503,
  'no-space': 507,
};

export function httpStatusFor(error: StrataError): number {
  return statusByKind[error.kind];
}

export function errorResponse(error: StrataError): { code: string; message: string; details: Record<string, unknown> } {
  return { code: error.code, message: error.message, details: { ...error.details } };
}
