import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCatalogue, hostIoError, StrataError } from './errors.js';

describe('error catalogue', () => {
  it('lists exactly the catalogued codes in docs/errors.md, with the same kinds', () => {
    const doc = fs.readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = new Map([...doc.matchAll(/^\| `(STRATA_E_[A-Z_]+)` \| ([a-z-]+) \|/gm)].map((m) => [m[1], m[2]]));
    const catalogued = new Map(Object.entries(errorCatalogue).map(([code, info]) => [code, info.kind as string]));
    expect(documented).toEqual(catalogued);
  });

  it('turns a full file system into STRATA_E_NO_SPACE and other failures into STRATA_E_IO', () => {
    const full = Object.assign(new Error('no space'), { code: 'ENOSPC' });
    expect(hostIoError(full, 'writing').code).toBe('STRATA_E_NO_SPACE');
    expect(hostIoError(Object.assign(new Error('x'), { code: 'SQLITE_FULL' }), 'committing').code).toBe('STRATA_E_NO_SPACE');
    expect(hostIoError(Object.assign(new Error('bad'), { code: 'EIO' }), 'reading').code).toBe('STRATA_E_IO');
    const original = new StrataError('STRATA_E_CHECKSUM', 'x');
    expect(hostIoError(original, 'reading')).toBe(original);
  });
});
