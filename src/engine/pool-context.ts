/*
 * The state one open pool shares between its parts (destage, reads, snapshots,
 * reclaim, check): stores, policy, tuning, the writer lock, in-memory volume records
 * with their write-back buffers, id counters and error counters. Nothing here is
 * exported from the engine; the Pool class is the public face.
 */
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import { crc32 } from 'node:zlib';
import { assert } from '../common/assert.js';
import { isStrataError, StrataError } from '../common/errors.js';
import { GenerationalCache } from '../common/generational-cache.js';
import { limits } from '../common/limits.js';
import { decodeFrame, decodeFrameHeader, FrameCache, frameHeaderBytes, hashAt, hashBytes, type CachedFrame, type ChunkStore, type FrameLocation } from '../chunks/index.js';
import { hashPrefix, type ChunkLocation, type MetaStore, type PoolPolicy, type SnapshotRecord, type VolumeRecord } from '../meta/index.js';
import { zstdLevel } from '../chunks/index.js';
import { CpuOffload, type FrameToDecode } from './cpu-offload.js';
import { Mutex } from './mutex.js';
import { SpanPool } from './span-pool.js';
import { entryBytes, WriteBuffer, type BufferedBlock } from './write-buffer.js';
import { LogKind, type LogRecord, type WriteLog } from './write-log.js';

export interface PoolTuning {
  readonly frameRawBytesMax: number;
  readonly writeBufferBytesMax: number;
  readonly writebackDelayMs: number;
  readonly frameCacheBytesMax: number;
  /** Recycled memory for large reads' spans (see SpanPool). */
  readonly readSpanPoolBytesMax: number;
  readonly compactLiveFractionMax: number;
  readonly compactGraceMs: number;
  /** 0 turns the background reclaimer off (it can still run on demand). */
  readonly compactIntervalMs: number;
  /**
   * What a read from a pack checks. `crc`: the frame's header and payload CRC-32s and the
   * chunk's hash prefix against metadata, or for a block read alone its SHA-256 against
   * that prefix (corruption on disk is caught; the full SHA-256 is re-hashed by
   * `check --deep`, compaction and dedup). `sha256`: also every chunk
   * against its SHA-256, which costs about one core per GB/s read.
   */
  readonly readVerify: ReadVerify;
}

export type ReadVerify = 'crc' | 'sha256';

export const defaultTuning: PoolTuning = {
  frameRawBytesMax: limits.frameRawBytesMax,
  writeBufferBytesMax: limits.writeBufferBytesMax,
  writebackDelayMs: limits.writebackDelayMs,
  frameCacheBytesMax: limits.frameCacheBytesMax,
  readSpanPoolBytesMax: limits.readSpanPoolBytesMax,
  compactLiveFractionMax: limits.compactLiveFractionMax,
  compactGraceMs: limits.compactGraceMs,
  compactIntervalMs: limits.compactIntervalMs,
  readVerify: 'crc',
};

/** A volume's count of head blocks holding data, and the extent epoch and head gen it is true at. */
export interface MappedCount {
  readonly epoch: number;
  readonly gen: number;
  readonly blocks: number;
  /** When it was last counted from the extent map, and what that cost. */
  readonly countedMs: number;
  readonly costMs: number;
}

export class VolumeState {
  readonly buffer = new WriteBuffer();
  /**
   * Kept by Pool.stats (counted from the extent map) and carried forward by each
   * destage's commit (see destage.ts), so statistics need not walk the map again.
   */
  mapped: MappedCount | null = null;

  constructor(
    public record: VolumeRecord,
    /** Live snapshots, ascending by gen. */
    public snapshots: SnapshotRecord[],
  ) {}

  get id(): number {
    return this.record.id;
  }

  /**
   * The newest live snapshot gen, or -1 when there is none: rows are born at the head
   * gen (1 or later), or at 0 when flatten copied them from a parent.
   */
  get latestSnapshotGen(): number {
    return this.snapshots.length === 0 ? -1 : this.snapshots[this.snapshots.length - 1].gen;
  }
}

export interface PoolCountersLive {
  checksumErrors: number;
  destages: number;
  destagedBlocks: number;
  newChunks: number;
  dedupHits: number;
  /** Reclaim passes (background and on demand) and what they did. */
  reclaimRuns: number;
  packsCompacted: number;
  packsDeleted: number;
  reclaimedBytes: number;
}

