/*
 * The span pool's reuse rule: a retired span comes back only after every read that
 * entered at or before its retirement has exited, and a spent pool says so.
 */
import { describe, expect, it } from 'vitest';
import { SpanPool } from './span-pool.js';

const KiB = 1024;

describe('SpanPool', () => {
  it('reuses a span only once the reads that might see it have exited', () => {
    const pool = new SpanPool(640 * KiB);
    const first = pool.take(300 * KiB);
    if (first === null) throw new Error('pool spent');
    expect(first.buffer.byteLength).toBe(320 * KiB);
    const reader = pool.enter();
    // Still taken: another request gets other memory.
    expect(pool.take(300 * KiB)?.buffer).not.toBe(first.buffer);
    first.release();
    first.release();
    // Released, but a read that entered before is still running.
    expect(pool.take(300 * KiB)).toBeNull();
    const later = pool.enter();
    pool.exit(reader);
    // The read that entered after the release does not keep it.
    expect(pool.take(300 * KiB)?.buffer).toBe(first.buffer);
    pool.exit(later);
    expect(pool.sizeBytes).toBe(640 * KiB);
  });

  it('keeps size classes apart and answers null when spent', () => {
    const pool = new SpanPool(768 * KiB);
    const small = pool.take(1);
    const large = pool.take(700 * KiB);
    expect(small?.buffer.byteLength).toBe(64 * KiB);
    expect(large?.buffer.byteLength).toBe(704 * KiB);
    expect(pool.take(1)).toBeNull();
    small?.release();
    expect(pool.take(60 * KiB)?.buffer).toBe(small?.buffer);
  });
});
