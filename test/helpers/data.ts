/*
 * Deterministic test data: a small seeded PRNG, a small alphabet of byte patterns, and
 * helpers to compare large buffers with a readable message.
 *
 * Patterns repeat every 4096 bytes of absolute volume offset (4096 divides every pool
 * block size), so two block-aligned writes of one pattern produce identical blocks and
 * dedup really hits, whatever the block size. The alphabet mixes all-zero data (never
 * stored), compressible data and incompressible data (frames fall back to codec none).
 */

/** mulberry32: a tiny, fast, well-mixed 32-bit PRNG; the same seed gives the same stream. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform integer in [0, bound). */
  int(bound: number): number {
    return bound <= 0 ? 0 : Math.floor((this.next() / 0x1_0000_0000) * bound);
  }

  /** A uniform integer in [low, high]. */
  between(low: number, high: number): number {
    return low + this.int(high - low + 1);
  }

  chance(probability: number): boolean {
    return this.next() / 0x1_0000_0000 < probability;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  fill(target: Buffer): Buffer {
    for (let index = 0; index < target.length; index += 1) target[index] = this.next() & 0xff;
    return target;
  }
}

/** Mixes several integers into one 32-bit seed. */
export function mixSeed(...parts: number[]): number {
  let hash = 0x811c9dc5;
  for (const part of parts) {
    hash = Math.imul(hash ^ (part >>> 0), 0x01000193) >>> 0;
    hash = Math.imul(hash ^ (hash >>> 13), 0x5bd1e995) >>> 0;
  }
  return hash >>> 0;
}

export const patternPeriodBytes = 4096;

function buildPatterns(): Buffer[] {
  const zero = Buffer.alloc(patternPeriodBytes);
  const constant = Buffer.alloc(patternPeriodBytes, 0xa5);
  const counting = Buffer.alloc(patternPeriodBytes);
  for (let index = 0; index < counting.length; index += 1) counting[index] = index & 0xff;
  const runs = Buffer.alloc(patternPeriodBytes);
  for (let index = 0; index < runs.length; index += 1) runs[index] = (index >> 7) * 37 + 1;
  const noise = [1, 2, 3].map((seed) => new Rng(mixSeed(0x5eed, seed)).fill(Buffer.alloc(patternPeriodBytes)));
  return [zero, constant, counting, runs, ...noise];
}

const patterns = buildPatterns();

/** How many patterns the alphabet holds; pattern 0 is all zeros. */
export const patternCount = patterns.length;

/** The bytes of `pattern` at absolute volume offsets [offset, offset + length). */
export function patternBytes(pattern: number, offset: number, length: number): Buffer {
  const table = patterns[pattern % patternCount];
  const out = Buffer.allocUnsafe(length);
  for (let done = 0; done < length; ) {
    const at = (offset + done) % patternPeriodBytes;
    const take = Math.min(length - done, patternPeriodBytes - at);
    table.copy(out, done, at, at + take);
    done += take;
  }
  return out;
}

/**
 * Throws an error naming the first differing byte (and how many differ) when `actual`
 * and `expected` are not equal. Far faster and more readable than a deep-equal diff of
 * a megabyte of bytes. `base` is the volume offset of byte 0, for the message.
 */
export function assertSameBytes(actual: Uint8Array, expected: Uint8Array, what: string, base = 0): void {
  if (actual.length !== expected.length) {
    throw new Error(`${what}: read ${actual.length} bytes, expected ${expected.length}`);
  }
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected)) return;
  let first = -1;
  let count = 0;
  for (let index = 0; index < actual.length; index += 1) {
    if (actual[index] === expected[index]) continue;
    if (first < 0) first = index;
    count += 1;
  }
  const at = base + first;
  throw new Error(
    `${what}: ${count} bytes differ, first at offset ${at} (got 0x${actual[first].toString(16)}, expected 0x${expected[first].toString(16)})`,
  );
}

export function isAllZero(bytes: Uint8Array): boolean {
  for (const byte of bytes) if (byte !== 0) return false;
  return true;
}

/** `length` bytes of a seeded linear congruential sequence: the same for the same seed, incompressible enough. */
export function seededBytes(length: number, seed: number): Buffer {
  const data = Buffer.alloc(length);
  let state = seed | 1;
  for (let index = 0; index < length; index += 1) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    data[index] = state >> 16;
  }
  return data;
}
