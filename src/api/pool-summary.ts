/*
 * A pool as operators see it: its policy and accounting, plus capacity. Capacity is
 * what the pool could hold: the bytes it stores now (packs and metadata) plus what the
 * host file system still has free for it, as `zfs list` shows used + available. Usage is
 * stored / capacity; thin over-commit is logical (sum of volume sizes) / capacity.
 */
import * as fs from 'node:fs';
import type { Pool, PoolStats } from '../engine/index.js';

export interface PoolSummary extends PoolStats {
  readonly name: string;
  readonly capacityBytes: number;
  readonly availableBytes: number;
  readonly usageFraction: number;
  readonly overcommitRatio: number;
}

export async function poolSummary(name: string, pool: Pool): Promise<PoolSummary> {
  const stats = await pool.stats();
  const fsStats = fs.statfsSync(pool.directory);
  const availableBytes = Number(fsStats.bavail) * Number(fsStats.bsize);
  const usedBytes = stats.storedBytes + stats.metadataBytes;
  const capacityBytes = usedBytes + availableBytes;
  return {
    name,
    ...stats,
    capacityBytes,
    availableBytes,
    usageFraction: capacityBytes === 0 ? 0 : usedBytes / capacityBytes,
    overcommitRatio: capacityBytes === 0 ? 0 : stats.logicalBytes / capacityBytes,
  };
}