export const damagedKey = (chunkId: number) => `damaged:${chunkId}`;

/** SHA-256 of a block: the one-shot crypto.hash (Node 20.12+) skips the Hash object. */
export const sha256: (data: Buffer) => Buffer =
  typeof crypto.hash === 'function' ? (data) => crypto.hash('sha256', data, 'buffer') : (data) => crypto.createHash('sha256').update(data).digest();

/**
 * True when a chunk's frame is stored uncompressed (its payload is the raw blocks; a
 * compressed payload is always shorter), so one block of it can be read and verified
 * on its own.
 */
export function storedRaw(location: ChunkLocation, blockSize: number): boolean {
  return location.length === frameHeaderBytes + location.frameChunks * (hashBytes + blockSize);
}

/** Spans of packs at least this long are read, and their frames' CRC-32s taken, on the read worker. */
const checkedReadBytesMin = 256 * 1024;

/** Where a frame's payload starts within its record: after the header and its hash table. */
function payloadStart(location: ChunkLocation): number {
  return frameHeaderBytes + hashBytes * location.frameChunks;
}

/** Small runs of frames read by one call each up to this many bytes in all; from here on, gathered on the read worker. */
const gatheredReadBytesMin = 64 * 1024;

/** Frames that sit back to back in a pack, and the span they cover. */
interface FrameRun {
  readonly span: FrameLocation;
  readonly frames: readonly ChunkLocation[];
}

/** Splits locations sorted by pack and offset into runs of back-to-back frames, each up to limits.readSpanBytesMax. */
function adjacentRuns(sorted: readonly ChunkLocation[]): FrameRun[] {
  const runs: FrameRun[] = [];
  for (let first = 0; first < sorted.length; ) {
    let last = first;
    while (
      last + 1 < sorted.length &&
      sorted[last + 1].packId === sorted[first].packId &&
      sorted[last + 1].offset === sorted[last].offset + sorted[last].length &&
      sorted[last + 1].offset + sorted[last + 1].length - sorted[first].offset <= limits.readSpanBytesMax
    ) {
      last += 1;
    }
    const offset = sorted[first].offset;
    runs.push({ span: { packId: sorted[first].packId, offset, length: sorted[last].offset + sorted[last].length - offset }, frames: sorted.slice(first, last + 1) });
    first = last + 1;
  }
  return runs;
}

/** Consecutive groups of runs, each covering up to `bytesMax` (or one run, if longer). */
function groupsOf(runs: readonly FrameRun[], bytesMax: number): FrameRun[][] {
  const groups: FrameRun[][] = [];
  let bytes = 0;
  for (const run of runs) {
    if (groups.length === 0 || bytes + run.span.length > bytesMax) {
      groups.push([]);
      bytes = 0;
    }
    groups[groups.length - 1].push(run);
    bytes += run.span.length;
  }
  return groups;
}

/** A span read from a pack: its bytes and the frames in it (with the payload CRC-32 when the reader took it). */
interface SpanRead {
  readonly bytes: Buffer;
  /** Set when the bytes are recycled memory: hands them back to the span pool. */
  readonly release?: () => void;
  readonly frames: { location: ChunkLocation; start: number; payloadCrc: number | undefined }[];
}

/**
 * Recycled buffers of 64 KiB multiples, up to a bound of bytes in all (in use or free).
 * They travel to a worker and back, so they are plain memory, not shared.
 */
export class StagingBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private bytes = 0;

  constructor(private readonly bytesMax: number) {}

  /** A buffer of at least `length` bytes, or null when the bound is reached. */
  take(length: number): ArrayBuffer | null {
    const size = Math.max(1, Math.ceil(length / (64 * 1024))) * 64 * 1024;
    const reused = this.free.get(size)?.pop();
    if (reused !== undefined) return reused;
    if (this.bytes + size > this.bytesMax) return null;
    this.bytes += size;
    return new ArrayBuffer(size);
  }

  give(buffer: ArrayBuffer): void {
    const list = this.free.get(buffer.byteLength);
    if (list) list.push(buffer);
    else this.free.set(buffer.byteLength, [buffer]);
  }

  /** A buffer that will not come back (lost with a failed worker): its bytes no longer count. */
  lost(length: number): void {
    this.bytes -= Math.max(1, Math.ceil(length / (64 * 1024))) * 64 * 1024;
  }
}

