/*
 * The crash-test workload, shared by the child that runs it (test/fixtures/crash-writer.ts)
 * and the parent that checks what survived a SIGKILL (test/crash.test.ts).
 *
 * Everything is a pure function of (seed, seq), so the parent can recompute each
 * operation and its bytes without the child telling it anything but acknowledgements:
 *
 *   ready                 the pool is open, operations start with seq 1
 *   ack <seq> flush       flush() resolved after operation seq: every op <= seq is durable
 *   ack <seq> fua         operation seq was a FUA write that resolved: it alone is durable
 *   snap <name>           a snapshot of the state after op <seq> (name encodes seq) exists
 *   clone <name>          a clone of that snapshot exists
 *   deleting <name>       the child starts deleting that snapshot (it may or may not survive)
 *   done                  the child ran out of operations and flushed everything
 *
 * Ack points (FUA ops and flushes) are at most `ackGapMax` ops apart, so after the last
 * ack the child can have started at most the ops up to the next ack point.
 */
import { mixSeed, patternBytes, patternCount, Rng } from './data.js';

export const crashVolume = 'disk';
export const crashVolumeBytes = 512 * 1024;
export const crashBlockBytes = 4096;
export const crashOpsMax = 4000;
const ackGapMax = 8;

export interface CrashOp {
  readonly seq: number;
  readonly kind: 'write' | 'trim' | 'zeroes';
  readonly offset: number;
  readonly length: number;
  readonly fua: boolean;
  /** writeZeroes keeps the range allocated. */
  readonly allocate: boolean;
  /** flush() after this op (an ack point covering every op up to here). */
  readonly flushAfter: boolean;
  /** After the flush: snapshot the volume (and maybe clone it, maybe delete an old snapshot). */
  readonly snapshotAfter: boolean;
  readonly cloneAfter: boolean;
  readonly deleteOldAfter: boolean;
  /** After the flush: compact every pack (crash during compaction). */
  readonly reclaimAfter: boolean;
}

/** Child tuning for one run: how often the write-back timer fires, how big the buffer is. */
export interface CrashChildConfig {
  readonly dir: string;
  readonly seed: number;
  readonly run: number;
  readonly writebackDelayMs: number;
  readonly writeBufferBytesMax: number;
}

export function crashOp(seed: number, seq: number): CrashOp {
  const rng = new Rng(mixSeed(seed, seq, 0x0c));
  const blocks = crashVolumeBytes / crashBlockBytes;
  const shape = rng.int(4);
  let offset: number;
  let length: number;
  if (shape === 0) {
    // Whole blocks.
    offset = rng.int(blocks) * crashBlockBytes;
    length = rng.between(1, 4) * crashBlockBytes;
  } else if (shape === 1) {
    // Inside one block.
    offset = rng.int(crashVolumeBytes - 1);
    length = rng.between(1, crashBlockBytes - (offset % crashBlockBytes));
  } else {
    // Anywhere, across block boundaries.
    offset = rng.int(crashVolumeBytes - 1);
    length = rng.between(1, 3 * crashBlockBytes);
  }
  length = Math.min(length, crashVolumeBytes - offset);
  const roll = rng.int(100);
  const kind = roll < 80 ? 'write' : roll < 90 ? 'trim' : 'zeroes';
  const fua = kind === 'write' && rng.chance(0.15);
  const flushAfter = !fua && (seq % ackGapMax === 0 || rng.chance(0.2));
  const snapshotAfter = flushAfter && rng.chance(0.12);
  return {
    seq,
    kind,
    offset,
    length,
    fua,
    allocate: kind === 'zeroes' && rng.chance(0.5),
    flushAfter,
    snapshotAfter,
    cloneAfter: snapshotAfter && rng.chance(0.4),
    deleteOldAfter: snapshotAfter && rng.chance(0.5),
    reclaimAfter: flushAfter && !snapshotAfter && rng.chance(0.05),
  };
}

export function isAckPoint(op: CrashOp): boolean {
  return op.fua || op.flushAfter;
}

/** The bytes an op leaves in its range: zeros for trim/zeroes; data, sometimes a dedup-friendly pattern. */
export function crashOpBytes(seed: number, op: CrashOp): Buffer {
  if (op.kind !== 'write') return Buffer.alloc(op.length);
  const rng = new Rng(mixSeed(seed, op.seq, 0xda));
  if (rng.chance(0.3)) return patternBytes(1 + rng.int(patternCount - 1), op.offset, op.length);
  return rng.fill(Buffer.alloc(op.length));
}

export const snapshotName = (run: number, seq: number) => `s${run}-${seq}`;
export const cloneName = (run: number, seq: number) => `c${run}-${seq}`;

/** Parses a snapshot or clone name back into (run, seq), or null for other names. */
export function parseWorkloadName(name: string): { kind: 's' | 'c'; run: number; seq: number } | null {
  const match = /^([sc])(\d+)-(\d+)$/.exec(name);
  return match ? { kind: match[1] as 's' | 'c', run: Number(match[2]), seq: Number(match[3]) } : null;
}
