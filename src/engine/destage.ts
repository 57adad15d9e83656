/*
 * Destage: turn buffered block writes into durable chunks and extent rows.
 *
 *   1. freeze every volume's dirty map (new writes go to a fresh one);
 *   2. classify blocks: hole, allocated zeros (all-zero data is never stored), or data;
 *      hash data blocks with SHA-256 (on the CPU offload workers, while this thread
 *      reads the extent rows the writes replace);
 *   3. dedup: reuse chunks already stored with the same hash (pool policy);
 *   4. pack the remaining new chunks, in block order, into frames of up to
 *      frameRawBytesMax raw bytes, compress them (on the workers, while this thread
 *      decides the extent rows) and append them to the open pack;
 *   5. sync the packs, and only then
 *   6. commit one metadata transaction: frames, chunks, extent rows, reference counts.
 *
 * A crash anywhere before 6 leaves only unreferenced pack bytes (cut at the next open).
 * If any step fails the frozen entries go back into the buffer (newer writes win) and
 * the packs are cut back, so nothing acknowledged is lost and nothing dangles.
 *
 * Extent rule (DESIGN.md): the newest row of a block is updated in place when no live
 * snapshot gen lies in [row.birth, G); otherwise a new row is born at G.
 */
import { assert } from '../common/assert.js';
import { limits } from '../common/limits.js';
import { framePieces, hashTableOf, type FrameLocation } from '../chunks/index.js';
import { ZERO_CHUNK, type ChunkLocation, type ChunkRef, type ExtentDelete, type ExtentRow, type ExtentWrite, type MetaChanges, type NewChunk, type NewFrame } from '../meta/index.js';
import type { CompressedFrame, HashResult } from './cpu-offload.js';
import { damagedKey, type PoolContext, type VolumeState } from './pool-context.js';
import type { LogRecord } from './write-log.js';
import { BlockMap } from './block-map.js';

interface PendingChunk {
  readonly id: number;
  readonly hash: Buffer;
  /** Index of its bytes in the destage's data list (and the worker's slab). */
  readonly slot: number;
  /** A fresh copy of a stored chunk that failed verification: moved, not inserted. */
  readonly heals?: boolean;
}

interface VolumeWork {
  readonly volume: VolumeState;
  /** The blocks written, ascending. */
  readonly blocks: number[];
  /** What blocks[i] becomes: hole (null), ZERO_CHUNK or a chunk id (data blocks: once resolved). */
  readonly targets: ChunkRef[];
  /** Head blocks holding data after the destage less before (decideRows). */
  mappedDelta: number;
}

/** Reference counts of the chunks new in a destage: ids first, first + 1, ... */
interface NewRefs {
  readonly first: number;
  readonly counts: Int32Array;
}

/** A data block of the destage; its position in the destage's list is its slot in the worker's slab. */
interface DataBlock {
  readonly item: VolumeWork;
  /** Its index in item.blocks. */
  readonly index: number;
  readonly block: number;
  readonly entry: LogRecord;
}

/** A hash met in this destage, and the chunk holding it (-1 while it is being looked up). */
interface KnownHash {
  readonly hash: Buffer;
  chunkId: number;
  /** Slot of the first block with this content. */
  readonly slot: number;
}

/**
 * The hashes met in this destage, by content: a Map from the first 32 bits of the
 * hash (uniform, so nearly always one entry each) to the entries with that prefix. A
 * lookup reads the hash in place in the worker's hash table: no key is made per block.
 */
class KnownHashes {
  private readonly byPrefix = new Map<number, KnownHash | KnownHash[]>();

  get(table: Uint8Array, at: number): KnownHash | undefined {
    const found = this.byPrefix.get(prefixAt(table, at));
    if (found === undefined) return undefined;
    if (!Array.isArray(found)) return sameHash(found.hash, table, at) ? found : undefined;
    return found.find((entry) => sameHash(entry.hash, table, at));
  }

  add(entry: KnownHash): void {
    const prefix = prefixAt(entry.hash, 0);
    const found = this.byPrefix.get(prefix);
    if (found === undefined) this.byPrefix.set(prefix, entry);
    else if (Array.isArray(found)) found.push(entry);
    else this.byPrefix.set(prefix, [found, entry]);
  }
}

function prefixAt(table: Uint8Array, at: number): number {
  return ((table[at] << 24) | (table[at + 1] << 16) | (table[at + 2] << 8) | table[at + 3]) | 0;
}

