/*
 * A byte-bounded cache of decompressed frames. A random 4 KiB read of a block stored in a
 * 64 KiB compressed frame decompresses the frame once; neighbouring reads then hit the
 * cache. Two generations of at most half the bytes each: new frames go into the young
 * one; when it is full it becomes the old one and the previous old one is dropped
 * whole; a hit in the old generation moves the frame back to the young one. Eviction is
 * O(1) (see GenerationalCache for why a Map used as an LRU is not).
 * Each entry remembers which of its chunks have been checked (hash prefix against
 * metadata, and SHA-256 when reads verify it): bytes are checked when they come from
 * disk, not again on every hit in memory.
 */
import { hashBytes } from './frame-codec.js';

export interface CachedFrame {
  readonly raw: Buffer;
  /** SHA-256 of each slot, from the frame header (see hashAt). */
  readonly hashTable: Buffer;
  readonly verified: Uint8Array;
}

class Generation {
  readonly entries = new Map<number, CachedFrame>();
  bytes = 0;

  remove(frameId: number): CachedFrame | undefined {
    const entry = this.entries.get(frameId);
    if (entry === undefined) return undefined;
    this.entries.delete(frameId);
    this.bytes -= entry.raw.length;
    return entry;
  }
}

export class FrameCache {
  private young = new Generation();
  private old = new Generation();
  hits = 0;
  misses = 0;

  constructor(private readonly bytesMax: number) {}

  get(frameId: number): CachedFrame | undefined {
    const entry = this.peek(frameId);
    if (entry === undefined) {
      this.misses += 1;
      return undefined;
    }
    this.hits += 1;
    if (this.old.entries.has(frameId)) {
      this.old.remove(frameId);
      this.insert(frameId, entry);
    }
    return entry;
  }

  /** Looks without counting a hit or miss or refreshing the entry. */
  peek(frameId: number): CachedFrame | undefined {
    return this.young.entries.get(frameId) ?? this.old.entries.get(frameId);
  }

  /** Adds a frame; returns the entry (kept only while it fits under the bound). */
  set(frameId: number, raw: Buffer, hashTable: Buffer): CachedFrame {
    const entry = { raw, hashTable, verified: new Uint8Array(hashTable.length / hashBytes) };
    this.delete(frameId);
    if (raw.length <= this.bytesMax / 2) this.insert(frameId, entry);
    return entry;
  }

  delete(frameId: number): void {
    this.young.remove(frameId);
    this.old.remove(frameId);
  }

  get sizeBytes(): number {
    return this.young.bytes + this.old.bytes;
  }

  private insert(frameId: number, entry: CachedFrame): void {
    if (this.young.bytes + entry.raw.length > this.bytesMax / 2) {
      this.old = this.young;
      this.young = new Generation();
    }
    this.young.entries.set(frameId, entry);
    this.young.bytes += entry.raw.length;
  }
}
