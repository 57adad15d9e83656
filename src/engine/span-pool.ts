/*
 * Recycled memory for the spans large reads fetch from packs. A sequential read used to
 * allocate a fresh buffer per MiB; the collector counts such memory and runs a full
 * collection for every 64 MiB of it, which cost more than the read itself. Spans now
 * come from a bounded set of shared buffers (the read worker reads into them) and go
 * back for reuse once nothing can see them any more.
 *
 * The read that fetched a span releases it when it has taken what it needs (views of
 * its uncompressed frames, copies of its compressed records). The views live on until
 * the read's reply is sent: this is tracked by epochs, not per view. Each read enters
 * at the current epoch and exits when it is done with its views; a released span is
 * retired at the current epoch (which then advances) and reused only once every read
 * that entered at or before that epoch has exited. A read entering later never sees
 * the span: only the read that fetched it had it.
 */
/** Spans are pooled in sizes rounded up to a multiple of this (frames are up to 64 KiB of data). */
const classBytes = 64 * 1024;

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
   * Memory for a span of `length` bytes and the call that hands it back (once), or null
   * when the pool is spent (the caller then uses memory of its own).
   */
  take(length: number): { buffer: SharedArrayBuffer; release: () => void } | null {
    const size = classOf(length);
    this.reclaim();
    let buffer = this.free.get(size)?.pop();
    if (buffer === undefined) {
      if (this.bytes + size > this.bytesMax) return null;
      buffer = new SharedArrayBuffer(size);
      this.bytes += size;
    }
    const span = buffer;
    let taken = true;
    const release = () => {
      if (taken) this.retire(span);
      taken = false;
    };
    return { buffer: span, release };
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
