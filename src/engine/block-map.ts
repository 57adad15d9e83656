/*
 * The write-back buffer's map from block to entry. A sequential writer's records cover
 * hundreds of blocks each; as a Map of single blocks, setting them was a tenth of the
 * main thread's time on a 1 MiB sequential write, and the collector marked every
 * entry. Whole aligned groups of `groupBlocks` blocks set by one run are kept as one
 * entry; other blocks one by one. A block is in one of the two, never both: a run
 * over a group drops the group's single entries, and a single set inside a run's group
 * first splits the run into singles.
 */
import type { BufferedBlock } from './write-buffer.js';

const groupBlocks = 64;

export class BlockMap {
  private readonly singles = new Map<number, BufferedBlock>();
  /** Single entries per group, for groups that have any. */
  private readonly singlesPerGroup = new Map<number, number>();
  private readonly runs = new Map<number, BufferedBlock>();

  get size(): number {
    return this.singles.size + this.runs.size * groupBlocks;
  }

  get(block: number): BufferedBlock | undefined {
    if (this.runs.size > 0) {
      const run = this.runs.get(Math.floor(block / groupBlocks));
      if (run !== undefined) return run;
    }
    return this.singles.get(block);
  }

  has(block: number): boolean {
    return this.get(block) !== undefined;
  }

  set(block: number, entry: BufferedBlock): void {
    const group = Math.floor(block / groupBlocks);
    if (this.runs.size > 0) {
      const run = this.runs.get(group);
      if (run !== undefined) {
        this.runs.delete(group);
        for (let at = group * groupBlocks; at < (group + 1) * groupBlocks; at += 1) this.setSingle(at, group, run);
      }
    }
    this.setSingle(block, group, entry);
  }

  /** Sets blocks [first, first + count) to one entry. */
  setRun(first: number, count: number, entry: BufferedBlock): void {
    const end = first + count;
    let block = first;
    for (; block < end && block % groupBlocks !== 0; block += 1) this.set(block, entry);
    for (; block + groupBlocks <= end; block += groupBlocks) {
      const group = block / groupBlocks;
      if (this.singlesPerGroup.has(group)) {
        for (let at = block; at < block + groupBlocks; at += 1) this.singles.delete(at);
        this.singlesPerGroup.delete(group);
      }
      this.runs.set(group, entry);
    }
    for (; block < end; block += 1) this.set(block, entry);
  }

  private setSingle(block: number, group: number, entry: BufferedBlock): void {
    const before = this.singles.size;
    this.singles.set(block, entry);
    if (this.singles.size !== before) this.singlesPerGroup.set(group, (this.singlesPerGroup.get(group) ?? 0) + 1);
  }

  /** Every block with an entry, in no particular order. */
  *keys(): IterableIterator<number> {
    yield* this.singles.keys();
    for (const group of this.runs.keys()) for (let at = 0; at < groupBlocks; at += 1) yield group * groupBlocks + at;
  }

  *entries(): IterableIterator<[number, BufferedBlock]> {
    yield* this.singles.entries();
    for (const [group, entry] of this.runs) for (let at = 0; at < groupBlocks; at += 1) yield [group * groupBlocks + at, entry];
  }

  [Symbol.iterator](): IterableIterator<[number, BufferedBlock]> {
    return this.entries();
  }
}
