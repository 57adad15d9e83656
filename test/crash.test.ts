/*
 * Crash tests: a child process (test/fixtures/crash-writer.ts) writes, trims, flushes,
 * snapshots, clones and compacts in one pool, and is SIGKILLed at a random moment
 * (after a random number of acknowledgements, or a random delay). The parent then
 * reopens the pool, as a restarted daemon would, and checks the durability contract:
 *
 *   - every byte of the volume holds the value of the last *acknowledged* operation
 *     covering it (flush: every op up to it; FUA: that op), or of a later operation
 *     that was not acknowledged yet (it may or may not have landed, even in part);
 *   - every snapshot and clone that exists holds exactly the volume's content at the
 *     snapshot, and snapshots vanish only if the child had started deleting them;
 *   - check({ deep: true }) reports the pool ok, with no errors.
 *
 * This repeats many times in the same pool, each run with a new seed and starting from
 * the content the previous run left, so recovery runs on top of recovered pools.
 * A SIGKILL keeps the page cache, so this tests the engine's ordering and recovery
 * logic (metadata only pointing at complete frames, multi-batch work resumed), not
 * fsync placement.
 *
 * Reproduce with STRATA_CRASH_SEED=<seed> (printed when a run fails).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Pool } from '../src/engine/index.js';
import { runTsChild, killLiveChildren, type ChildOutcome, type KillPlan } from './helpers/child-process.js';
import {
  crashBlockBytes,
  crashOp,
  crashOpBytes,
  crashOpsMax,
  crashVolume,
  crashVolumeBytes,
  isAckPoint,
  parseWorkloadName,
  snapshotName,
  type CrashChildConfig,
  type CrashOp,
} from './helpers/crash-workload.js';
import { assertSameBytes, Rng } from './helpers/data.js';
import { createTestPool, openTestPool, withTempDir } from './helpers/temp-pool.js';

const runs = 18;

afterEach(() => {
  killLiveChildren();
});

/** What the child's output says it acknowledged. */
interface Acks {
  /** Every op up to this seq is durable (0: none). */
  readonly flushedUpTo: number;
  /** FUA ops acknowledged one by one. */
  readonly fua: ReadonlySet<number>;
  /** Snapshots the child started deleting. */
  readonly deleting: ReadonlySet<string>;
  readonly done: boolean;
}

function parseAcks(lines: readonly string[]): Acks {
  let flushedUpTo = 0;
  const fua = new Set<number>();
  const deleting = new Set<string>();
  let done = false;
  for (const line of lines) {
    const [word, arg, how] = line.split(' ');
    if (word === 'ack' && how === 'flush') flushedUpTo = Math.max(flushedUpTo, Number(arg));
    else if (word === 'ack' && how === 'fua') fua.add(Number(arg));
    else if (word === 'deleting') deleting.add(arg);
    else if (word === 'done') done = true;
  }
  if (done) flushedUpTo = crashOpsMax;
  return { flushedUpTo, fua, deleting, done };
}

/** One op with its bytes, recomputed from (seed, seq). */
interface OpWithBytes {
  readonly op: CrashOp;
  readonly bytes: Buffer;
}

/**
 * The ops the child may have started: up to the first ack point after the last
 * acknowledgement (the child prints each ack before going on, so it cannot be further).
 */
function startedOps(seed: number, acks: Acks): OpWithBytes[] {
  const lastAck = Math.max(acks.flushedUpTo, ...acks.fua);
  const ops: OpWithBytes[] = [];
  for (let seq = 1; seq <= crashOpsMax; seq += 1) {
    const op = crashOp(seed, seq);
    ops.push({ op, bytes: crashOpBytes(seed, op) });
    if (seq > lastAck && isAckPoint(op)) break;
  }
  return ops;
}

/** The volume after applying ops 1..upTo to `base`, all of them, in order. */
function applyOps(base: Buffer, ops: readonly OpWithBytes[], upTo: number): Buffer {
  const result = Buffer.from(base);
  for (const { op, bytes } of ops) if (op.seq <= upTo) bytes.copy(result, op.offset);
  return result;
}

/**
 * The durability rule, byte by byte: walking back from the newest started op, the byte
 * may match any unacknowledged op covering it; the first acknowledged op covering it
 * (or the base content when there is none) is the oldest value it may hold.
 */
function checkDurability(actual: Buffer, base: Buffer, ops: readonly OpWithBytes[], acks: Acks): void {
  const acked = (op: CrashOp) => op.seq <= acks.flushedUpTo || acks.fua.has(op.seq);
  for (let at = 0; at < actual.length; at += 1) {
    const allowed: string[] = [];
    let ok = false;
    let floorFound = false;
    for (let index = ops.length - 1; index >= 0 && !ok && !floorFound; index -= 1) {
      const { op, bytes } = ops[index];
      if (at < op.offset || at >= op.offset + op.length) continue;
      const value = bytes[at - op.offset];
      ok = actual[at] === value;
      floorFound = acked(op);
      allowed.push(`${value} from op ${op.seq} (${op.kind}${acked(op) ? ', acknowledged' : ''})`);
    }
    if (!ok && !floorFound) {
      ok = actual[at] === base[at];
      allowed.push(`${base[at]} from the previous run`);
    }
    if (!ok) {
      const block = Math.floor(at / crashBlockBytes);
      throw new Error(`byte ${at} (block ${block}) reads ${actual[at]}; allowed: ${allowed.join('; ')}`);
    }
  }
}

