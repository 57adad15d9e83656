/*
 * Naming rules for pools, volumes and snapshots. Names travel into NBD export names
 * ("VOLUME@SNAPSHOT"), URLs and file names, so the rules are strict: letters, digits
 * and ". _ - :" only, starting with a letter or digit, at most nameLengthMaxChars.
 * That excludes "/", "..", "@", whitespace and control characters by construction.
 */
import { StrataError } from './errors.js';
import { limits } from './limits.js';

const namePattern = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;

export type NameKind = 'pool' | 'volume' | 'snapshot' | 'token' | 'vm';

export function validateName(kind: NameKind, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new StrataError('STRATA_E_INVALID_NAME', `${kind} name must be a non-empty string`, { kind });
  }
  if (name.length > limits.nameLengthMaxChars) {
    throw new StrataError('STRATA_E_INVALID_NAME', `${kind} name is longer than ${limits.nameLengthMaxChars} characters`, {
      kind,
    });
  }
  if (!namePattern.test(name)) {
    throw new StrataError(
      'STRATA_E_INVALID_NAME',
      `${kind} name ${JSON.stringify(name)} may only hold letters, digits and . _ - : and must start with a letter or digit`,
      { kind, name },
    );
  }
  return name;
}
