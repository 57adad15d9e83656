import { describe, expect, it } from 'vitest';
import { validateName } from './names.js';

describe('names', () => {
  it.each(['vm-1', 'disk0', 'a.b_c:d', 'A'.repeat(128)])('accepts %s', (name) => {
    expect(validateName('volume', name)).toBe(name);
  });

  it.each([
    ['empty', ''],
    ['slash', 'a/b'],
    ['dot-dot', '..'],
    ['leading dot', '.hidden'],
    ['at sign', 'vol@snap'],
    ['control character', 'a\u0001b'],
    ['newline', 'a\nb'],
    ['space', 'a b'],
    ['over-long', 'a'.repeat(129)],
  ])('rejects a name with %s', (_label, name) => {
    expect(() => validateName('volume', name)).toThrow(expect.objectContaining({ code: 'STRATA_E_INVALID_NAME' }));
  });

  it('rejects values that are not strings', () => {
    expect(() => validateName('snapshot', 42)).toThrow(expect.objectContaining({ code: 'STRATA_E_INVALID_NAME' }));
  });
});
