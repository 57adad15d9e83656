/*
 * Which hash-prefix buckets hold a chunk: a fixed bitmap over the top bits of the 4-byte
 * hash prefix. Most blocks a destage looks up are new, and a look-up whose bucket is
 * empty needs no query. The bitmap is built from the chunk table on first use and a bit
 * is set for every chunk inserted since; bits of chunks that die are not cleared (a stale
 * bit only costs a query). Memory is fixed whatever the pool size; as a pool fills, more
 * buckets are set and more look-ups go to SQLite (about 2 % at 3 million chunks).
 */
export class PrefixFilter {
  private readonly bits: Uint8Array;
  private readonly shift: number;

  /** 2^log2Bits buckets (at most 32: one bucket per prefix). */
  constructor(log2Bits: number) {
    this.bits = new Uint8Array(2 ** Math.max(0, log2Bits - 3));
    this.shift = 32 - log2Bits;
  }

  private bucket(prefix: number): number {
    return (prefix >>> 0) >>> this.shift;
  }

  add(prefix: number): void {
    const bucket = this.bucket(prefix);
    this.bits[bucket >>> 3] |= 1 << (bucket & 7);
  }

  /** False only when no chunk with this prefix was ever added. */
  mayHave(prefix: number): boolean {
    const bucket = this.bucket(prefix);
    return (this.bits[bucket >>> 3] & (1 << (bucket & 7))) !== 0;
  }
}