function sameHash(hash: Uint8Array, table: Uint8Array, at: number): boolean {
  for (let byte = 0; byte < 32; byte += 1) if (hash[byte] !== table[at + byte]) return false;
  return true;
}

export function addRef(deltas: Map<number, number>, chunk: ChunkRef, delta: number): void {
  if (chunk === null || chunk === ZERO_CHUNK) return;
  deltas.set(chunk, (deltas.get(chunk) ?? 0) + delta);
}

/** Destages every volume's buffer. The caller holds the pool writer lock. */
export async function destageAll(ctx: PoolContext): Promise<void> {
  const frozen: VolumeState[] = [];
  for (const volume of ctx.volumes.values()) {
    if (volume.buffer.isEmpty) continue;
    assert(volume.buffer.destaging === null, 'destage is already running');
    volume.buffer.destaging = volume.buffer.dirty;
    volume.buffer.dirty = new BlockMap();
    frozen.push(volume);
  }
  if (frozen.length === 0) return emptyLog(ctx);
  // Every log record below this seq is in the frozen maps (records are applied in seq
  // order); the commit says so, and segments wholly below it can then go.
  const appliedSeq = ctx.log.appliedSeq;
  const frozenBytes = ctx.dirtyBytes;
  ctx.log.rotate();
  const packStarts = new Map<number, number>();
  const appending: Promise<AppendedFrame[]>[] = [];
  try {
    await destageFrozen(ctx, frozen, packStarts, appending, appliedSeq);
  } catch (error) {
    // No append may land after the packs are cut back.
    await Promise.allSettled(appending);
    await restore(ctx, frozen, packStarts);
    throw error;
  }
  for (const volume of frozen) {
    ctx.counters.destagedBlocks += volume.buffer.destaging!.size;
    volume.buffer.destaging = null;
    volume.buffer.epoch += 1;
  }
  ctx.dirtyBytes -= frozenBytes;
  ctx.counters.destages += 1;
  ctx.log.release(appliedSeq);
}

/**
 * With nothing buffered, the log holds only records that were destaged or thrown away
 * (a rolled-back or deleted volume's): marks them applied and deletes their segments.
 */
async function emptyLog(ctx: PoolContext): Promise<void> {
  const seq = ctx.log.appliedSeq;
  const frozenBytes = ctx.dirtyBytes;
  if (!ctx.log.holdsBelow(seq)) return;
  ctx.log.rotate();
  await ctx.meta.commit({ poolValues: logAppliedValues(ctx, seq) });
  ctx.dirtyBytes -= frozenBytes;
  ctx.log.release(seq);
}

/** The pool values a commit that makes log records below `seq` applied carries: the new mark, and floors it makes moot. */
export function logAppliedValues(ctx: PoolContext, seq: number): { key: string; value: string | null }[] {
  const values: { key: string; value: string | null }[] = [{ key: logAppliedKey, value: String(seq) }];
  for (const [volumeId, floor] of ctx.logFloors) {
    if (floor > seq) continue;
    values.push({ key: logFloorKey(volumeId), value: null });
    ctx.logFloors.delete(volumeId);
  }
  return values;
}

export const logAppliedKey = 'log:applied';
export const logFloorKey = (volumeId: number) => `logfloor:${volumeId}`;

async function restore(ctx: PoolContext, frozen: VolumeState[], packStarts: Map<number, number>): Promise<void> {
  for (const volume of frozen) {
    const buffer = volume.buffer;
    for (const [block, entry] of buffer.destaging!) if (!buffer.dirty.has(block)) buffer.dirty.set(block, entry);
    buffer.destaging = null;
  }
  await cutBack(ctx, packStarts);
}

/**
 * After a failed destage or compaction: waits for its appends still under way, then cuts
 * each pack it wrote back to where it began.
 */
export async function cutBack(ctx: PoolContext, packStarts: Map<number, number>): Promise<void> {
  await ctx.chunks.settle().catch(() => undefined);
  for (const [packId, start] of packStarts) {
    try {
      ctx.chunks.truncate(packId, start);
    } catch {
      // The next open cuts every pack back to its referenced end.
    }
  }
}