export class PoolContext {
  readonly writer = new Mutex();
  readonly volumes = new Map<number, VolumeState>();
  readonly frameCache: FrameCache;
  readonly counters: PoolCountersLive = {
    checksumErrors: 0,
    destages: 0,
    destagedBlocks: 0,
    newChunks: 0,
    dedupHits: 0,
    reclaimRuns: 0,
    packsCompacted: 0,
    packsDeleted: 0,
    reclaimedBytes: 0,
  };
  readonly zeroBlock: Buffer;
  /** The CRC-32 of a zero block. */
  readonly zeroBlockCrc: number;
  /** Destage's workers: hashing, the zero check and compression. */
  readonly offload = new CpuOffload(zstdLevel, Math.min(limits.destageWorkersMax, os.availableParallelism()));
  /** A second worker for reads: reads large spans and checks and decompresses their frames. */
  readonly readOffload = new CpuOffload(zstdLevel);
  /** Recycled memory for those spans (see SpanPool); reads that use its views enter and exit it. */
  readonly spanPool: SpanPool;
  /** Recycled memory a large write's blocks are copied into, for the workers to take their CRC-32s. */
  readonly staging = new StagingBuffers(limits.logStagingBytesMax);
  /**
   * Chunks known to be damaged (failed verification, now or in an earlier session: the
   * marks persist as `damaged:<id>` pool records). A write of the same content then
   * stores a fresh copy and moves the chunk to it, which heals every reference at once.
   */
  readonly suspectChunks = new Set<number>();
  /** Frame header hash tables (to confirm dedup candidates and check blocks read alone), by frame id. */
  private readonly frameHashes = new GenerationalCache<number, Buffer>(limits.frameHeaderCacheEntries);
  /**
   * What the write log holds past the last destage, as the buffer bound counts it (a
   * block's bytes and 64 bytes for the map; overwritten blocks count until the next
   * destage, as their records take log space until then).
   */
  dirtyBytes = 0;
  /** When a volume of the pool last served a read or a write (the writeback timer waits for a pause). */
  lastIoMs = 0;
  /** The write log (set when the pool opens, after recovery). */
  log!: WriteLog;
  /**
   * Per volume, the first log seq that still applies to it: a rollback or deletion
   * throws away the volume's buffered writes, and records below the floor (in flight or
   * in the log) must not come back (`logfloor:<id>` pool values, committed with it).
   */
  readonly logFloors = new Map<number, number>();
  nextFrameId = 1;
  nextChunkId = 1;
  closed = false;

  constructor(
    readonly dir: string,
    readonly meta: MetaStore,
    readonly chunks: ChunkStore,
    readonly policy: PoolPolicy,
    readonly tuning: PoolTuning,
  ) {
    this.frameCache = new FrameCache(tuning.frameCacheBytesMax);
    this.spanPool = new SpanPool(tuning.readSpanPoolBytesMax);
    this.zeroBlock = Buffer.alloc(policy.blockSize);
    this.zeroBlockCrc = crc32(this.zeroBlock);
  }

  get blockSize(): number {
    return this.policy.blockSize;
  }

  /** Puts a written (or replayed) log record into its volume's write-back buffer. */
  applyLogRecord(record: LogRecord): void {
    const volume = this.volumes.get(record.volumeId);
    if (volume === undefined || record.seq < (this.logFloors.get(record.volumeId) ?? 0)) return;
    const dirty = volume.buffer.dirty;
    const entry: BufferedBlock = record.kind === LogKind.Data ? record : record.kind === LogKind.Zero ? 'zero' : 'hole';
    this.dirtyBytes += record.count * entryBytes(entry);
    dirty.setRun(record.firstBlock, record.count, entry);
  }

  assertOpen(): void {
    if (this.closed) throw new StrataError('STRATA_E_POOL_CLOSED', 'the pool is closed');
  }

  volumeState(id: number): VolumeState {
    const state = this.volumes.get(id);
    if (!state) throw new StrataError('STRATA_E_VOLUME_NOT_FOUND', `volume ${id} no longer exists`, { volumeId: id });
    return state;
  }

  volumeByName(name: string): VolumeState {
    for (const state of this.volumes.values()) if (state.record.name === name) return state;
    throw new StrataError('STRATA_E_VOLUME_NOT_FOUND', `volume ${name} does not exist`, { volume: name });
  }

