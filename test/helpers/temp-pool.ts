/*
 * Temporary pool directories and pool opening for tests.
 *
 * Every test (and every property run) gets a fresh directory under the OS temp dir and
 * removes it afterwards. Pools are opened with timers off (no background reclaim, no
 * write-back timer, no compaction grace), so what a test observes depends only on the
 * calls it makes; tests that want timers pass their own tuning.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Pool, type PoolOpenOptions, type PoolPolicyOptions, type PoolTuning } from '../../src/engine/index.js';

/** Tuning with every timer off: the engine only does what the test asks. */
export const quietTuning: Partial<PoolTuning> = { compactIntervalMs: 0, compactGraceMs: 0, writebackDelayMs: 0 };

export function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'strata-'));
}

export function removeTempDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Runs `body` with a fresh temporary directory that is removed afterwards, whatever happens. */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = makeTempDir();
  try {
    return await body(dir);
  } finally {
    removeTempDir(dir);
  }
}

/** Open options with quiet timers, merged under the caller's (the caller wins). */
export function testOpenOptions(options: PoolOpenOptions = {}): PoolOpenOptions {
  return { ...options, tuning: { ...quietTuning, ...options.tuning } };
}

export function createTestPool(dir: string, policy: PoolPolicyOptions, options: PoolOpenOptions = {}): Promise<Pool> {
  return Pool.create(dir, policy, testOpenOptions(options));
}

export function openTestPool(dir: string, options: PoolOpenOptions = {}): Promise<Pool> {
  return Pool.open(dir, testOpenOptions(options));
}

/** Opens the pool in `dir`, runs `body`, and closes the pool whatever happens. */
export async function withOpenPool<T>(dir: string, options: PoolOpenOptions, body: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = await openTestPool(dir, options);
  try {
    return await body(pool);
  } finally {
    await pool.close();
  }
}