/** `appending` gets the destage's pack appends, for a caller cutting the packs back after a failure to wait for. */
async function destageFrozen(ctx: PoolContext, frozen: VolumeState[], packStarts: Map<number, number>, appending: Promise<AppendedFrame[]>[], appliedSeq: number): Promise<void> {
  const work: VolumeWork[] = [];
  const data: DataBlock[] = [];
  for (const volume of frozen) {
    const destaging = volume.buffer.destaging!;
    const blocks = [...destaging.keys()].sort((a, b) => a - b);
    const item: VolumeWork = { volume, blocks, targets: new Array<ChunkRef>(blocks.length).fill(null), mappedDelta: 0 };
    blocks.forEach((block, index) => {
      const entry = destaging.get(block)!;
      if (entry === 'zero') item.targets[index] = ZERO_CHUNK;
      else if (entry !== 'hole') data.push({ item, index, block, entry });
    });
    work.push(item);
  }
  // The data is cut into slices the workers hash (each slice copied into their slab
  // just before, so hashing starts while the next is copied), while this thread reads
  // the rows the writes will replace and resolves each hashed slice (dedup). Each
  // slice's new frames are then compressed on the workers while this thread decides
  // the rows and appends the frames of the slices already compressed. The slab holds a
  // few slices, not the whole destage: a slice's region takes the slice `regions` later
  // once its frames are compressed.
  const sliceBlocks = Math.max(1, Math.floor(limits.destageSliceBytes / ctx.blockSize));
  const slices: { first: number; count: number }[] = [];
  for (let first = 0; first < data.length; first += sliceBlocks) slices.push({ first, count: Math.min(sliceBlocks, data.length - first) });
  const regions = Math.min(limits.destageSlabSlices, slices.length);
  ctx.offload.reserve(regions * sliceBlocks, ctx.blockSize);
  const regionStart = (index: number) => (index % regions) * sliceBlocks;
  // The bytes of each data block while its slice is worked on: read from the write log
  // (runs of one record at once) just before the slice is hashed, dropped once its
  // frames are appended.
  const bytes = new Array<Buffer | null>(data.length).fill(null);
  const hashSlice = (index: number): Promise<HashResult> => {
    const slice = slices[index];
    materialize(ctx, data, bytes, slice.first, slice.count);
    const blocks = bytes.slice(slice.first, slice.first + slice.count) as Buffer[];
    ctx.offload.load(blocks, ctx.blockSize, regionStart(index));
    return ctx.offload.hash(regionStart(index), slice.count, ctx.blockSize);
  };
  // Every promise here is awaited in order unless an earlier step failed: the others
  // must not count as unhandled then.
  const settled = <T>(promise: Promise<T>): Promise<T> => {
    promise.catch(() => undefined);
    return promise;
  };
  const hashing = slices.slice(0, regions).map((_, index) => settled(hashSlice(index)));
  const latest = new Map<VolumeWork, Map<number, ExtentRow>>();
  for (const item of work) latest.set(item, await ctx.meta.latestRows(item.volume.id, item.blocks));
  const known = new KnownHashes();
  const firstNewChunk = ctx.nextChunkId;
  const framesBySlice: PendingChunk[][][] = [];
  // Each slice's frames go to the pack as soon as they and the slices before them are
  // compressed (the page-cache copy overlaps the hashing of the slices after it); their
  // rows are made once all are.
  const packEnds = new Map<number, number>();
  for (let index = 0; index < slices.length; index += 1) {
    const slice = slices[index];
    const fresh = await resolveSlice(ctx, data, slice.first, await hashing[index], known);
    const frames = groupFrames(ctx, fresh, data);
    framesBySlice.push(frames);
    const slabSlot = (chunk: PendingChunk) => regionStart(index) + chunk.slot - slice.first;
    const compressed = settled<(CompressedFrame | null)[]>(
      ctx.policy.compression === 'none' || frames.length === 0
        ? Promise.resolve(frames.map(() => null))
        : ctx.offload.compress(ctx.policy.compression, ctx.blockSize, frames.map((group) => group.map(slabSlot))),
    );
    // In slice order, so the pack holds the blocks in order (sequential reads read it sequentially).
    const previous = appending[index - 1] ?? Promise.resolve([]);
    appending.push(
      settled(
        Promise.all([compressed, previous]).then(([payloads]) => {
          const appended = appendFrames(ctx, frames, payloads, bytes, packStarts, packEnds);
          bytes.fill(null, slice.first, slice.first + slice.count);
          return appended;
        }),
      ),
    );
    if (index + regions < slices.length) hashing.push(settled(compressed.then(() => hashSlice(index + regions))));
  }
  const changes: MetaChanges = { frames: [], chunks: [], extentWrites: [], extentDeletes: [], refDeltas: new Map(), packs: [] };
  // New chunks have consecutive ids: their references are counted in an array.
  const newRefs: NewRefs = { first: firstNewChunk, counts: new Int32Array(ctx.nextChunkId - firstNewChunk) };
  for (const item of work) await decideRows(ctx, item, latest.get(item)!, changes, newRefs);
  for (let index = 0; index < slices.length; index += 1) recordFrames(ctx, framesBySlice[index], await appending[index], changes, newRefs);
  recordPacks(ctx, packEnds, changes);
  if (packStarts.size > 0) await ctx.chunks.sync();
  const healed = (changes.chunkMoves ?? []).map((move) => move.chunkId);
  changes.poolValues = [...healed.map((id) => ({ key: damagedKey(id), value: null })), ...logAppliedValues(ctx, appliedSeq)];
  const epochs = work.map((item) => ctx.meta.extentEpoch(item.volume.id));
  await ctx.meta.commit(changes);
  for (const id of healed) ctx.suspectChunks.delete(id);
  work.forEach((item, index) => carryMappedCount(ctx, item, epochs[index]));
}