  /** Remembers a damaged chunk for healing, within the bound; false when not added. */
  rememberDamaged(chunkId: number): boolean {
    if (this.suspectChunks.has(chunkId) || this.suspectChunks.size >= limits.damagedChunksMax) return false;
    this.suspectChunks.add(chunkId);
    return true;
  }

  /** Counts a verification failure and remembers the chunks for healing (persisted). */
  noteCorrupt(...chunkIds: number[]): void {
    this.counters.checksumErrors += 1;
    const fresh = chunkIds.filter((id) => this.rememberDamaged(id));
    if (fresh.length === 0) return;
    this.meta.commit({ poolValues: fresh.map((id) => ({ key: damagedKey(id), value: '1' })) }).catch(() => {
      // The mark stays in memory; it is only lost if the pool closes before a retry.
    });
  }

  /**
   * Returns the verified bytes of one stored chunk (a view into a cached frame: copy it
   * before keeping it). A CRC or SHA-256 mismatch counts and throws STRATA_E_CHECKSUM;
   * wrong bytes are never returned. `alone` (the default) says the caller wants few
   * blocks of this frame: a block of an uncompressed frame that is not cached is then
   * read by itself and checked against its SHA-256, instead of reading the whole frame.
   */
  async readChunk(location: ChunkLocation, alone = true): Promise<Buffer> {
    const cached = this.cachedChunk(location);
    if (cached !== undefined) return cached;
    if (alone && storedRaw(location, this.blockSize)) return this.readRawBlock(location);
    const record = await this.chunks.read(location);
    let frame: CachedFrame;
    try {
      const decoded = decodeFrame(record, { packId: location.packId, offset: location.offset });
      frame = this.frameCache.set(location.frameId, decoded.raw, decoded.header.hashTable);
    } catch (error) {
      this.noteCorrupt(location.chunkId);
      throw error;
    }
    return this.frameBlock(frame, location);
  }

  /** The verified bytes of a chunk whose frame is in the frame cache, else undefined. */
  cachedChunk(location: ChunkLocation): Buffer | undefined {
    const frame = this.frameCache.get(location.frameId);
    return frame === undefined ? undefined : this.frameBlock(frame, location);
  }

  /** Checks and returns one block of a decoded frame (see readChunk). */
  private frameBlock(frame: CachedFrame, location: ChunkLocation): Buffer {
    const size = this.blockSize;
    const block = frame.raw.subarray(location.slot * size, (location.slot + 1) * size);
    if (frame.verified[location.slot] === 1) return block;
    // The header's hash must be the one metadata expects (its prefix), and, when reads
    // verify SHA-256, the bytes must match the header's hash.
    // (The prefix is read in place: a view of the hash per block cost more than the check.)
    const at = location.slot * hashBytes;
    const table = frame.hashTable;
    const checkHash = this.tuning.readVerify === 'sha256';
    if (at + hashBytes > table.length || table.readInt32BE(at) !== location.hashPrefix || block.length !== size || (checkHash && !sha256(block).equals(table.subarray(at, at + hashBytes)))) {
      this.frameCache.delete(location.frameId);
      throw this.chunkCorrupt(location);
    }
    frame.verified[location.slot] = 1;
    return block;
  }

  /**
   * One block of an uncompressed frame, read by itself and verified: its SHA-256 must
   * start with the prefix metadata holds (a 32-bit check, as strong as the frames' CRC-32)
   * and, when reads verify SHA-256, equal the hash in the frame header.
   */
  private async readRawBlock(location: ChunkLocation): Promise<Buffer> {
    const size = this.blockSize;
    const dataAt = location.offset + payloadStart(location) + size * location.slot;
    const block = await this.chunks.read({ packId: location.packId, offset: dataAt, length: size });
    const digest = sha256(block);
    if (hashPrefix(digest) !== location.hashPrefix) throw this.chunkCorrupt(location);
    if (this.tuning.readVerify === 'sha256' && (await this.chunkHash(location))?.equals(digest) !== true) throw this.chunkCorrupt(location);
    return block;
  }

  /** Counts and remembers a chunk that failed its check; the error to throw for it. */
  private chunkCorrupt(location: ChunkLocation): StrataError {
    this.noteCorrupt(location.chunkId);
    return new StrataError('STRATA_E_CHECKSUM', `chunk ${location.chunkId} failed its checksum`, {
      chunkId: location.chunkId,
      packId: location.packId,
      offset: location.offset,
    });
  }

