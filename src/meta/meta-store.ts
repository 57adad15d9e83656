/*
 * MetaStore: the pool's source of truth for volumes, snapshots, the extent map, chunks,
 * frames and packs. The engine owns the rules (when a row is updated in place, when a
 * chunk dies); a driver stores and queries, and applies a MetaChanges batch atomically.
 *
 * Concurrency: many readers may call the query methods at any time; exactly one writer
 * (the engine's pool writer lock) calls the mutating methods, so a writer may read, decide
 * and then commit without the state moving under it. Every method is atomic on its own.
 *
 * Extent rows: `(volume, block, birth, chunk)` where chunk is a chunk id (> 0), ZERO_CHUNK
 * (allocated zeros, no data) or null (a hole: trimmed). The row that serves a read at
 * generation g is the one with the greatest birth <= g.
 */
import type { Codec } from '../common/codec-names.js';

export const ZERO_CHUNK = 0;
export type ChunkRef = number | null;

export interface PoolPolicy {
  readonly blockSize: number;
  readonly dedup: boolean;
  readonly compression: Codec;
}

export interface VolumeRecord {
  readonly id: number;
  readonly name: string;
  readonly sizeBytes: number;
  /** The head generation G: rows written now are born at G. */
  readonly headGen: number;
  readonly parentId: number | null;
  readonly parentGen: number | null;
  readonly createdMs: number;
}

export interface SnapshotRecord {
  readonly volumeId: number;
  readonly gen: number;
  readonly name: string;
  /** The volume's size when the snapshot was taken. */
  readonly sizeBytes: number;
  readonly createdMs: number;
}

export interface ExtentRow {
  readonly block: number;
  readonly birth: number;
  readonly chunk: ChunkRef;
}

/**
 * The first four bytes of a chunk's SHA-256 as a signed 32-bit integer. Metadata keeps
 * only this much of the hash (the whole hash is in the frame header, next to the bytes):
 * it finds dedup candidates, which the engine confirms against the frame header, and it
 * lets a read notice metadata that points at the wrong chunk.
 */
export function hashPrefix(hash: Uint8Array): number {
  return ((hash[0] << 24) | (hash[1] << 16) | (hash[2] << 8) | hash[3]) | 0;
}

/** Where a chunk's bytes live, returned with extent rows so one query serves a read. */
export interface ChunkLocation {
  readonly chunkId: number;
  readonly hashPrefix: number;
  readonly frameId: number;
  readonly slot: number;
  readonly packId: number;
  readonly offset: number;
  readonly length: number;
  /** Chunks in the frame: its header holds that many hashes. */
  readonly frameChunks: number;
}

export interface MappedExtent extends ExtentRow {
  readonly location: ChunkLocation | null;
}

export interface FrameRecord {
  readonly id: number;
  readonly packId: number;
  readonly offset: number;
  readonly length: number;
  readonly chunkCount: number;
  readonly liveChunks: number;
}

export type PackState = 'open' | 'sealed' | 'retired';

export interface PackRecord {
  readonly id: number;
  readonly state: PackState;
  readonly bytes: number;
  readonly chunkCount: number;
  readonly liveChunks: number;
  readonly retiredMs: number | null;
}

export interface NewFrame {
  readonly id: number;
  readonly packId: number;
  readonly offset: number;
  readonly length: number;
  readonly chunkCount: number;
}

export interface NewChunk {
  readonly id: number;
  readonly hash: Buffer;
  readonly frameId: number;
  readonly slot: number;
  /** Initial reference count; the commit's refDeltas are applied on top. */
  readonly refs: number;
}

export interface ExtentWrite {
  readonly volumeId: number;
  readonly block: number;
  readonly birth: number;
  readonly chunk: ChunkRef;
}

export interface ExtentDelete {
  readonly volumeId: number;
  readonly block: number;
  readonly birth: number;
}

export interface ChunkMove {
  readonly chunkId: number;
  readonly frameId: number;
  readonly slot: number;
}