/**
 * Carries a volume's mapped-block count over this destage's commit when the count was
 * true just before it. Only for volumes without a parent: a clone's blocks without rows
 * of their own show the parent's, which decideRows does not look at.
 */
function carryMappedCount(ctx: PoolContext, item: VolumeWork, epochBefore: number): void {
  const mapped = item.volume.mapped;
  if (mapped === null || item.volume.record.parentId !== null) return;
  if (mapped.epoch !== epochBefore || mapped.gen !== item.volume.record.headGen) return;
  item.volume.mapped = { ...mapped, epoch: ctx.meta.extentEpoch(item.volume.id), blocks: mapped.blocks + item.mappedDelta };
}

/** Fills bytes[first, first + count) with the data blocks there, read back from the write log (a run of one record at a time). */
function materialize(ctx: PoolContext, data: readonly DataBlock[], bytes: (Buffer | null)[], first: number, count: number): void {
  const size = ctx.blockSize;
  for (let at = first; at < first + count; ) {
    const entry = data[at].entry;
    let run = 1;
    while (at + run < first + count && data[at + run].entry === entry && data[at + run].block === data[at].block + run && data[at + run].item === data[at].item) run += 1;
    const read = ctx.log.readBlocks(entry, data[at].block - entry.firstBlock, run);
    for (let index = 0; index < run; index += 1) bytes[at + index] = read.subarray(index * size, (index + 1) * size);
    at += run;
  }
}

function holdsData(chunk: ChunkRef | undefined): boolean {
  return chunk !== undefined && chunk !== null && chunk !== ZERO_CHUNK;
}

/**
 * The stored chunk holding each hash, or undefined. Metadata knows hash prefixes only;
 * a candidate counts once its frame header shows the whole hash. A healthy copy is
 * preferred to one known to be damaged.
 */
async function findStored(ctx: PoolContext, hashes: readonly Buffer[]): Promise<(number | undefined)[]> {
  const result = new Array<number | undefined>(hashes.length);
  // Most candidates' frame headers are in memory: no promise for those.
  const confirmed = (index: number, location: ChunkLocation): boolean | Promise<boolean> => {
    const known = ctx.cachedChunkHash(location);
    if (known !== undefined) return known.equals(hashes[index]);
    return ctx.chunkHash(location).then((hash) => hash?.equals(hashes[index]) === true);
  };
  // The chunks the metadata store remembers for these prefixes first, then a query for
  // the hashes they do not confirm.
  const recent = ctx.meta.recentChunks(hashes);
  const rest: number[] = [];
  for (let index = 0; index < hashes.length; index += 1) {
    const location = recent[index];
    if (location !== undefined && !ctx.suspectChunks.has(location.chunkId)) {
      const match = confirmed(index, location);
      if (match === true || (match !== false && (await match))) {
        result[index] = location.chunkId;
        continue;
      }
    }
    rest.push(index);
  }
  if (rest.length === 0) return result;
  const candidates = await ctx.meta.chunkCandidates(rest.map((index) => hashes[index]));
  if (candidates.size === 0) return result;
  for (const index of rest) {
    for (const candidate of candidates.get(hashes[index].toString('latin1')) ?? []) {
      const match = confirmed(index, candidate.location);
      if (match === false || (match !== true && !(await match))) continue;
      result[index] = candidate.chunkId;
      if (!ctx.suspectChunks.has(candidate.chunkId)) break;
    }
  }
  return result;
}

