/*
 * Pool: the engine's public face. A pool is one MetaStore plus one ChunkStore plus a
 * policy fixed at creation (block size, dedup, compression). It hosts volumes, their
 * snapshots and clones, and runs destage, reclaim and check.
 *
 * On-disk layout of an embedded pool directory:
 *   meta.sqlite (+ -wal)   metadata, the source of truth
 *   packs/pack-N.pack      append-only frame records
 *   strata.lock            pid of the process that has the pool open
 *
 * Opening a pool recovers from any crash: packs are cut back to the last frame the
 * metadata references, pack files no metadata knows are removed, and multi-batch work
 * (snapshot reaping, rollback, volume deletion) is finished.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isCodec, type Codec } from '../common/codec-names.js';
import { isStrataError, StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { validateName } from '../common/names.js';
import { isPowerOfTwo } from '../common/units.js';
import { LocalPackStore, nodeFileIo, type FileIo } from '../chunks/index.js';
import { SqliteMetaStore, type MetaChanges, type PoolPolicy, type SnapshotRecord } from '../meta/index.js';
import type { BlockDevice } from './block-device.js';
import { checkPool, type CheckOptions, type CheckReport } from './check.js';
import { destageAll, logAppliedKey, recordPacks } from './destage.js';
import { WriteLog } from './write-log.js';
import { PoolLock } from './pool-lock.js';
import { defaultTuning, PoolContext, VolumeState, type PoolTuning } from './pool-context.js';
import { reclaim, type ReclaimOptions, type ReclaimReport } from './reclaim.js';
import * as snapshots from './snapshots.js';
import { SnapshotHandle, VolumeHandle } from './volume-handle.js';
import { cancelWriteback, flushPool, scheduleWriteback } from './writeback.js';

export interface PoolPolicyOptions {
  readonly blockSize?: number;
  readonly dedup?: boolean;
  readonly compression?: Codec;
}

export interface PoolOpenOptions {
  readonly tuning?: Partial<PoolTuning>;
  readonly packBytesMax?: number;
  /** File operations of the pack store (tests inject faults here). */
  readonly io?: FileIo;
}

export interface VolumeInfo {
  readonly name: string;
  readonly sizeBytes: number;
  readonly createdMs: number;
  readonly snapshots: number;
  readonly parent: { readonly volume: string; readonly snapshot: string } | null;
}

export interface SnapshotInfo {
  readonly volume: string;
  readonly name: string;
  readonly sizeBytes: number;
  readonly createdMs: number;
}

export interface PoolStats {
  readonly policy: PoolPolicy;
  readonly volumes: number;
  readonly snapshots: number;
  /** Sum of volume sizes. */
  readonly logicalBytes: number;
  /** Blocks holding data at the heads of all volumes (own rows), in bytes. */
  readonly mappedBytes: number;
  /** Raw bytes of distinct stored chunks. */
  readonly uniqueBytes: number;
  /** Raw bytes all extent rows reference (counting each reference). */
  readonly referencedBytes: number;
  /** Bytes of pack files on the host file system. */
  readonly storedBytes: number;
  /** The part of storedBytes that live chunks occupy. */
  readonly liveStoredBytes: number;
  readonly metadataBytes: number;
  readonly dedupRatio: number;
  readonly compressionRatio: number;
  readonly dirtyBytes: number;
  readonly checksumErrors: number;
  /** Reclaim (garbage collection of packs) since the pool was opened. */
  readonly reclaim: { readonly runs: number; readonly packsCompacted: number; readonly packsDeleted: number; readonly bytesFreed: number };
  readonly frameCache: { readonly bytes: number; readonly hits: number; readonly misses: number };
}

export interface VolumeStats {
  readonly name: string;
  readonly logicalBytes: number;
  readonly mappedBytes: number;
  readonly zeroBytes: number;
  /** Stored bytes of chunks only this volume (head and snapshots) references. */
  readonly uniqueStoredBytes: number;
  readonly uniqueChunks: number;
  readonly sharedChunks: number;
  readonly snapshots: readonly SnapshotStats[];
}