interface Expectations {
  /** Content of every snapshot known to exist (and of its clones), by snapshot name. */
  readonly snapshots: Map<string, Buffer>;
}

/**
 * Verifies head, snapshots and clones after a crash, runs a deep check, and returns the
 * head content (the base of the next run).
 */
async function verifyRecoveredPool(pool: Pool, run: number, seed: number, base: Buffer, outcome: ChildOutcome, expectations: Expectations): Promise<Buffer> {
  const acks = parseAcks(outcome.lines);
  const ops = startedOps(seed, acks);
  const head = await pool.openVolume(crashVolume).read(0, crashVolumeBytes);
  checkDurability(head, base, ops, acks);

  // Snapshots: known ones keep their content; new ones of this run hold exactly ops 1..seq.
  const present = pool.listSnapshots(crashVolume).map((snapshot) => snapshot.name);
  for (const name of present) {
    const parsed = parseWorkloadName(name);
    if (!expectations.snapshots.has(name)) {
      expect(parsed?.run, `unexpected snapshot ${name}`).toBe(run);
      expectations.snapshots.set(name, applyOps(base, ops, parsed!.seq));
    }
    const content = await pool.openSnapshot(crashVolume, name).read(0, crashVolumeBytes);
    assertSameBytes(content, expectations.snapshots.get(name)!, `snapshot ${name}`);
  }
  for (const name of [...expectations.snapshots.keys()]) {
    if (present.includes(name)) continue;
    expect(acks.deleting.has(name), `snapshot ${name} vanished without being deleted`).toBe(true);
    expectations.snapshots.delete(name);
  }

  // Clones read as their snapshot (nothing writes to them).
  for (const volume of pool.listVolumes()) {
    if (volume.name === crashVolume) continue;
    const parsed = parseWorkloadName(volume.name);
    expect(parsed?.kind, `unexpected volume ${volume.name}`).toBe('c');
    const parent = snapshotName(parsed!.run, parsed!.seq);
    expect(volume.parent).toEqual({ volume: crashVolume, snapshot: parent });
    const content = await pool.openVolume(volume.name).read(0, volume.sizeBytes);
    assertSameBytes(content, expectations.snapshots.get(parent)!, `clone ${volume.name}`);
  }

  const report = await pool.check({ deep: true });
  expect(report.issues.filter((issue) => issue.severity === 'error')).toEqual([]);
  expect(report.ok).toBe(true);
  return head;
}

/** A random kill moment: after some acknowledgements, or some time after the child is ready. */
function killPlan(rng: Rng): KillPlan {
  const timeoutMs = 30_000;
  if (rng.chance(0.5)) {
    const acksWanted = rng.int(30);
    return { when: (lines) => lines.filter((line) => line.startsWith('ack ')).length >= acksWanted, timeoutMs };
  }
  return { afterReadyMs: rng.int(400), timeoutMs };
}

describe('crash consistency under SIGKILL', () => {
  it('keeps every acknowledged write, snapshot and clone, and a consistent pool, across repeated kills and reopens', async () => {
    const masterSeed = Number(process.env.STRATA_CRASH_SEED ?? Math.floor(Math.random() * 0x7fffffff));
    const rng = new Rng(masterSeed);
    await withTempDir(async (dir) => {
      const pool = await createTestPool(dir, { blockSize: crashBlockBytes, dedup: true, compression: 'lz4' });
      try {
        await pool.createVolume(crashVolume, crashVolumeBytes);
      } finally {
        await pool.close();
      }
      let base: Buffer = Buffer.alloc(crashVolumeBytes);
      const expectations: Expectations = { snapshots: new Map() };
      for (let run = 0; run < runs; run += 1) {
        const config: CrashChildConfig = {
          dir,
          seed: rng.next(),
          run,
          writebackDelayMs: rng.pick([0, 2, 20]),
          writeBufferBytesMax: rng.pick([16 * 1024, 256 * 1024, 64 * 1024 * 1024]),
        };
        const plan = killPlan(rng);
        const outcome = await runTsChild('test/fixtures/crash-writer.ts', [JSON.stringify(config)], plan);
        const where = `master seed ${masterSeed}, run ${run}, child ${JSON.stringify(config)}`;
        if (outcome.timedOut || (!outcome.killed && outcome.exitCode !== 0)) {
          throw new Error(`${where}: the child ${outcome.timedOut ? 'hung' : `failed (exit ${outcome.exitCode})`}:\n${outcome.stderr}`);
        }
        const reopened = await openTestPool(dir);
        try {
          base = await verifyRecoveredPool(reopened, run, config.seed, base, outcome, expectations);
        } catch (error) {
          throw new Error(`${where}, child output tail: ${outcome.lines.slice(-8).join(' | ')}: ${(error as Error).message}`, { cause: error });
        } finally {
          await reopened.close();
        }
      }
    });
  });
});
