/*
 * When buffered writes are destaged: on flush/FUA, when the buffer passes its bound
 * (writers wait: backpressure), and from a short timer so data does not sit volatile
 * for long. All three go through the pool writer lock.
 */
import type { PoolContext } from './pool-context.js';
import { destageAll } from './destage.js';

const timers = new WeakMap<PoolContext, NodeJS.Timeout>();

/** Makes every write that resolved before the call durable. */
export async function flushPool(ctx: PoolContext): Promise<void> {
  ctx.assertOpen();
  await ctx.writer.run(() => destageAll(ctx));
}

export function scheduleWriteback(ctx: PoolContext): void {
  if (timers.has(ctx) || ctx.tuning.writebackDelayMs <= 0) return;
  const timer = setTimeout(() => {
    timers.delete(ctx);
    if (ctx.closed) return;
    flushPool(ctx).catch(() => {
      // The data stays buffered; the next flush reports the error to its caller.
      scheduleWriteback(ctx);
    });
  }, ctx.tuning.writebackDelayMs);
  timer.unref();
  timers.set(ctx, timer);
}

export function cancelWriteback(ctx: PoolContext): void {
  const timer = timers.get(ctx);
  if (timer) clearTimeout(timer);
  timers.delete(ctx);
}

/** Called after buffering: waits for a destage when the buffer is over its bound. */
export async function backpressure(ctx: PoolContext): Promise<void> {
  if (ctx.dirtyBytes <= ctx.tuning.writeBufferBytesMax) {
    scheduleWriteback(ctx);
    return;
  }
  await flushPool(ctx);
}
