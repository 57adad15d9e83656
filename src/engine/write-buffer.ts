/*
 * The write-back buffer of one volume head. Completed writes live here until destage
 * makes them durable (NBD allows that until FLUSH). Entries are whole blocks: data (a
 * private copy), allocated zeros, or a hole. Destage swaps `dirty` into `destaging` and
 * works on that frozen map while new writes land in a fresh `dirty`; reads look in
 * dirty, then destaging, then the store. `epoch` counts finished destages, so a
 * read-modify-write that had to read the store can tell whether its base went stale.
 */
export type BufferedBlock = Buffer | 'zero' | 'hole';

/** What a hole or zero entry counts against the buffer bound (map overhead). */
export const markerEntryBytes = 64;

export function entryBytes(entry: BufferedBlock): number {
  return typeof entry === 'string' ? markerEntryBytes : entry.length + markerEntryBytes;
}

export class WriteBuffer {
  dirty = new Map<number, BufferedBlock>();
  destaging: Map<number, BufferedBlock> | null = null;
  epoch = 0;

  lookup(block: number): BufferedBlock | undefined {
    return this.dirty.get(block) ?? this.destaging?.get(block);
  }

  get isEmpty(): boolean {
    return this.dirty.size === 0;
  }
}
