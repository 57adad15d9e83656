/*
 * Asserting on StrataError codes. Engine errors are StrataError with a stable `.code`
 * (src/common/errors.ts); tests assert on codes, never on message text.
 */
import { isStrataError, type ErrorCode, type StrataError } from '../../src/common/errors.js';

/** Awaits `action` and returns its StrataError; throws when it resolves or fails otherwise. */
export async function expectStrataError(action: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode | readonly ErrorCode[], what = 'operation'): Promise<StrataError> {
  const codes: readonly ErrorCode[] = typeof code === 'string' ? [code] : code;
  let result: unknown;
  try {
    result = await (typeof action === 'function' ? action() : action);
  } catch (error) {
    if (isStrataError(error) && codes.includes(error.code)) return error;
    const got = isStrataError(error) ? error.code : String(error);
    throw new Error(`${what}: expected ${codes.join(' or ')}, got ${got}`, { cause: error });
  }
  throw new Error(`${what}: expected ${codes.join(' or ')}, but it succeeded (${describe(result)})`);
}

function describe(value: unknown): string {
  if (Buffer.isBuffer(value)) return `${value.length} bytes`;
  return value === undefined ? 'no value' : typeof value;
}
