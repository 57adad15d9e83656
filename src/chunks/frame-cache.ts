/*
 * A byte-bounded LRU of decompressed frames. A random 4 KiB read of a block stored in a
 * 64 KiB frame decompresses the frame once; neighbouring reads then hit the cache.
 * Map iteration order is insertion order, so re-inserting on hit keeps it an LRU.
 * Each entry remembers which of its chunks have been checked (hash prefix against
 * metadata, and SHA-256 when reads verify it): bytes are checked when they come from
 * disk, not again on every hit in memory.
 */
export interface CachedFrame {
  readonly raw: Buffer;
  /** SHA-256 of each slot, from the frame header. */
  readonly hashes: readonly Buffer[];
  readonly verified: Uint8Array;
}

export class FrameCache {
  private readonly entries = new Map<number, CachedFrame>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(private readonly bytesMax: number) {}

  get(frameId: number): CachedFrame | undefined {
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

  /** Looks without counting a hit or miss or refreshing the entry. */
  peek(frameId: number): CachedFrame | undefined {
    return this.entries.get(frameId);
  }

  /** Adds a frame; returns the entry (kept only while it fits under the bound). */
  set(frameId: number, raw: Buffer, hashes: readonly Buffer[]): CachedFrame {
    const entry = { raw, hashes, verified: new Uint8Array(hashes.length) };
    if (raw.length > this.bytesMax) return entry;
    this.delete(frameId);
    this.entries.set(frameId, entry);
    this.bytes += raw.length;
    for (const [id, old] of this.entries) {
      if (this.bytes <= this.bytesMax) break;
      this.entries.delete(id);
      this.bytes -= old.raw.length;
    }
    return entry;
  }

  delete(frameId: number): void {
    const entry = this.entries.get(frameId);
    if (entry === undefined) return;
    this.entries.delete(frameId);
    this.bytes -= entry.raw.length;
  }

  get sizeBytes(): number {
    return this.bytes;
  }
}
