/*
 * Recycled memory for the spans large reads fetch from packs. A sequential read used to
 * allocate a fresh buffer per MiB; the collector counts such memory and runs a full
 * collection for every 64 MiB of it, which cost more than the read itself. Spans now
 * come from a bounded set of shared buffers (the read worker reads into them), and
 * go back when nothing can see them any more.
 *
 * What can see a span: the frame cache entries that are views of it (the span's
 * owner counts them, plus one while the read that fetched it runs), and any read that
 * took views of those entries and has not finished with them (a reply the socket has
 * not taken yet). The second kind is tracked by epochs, not per view: each read enters
 * at the current epoch and exits when done; a span whose owner count falls to zero is
 * retired at the current epoch (which then advances), and is reused only once every
 * read that entered at or before that epoch has exited. A read entering later cannot
 * reach the span: it is in no cache entry any more.
 */
import type { SpanOwner } from '../chunks/index.js';

/** Spans are pooled in sizes rounded up to a multiple of this. */
const classBytes = 256 * 1024;

function classOf(length: number): number {
  return Math.max(1, Math.ceil(length / classBytes)) * classBytes;
}

export class SpanPool {
  private readonly free = new Map<number, SharedArrayBuffer[]>();
  private readonly retired: { buffer: SharedArrayBuffer; epoch: number }[] = [];
  /** Reads in progress by the epoch they entered at; keys only ever increase, so the first is the oldest. */
  private readonly active = new Map<number, number>();
  private epoch = 0;
  private bytes = 0;

  constructor(private readonly bytesMax: number) {}

  /** Starts a read; call exit with the result once nothing it returned is used any more. */
  enter(): number {
    const epoch = this.epoch;
    this.active.set(epoch, (this.active.get(epoch) ?? 0) + 1);
    return epoch;
  }

  exit(epoch: number): void {
    const left = (this.active.get(epoch) ?? 1) - 1;
    if (left > 0) this.active.set(epoch, left);
    else this.active.delete(epoch);
  }

  /**
   * Memory for a span of `length` bytes, owned by the returned owner (one count held
   * for the caller), or null when the pool is spent (the caller then uses memory of its own).
   */
  take(length: number): { buffer: SharedArrayBuffer; owner: SpanOwner } | null {
    const size = classOf(length);
    this.reclaim();
    let buffer = this.free.get(size)?.pop();
    if (buffer === undefined) {
      if (this.bytes + size > this.bytesMax) return null;
      buffer = new SharedArrayBuffer(size);
      this.bytes += size;
    }
    const span = buffer;
    let refs = 1;
    const owner: SpanOwner = {
      hold: () => {
        refs += 1;
      },
      release: () => {
        refs -= 1;
        if (refs === 0) this.retire(span);
      },
    };
    return { buffer: span, owner };
  }

  /** Bytes of shared memory the pool has made (in use or free). */
  get sizeBytes(): number {
    return this.bytes;
  }

  private retire(buffer: SharedArrayBuffer): void {
    this.retired.push({ buffer, epoch: this.epoch });
    this.epoch += 1;
  }

  private reclaim(): void {
    let oldest = Number.POSITIVE_INFINITY;
    for (const epoch of this.active.keys()) {
      oldest = epoch;
      break;
    }
    let reusable = 0;
    while (reusable < this.retired.length && this.retired[reusable].epoch < oldest) reusable += 1;
    for (const { buffer } of this.retired.splice(0, reusable)) {
      const list = this.free.get(buffer.byteLength);
      if (list) list.push(buffer);
      else this.free.set(buffer.byteLength, [buffer]);
    }
  }
}
