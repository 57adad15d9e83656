/*
 * The SQLite driver's cache of chunk locations: a direct-mapped table in typed arrays,
 * slot = chunk id modulo the table size. Chunk ids are handed out consecutively, so the
 * chunks of a working set of up to the table size never collide, and a look-up is an
 * array index and one comparison, with nothing for the garbage collector to trace. The
 * table starts small and doubles (re-placing what it holds) when a new entry would
 * evict a live one, up to its bound; past that, the newer entry wins.
 */
import type { ChunkLocation } from '../meta-store.js';

const initialEntries = 1 << 12;

export class LocationTable {
  private size = 0;
  /** Chunk id held by each slot; 0 = empty (chunk ids start at 1). */
  private ids = new Float64Array(0);
  private frameIds = new Float64Array(0);
  private offsets = new Float64Array(0);
  private packIds = new Uint32Array(0);
  private lengths = new Uint32Array(0);
  private prefixes = new Int32Array(0);
  private slots = new Uint16Array(0);
  private frameChunks = new Uint16Array(0);

  /** `entriesMax` is rounded down to a power of two. */
  constructor(private readonly entriesMax: number) {}

  get(chunkId: number): ChunkLocation | undefined {
    if (this.size === 0) return undefined;
    const at = chunkId % this.size;
    return this.ids[at] === chunkId ? this.entryAt(at) : undefined;
  }

  set(location: ChunkLocation): void {
    if (this.size === 0) this.resize(Math.min(initialEntries, this.boundEntries()));
    let at = location.chunkId % this.size;
    const held = this.ids[at];
    if (held !== 0 && held !== location.chunkId && this.size < this.boundEntries()) {
      this.resize(this.size * 2);
      at = location.chunkId % this.size;
    }
    this.ids[at] = location.chunkId;
    this.prefixes[at] = location.hashPrefix;
    this.frameIds[at] = location.frameId;
    this.slots[at] = location.slot;
    this.packIds[at] = location.packId;
    this.offsets[at] = location.offset;
    this.lengths[at] = location.length;
    this.frameChunks[at] = location.frameChunks;
  }

  delete(chunkId: number): void {
    if (this.size === 0) return;
    const at = chunkId % this.size;
    if (this.ids[at] === chunkId) this.ids[at] = 0;
  }

  clear(): void {
    this.ids.fill(0);
  }

  private boundEntries(): number {
    return 2 ** Math.floor(Math.log2(Math.max(1, this.entriesMax)));
  }

  private entryAt(at: number): ChunkLocation {
    return {
      chunkId: this.ids[at],
      hashPrefix: this.prefixes[at],
      frameId: this.frameIds[at],
      slot: this.slots[at],
      packId: this.packIds[at],
      offset: this.offsets[at],
      length: this.lengths[at],
      frameChunks: this.frameChunks[at],
    };
  }

  /** New arrays of `entries` slots, holding what the old ones held (growth is rare). */
  private resize(entries: number): void {
    const held: ChunkLocation[] = [];
    for (let at = 0; at < this.size; at += 1) if (this.ids[at] !== 0) held.push(this.entryAt(at));
    this.size = entries;
    this.ids = new Float64Array(entries);
    this.prefixes = new Int32Array(entries);
    this.frameIds = new Float64Array(entries);
    this.slots = new Uint16Array(entries);
    this.packIds = new Uint32Array(entries);
    this.offsets = new Float64Array(entries);
    this.lengths = new Uint32Array(entries);
    this.frameChunks = new Uint16Array(entries);
    // Distinct slots modulo the old size stay distinct modulo twice it: no collision here.
    for (const location of held) this.set(location);
  }
}

/**
 * The chunk id last seen for each 32-bit hash prefix, direct-mapped (slot = prefix modulo
 * the size, a fixed allocation of 12 bytes an entry made at first use). Dedup looks here
 * before querying: a block written again soon after (an image sharing files with one
 * just imported, a guest rewriting what it read) finds its chunk without SQLite.
 */
export class PrefixChunkTable {
  private prefixes = new Int32Array(0);
  private ids = new Float64Array(0);

  constructor(private readonly entries: number) {}

  get(prefix: number): number | undefined {
    if (this.ids.length === 0) return undefined;
    const at = (prefix >>> 0) % this.ids.length;
    return this.ids[at] !== 0 && this.prefixes[at] === prefix ? this.ids[at] : undefined;
  }

  set(prefix: number, chunkId: number): void {
    if (this.ids.length === 0) {
      this.prefixes = new Int32Array(this.entries);
      this.ids = new Float64Array(this.entries);
    }
    const at = (prefix >>> 0) % this.ids.length;
    this.prefixes[at] = prefix;
    this.ids[at] = chunkId;
  }
}
