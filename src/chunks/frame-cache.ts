/*
 * A byte-bounded LRU of decompressed frames. A random 4 KiB read of a block stored in a
 * 64 KiB frame decompresses the frame once; neighbouring reads then hit the cache.
 * Map iteration order is insertion order, so re-inserting on hit keeps it an LRU.
 */
export class FrameCache {
  private readonly entries = new Map<number, Buffer>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(private readonly bytesMax: number) {}

  get(frameId: number): Buffer | undefined {
    const entry = this.entries.get(frameId);
    if (entry === undefined) {
      this.misses += 1;
      return undefined;
    }
    this.hits += 1;
    this.entries.delete(frameId);
    this.entries.set(frameId, entry);
    return entry;
  }

  set(frameId: number, raw: Buffer): void {
    if (raw.length > this.bytesMax) return;
    this.delete(frameId);
    this.entries.set(frameId, raw);
    this.bytes += raw.length;
    for (const [id, entry] of this.entries) {
      if (this.bytes <= this.bytesMax) break;
      this.entries.delete(id);
      this.bytes -= entry.length;
    }
  }

  delete(frameId: number): void {
    const entry = this.entries.get(frameId);
    if (entry === undefined) return;
    this.entries.delete(frameId);
    this.bytes -= entry.length;
  }

  get sizeBytes(): number {
    return this.bytes;
  }
}