export interface SnapshotStats extends SnapshotInfo {
  /** Stored bytes deleting this snapshot would free. */
  readonly reclaimableBytes: number;
}

function validatePolicy(options: PoolPolicyOptions): PoolPolicy {
  const blockSize = options.blockSize ?? limits.blockSizeDefaultBytes;
  if (!isPowerOfTwo(blockSize) || blockSize < limits.blockSizeMinBytes || blockSize > limits.blockSizeMaxBytes) {
    throw new StrataError(
      'STRATA_E_INVALID_ARGUMENT',
      `block size must be a power of two from ${limits.blockSizeMinBytes} to ${limits.blockSizeMaxBytes} bytes`,
      { blockSize },
    );
  }
  const compression = options.compression ?? 'zstd';
  if (!isCodec(compression)) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `compression must be none, lz4 or zstd`, { compression });
  }
  return { blockSize, dedup: options.dedup ?? true, compression };
}

function validateSize(sizeBytes: number): number {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0 || sizeBytes > limits.volumeSizeMaxBytes) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `volume size must be an integer from 0 to ${limits.volumeSizeMaxBytes} bytes`, {
      sizeBytes,
    });
  }
  return sizeBytes;
}

const metaFile = (dir: string) => path.join(dir, 'meta.sqlite');

export class Pool {
  private readonly ctx: PoolContext;
  private readonly lock: PoolLock;
  private reclaimTimer: NodeJS.Timeout | null = null;

  private constructor(ctx: PoolContext, lock: PoolLock) {
    this.ctx = ctx;
    this.lock = lock;
  }

  /** Creates a pool in `dir` (created if missing) and opens it. */
  static async create(dir: string, policyOptions: PoolPolicyOptions = {}, options: PoolOpenOptions = {}): Promise<Pool> {
    const policy = validatePolicy(policyOptions);
    if (fs.existsSync(metaFile(dir))) throw new StrataError('STRATA_E_POOL_EXISTS', `a pool already exists in ${dir}`, { dir });
    fs.mkdirSync(dir, { recursive: true });
    const meta = SqliteMetaStore.open(metaFile(dir));
    try {
      await meta.initialize(policy);
    } finally {
      await meta.close();
    }
    return Pool.open(dir, options);
  }

  static async open(dir: string, options: PoolOpenOptions = {}): Promise<Pool> {
    if (!fs.existsSync(metaFile(dir))) throw new StrataError('STRATA_E_POOL_NOT_FOUND', `no pool in ${dir}`, { dir });
    const lock = PoolLock.acquire(dir);
    let meta: SqliteMetaStore | null = null;
    let chunks: LocalPackStore | null = null;
    let context: PoolContext | null = null;
    try {
      meta = SqliteMetaStore.open(metaFile(dir));
      const policy = await meta.readPolicy();
      if (!policy) throw new StrataError('STRATA_E_POOL_NOT_FOUND', `the metadata in ${dir} holds no pool`, { dir });
      chunks = new LocalPackStore(path.join(dir, 'packs'), { packBytesMax: options.packBytesMax, io: options.io });
      const overrides = Object.entries(options.tuning ?? {}).filter(([, value]) => value !== undefined);
      const chosen: PoolTuning = { ...defaultTuning, ...Object.fromEntries(overrides) };
      const tuning: PoolTuning = { ...chosen, writeBufferBytesMax: logBoundFor(dir, chosen.writeBufferBytesMax) };
      const ctx = new PoolContext(dir, meta, chunks, policy, tuning);
      context = ctx;
      await recover(ctx, chunks);
      await openLog(ctx, options.io ?? nodeFileIo);
      const pool = new Pool(ctx, lock);
      pool.startReclaimer();
      return pool;
    } catch (error) {
      chunks?.close();
      await context?.log?.close();
      await context?.offload.close();
      await context?.readOffload.close();
      await meta?.close().catch(() => undefined);
      lock.release();
      throw error;
    }
  }

