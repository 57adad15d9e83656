/*
 * When buffered writes are destaged (they are durable in the write log from the start;
 * a FLUSH or FUA only syncs the log): on the pool's flush and before snapshots and
 * other metadata work; in the background once the buffer is half full (writers go on
 * filling the other half meanwhile, so a steady writer keeps the destage pipeline
 * busy); when it is full, writers wait for the destage under way, or for one of their
 * own if none is (backpressure); and from the writeback timer. All go through the pool
 * writer lock.
 */
import type { PoolContext } from './pool-context.js';
import { limits } from '../common/limits.js';
import { destageAll } from './destage.js';

const timers = new WeakMap<PoolContext, NodeJS.Timeout>();

/** Makes every write that resolved before the call durable. */
export async function flushPool(ctx: PoolContext): Promise<void> {
  ctx.assertOpen();
  await ctx.writer.run(() => destageAll(ctx));
}

/**
 * The writeback timer: destages what is buffered writebackDelayMs after the first write
 * since the last destage. The writes are durable in the write log already, so while
 * the pool serves I/O the destage waits for a pause of writebackIdleMs (background work
 * yields to foreground I/O), but never past writebackDelayMaxMs; the buffer bound
 * (backpressure) still starts one whenever the log holds too much.
 */
export function scheduleWriteback(ctx: PoolContext): void {
  if (timers.has(ctx) || ctx.tuning.writebackDelayMs <= 0) return;
  const since = Date.now();
  const arm = (delayMs: number) => {
    const timer = setTimeout(() => {
      timers.delete(ctx);
      if (ctx.closed) return;
      const now = Date.now();
      const idleMs = now - ctx.lastIoMs;
      if (idleMs < limits.writebackIdleMs && now - since < limits.writebackDelayMaxMs) return arm(limits.writebackIdleMs - idleMs);
      flushPool(ctx).catch(() => {
        // The data stays in the log; the next flush reports the error to its caller.
        scheduleWriteback(ctx);
      });
    }, delayMs);
    timer.unref();
    timers.set(ctx, timer);
  };
  arm(ctx.tuning.writebackDelayMs);
}

export function cancelWriteback(ctx: PoolContext): void {
  const timer = timers.get(ctx);
  if (timer) clearTimeout(timer);
  timers.delete(ctx);
}

/**
 * Called after buffering: a wait for a destage when the buffer is over its bound, else
 * undefined (most writes wait for nothing, and skip a promise).
 */
export function backpressure(ctx: PoolContext): Promise<void> | undefined {
  const bound = ctx.tuning.writeBufferBytesMax;
  if (ctx.dirtyBytes > bound) return waitForRoom(ctx, bound);
  if (ctx.dirtyBytes > bound / 2 && !ctx.writer.locked) {
    flushPool(ctx).catch(() => {
      // The data stays buffered; the next flush reports the error to its caller.
      scheduleWriteback(ctx);
    });
    return undefined;
  }
  scheduleWriteback(ctx);
  return undefined;
}

async function waitForRoom(ctx: PoolContext, bound: number): Promise<void> {
  // Wait for the destage under way (it frees the half it holds), not for a flush of
  // everything: the writer then fills the buffer while the next destage runs.
  if (ctx.writer.locked) await ctx.writer.run(() => Promise.resolve());
  if (ctx.dirtyBytes > bound) return flushPool(ctx);
}