/**
 * Resolves one hashed slice of the data: zero blocks become allocated zeros, the rest
 * shares a stored chunk, a chunk new in this destage, or becomes a new chunk (returned,
 * in block order).
 */
async function resolveSlice(ctx: PoolContext, data: readonly DataBlock[], first: number, { hashes, zero }: HashResult, known: KnownHashes): Promise<PendingChunk[]> {
  const table = Buffer.from(hashes.buffer, hashes.byteOffset, hashes.byteLength);
  const fresh: PendingChunk[] = [];
  if (!ctx.policy.dedup) {
    for (let index = 0; index < zero.length; index += 1) {
      const piece = data[first + index];
      piece.item.targets[piece.index] = zero[index] === 1 ? ZERO_CHUNK : newChunk(ctx, table.subarray(index * 32, index * 32 + 32), first + index, fresh).id;
    }
    return fresh;
  }
  // Each block's hash: met before in this destage, or first met here (asked of the store).
  const seen = new Array<KnownHash | undefined>(zero.length);
  const asked: KnownHash[] = [];
  for (let index = 0; index < zero.length; index += 1) {
    if (zero[index] === 1) continue;
    let entry = known.get(table, index * 32);
    if (entry === undefined) {
      entry = { hash: table.subarray(index * 32, index * 32 + 32), chunkId: -1, slot: first + index };
      known.add(entry);
      asked.push(entry);
    } else {
      ctx.counters.dedupHits += 1;
    }
    seen[index] = entry;
  }
  const stored = await findStored(ctx, asked.map((entry) => entry.hash));
  asked.forEach((entry, index) => {
    const chunkId = stored[index];
    if (chunkId === undefined) {
      entry.chunkId = newChunk(ctx, entry.hash, entry.slot, fresh).id;
    } else if (ctx.suspectChunks.has(chunkId)) {
      // Only a damaged copy is stored: this one takes its place.
      fresh.push({ id: chunkId, hash: entry.hash, slot: entry.slot, heals: true });
      entry.chunkId = chunkId;
    } else {
      ctx.counters.dedupHits += 1;
      entry.chunkId = chunkId;
    }
  });
  for (let index = 0; index < zero.length; index += 1) {
    const piece = data[first + index];
    piece.item.targets[piece.index] = zero[index] === 1 ? ZERO_CHUNK : (seen[index] as KnownHash).chunkId;
  }
  // In slot order: asked lists hashes by their first block.
  return fresh;
}

function newChunk(ctx: PoolContext, hash: Buffer, slot: number, fresh: PendingChunk[]): PendingChunk {
  const chunk: PendingChunk = { id: ctx.nextChunkId, hash, slot };
  ctx.nextChunkId += 1;
  ctx.counters.newChunks += 1;
  fresh.push(chunk);
  return chunk;
}

/**
 * New chunks in block order, cut into frames of at most frameRawBytesMax raw bytes whose
 * blocks lie within one frame's span of the volume. Sequential data fills whole frames
 * (compression sees neighbouring blocks); scattered random writes get small frames, so
 * reading one block back later decompresses little more than that block.
 */
function groupFrames(ctx: PoolContext, chunks: PendingChunk[], data: readonly DataBlock[]): PendingChunk[][] {
  const perFrame = Math.min(limits.frameChunksMax, Math.max(1, Math.floor(ctx.tuning.frameRawBytesMax / ctx.blockSize)));
  const frames: PendingChunk[][] = [];
  let current: PendingChunk[] = [];
  let start: DataBlock | null = null;
  for (const chunk of chunks) {
    const at = data[chunk.slot];
    if (start !== null && (current.length === perFrame || at.item !== start.item || at.block >= start.block + perFrame)) {
      frames.push(current);
      current = [];
      start = null;
    }
    start ??= at;
    current.push(chunk);
  }
  if (current.length > 0) frames.push(current);
  return frames;
}

interface AppendedFrame {
  readonly location: FrameLocation;
  readonly hashTable: Buffer;
}

/** Appends a slice's frames (compressed on the worker) to the pack: one write per pack they land in, blocks not copied. */
function appendFrames(
  ctx: PoolContext,
  frames: PendingChunk[][],
  payloads: (CompressedFrame | null)[],
  bytes: readonly (Buffer | null)[],
  packStarts: Map<number, number>,
  packEnds: Map<number, number>,
): AppendedFrame[] {
  const tables = frames.map((group) => hashTableOf(group.map((chunk) => chunk.hash)));
  const records = frames.map((group, index) => {
    const packed = payloads[index]?.payload ?? null;
    const compressed = packed === null ? null : Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength);
    const blocks = group.map((chunk) => bytes[chunk.slot] as Buffer);
    return framePieces(ctx.policy.compression, ctx.blockSize, blocks, compressed, tables[index], payloads[index]?.crc);
  });
  const locations = ctx.chunks.appendMany(records);
  for (const location of locations) noteAppend(packStarts, packEnds, location);
  return locations.map((location, index) => ({ location, hashTable: tables[index] }));
}