  /**
   * Brings the frames of these chunks into memory, checked: compressed ones decompressed
   * on the read worker, one message for all of them, so that a large read spends this
   * thread's time on metadata and replies, and cached; uncompressed ones kept as views of
   * the spans read from packs once their CRC-32 matches (their blocks' hashes are checked
   * as they are read, see frameBlock). Those views are cached only when the span is memory
   * of its own; views of a recycled span are returned, the caller's until it exits the
   * span pool (the page cache keeps such frames warm anyway). Frames that fail are left
   * out: readChunk then reads them again here and reports the failure.
   */
  async loadFrames(locations: readonly ChunkLocation[]): Promise<Map<number, CachedFrame>> {
    const loaded = new Map<number, CachedFrame>();
    const wanted = new Map<number, ChunkLocation>();
    for (const location of locations) if (!wanted.has(location.frameId) && this.frameCache.peek(location.frameId) === undefined) wanted.set(location.frameId, location);
    if (wanted.size === 0) return loaded;
    const spans = await this.readAdjacent([...wanted.values()]);
    try {
      await this.keepFrames(spans, loaded);
    } finally {
      for (const span of spans) span.release?.();
    }
    return loaded;
  }

  /** The verified bytes of a chunk whose frame loadFrames returned. */
  loadedChunk(frame: CachedFrame, location: ChunkLocation): Buffer {
    return this.frameBlock(frame, location);
  }

  private async keepFrames(spans: readonly SpanRead[], loaded: Map<number, CachedFrame>): Promise<void> {
    const frames: { location: ChunkLocation; hashTable: Buffer; job: FrameToDecode; payloadCrc: number | undefined }[] = [];
    spans.forEach((span, spanIndex) => {
      for (const { location, start, payloadCrc } of span.frames) {
        const record = span.bytes.subarray(start, start + location.length);
        let header;
        try {
          header = decodeFrameHeader(record, { packId: location.packId, offset: location.offset });
        } catch {
          continue;
        }
        if (record.length !== header.headerLength + header.payloadLength || header.blockSize !== this.blockSize) continue;
        // The worker's CRC-32 covered the payload metadata places; it counts only where
        // the header agrees on where the payload starts.
        frames.push({
          location,
          payloadCrc: header.headerLength === payloadStart(location) ? payloadCrc : undefined,
          hashTable: header.hashTable,
          job: {
            span: spanIndex,
            start,
            length: record.length,
            headerLength: header.headerLength,
            codec: header.codec,
            payloadCrc: header.payloadCrc,
            chunkCount: header.chunkCount,
            blockSize: header.blockSize,
            checkHashes: this.tuning.readVerify === 'sha256',
          },
        });
      }
    });
    if (frames.length === 0) return;
    // Uncompressed frames need only their CRC-32 checked: done by the read worker for
    // spans it read, else here. Compressed ones go to the worker as copies of their
    // records (smaller than what they decompress to): the spans stay here, not moved to
    // the worker and back (each move counts as new memory to the collector, which then
    // runs more), and uncompressed frames are kept as views of them.
    const compressed = frames.filter((frame) => frame.job.codec !== 'none');
    for (const { job, location, hashTable, payloadCrc } of frames) {
      if (job.codec !== 'none') continue;
      const raw = spans[job.span].bytes.subarray(job.start + job.headerLength, job.start + job.length);
      if (raw.length !== job.chunkCount * job.blockSize || (payloadCrc ?? crc32(raw)) !== job.payloadCrc) continue;
      if (spans[job.span].release === undefined) this.frameCache.set(location.frameId, raw, hashTable);
      else loaded.set(location.frameId, { raw, hashTable, verified: new Uint8Array(job.chunkCount) });
    }
    if (compressed.length === 0) return;
    const decoded = await this.readOffload.decodeFrames(
      compressed.map(({ job }) => spans[job.span].bytes.subarray(job.start, job.start + job.length)),
      compressed.map(({ job }, index) => ({ ...job, span: index, start: 0 })),
    );
    decoded.frames.forEach((result, index) => {
      if (result.error !== undefined) return;
      const { location, hashTable } = compressed[index];
      this.frameCache.set(location.frameId, Buffer.from(result.raw.buffer, result.raw.byteOffset, result.raw.byteLength), hashTable).verified.set(result.verified);
    });
  }

