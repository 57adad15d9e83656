/*
 * engine: pools, volumes, the birth-generation extent map, snapshots, clones, the
 * write-back buffer, dedup, reclaim, accounting and check. Stands on src/meta and
 * src/chunks; must not import nbd, api, vm, cli or daemon.
 */
export { Pool } from './pool.js';
export { PoolSet } from './pool-set.js';
export { Mutex } from './mutex.js';
export type { PoolEntry } from './pool-set.js';
export type {
  PoolOpenOptions,
  PoolPolicyOptions,
  PoolStats,
  SnapshotInfo,
  SnapshotStats,
  VolumeInfo,
  VolumeStats,
} from './pool.js';
export type { BlockDevice, BlockExtent, ExtentType, HeldPieces, ReadPiece, WriteOptions, ZeroOptions } from './block-device.js';
export type { PoolTuning, ReadVerify } from './pool-context.js';
export { defaultTuning } from './pool-context.js';
export type { CheckIssue, CheckOptions, CheckReport } from './check.js';
export type { ReclaimOptions, ReclaimProgress, ReclaimReport } from './reclaim.js';
