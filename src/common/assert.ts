/*
 * Internal invariants. Input from outside (wire, user, files we did not just write) is
 * validated with StrataError; these asserts guard what the code itself promises, and a
 * failure means a bug, never bad input.
 */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}