/**
 * One atomic metadata transaction. Order of application: packs, frames, chunks, extent
 * deletes, extent writes (insert or replace), chunk moves, then refDeltas. A chunk whose
 * reference count reaches zero is deleted and its frame and pack live counts drop by one.
 */
export interface MetaChanges {
  packs?: { id: number; state: PackState; bytes: number; retiredMs?: number | null }[];
  frames?: NewFrame[];
  chunks?: NewChunk[];
  extentDeletes?: ExtentDelete[];
  extentWrites?: ExtentWrite[];
  /** A moved chunk leaves its old frame: that frame's and pack's live counts drop by one. */
  chunkMoves?: ChunkMove[];
  refDeltas?: Map<number, number>;
  snapshotDeletes?: { volumeId: number; gen: number }[];
  /** Pool key/value records (pending background work); null deletes the key. */
  poolValues?: { key: string; value: string | null }[];
  volumeUpdates?: { id: number; sizeBytes?: number; headGen?: number; name?: string; parentId?: null; parentGen?: null }[];
}

/** A chunk whose hash prefix matches; the full hash is in its frame header. */
export interface ChunkCandidate {
  readonly chunkId: number;
  readonly refs: number;
  readonly location: ChunkLocation;
}

export interface PoolCounters {
  readonly chunkCount: number;
  readonly frameBytes: number;
  readonly liveFrameBytes: number;
  readonly referencedChunks: number;
  readonly metadataBytes: number;
}

export interface MetaStore {
  /** Creates the schema and records the policy; throws STRATA_E_POOL_EXISTS if present. */
  initialize(policy: PoolPolicy): Promise<void>;
  /** The policy fixed at creation, or null when the store is empty. */
  readPolicy(): Promise<PoolPolicy | null>;
  close(): Promise<void>;
  /** Pool key/value records whose key starts with `prefix`. */
  readPoolValues(prefix: string): Promise<Map<string, string>>;

  listVolumes(): Promise<VolumeRecord[]>;
  getVolume(id: number): Promise<VolumeRecord | null>;
  getVolumeByName(name: string): Promise<VolumeRecord | null>;
  /** Inserts a volume; the id is assigned by the store. Throws STRATA_E_VOLUME_EXISTS. */
  createVolume(volume: Omit<VolumeRecord, 'id'>): Promise<VolumeRecord>;
  /** Removes the volume record and its snapshot records; its extent rows must be gone. */
  deleteVolumeRecord(id: number): Promise<void>;

  listSnapshots(volumeId: number): Promise<SnapshotRecord[]>;
  /** Records snapshot `gen` and moves the head to gen + 1, atomically. */
  createSnapshot(snapshot: SnapshotRecord): Promise<void>;
  /** Volumes whose parent is (volumeId, gen), or any snapshot of volumeId when gen is omitted. */
  listClones(volumeId: number, gen?: number): Promise<VolumeRecord[]>;

  /**
   * For each block in [firstBlock, firstBlock + count) that has a row with birth <= gen,
   * the row with the greatest such birth, ascending by block, with its chunk location
   * (null for every row when `withLocations` is false: callers that only need to know
   * what is mapped, such as block status, skip the look-up).
   */
  readExtents(volumeId: number, firstBlock: number, count: number, gen: number, withLocations?: boolean): Promise<MappedExtent[]>;
  /** The newest row of each listed block (any birth), for the writer's decisions. */
  latestRows(volumeId: number, blocks: readonly number[]): Promise<Map<number, ExtentRow>>;
  /**
   * Rows born in (afterGen, upToGen], ascending by (birth, block), paged after a cursor.
   * afterGen must be >= 1: rows born at 0 or 1 are never enumerated by birth.
   */
  rowsBornIn(
    volumeId: number,
    afterGen: number,
    upToGen: number,
    after: { birth: number; block: number } | null,
    limit: number,
  ): Promise<ExtentRow[]>;
  /** Rows of the volume from block `afterBlock + 1` on, ascending by (block, birth): at
   *  least `limit` rows unless the map ends first, and never part of a block's rows. */
  rowsFrom(volumeId: number, afterBlock: number, limit: number): Promise<ExtentRow[]>;
  /** For each listed block, whether a row is born in (afterGen, upToGen]. */
  blocksWithRowBornIn(volumeId: number, blocks: readonly number[], afterGen: number, upToGen: number): Promise<Set<number>>;
  /** The rows of the listed blocks born in (afterGen, upToGen]. */
  rowsOfBlocksBornIn(volumeId: number, blocks: readonly number[], afterGen: number, upToGen: number): Promise<ExtentRow[]>;

