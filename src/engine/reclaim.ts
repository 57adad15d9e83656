/*
 * Space reclaim: giving the bytes of dead chunks back to the host file system.
 *
 * A chunk dies when its last extent row goes (overwrite, trim, snapshot or volume
 * deletion); its pack then holds dead bytes. Compaction picks sealed packs whose live
 * fraction is under compactLiveFractionMax, copies their live frames to the open pack
 * (a frame whose chunks are all alive is copied as is; a partly dead one is rebuilt
 * from its live chunks, verified, and recompressed), syncs, and commits the new
 * locations together with the old pack's retirement. Retired packs are deleted after
 * a grace period, so a reader that looked up a location just before the swap can still
 * read it. Runs under the pool writer lock, pack by pack, so writes wait at most for
 * one pack.
 */
import { decodeFrame, encodeFrame, hashesOf } from '../chunks/index.js';
import type { MetaChanges, PackRecord } from '../meta/index.js';
import { cutBack, noteAppend, recordPacks } from './destage.js';
import { sha256, type PoolContext } from './pool-context.js';
import { isStrataError, StrataError } from '../common/errors.js';

export interface ReclaimProgress {
  readonly phase: 'compact' | 'delete';
  readonly doneBytes: number;
  readonly totalBytes: number;
}

export interface ReclaimReport {
  readonly packsCompacted: number;
  /** Packs left in place because a frame in them failed verification (see check). */
  readonly packsSkipped: number;
  readonly packsDeleted: number;
  readonly bytesRewritten: number;
  readonly bytesFreed: number;
}

export interface ReclaimOptions {
  /** Compact packs whose live fraction is below this (default: the pool's tuning). */
  readonly liveFractionMax?: number;
  /** Delete retired packs now instead of after the grace period. */
  readonly skipGrace?: boolean;
  readonly onProgress?: (progress: ReclaimProgress) => void;
}

function liveFraction(pack: PackRecord): number {
  return pack.chunkCount === 0 ? 0 : pack.liveChunks / pack.chunkCount;
}

/** Runs one reclaim pass. The caller holds the pool writer lock. */
export async function reclaim(ctx: PoolContext, options: ReclaimOptions = {}): Promise<ReclaimReport> {
  const threshold = options.liveFractionMax ?? ctx.tuning.compactLiveFractionMax;
  const candidates = (await ctx.meta.listPacks()).filter(
    (pack) => pack.state === 'sealed' && pack.id !== ctx.chunks.currentPackId() && liveFraction(pack) < threshold,
  );
  const totalBytes = candidates.reduce((sum, pack) => sum + pack.bytes, 0);
  let doneBytes = 0;
  let bytesRewritten = 0;
  let packsSkipped = 0;
  for (const pack of candidates) {
    try {
      bytesRewritten += await compactPack(ctx, pack);
    } catch (error) {
      // A damaged frame keeps its pack: its chunks stay where check and healing find them.
      if (!isStrataError(error, 'STRATA_E_CHECKSUM')) throw error;
      packsSkipped += 1;
    }
    doneBytes += pack.bytes;
    options.onProgress?.({ phase: 'compact', doneBytes, totalBytes });
  }
  const deleted = await deleteRetiredPacks(ctx, options.skipGrace === true, options.onProgress);
  ctx.counters.reclaimRuns += 1;
  ctx.counters.packsCompacted += candidates.length - packsSkipped;
  ctx.counters.packsDeleted += deleted.count;
  ctx.counters.reclaimedBytes += deleted.bytes;
  return {
    packsCompacted: candidates.length - packsSkipped,
    packsSkipped,
    packsDeleted: deleted.count,
    bytesRewritten,
    bytesFreed: deleted.bytes,
  };
}

async function compactPack(ctx: PoolContext, pack: PackRecord): Promise<number> {
  const changes: MetaChanges = { frames: [], chunkMoves: [], packs: [] };
  const packStarts = new Map<number, number>();
  try {
    const rewritten = await copyLiveFrames(ctx, pack, changes, packStarts);
    changes.packs!.push({ id: pack.id, state: 'retired', bytes: pack.bytes, retiredMs: Date.now() });
    if (packStarts.size > 0) await ctx.chunks.sync();
    await ctx.meta.commit(changes);
    return rewritten;
  } catch (error) {
    await cutBack(ctx, packStarts);
    throw error;
  }
}

/** Appends the pack's live frames to the open pack, recording frames, moves and packs. */
async function copyLiveFrames(ctx: PoolContext, pack: PackRecord, changes: MetaChanges, packStarts: Map<number, number>): Promise<number> {
  const frames = await ctx.meta.liveFramesOfPack(pack.id);
  const packEnds = new Map<number, number>();
  let rewritten = 0;
  for (const frame of frames) {
    const record = await ctx.chunks.read(frame);
    let decoded;
    try {
      decoded = decodeFrame(record, { packId: pack.id, offset: frame.offset });
    } catch (error) {
      if (isStrataError(error, 'STRATA_E_CHECKSUM')) ctx.noteCorrupt(...(await ctx.meta.chunkIdsOfFrame(frame.id)));
      throw error;
    }
    const { header, raw } = decoded;
    const live = await ctx.meta.chunksOfFrame(frame.id, hashesOf(header.hashTable));
    if (live.length === 0) continue;
    const blocks = live.map((chunk) => raw.subarray(chunk.slot * header.blockSize, (chunk.slot + 1) * header.blockSize));
    blocks.forEach((block, index) => {
      if (!sha256(block).equals(live[index].hash)) {
        ctx.noteCorrupt(live[index].chunkId);
        throw new StrataError('STRATA_E_CHECKSUM', `chunk ${live[index].chunkId} failed its checksum during compaction`, {
          chunkId: live[index].chunkId,
          packId: pack.id,
        });
      }
    });
    const whole = live.length === header.chunkCount;
    const output = whole ? record : encodeFrame(ctx.policy.compression, header.blockSize, blocks, live.map((chunk) => chunk.hash));
    const location = ctx.chunks.append(output);
    noteAppend(packStarts, packEnds, location);
    const frameId = ctx.nextFrameId;
    ctx.nextFrameId += 1;
    changes.frames!.push({ id: frameId, ...location, chunkCount: whole ? header.chunkCount : live.length });
    live.forEach((chunk, index) => changes.chunkMoves!.push({ chunkId: chunk.chunkId, frameId, slot: whole ? chunk.slot : index }));
    ctx.frameCache.delete(frame.id);
    rewritten += output.length;
  }
  recordPacks(ctx, packEnds, changes);
  return rewritten;
}

async function deleteRetiredPacks(
  ctx: PoolContext,
  skipGrace: boolean,
  onProgress?: (progress: ReclaimProgress) => void,
): Promise<{ count: number; bytes: number }> {
  const now = Date.now();
  const retired = (await ctx.meta.listPacks()).filter(
    (pack) => pack.state === 'retired' && (skipGrace || now - (pack.retiredMs ?? 0) >= ctx.tuning.compactGraceMs),
  );
  const totalBytes = retired.reduce((sum, pack) => sum + pack.bytes, 0);
  let bytes = 0;
  for (const pack of retired) {
    ctx.chunks.deletePack(pack.id);
    await ctx.meta.deletePackRecord(pack.id);
    bytes += pack.bytes;
    onProgress?.({ phase: 'delete', doneBytes: bytes, totalBytes });
  }
  return { count: retired.length, bytes };
}
