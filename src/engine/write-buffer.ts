/*
 * The write-back buffer of one volume head. Completed writes live here until destage
 * turns them into chunks and extent rows. Entries are whole blocks: a block of a write
 * log record (the bytes are in the log, see write-log.ts), allocated zeros, or a hole. Destage swaps `dirty` into `destaging` and
 * works on that frozen map while new writes land in a fresh `dirty`; reads look in
 * dirty, then destaging, then the store. `epoch` counts finished destages, so a
 * read-modify-write that had to read the store can tell whether its base went stale.
 */
import { BlockMap } from './block-map.js';
import type { LogRecord } from './write-log.js';

/** A block of a write log record (its bytes), allocated zeros, or a hole. */
export type BufferedBlock = LogRecord | 'zero' | 'hole';

/** What a hole or zero entry counts against the buffer bound (map overhead). */
export const markerEntryBytes = 64;

export function entryBytes(entry: BufferedBlock): number {
  return typeof entry === 'string' ? markerEntryBytes : entry.blockSize + markerEntryBytes;
}

export class WriteBuffer {
  dirty = new BlockMap();
  destaging: BlockMap | null = null;
  epoch = 0;

  lookup(block: number): BufferedBlock | undefined {
    return this.dirty.get(block) ?? this.destaging?.get(block);
  }

  get isEmpty(): boolean {
    return this.dirty.size === 0;
  }
}