  get policy(): PoolPolicy {
    return this.ctx.policy;
  }

  get directory(): string {
    return this.ctx.dir;
  }

  private startReclaimer(): void {
    const interval = this.ctx.tuning.compactIntervalMs;
    if (interval <= 0) return;
    this.reclaimTimer = setInterval(() => {
      if (this.ctx.closed || this.ctx.writer.locked) return;
      this.admin(() => reclaim(this.ctx)).catch(() => {
        // Background reclaim retries at the next tick; on-demand reclaim reports errors.
      });
    }, interval);
    this.reclaimTimer.unref();
  }

  private admin<T>(body: () => Promise<T>): Promise<T> {
    this.ctx.assertOpen();
    return this.ctx.writer.run(body);
  }

  private info(state: VolumeState): VolumeInfo {
    const record = state.record;
    let parent: VolumeInfo['parent'] = null;
    if (record.parentId !== null) {
      const parentState = this.ctx.volumeState(record.parentId);
      const snapshot = parentState.snapshots.find((candidate) => candidate.gen === record.parentGen);
      parent = { volume: parentState.record.name, snapshot: snapshot?.name ?? `gen-${record.parentGen}` };
    }
    return { name: record.name, sizeBytes: record.sizeBytes, createdMs: record.createdMs, snapshots: state.snapshots.length, parent };
  }

  private snapshotInfo(state: VolumeState, snapshot: SnapshotRecord): SnapshotInfo {
    return { volume: state.record.name, name: snapshot.name, sizeBytes: snapshot.sizeBytes, createdMs: snapshot.createdMs };
  }

  async createVolume(name: string, sizeBytes: number): Promise<VolumeInfo> {
    validateName('volume', name);
    validateSize(sizeBytes);
    return this.admin(async () => {
      const record = await this.ctx.meta.createVolume({ name, sizeBytes, headGen: 1, parentId: null, parentGen: null, createdMs: Date.now() });
      const state = new VolumeState(record, []);
      this.ctx.volumes.set(record.id, state);
      return this.info(state);
    });
  }

  listVolumes(): VolumeInfo[] {
    this.ctx.assertOpen();
    return [...this.ctx.volumes.values()].map((state) => this.info(state)).sort((a, b) => a.name.localeCompare(b.name));
  }

  volumeInfo(name: string): VolumeInfo {
    this.ctx.assertOpen();
    return this.info(this.ctx.volumeByName(name));
  }

  /** The writable head of a volume. Every handle of one volume shares its buffer. */
  openVolume(name: string): BlockDevice {
    this.ctx.assertOpen();
    return new VolumeHandle(this.ctx, this.ctx.volumeByName(name));
  }

  async renameVolume(name: string, newName: string): Promise<void> {
    validateName('volume', newName);
    return this.admin(async () => {
      const state = this.ctx.volumeByName(name);
      if ([...this.ctx.volumes.values()].some((other) => other.record.name === newName)) {
        throw new StrataError('STRATA_E_VOLUME_EXISTS', `volume ${newName} already exists`, { volume: newName });
      }
      await this.ctx.meta.commit({ volumeUpdates: [{ id: state.id, name: newName }] });
      state.record = { ...state.record, name: newName };
    });
  }

  /** Grows a volume, or shrinks it when `force` is set (the cut-off data is discarded). */
  async resizeVolume(name: string, sizeBytes: number, options: { force?: boolean } = {}): Promise<void> {
    validateSize(sizeBytes);
    this.ctx.assertOpen();
    const state = this.ctx.volumeByName(name);
    const oldSize = state.record.sizeBytes;
    if (sizeBytes < oldSize) {
      if (!options.force) {
        throw new StrataError('STRATA_E_SHRINK_NEEDS_FORCE', `shrinking ${name} from ${oldSize} to ${sizeBytes} bytes discards data; force it`, {
          volume: name,
        });
      }
      // Deallocate the cut-off tail at the head (snapshots keep their view), so a later
      // grow reads zeros there. trim may wait for destage, so it runs before the lock.
      await new VolumeHandle(this.ctx, state).trim(sizeBytes, oldSize - sizeBytes);
    }
    await this.admin(async () => {
      await destageAll(this.ctx);
      await this.ctx.meta.commit({ volumeUpdates: [{ id: state.id, sizeBytes }] });
      state.record = { ...state.record, sizeBytes };
    });
  }

