/*
 * BlockMap against a plain Map of single blocks: random single sets and runs (aligned,
 * unaligned, over and under each other) leave the same entries.
 */
import { describe, expect, it } from 'vitest';
import { BlockMap } from './block-map.js';
import type { BufferedBlock } from './write-buffer.js';

describe('BlockMap', () => {
  it('holds what a map of single blocks holds, whatever the mix of runs and singles', () => {
    let state = 7;
    const next = (bound: number) => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state % bound;
    };
    // Entries are told apart by identity: every step sets one of its own.
    const entryOf = (step: number) => ({ step }) as unknown as BufferedBlock;
    for (let round = 0; round < 20; round += 1) {
      const map = new BlockMap();
      const reference = new Map<number, BufferedBlock>();
      for (let step = 0; step < 300; step += 1) {
        const value = entryOf(step);
        if (next(3) === 0) {
          const block = next(2000);
          map.set(block, value);
          reference.set(block, value);
        } else {
          const first = next(4) === 0 ? next(30) * 64 : next(2000);
          const count = 1 + next(400);
          map.setRun(first, count, value);
          for (let block = first; block < first + count; block += 1) reference.set(block, value);
        }
      }
      expect(map.size).toBe(reference.size);
      for (let block = 0; block < 2500; block += 1) expect(map.get(block)).toBe(reference.get(block));
      expect(new Map(map.entries())).toEqual(reference);
      expect([...map.keys()].sort((a, b) => a - b)).toEqual([...reference.keys()].sort((a, b) => a - b));
    }
  });
});
