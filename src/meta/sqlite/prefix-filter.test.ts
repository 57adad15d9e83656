import { describe, expect, it } from 'vitest';
import { PrefixFilter } from './prefix-filter.js';

describe('PrefixFilter', () => {
  it('never misses a prefix it was given, negative ones included, and rejects most others', () => {
    const filter = new PrefixFilter(20);
    const added = [0, 1, -1, 0x7fffffff, -0x80000000, 123456789, -987654321];
    for (const prefix of added) filter.add(prefix);
    for (const prefix of added) expect(filter.mayHave(prefix)).toBe(true);
    let falsePositives = 0;
    for (let probe = 0; probe < 10_000; probe += 1) if (filter.mayHave(((probe * 2654435761) | 0) ^ 0x5bd1e995)) falsePositives += 1;
    expect(falsePositives).toBeLessThan(50);
  });
});