  /**
   * Reads frame records, one read for each run of frames that sit back to back in a pack
   * (the frames of one destage do, in block order), up to limits.readSpanBytesMax. A
   * large run is read by the read worker, which also gives each frame's payload CRC-32,
   * into recycled memory when the span pool has some (the caller then releases it).
   * Small runs are read here, one call each, unless together they are large (a long read
   * of data written at random finds a frame or a few per run): then they go to the
   * worker gathered, one message for all of them.
   */
  private async readAdjacent(locations: ChunkLocation[]): Promise<SpanRead[]> {
    const runs = adjacentRuns(locations.sort((a, b) => a.packId - b.packId || a.offset - b.offset));
    const checked = this.chunks.readChecked !== undefined;
    const small = runs.filter((run) => run.span.length < checkedReadBytesMin);
    const gather = checked && small.length > 1 && small.reduce((sum, run) => sum + run.span.length, 0) >= gatheredReadBytesMin;
    const result: SpanRead[] = [];
    try {
      for (const run of runs) {
        if (checked && run.span.length >= checkedReadBytesMin) result.push(await this.readRunsChecked([run]));
        else if (!gather) result.push({ bytes: await this.chunks.read(run.span), frames: run.frames.map((location) => ({ location, start: location.offset - run.span.offset, payloadCrc: undefined })) });
      }
      if (gather) for (const group of groupsOf(small, limits.readSpanBytesMax)) result.push(await this.readRunsChecked(group));
    } catch (error) {
      for (const span of result) span.release?.();
      throw error;
    }
    return result;
  }

  /** Runs read back to back on the read worker with their payloads' CRC-32s, as one span. */
  private async readRunsChecked(runs: readonly FrameRun[]): Promise<SpanRead> {
    const frames: SpanRead['frames'][number][] = [];
    const ranges: number[] = [];
    let at = 0;
    for (const run of runs) {
      for (const location of run.frames) {
        const start = at + location.offset - run.span.offset;
        frames.push({ location, start, payloadCrc: undefined });
        ranges.push(start + payloadStart(location), start + location.length);
      }
      at += run.span.length;
    }
    const store = this.chunks;
    assert(store.readChecked !== undefined, 'checked reads asked of a store without them');
    const pooled = this.spanPool.take(at);
    let read;
    try {
      read = await store.readChecked(runs.map((run) => run.span), ranges, this.readOffload, pooled?.buffer);
    } catch (error) {
      pooled?.release();
      throw error;
    }
    read.crcs.forEach((crc, index) => (frames[index].payloadCrc = crc));
    return { bytes: read.bytes, frames, release: pooled?.release };
  }

  /**
   * The full SHA-256 of a dedup candidate, read from its frame header (cached by frame),
   * or null when the header cannot be read or verified: such a candidate is not shared.
   */
  async chunkHash(location: ChunkLocation): Promise<Buffer | null> {
    const table = await this.headerHashes(location);
    return (table && hashAt(table, location.slot)) ?? null;
  }

  /**
   * Remembers the hash table of a frame just written (frame ids are never reused in a
   * process, so an entry for a frame whose commit then failed is only unused).
   */
  rememberFrameHashes(frameId: number, hashTable: Buffer): void {
    this.frameHashes.set(frameId, hashTable);
  }

  /** The chunk's hash when its frame header is in memory, else undefined (see chunkHash). */
  cachedChunkHash(location: ChunkLocation): Buffer | undefined {
    const table = this.knownHashes(location.frameId);
    return table && hashAt(table, location.slot);
  }

  /** A frame's hash table from the header cache or the frame cache, without I/O. */
  private knownHashes(frameId: number): Buffer | undefined {
    return this.frameHashes.get(frameId) ?? this.frameCache.peek(frameId)?.hashTable;
  }

  /**
   * The hash table of a chunk's frame header (header CRC checked; cached by frame id), or
   * null when the header cannot be read or fails its check.
   */
  private async headerHashes(location: ChunkLocation): Promise<Buffer | null> {
    let table = this.knownHashes(location.frameId);
    if (table === undefined) {
      const headerLength = Math.min(location.length, payloadStart(location));
      try {
        table = decodeFrameHeader(await this.chunks.read({ ...location, length: headerLength })).hashTable;
      } catch (error) {
        if (isStrataError(error)) return null;
        throw error;
      }
      this.frameHashes.set(location.frameId, table);
    }
    return table;
  }
}
