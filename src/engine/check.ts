/*
 * check: verifies the pool's metadata against its packs.
 *
 *   packs     every pack metadata knows exists and is long enough; files no metadata
 *             knows are orphans; bytes past the last referenced frame are a dead tail
 *   refs      each chunk's reference count equals the extent rows pointing at it;
 *             no extent row points at a missing chunk; every chunk's frame exists
 *   counters  frame and pack live counts match the chunk table
 *   deep      (option) every frame with live chunks is read, its CRCs checked, and
 *             every live chunk re-hashed with SHA-256
 *
 * With `repair`, what can be fixed without guessing is fixed: reference counts and
 * counters are recomputed, orphan packs deleted, dead tails cut. Lost or corrupt data
 * cannot be invented and is only reported. Runs under the pool writer lock after a
 * destage, in pages, so memory stays bounded.
 */
import { decodeFrame, hashesOf } from '../chunks/index.js';
import { isStrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { sha256, type PoolContext } from './pool-context.js';

export interface CheckOptions {
  readonly deep?: boolean;
  readonly repair?: boolean;
  readonly onProgress?: (progress: { phase: string; done: number; total: number }) => void;
}

export type CheckIssueKind =
  | 'pack-missing'
  | 'pack-short'
  | 'pack-orphan'
  | 'pack-tail'
  | 'refcount'
  | 'dangling-extent'
  | 'chunk-without-frame'
  | 'counters'
  | 'frame-corrupt'
  | 'chunk-corrupt';

export interface CheckIssue {
  readonly severity: 'error' | 'warning';
  readonly kind: CheckIssueKind;
  readonly message: string;
  readonly repaired: boolean;
}

export interface CheckReport {
  /** True when no error remains (warnings, or issues repaired, are fine). */
  readonly ok: boolean;
  readonly issues: CheckIssue[];
  readonly packsChecked: number;
  readonly chunksChecked: number;
  readonly framesVerified: number;
  readonly bytesVerified: number;
}

const page = limits.extentBatchRowsMax;
const issuesMax = 1000;

class Findings {
  readonly issues: CheckIssue[] = [];
  private dropped = 0;

  add(issue: CheckIssue): void {
    if (this.issues.length < issuesMax) this.issues.push(issue);
    else this.dropped += 1;
  }

  finish(): CheckIssue[] {
    if (this.dropped > 0) {
      this.issues.push({ severity: 'warning', kind: 'counters', message: `${this.dropped} more issues not listed`, repaired: false });
    }
    return this.issues;
  }
}

export async function checkPool(ctx: PoolContext, options: CheckOptions = {}): Promise<CheckReport> {
  const findings = new Findings();
  const repair = options.repair === true;
  const packsChecked = await checkPacks(ctx, findings, repair);
  options.onProgress?.({ phase: 'packs', done: 1, total: 1 });
  const chunksChecked = await checkReferences(ctx, findings, repair, options.onProgress);
  const wrongCounters = await ctx.meta.repairFrameAndPackCounters(!repair);
  if (wrongCounters > 0) {
    findings.add({ severity: 'warning', kind: 'counters', message: `${wrongCounters} frame or pack live counters were off`, repaired: repair });
  }
  const deep = options.deep ? await verifyFrames(ctx, findings, options.onProgress) : { frames: 0, bytes: 0 };
  const issues = findings.finish();
  return {
    ok: !issues.some((issue) => issue.severity === 'error' && !issue.repaired),
    issues,
    packsChecked,
    chunksChecked,
    framesVerified: deep.frames,
    bytesVerified: deep.bytes,
  };
}

async function checkPacks(ctx: PoolContext, findings: Findings, repair: boolean): Promise<number> {
  const metaPacks = await ctx.meta.listPacks();
  const ends = await ctx.meta.packFrameEnds();
  const files = new Map(ctx.chunks.listPacks().map((file) => [file.packId, file.bytes]));
  const current = ctx.chunks.currentPackId();
  for (const pack of metaPacks) {
    const bytes = files.get(pack.id);
    const end = ends.get(pack.id) ?? 0;
    if (bytes === undefined) {
      if (pack.liveChunks > 0) {
        findings.add({ severity: 'error', kind: 'pack-missing', message: `pack ${pack.id} with ${pack.liveChunks} live chunks is missing`, repaired: false });
      } else {
        if (repair) await ctx.meta.deletePackRecord(pack.id);
        findings.add({ severity: 'warning', kind: 'pack-missing', message: `record of deleted pack ${pack.id} remains`, repaired: repair });
      }
    } else if (bytes < end) {
      findings.add({ severity: 'error', kind: 'pack-short', message: `pack ${pack.id} has ${bytes} bytes, frames reach ${end}`, repaired: false });
    } else if (bytes > end && pack.id !== current) {
      if (repair) ctx.chunks.truncate(pack.id, end);
      findings.add({ severity: 'warning', kind: 'pack-tail', message: `pack ${pack.id} has ${bytes - end} unreferenced bytes at its end`, repaired: repair });
    }
  }
  const known = new Set(metaPacks.map((pack) => pack.id));
  for (const packId of files.keys()) {
    if (known.has(packId) || packId === current) continue;
    if (repair) ctx.chunks.deletePack(packId);
    findings.add({ severity: 'warning', kind: 'pack-orphan', message: `pack file ${packId} is not in the metadata`, repaired: repair });
  }
  if (repair) await ctx.chunks.sync();
  return metaPacks.length;
}

async function checkReferences(
  ctx: PoolContext,
  findings: Findings,
  repair: boolean,
  onProgress: CheckOptions['onProgress'],
): Promise<number> {
  let checked = 0;
  let after = 0;
  for (;;) {
    const chunks = await ctx.meta.scanChunks(after, page);
    if (chunks.length === 0) break;
    const counted = await ctx.meta.countRefsFromExtents(after, page);
    const fixes = new Map<number, number>();
    for (const chunk of chunks) {
      const actual = counted.get(chunk.id) ?? 0;
      if (actual === chunk.refs) continue;
      fixes.set(chunk.id, actual);
      findings.add({ severity: 'error', kind: 'refcount', message: `chunk ${chunk.id} counts ${chunk.refs} references, has ${actual}`, repaired: repair });
    }
    if (repair && fixes.size > 0) await ctx.meta.repairChunkRefs(fixes);
    checked += chunks.length;
    after = chunks[chunks.length - 1].id;
    onProgress?.({ phase: 'references', done: checked, total: checked });
  }
  for (const row of await ctx.meta.danglingExtentRefs(issuesMax)) {
    findings.add({
      severity: 'error',
      kind: 'dangling-extent',
      message: `volume ${row.volumeId} block ${row.block} (birth ${row.birth}) points at missing chunk ${row.chunk}`,
      repaired: false,
    });
  }
  for (const chunkId of await ctx.meta.chunksWithoutFrame(issuesMax)) {
    findings.add({ severity: 'error', kind: 'chunk-without-frame', message: `chunk ${chunkId} has no valid frame`, repaired: false });
  }
  return checked;
}

async function verifyFrames(
  ctx: PoolContext,
  findings: Findings,
  onProgress: CheckOptions['onProgress'],
): Promise<{ frames: number; bytes: number }> {
  let frames = 0;
  let bytes = 0;
  let after = 0;
  for (;;) {
    const batch = await ctx.meta.scanFrames(after, page);
    if (batch.length === 0) break;
    for (const frame of batch) {
      if (frame.liveChunks === 0) continue;
      frames += 1;
      bytes += frame.length;
      await verifyFrame(ctx, frame, findings);
    }
    after = batch[batch.length - 1].id;
    onProgress?.({ phase: 'deep', done: frames, total: frames });
  }
  return { frames, bytes };
}

async function verifyFrame(ctx: PoolContext, frame: { id: number; packId: number; offset: number; length: number; liveChunks: number }, findings: Findings): Promise<void> {
  let decoded;
  try {
    decoded = decodeFrame(await ctx.chunks.read(frame), { packId: frame.packId, offset: frame.offset });
  } catch (error) {
    if (!isStrataError(error)) throw error;
    // The header may be unreadable: find the frame's chunks through the metadata.
    ctx.noteCorrupt(...(await ctx.meta.chunkIdsOfFrame(frame.id)));
    findings.add({
      severity: 'error',
      kind: 'frame-corrupt',
      message: `frame ${frame.id} in pack ${frame.packId} at ${frame.offset} (${frame.liveChunks} live chunks): ${error.message}`,
      repaired: false,
    });
    return;
  }
  const { header, raw } = decoded;
  for (const chunk of await ctx.meta.chunksOfFrame(frame.id, hashesOf(header.hashTable))) {
    const block = raw.subarray(chunk.slot * header.blockSize, (chunk.slot + 1) * header.blockSize);
    if (!sha256(block).equals(chunk.hash)) {
      ctx.noteCorrupt(chunk.chunkId);
      findings.add({ severity: 'error', kind: 'chunk-corrupt', message: `chunk ${chunk.chunkId} in frame ${frame.id} fails SHA-256`, repaired: false });
    }
  }
}
