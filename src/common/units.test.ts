import { describe, expect, it } from 'vitest';
import { formatBytes, isPowerOfTwo, parseSize } from './units.js';

describe('units', () => {
  it('parses sizes with binary suffixes', () => {
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('64K')).toBe(65536);
    expect(parseSize('10GiB')).toBe(10 * 2 ** 30);
    expect(parseSize('1.5m')).toBe(1.5 * 2 ** 20);
    expect(parseSize('ten')).toBeUndefined();
    expect(parseSize('5X')).toBeUndefined();
  });

  it('formats bytes for people', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.50 KiB');
  });

  it('knows powers of two', () => {
    expect(isPowerOfTwo(4096)).toBe(true);
    expect(isPowerOfTwo(3)).toBe(false);
    expect(isPowerOfTwo(0)).toBe(false);
  });
});