  deleteVolume(name: string): Promise<void> {
    return this.admin(async () => snapshots.deleteVolume(this.ctx, this.ctx.volumeByName(name)));
  }

  createSnapshot(volume: string, name: string): Promise<SnapshotInfo> {
    return this.admin(async () => {
      const state = this.ctx.volumeByName(volume);
      return this.snapshotInfo(state, await snapshots.createSnapshot(this.ctx, state, name));
    });
  }

  listSnapshots(volume: string): SnapshotInfo[] {
    this.ctx.assertOpen();
    const state = this.ctx.volumeByName(volume);
    return state.snapshots.map((snapshot) => this.snapshotInfo(state, snapshot));
  }

  openSnapshot(volume: string, name: string): BlockDevice {
    this.ctx.assertOpen();
    const state = this.ctx.volumeByName(volume);
    const snapshot = snapshots.findSnapshot(state, name);
    return new SnapshotHandle(this.ctx, state, snapshot.gen, `${volume}@${name}`, snapshot.sizeBytes);
  }

  deleteSnapshot(volume: string, name: string): Promise<void> {
    return this.admin(() => snapshots.deleteSnapshot(this.ctx, this.ctx.volumeByName(volume), name));
  }

  /** Rolls the head back to a snapshot; newer snapshots go only with `destroyNewer`. */
  rollback(volume: string, name: string, options: { destroyNewer?: boolean } = {}): Promise<void> {
    return this.admin(() => snapshots.rollback(this.ctx, this.ctx.volumeByName(volume), name, options.destroyNewer === true));
  }

  clone(volume: string, snapshot: string, cloneName: string): Promise<VolumeInfo> {
    return this.admin(async () => {
      if ([...this.ctx.volumes.values()].some((other) => other.record.name === cloneName)) {
        throw new StrataError('STRATA_E_VOLUME_EXISTS', `volume ${cloneName} already exists`, { volume: cloneName });
      }
      return this.info(await snapshots.cloneVolume(this.ctx, this.ctx.volumeByName(volume), snapshot, cloneName));
    });
  }

  flatten(name: string, options: { onProgress?: (done: number, total: number) => void } = {}): Promise<void> {
    return this.admin(() => snapshots.flatten(this.ctx, this.ctx.volumeByName(name), options.onProgress));
  }

  /** Makes every write that completed before the call durable. */
  flush(): Promise<void> {
    return flushPool(this.ctx);
  }

  /**
   * Compacts sparse packs and deletes retired ones. On demand the open pack is sealed
   * first, so everything written so far can be reclaimed; the background reclaimer
   * leaves it open (sealing every minute would leave many small packs).
   */
  reclaim(options: ReclaimOptions = {}): Promise<ReclaimReport> {
    return this.admin(async () => {
      await destageAll(this.ctx);
      const sealed = this.ctx.chunks.sealOpenPack();
      if (sealed !== null) {
        const changes: MetaChanges = {};
        recordPacks(this.ctx, new Map(), changes);
        await this.ctx.meta.commit(changes);
      }
      return reclaim(this.ctx, options);
    });
  }

  check(options: CheckOptions = {}): Promise<CheckReport> {
    return this.admin(async () => {
      // On a full file system what the write log holds cannot be destaged: the stored
      // part is checked all the same (the log's records carry their own CRC-32s).
      await destageAll(this.ctx).catch((error: unknown) => {
        if (!isStrataError(error, 'STRATA_E_NO_SPACE')) throw error;
      });
      return checkPool(this.ctx, options);
    });
  }