  /**
   * From memory only: per hash (in the order given), the location of the chunk recently
   * stored or looked up with its prefix, or undefined. A hint, not an answer: the caller
   * confirms the whole hash and asks chunkCandidates for the rest.
   */
  recentChunks(hashes: readonly Buffer[]): (ChunkLocation | undefined)[];
  /**
   * For each hash, the chunks whose hash prefix matches it, keyed by the hash bytes as a
   * latin1 string (hashes without candidates are absent). The caller confirms the full
   * hash against the frame header before sharing a chunk.
   */
  chunkCandidates(hashes: readonly Buffer[]): Promise<Map<string, ChunkCandidate[]>>;
  /** Reference count and share of stored frame bytes of each listed chunk that exists. */
  getChunkInfo(chunkIds: readonly number[]): Promise<Map<number, { refs: number; storedBytes: number }>>;
  /** Next free ids for frames and chunks; the single writer reserves ranges. */
  nextIds(): Promise<{ frameId: number; chunkId: number; volumeId: number }>;

  commit(changes: MetaChanges): Promise<void>;

  listPacks(): Promise<PackRecord[]>;
  /** Frames of a pack that still hold live chunks, ascending by offset. */
  liveFramesOfPack(packId: number): Promise<FrameRecord[]>;
  /** Live chunks stored in a frame, found by the hashes its header lists (in slot order);
   *  each comes back with the header's hash for its slot. */
  chunksOfFrame(frameId: number, hashes: readonly Buffer[]): Promise<{ chunkId: number; slot: number; hash: Buffer }[]>;
  deletePackRecord(packId: number): Promise<void>;
  /** Largest end offset of any frame in each pack (live or not). */
  packFrameEnds(): Promise<Map<number, number>>;

  counters(): Promise<PoolCounters>;
  /**
   * A number that changes whenever the volume's extent rows change (within this open
   * store): what was computed from the rows at one value still holds at the same value.
   */
  extentEpoch(volumeId: number): number;
  /** Blocks of one volume's head (or a snapshot gen) that hold data, and that are allocated zeros. */
  blockCounts(volumeId: number, gen: number): Promise<{ mappedBlocks: number; zeroBlocks: number }>;
  /** Mapped, unique and shared figures for one volume's head (or a snapshot gen). */
  volumeUsage(volumeId: number, gen: number): Promise<{ mappedBlocks: number; zeroBlocks: number; uniqueChunks: number; sharedChunks: number; uniqueStoredBytes: number }>;

  /** Full scans used by check; streamed in pages to bound memory. */
  scanChunks(afterId: number, limit: number): Promise<{ id: number; hashPrefix: number; frameId: number; slot: number; refs: number }[]>;
  scanFrames(afterId: number, limit: number): Promise<FrameRecord[]>;
  countRefsFromExtents(afterChunkId: number, limit: number): Promise<Map<number, number>>;
  danglingExtentRefs(limit: number): Promise<ExtentWrite[]>;
  repairChunkRefs(fixes: Map<number, number>): Promise<void>;
  /** Ids of the chunks stored in a frame. May scan: only for rare repair paths. */
  chunkIdsOfFrame(frameId: number): Promise<number[]>;
  /** Chunks whose frame row is missing or whose slot is outside their frame. */
  chunksWithoutFrame(limit: number): Promise<number[]>;
  /** Recomputes frame and pack live counters from the chunk table; returns how many
   *  were wrong. With dryRun nothing is changed. */
  repairFrameAndPackCounters(dryRun: boolean): Promise<number>;
}