/** Records a slice's appended frames and their new chunks. */
function recordFrames(ctx: PoolContext, frames: PendingChunk[][], appended: readonly AppendedFrame[], changes: MetaChanges, newRefs: NewRefs): void {
  frames.forEach((group, index) => {
    const frame: NewFrame = { id: ctx.nextFrameId, ...appended[index].location, chunkCount: group.length };
    ctx.nextFrameId += 1;
    ctx.rememberFrameHashes(frame.id, appended[index].hashTable);
    changes.frames!.push(frame);
    group.forEach((chunk, slot) => {
      if (chunk.heals) return void (changes.chunkMoves ??= []).push({ chunkId: chunk.id, frameId: frame.id, slot });
      // Inserted with its final reference count (decideRows ran first): one statement, not two.
      const refs = newRefs.counts[chunk.id - newRefs.first];
      assert(refs > 0, `new chunk ${chunk.id} is referenced by no block`);
      const row: NewChunk = { id: chunk.id, hash: chunk.hash, frameId: frame.id, slot, refs };
      changes.chunks!.push(row);
    });
  });
}

export function noteAppend(packStarts: Map<number, number>, packEnds: Map<number, number>, location: FrameLocation): void {
  if (!packStarts.has(location.packId)) packStarts.set(location.packId, location.offset);
  packEnds.set(location.packId, location.offset + location.length);
}

export function recordPacks(ctx: PoolContext, packEnds: Map<number, number>, changes: MetaChanges): void {
  const current = ctx.chunks.currentPackId();
  const sealed = new Map(ctx.chunks.drainSealed().map((pack) => [pack.packId, pack.bytes]));
  for (const [packId, bytes] of packEnds) {
    (changes.packs ??= []).push({ id: packId, state: packId === current ? 'open' : 'sealed', bytes: sealed.get(packId) ?? bytes });
    sealed.delete(packId);
  }
  for (const [packId, bytes] of sealed) (changes.packs ??= []).push({ id: packId, state: 'sealed', bytes });
}

/** Turns one volume's resolved targets into extent row changes and reference deltas. */
async function decideRows(ctx: PoolContext, item: VolumeWork, latest: Map<number, ExtentRow>, changes: MetaChanges, newRefs: NewRefs): Promise<void> {
  const volume = item.volume;
  const volumeId = volume.id;
  const headGen = volume.record.headGen;
  const snapGen = volume.latestSnapshotGen;
  const hasParent = volume.record.parentId !== null;
  // Blocks about to become holes in place may drop their row when nothing older exists.
  const holeCandidates = item.blocks.filter((block, index) => {
    const row = latest.get(block);
    return item.targets[index] === null && row !== undefined && row.birth > snapGen && !hasParent;
  });
  const withOlder = holeCandidates.length > 0 ? await ctx.meta.blocksWithRowBornIn(volumeId, holeCandidates, -1, snapGen) : new Set<number>();
  const writes = changes.extentWrites as ExtentWrite[];
  const deletes = changes.extentDeletes as ExtentDelete[];
  const deltas = changes.refDeltas!;
  for (let index = 0; index < item.blocks.length; index += 1) {
    const block = item.blocks[index];
    const target = item.targets[index];
    const row = latest.get(block);
    if (row !== undefined && row.chunk === target) continue;
    item.mappedDelta += Number(holdsData(target)) - Number(holdsData(row?.chunk));
    if (row !== undefined && row.birth > snapGen) {
      addRef(deltas, row.chunk, -1);
      if (target === null && !hasParent && !withOlder.has(block)) deletes.push({ volumeId, block, birth: row.birth });
      else writes.push({ volumeId, block, birth: row.birth, chunk: target });
    } else {
      if (target === null && !hasParent && (row === undefined || row.chunk === null)) continue;
      writes.push({ volumeId, block, birth: headGen, chunk: target });
    }
    if (target !== null && target >= newRefs.first) newRefs.counts[target - newRefs.first] += 1;
    else addRef(deltas, target, +1);
  }
}