  async stats(): Promise<PoolStats> {
    this.ctx.assertOpen();
    const counters = await this.ctx.meta.counters();
    const size = this.ctx.blockSize;
    let mappedBlocks = 0;
    let snapshotCount = 0;
    for (const state of this.ctx.volumes.values()) {
      mappedBlocks += await this.mappedBlocks(state);
      snapshotCount += state.snapshots.length;
    }
    const storedBytes = this.ctx.chunks.listPacks().reduce((sum, pack) => sum + pack.bytes, 0);
    const uniqueBytes = counters.chunkCount * size;
    const referencedBytes = counters.referencedChunks * size;
    return {
      policy: this.ctx.policy,
      volumes: this.ctx.volumes.size,
      snapshots: snapshotCount,
      logicalBytes: [...this.ctx.volumes.values()].reduce((sum, state) => sum + state.record.sizeBytes, 0),
      mappedBytes: mappedBlocks * size,
      uniqueBytes,
      referencedBytes,
      storedBytes,
      liveStoredBytes: counters.liveFrameBytes,
      metadataBytes: counters.metadataBytes + walBytes(this.ctx.dir),
      dedupRatio: uniqueBytes === 0 ? 1 : referencedBytes / uniqueBytes,
      compressionRatio: counters.liveFrameBytes === 0 ? 1 : uniqueBytes / counters.liveFrameBytes,
      dirtyBytes: this.ctx.dirtyBytes,
      checksumErrors: this.ctx.counters.checksumErrors,
      reclaim: {
        runs: this.ctx.counters.reclaimRuns,
        packsCompacted: this.ctx.counters.packsCompacted,
        packsDeleted: this.ctx.counters.packsDeleted,
        bytesFreed: this.ctx.counters.reclaimedBytes,
      },
      frameCache: { bytes: this.ctx.frameCache.sizeBytes, hits: this.ctx.frameCache.hits, misses: this.ctx.frameCache.misses },
    };
  }

  /**
   * Blocks the head of a volume maps, for pool statistics (read every few seconds by
   * alerts, metrics and the console). Counting walks the volume's extent map, so the
   * count is kept until the volume's rows change; a volume whose walk is expensive is
   * then counted again only once the last count is older than a multiple of its cost,
   * so frequent statistics never take more than a small share of the writer's time.
   */
  private async mappedBlocks(state: VolumeState): Promise<number> {
    const epoch = this.ctx.meta.extentEpoch(state.id);
    const gen = state.record.headGen;
    const cached = state.mapped;
    if (cached !== null && cached.epoch === epoch && cached.gen === gen) return cached.blocks;
    if (cached !== null && cached.costMs > limits.statsRecountCheapMs && Date.now() - cached.countedMs < cached.costMs * limits.statsRecountCostFactor) {
      return cached.blocks;
    }
    const start = performance.now();
    const blocks = (await this.ctx.meta.blockCounts(state.id, gen)).mappedBlocks;
    state.mapped = { epoch, gen, blocks, countedMs: Date.now(), costMs: performance.now() - start };
    return blocks;
  }

  async volumeStats(name: string): Promise<VolumeStats> {
    this.ctx.assertOpen();
    const state = this.ctx.volumeByName(name);
    const usage = await this.ctx.meta.volumeUsage(state.id, state.record.headGen);
    const snapshotStats: SnapshotStats[] = [];
    for (const snapshot of state.snapshots) {
      snapshotStats.push({
        ...this.snapshotInfo(state, snapshot),
        reclaimableBytes: await snapshots.snapshotReclaimableBytes(this.ctx, state, snapshot),
      });
    }
    return {
      name,
      logicalBytes: state.record.sizeBytes,
      mappedBytes: usage.mappedBlocks * this.ctx.blockSize,
      zeroBytes: usage.zeroBlocks * this.ctx.blockSize,
      uniqueStoredBytes: usage.uniqueStoredBytes,
      uniqueChunks: usage.uniqueChunks,
      sharedChunks: usage.sharedChunks,
      snapshots: snapshotStats,
    };
  }

