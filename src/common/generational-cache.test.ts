import { describe, expect, it } from 'vitest';
import { GenerationalCache } from './generational-cache.js';

describe('GenerationalCache', () => {
  it('never holds more than its bound and keeps the entries in use', () => {
    const cache = new GenerationalCache<number, number>(100);
    for (let key = 0; key < 10_000; key += 1) {
      cache.set(key, key * 2);
      expect(cache.get(0)).toBe(0); // used all along: survives every turnover
      expect(cache.size).toBeLessThanOrEqual(100);
    }
    expect(cache.get(9_999)).toBe(19_998);
    expect(cache.get(5_000)).toBeUndefined();
  });

  it('forgets deleted and cleared entries in both generations', () => {
    const cache = new GenerationalCache<string, string>(4);
    cache.set('a', '1');
    cache.set('b', '2');
    cache.set('c', '3'); // a and b are now old
    cache.delete('a');
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')).toBe('2');
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.get('c')).toBeUndefined();
  });
});