  /** Destages, stops background work and closes the stores. */
  async close(): Promise<void> {
    if (this.ctx.closed) return;
    if (this.reclaimTimer) clearInterval(this.reclaimTimer);
    cancelWriteback(this.ctx);
    try {
      await this.ctx.log.settle();
      await this.ctx.writer.run(() => destageAll(this.ctx));
    } finally {
      this.ctx.closed = true;
      try {
        await this.ctx.log.close();
        await this.ctx.chunks.close();
        await this.ctx.offload.close();
        await this.ctx.readOffload.close();
        await this.ctx.meta.close();
      } finally {
        this.lock.release();
      }
    }
  }
}

function walBytes(dir: string): number {
  try {
    return fs.statSync(`${metaFile(dir)}-wal`).size;
  } catch {
    return 0;
  }
}

/**
 * The write log's bound: as configured, but at most a quarter of the space free on the
 * pool's file system when it opens (at least 256 MiB), so the log cannot fill a small
 * disk on its own.
 */
function logBoundFor(dir: string, configured: number): number {
  try {
    const stats = fs.statfsSync(dir);
    return Math.min(configured, Math.max(limits.writeBufferBytesMinBound, Math.floor((stats.bavail * stats.bsize) / 4)));
  } catch {
    return configured;
  }
}

/**
 * Opens the write log and replays what it holds past the last destage into the
 * buffers (nothing is destaged here, so a pool on a full file system still opens); the
 * writeback timer destages it soon after.
 */
async function openLog(ctx: PoolContext, io: FileIo): Promise<void> {
  const applied = Number((await ctx.meta.readPoolValues(logAppliedKey)).get(logAppliedKey) ?? 0);
  for (const [key, value] of await ctx.meta.readPoolValues('logfloor:')) ctx.logFloors.set(Number(key.slice('logfloor:'.length)), Number(value));
  ctx.log = WriteLog.open(path.join(ctx.dir, 'log'), io, ctx.blockSize, limits.logSegmentBytesMax, applied, (record) => ctx.applyLogRecord(record));
  if (ctx.dirtyBytes > 0) scheduleWriteback(ctx);
}

/** Crash recovery and loading; see the file comment. */
async function recover(ctx: PoolContext, chunks: LocalPackStore): Promise<void> {
  const metaPacks = await ctx.meta.listPacks();
  chunks.reserveIdsBelow(Math.max(0, ...metaPacks.map((pack) => pack.id)) + 1);
  const known = new Map(metaPacks.map((pack) => [pack.id, pack]));
  const ends = await ctx.meta.packFrameEnds();
  const changes: MetaChanges = { packs: [] };
  for (const file of chunks.listPacks()) {
    const pack = known.get(file.packId);
    if (!pack) {
      chunks.deletePack(file.packId);
      continue;
    }
    const end = ends.get(file.packId) ?? 0;
    if (file.bytes > end) chunks.truncate(file.packId, end);
    if (pack.state === 'open') changes.packs!.push({ id: pack.id, state: 'sealed', bytes: end });
  }
  await chunks.sync();
  try {
    await ctx.meta.commit(changes);
  } catch (error) {
    // On a full file system the pool must still open (to read, and to delete data);
    // packs left marked open are sealed at a later open.
    if (!isStrataError(error, 'STRATA_E_NO_SPACE')) throw error;
  }
  for (const record of await ctx.meta.listVolumes()) {
    if (record.name.startsWith('.')) continue;
    ctx.volumes.set(record.id, new VolumeState(record, await ctx.meta.listSnapshots(record.id)));
  }
  for (const key of (await ctx.meta.readPoolValues('damaged:')).keys()) {
    ctx.rememberDamaged(Number(key.split(':')[1]));
  }
  const ids = await ctx.meta.nextIds();
  ctx.nextFrameId = ids.frameId;
  ctx.nextChunkId = ids.chunkId;
  await snapshots.resumePendingWork(ctx);
}
