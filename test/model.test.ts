/*
 * Model-based randomized test of the engine's public API.
 *
 * fast-check generates pool policies (block size, dedup, compression, small buffers or
 * packs so destage and sealing happen mid-sequence) and sequences of 40-150 operations:
 * writes at any alignment, trim, writeZeroes, reads, flushes, snapshots, rollback,
 * clones, flatten, volume create/rename/resize/delete, forced compaction, close and
 * reopen, snapshot reads, block status, and bursts of concurrent requests on disjoint
 * ranges of the same blocks (read-modify-write racing destage). Each operation runs
 * against the engine and against ReferenceModel (test/helpers/reference-model.ts), a
 * plain byte array per volume and snapshot; refusals (a snapshot with clones, rollback
 * past newer snapshots, shrink without force...) must come with the right error code
 * and change nothing. At the end every head and snapshot is compared in full and
 * `check({ deep: true })` must find no issue at all.
 *
 * Why: the extent map (birth generations, in-place updates, hole rows, clone fallthrough,
 * reaping of deleted snapshots) has many interacting cases; a trivial model plus random
 * sequences finds the combinations hand-written tests miss, and fast-check shrinks a
 * failure to a short sequence. Operations carry raw random numbers that are interpreted
 * against the current state (volume index modulo the volume count, etc.), so every
 * generated sequence is valid and shrinking stays meaningful.
 *
 * Replay a failure with STRATA_MODEL_SEED=<seed> STRATA_MODEL_PATH=<path> (both printed
 * by fast-check); search longer with STRATA_MODEL_RUNS=<n> and
 * STRATA_MODEL_TIME_LIMIT_MS=<ms> (the property, shrinking included, stops at the limit;
 * by default 120 runs, at most 45 s).
 *
 * The `it` blocks after the property are minimal reproductions of engine bugs this
 * property found, kept as regression tests.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { Codec } from '../src/common/codec-names.js';
import type { BlockDevice, Pool, PoolOpenOptions, PoolTuning } from '../src/engine/index.js';
import { assertSameBytes, isAllZero, patternBytes, patternCount } from './helpers/data.js';
import { expectStrataError } from './helpers/errors.js';
import { ReferenceModel, type ModelVolume } from './helpers/reference-model.js';
import { createTestPool, makeTempDir, openTestPool, removeTempDir, withTempDir } from './helpers/temp-pool.js';

const KiB = 1024;

// ---------------------------------------------------------------------------------------
// Generated inputs
// ---------------------------------------------------------------------------------------

interface RunConfig {
  readonly blockSize: number;
  readonly dedup: boolean;
  readonly compression: Codec;
  /** A tiny write-back buffer: writes destage under backpressure in the middle of ops. */
  readonly smallBuffer: boolean;
  /** Tiny packs: many sealed packs, so compaction and sealing paths run. */
  readonly smallPacks: boolean;
  /** One chunk per frame instead of up to 64 KiB of neighbours compressed together. */
  readonly frameOfOne: boolean;
  readonly initialSizes: readonly number[];
}

/** How a range is placed: unaligned anywhere, whole blocks, inside one block, across a boundary, tiny. */
type Shape = 'any' | 'aligned' | 'inBlock' | 'spanning' | 'small';

interface RangeSpec {
  readonly shape: Shape;
  readonly a: number;
  readonly b: number;
}

type Op =
  | { readonly kind: 'write'; readonly vol: number; readonly range: RangeSpec; readonly pattern: number; readonly fua: boolean }
  | { readonly kind: 'trim'; readonly vol: number; readonly range: RangeSpec; readonly fua: boolean }
  | { readonly kind: 'zeroes'; readonly vol: number; readonly range: RangeSpec; readonly allocate: boolean; readonly fua: boolean }
  | { readonly kind: 'read'; readonly vol: number; readonly range: RangeSpec; readonly pastEnd: boolean }
  | { readonly kind: 'flush' }
  | { readonly kind: 'snapshot'; readonly vol: number }
  | { readonly kind: 'deleteSnapshot'; readonly vol: number; readonly snap: number }
  | { readonly kind: 'rollback'; readonly vol: number; readonly snap: number; readonly destroyNewer: boolean }
  | { readonly kind: 'clone'; readonly vol: number; readonly snap: number }
  | { readonly kind: 'flatten'; readonly vol: number }
  | { readonly kind: 'deleteVolume'; readonly vol: number; readonly cloneFirst: boolean }
  | { readonly kind: 'createVolume'; readonly size: number }
  | { readonly kind: 'rename'; readonly vol: number }
  | { readonly kind: 'resize'; readonly vol: number; readonly size: number; readonly force: boolean }
  | { readonly kind: 'reclaim' }
  | { readonly kind: 'reopen' }
  | { readonly kind: 'readSnapshot'; readonly vol: number; readonly snap: number; readonly range: RangeSpec; readonly tryWrite: boolean }
  | { readonly kind: 'blockStatus'; readonly vol: number; readonly snap: number | null; readonly range: RangeSpec }
  | { readonly kind: 'burst'; readonly vol: number; readonly at: number; readonly parts: readonly BurstPart[]; readonly flushAt: number };

/** One request of a concurrent burst; parts get disjoint byte ranges, often within the same blocks. */
interface BurstPart {
  readonly what: 'write' | 'trim' | 'zeroes' | 'read';
  readonly cut: number;
  readonly pattern: number;
}

/** Volume sizes from 16 to 256 KiB: whole 4 KiB blocks, or any byte count (unaligned tails). */
const sizeArb = fc.oneof(
  fc.integer({ min: 4, max: 64 }).map((blocks) => blocks * 4 * KiB),
  fc.integer({ min: 16 * KiB, max: 256 * KiB }),
);

const configArb: fc.Arbitrary<RunConfig> = fc.record({
  blockSize: fc.constantFrom(4096, 16384),
  dedup: fc.boolean(),
  compression: fc.constantFrom<Codec>('none', 'lz4', 'zstd'),
  smallBuffer: fc.boolean(),
  smallPacks: fc.boolean(),
  frameOfOne: fc.boolean(),
  initialSizes: fc.array(sizeArb, { minLength: 1, maxLength: 3 }),
});

const index = fc.nat({ max: 1000 });
const rangeArb: fc.Arbitrary<RangeSpec> = fc.record({
  shape: fc.constantFrom<Shape>('any', 'aligned', 'inBlock', 'spanning', 'small'),
  a: fc.nat(),
  b: fc.nat(),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 30, arbitrary: fc.record({ kind: fc.constant('write'), vol: index, range: rangeArb, pattern: fc.nat({ max: patternCount - 1 }), fua: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('trim'), vol: index, range: rangeArb, fua: fc.boolean() }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('zeroes'), vol: index, range: rangeArb, allocate: fc.boolean(), fua: fc.boolean() }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('read'), vol: index, range: rangeArb, pastEnd: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('flush') }) },
  { weight: 7, arbitrary: fc.record({ kind: fc.constant('snapshot'), vol: index }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('deleteSnapshot'), vol: index, snap: index }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('rollback'), vol: index, snap: index, destroyNewer: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('clone'), vol: index, snap: index }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('flatten'), vol: index }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('deleteVolume'), vol: index, cloneFirst: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('createVolume'), size: sizeArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename'), vol: index }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('resize'), vol: index, size: sizeArb, force: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('reclaim') }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('reopen') }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('readSnapshot'), vol: index, snap: index, range: rangeArb, tryWrite: fc.boolean() }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('blockStatus'), vol: index, snap: fc.option(index, { freq: 2 }), range: rangeArb }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('burst'),
      vol: index,
      at: fc.nat(),
      parts: fc.array(
        fc.record({ what: fc.constantFrom<BurstPart['what']>('write', 'write', 'trim', 'zeroes', 'read'), cut: fc.nat(), pattern: fc.nat({ max: patternCount - 1 }) }),
        { minLength: 2, maxLength: 6 },
      ),
      flushAt: fc.nat({ max: 6 }),
    }),
  },
) as fc.Arbitrary<Op>;

/** Turns a range spec into a concrete [offset, offset + length) inside a device of `sizeBytes`. */
function placeRange(sizeBytes: number, blockSize: number, spec: RangeSpec): { offset: number; length: number } {
  const { a, b } = spec;
  const blocks = Math.max(1, Math.ceil(sizeBytes / blockSize));
  const clip = (offset: number, length: number) => {
    const start = Math.min(Math.max(0, offset), sizeBytes);
    return { offset: start, length: Math.max(0, Math.min(length, sizeBytes - start)) };
  };
  switch (spec.shape) {
    case 'any': {
      const offset = a % (sizeBytes + 1);
      return clip(offset, b % (sizeBytes - offset + 1));
    }
    case 'aligned': {
      const first = a % blocks;
      return clip(first * blockSize, (1 + (b % Math.min(4, blocks - first))) * blockSize);
    }
    case 'inBlock': {
      const start = (a % blocks) * blockSize + (b % blockSize);
      return clip(start, 1 + ((a >>> 10) % (blockSize - (start % blockSize))));
    }
    case 'spanning': {
      if (blocks < 2) return clip(b % sizeBytes, 1 + (a % 512));
      const boundary = (1 + (a % (blocks - 1))) * blockSize;
      const before = 1 + (b % 700);
      return clip(boundary - before, before + 1 + ((b >>> 12) % 700));
    }
    case 'small':
      return clip(a % sizeBytes, 1 + (b % 64));
  }
}

// ---------------------------------------------------------------------------------------
// Running a sequence against the engine and the model
// ---------------------------------------------------------------------------------------

/** Thrown for a mismatch between the engine and the model, with the operation trace. */
class ModelMismatch extends Error {}

class ModelRun {
  private readonly model = new ReferenceModel();
  private readonly trace: string[] = [];
  /** Snapshot handles opened when the snapshot was taken: they must keep working. */
  private readonly snapshotHandles = new Map<string, BlockDevice>();
  private names = 0;

  private constructor(
    private pool: Pool,
    private readonly dir: string,
    private readonly config: RunConfig,
  ) {}

  static async start(dir: string, config: RunConfig): Promise<ModelRun> {
    const pool = await createTestPool(dir, { blockSize: config.blockSize, dedup: config.dedup, compression: config.compression }, ModelRun.openOptions(config));
    const run = new ModelRun(pool, dir, config);
    for (const size of config.initialSizes) await run.createVolume(size);
    return run;
  }

  private static openOptions(config: RunConfig): PoolOpenOptions {
    // Only set keys: an explicit undefined would override the engine's default.
    const tuning: Partial<PoolTuning> = {
      ...(config.smallBuffer ? { writeBufferBytesMax: 24 * KiB } : {}),
      ...(config.frameOfOne ? { frameRawBytesMax: config.blockSize } : {}),
    };
    return { tuning, ...(config.smallPacks ? { packBytesMax: 48 * KiB } : {}) };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private fail(message: string): never {
    throw new ModelMismatch(message);
  }

  private freshName(prefix: string): string {
    this.names += 1;
    return `${prefix}${this.names}`;
  }

  private pickVolume(vol: number): ModelVolume | null {
    const volumes = this.model.volumes;
    return volumes.length === 0 ? null : volumes[vol % volumes.length];
  }

  private head(volume: ModelVolume): BlockDevice {
    return this.pool.openVolume(volume.name);
  }

  private snapshotKey(volume: ModelVolume, snapshot: string): string {
    return `${volume.id}@${snapshot}`;
  }

  private snapshotHandle(volume: ModelVolume, snapshot: string): BlockDevice {
    return this.snapshotHandles.get(this.snapshotKey(volume, snapshot)) ?? this.pool.openSnapshot(volume.name, snapshot);
  }

  /** Runs the whole sequence, then the final full comparison and deep check. */
  async runAll(ops: readonly Op[]): Promise<void> {
    for (let step = 0; step < ops.length; step += 1) {
      try {
        await this.step(ops[step]);
      } catch (error) {
        throw this.withTrace(error, `step ${step}`);
      }
    }
    try {
      await this.verifyEverything();
    } catch (error) {
      throw this.withTrace(error, 'final verification');
    }
  }

  private withTrace(error: unknown, where: string): Error {
    const message = error instanceof Error ? error.message : String(error);
    const config = JSON.stringify(this.config);
    return new Error(`${where}: ${message}\nconfig: ${config}\ntrace:\n  ${this.trace.join('\n  ')}`, { cause: error });
  }

  private log(line: string): void {
    this.trace.push(line);
  }

  private async step(op: Op): Promise<void> {
    switch (op.kind) {
      case 'write':
      case 'trim':
      case 'zeroes':
        return this.mutate(op);
      case 'read':
        return this.read(op.vol, op.range, op.pastEnd);
      case 'flush':
        this.log('flush');
        return this.pool.flush();
      case 'snapshot':
        return this.snapshot(op.vol);
      case 'deleteSnapshot':
        return this.deleteSnapshot(op.vol, op.snap);
      case 'rollback':
        return this.rollback(op.vol, op.snap, op.destroyNewer);
      case 'clone':
        return this.clone(op.vol, op.snap);
      case 'flatten':
        return this.flatten(op.vol);
      case 'deleteVolume':
        return this.deleteVolume(op.vol, op.cloneFirst);
      case 'createVolume':
        if (this.model.volumes.length < 5) await this.createVolume(op.size);
        return;
      case 'rename':
        return this.rename(op.vol);
      case 'resize':
        return this.resize(op.vol, op.size, op.force);
      case 'reclaim':
        this.log('reclaim');
        await this.pool.reclaim({ skipGrace: true, liveFractionMax: 1.01 });
        return;
      case 'reopen':
        return this.reopen();
      case 'readSnapshot':
        return this.readSnapshot(op.vol, op.snap, op.range, op.tryWrite);
      case 'blockStatus':
        return this.blockStatus(op.vol, op.snap, op.range);
      case 'burst':
        return this.burst(op);
    }
  }

  private async createVolume(size: number): Promise<void> {
    const name = this.freshName('v');
    this.log(`createVolume ${name} ${size}`);
    await this.pool.createVolume(name, size);
    this.model.createVolume(name, size);
  }

  private async mutate(op: Extract<Op, { kind: 'write' | 'trim' | 'zeroes' }>): Promise<void> {
    const volume = this.pickVolume(op.vol);
    if (!volume) return;
    const { offset, length } = placeRange(volume.data.length, this.config.blockSize, op.range);
    const device = this.head(volume);
    const fua = op.fua;
    if (op.kind === 'write') {
      const data = patternBytes(op.pattern, offset, length);
      this.log(`write ${volume.name} [${offset}, +${length}) pattern ${op.pattern}${fua ? ' fua' : ''}`);
      await device.write(offset, data, { fua });
      this.model.write(volume, offset, data);
    } else if (op.kind === 'trim') {
      this.log(`trim ${volume.name} [${offset}, +${length})${fua ? ' fua' : ''}`);
      await device.trim(offset, length, { fua });
      this.model.zero(volume, offset, length);
    } else {
      this.log(`writeZeroes ${volume.name} [${offset}, +${length}) allocate=${op.allocate}${fua ? ' fua' : ''}`);
      await device.writeZeroes(offset, length, { allocate: op.allocate, fua });
      this.model.zero(volume, offset, length);
    }
  }

  private async read(vol: number, range: RangeSpec, pastEnd: boolean): Promise<void> {
    const volume = this.pickVolume(vol);
    if (!volume) return;
    const device = this.head(volume);
    const size = volume.data.length;
    if (pastEnd) {
      // Requests reaching past the end are refused and change nothing.
      this.log(`read/write past the end of ${volume.name}`);
      const tail = Math.min(size, 1 + (range.a % 5000));
      await expectStrataError(device.read(size - tail, tail + 1), 'STRATA_E_OUT_OF_RANGE', 'read past the end');
      await expectStrataError(device.write(size - tail, Buffer.alloc(tail + 1, 0x77)), 'STRATA_E_OUT_OF_RANGE', 'write past the end');
      return;
    }
    const { offset, length } = placeRange(size, this.config.blockSize, range);
    this.log(`read ${volume.name} [${offset}, +${length})`);
    await this.compare(device, volume.data, offset, length, `read ${volume.name}`);
  }

  private async compare(device: BlockDevice, expected: Uint8Array, offset: number, length: number, what: string): Promise<void> {
    if (device.sizeBytes !== expected.length) this.fail(`${what}: device size ${device.sizeBytes}, model ${expected.length}`);
    const actual = await device.read(offset, length);
    try {
      assertSameBytes(actual, expected.subarray(offset, offset + length), `${what} [${offset}, +${length})`, offset);
    } catch (error) {
      this.fail((error as Error).message);
    }
  }

  /**
   * Concurrent requests on disjoint byte ranges inside a window of up to three blocks
   * (so read-modify-writes of one block overlap), with a flush issued among them. Each
   * write must land whole and leave its neighbours alone; a concurrent read of a range
   * nobody writes must see exactly the model.
   */
  private async burst(op: Extract<Op, { kind: 'burst' }>): Promise<void> {
    const volume = this.pickVolume(op.vol);
    if (!volume || volume.data.length === 0) return;
    const size = volume.data.length;
    const windowStart = op.at % size;
    const windowLength = Math.min(size - windowStart, 3 * this.config.blockSize);
    const cuts = [...new Set([windowStart, windowStart + windowLength, ...op.parts.map((part) => windowStart + (part.cut % (windowLength + 1)))])].sort((a, b) => a - b);
    const device = this.head(volume);
    const requests: Promise<void>[] = [];
    const applied: (() => void)[] = [];
    const described: string[] = [];
    op.parts.forEach((part, index) => {
      if (index === op.flushAt) requests.push(this.pool.flush());
      if (index + 1 >= cuts.length) return;
      const offset = cuts[index];
      const length = cuts[index + 1] - offset;
      described.push(`${part.what} [${offset}, +${length})`);
      if (part.what === 'write') {
        const data = patternBytes(part.pattern, offset, length);
        requests.push(device.write(offset, data));
        applied.push(() => this.model.write(volume, offset, data));
      } else if (part.what === 'read') {
        const expected = volume.data.slice(offset, offset + length);
        requests.push(device.read(offset, length).then((actual) => assertSameBytes(actual, expected, `concurrent read ${volume.name}`, offset)));
      } else {
        requests.push(part.what === 'trim' ? device.trim(offset, length) : device.writeZeroes(offset, length, { allocate: part.pattern % 2 === 0 }));
        applied.push(() => this.model.zero(volume, offset, length));
      }
    });
    this.log(`burst on ${volume.name} (flush at ${op.flushAt}): ${described.join(', ')}`);
    const results = await Promise.allSettled(requests);
    const failed = results.find((result) => result.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (const apply of applied) apply();
  }

  private async snapshot(vol: number): Promise<void> {
    const volume = this.pickVolume(vol);
    if (!volume || volume.snapshots.length >= 6) return;
    const name = this.freshName('s');
    this.log(`createSnapshot ${volume.name}@${name}`);
    const info = await this.pool.createSnapshot(volume.name, name);
    if (info.sizeBytes !== volume.data.length) this.fail(`snapshot ${name} size ${info.sizeBytes}, model ${volume.data.length}`);
    this.model.takeSnapshot(volume, name);
    this.snapshotHandles.set(this.snapshotKey(volume, name), this.pool.openSnapshot(volume.name, name));
  }

  private pickSnapshot(vol: number, snap: number): { volume: ModelVolume; name: string } | null {
    const volume = this.pickVolume(vol);
    if (!volume || volume.snapshots.length === 0) return null;
    return { volume, name: volume.snapshots[snap % volume.snapshots.length].name };
  }

  private async deleteSnapshot(vol: number, snap: number): Promise<void> {
    const picked = this.pickSnapshot(vol, snap);
    if (!picked) return;
    const { volume, name } = picked;
    const refusal = this.model.deleteSnapshotRefusal(volume, name);
    this.log(`deleteSnapshot ${volume.name}@${name}${refusal ? ` (expect ${refusal})` : ''}`);
    if (refusal) {
      await expectStrataError(this.pool.deleteSnapshot(volume.name, name), refusal, `deleteSnapshot ${volume.name}@${name}`);
      return;
    }
    const handle = this.snapshotHandle(volume, name);
    await this.pool.deleteSnapshot(volume.name, name);
    this.model.deleteSnapshot(volume, name);
    this.dropSnapshotHandle(volume, name);
    await expectStrataError(handle.read(0, Math.min(1, handle.sizeBytes)), 'STRATA_E_SNAPSHOT_NOT_FOUND', 'read of a deleted snapshot');
  }

  private dropSnapshotHandle(volume: ModelVolume, name: string): void {
    this.snapshotHandles.delete(this.snapshotKey(volume, name));
  }

  private async rollback(vol: number, snap: number, destroyNewer: boolean): Promise<void> {
    const picked = this.pickSnapshot(vol, snap);
    if (!picked) return;
    const { volume, name } = picked;
    const refusal = this.model.rollbackRefusal(volume, name, destroyNewer);
    this.log(`rollback ${volume.name}@${name} destroyNewer=${destroyNewer}${refusal ? ` (expect ${refusal})` : ''}`);
    if (refusal) {
      await expectStrataError(this.pool.rollback(volume.name, name, { destroyNewer }), refusal, `rollback ${volume.name}@${name}`);
      return;
    }
    const destroyed = this.model.newerSnapshots(volume, name);
    await this.pool.rollback(volume.name, name, { destroyNewer });
    this.model.rollback(volume, name);
    for (const snapshot of destroyed) this.dropSnapshotHandle(volume, snapshot.name);
  }

  private async clone(vol: number, snap: number): Promise<void> {
    const picked = this.pickSnapshot(vol, snap);
    if (!picked || this.model.volumes.length >= 6) return;
    const { volume, name } = picked;
    const cloneName = this.freshName('c');
    this.log(`clone ${volume.name}@${name} -> ${cloneName}`);
    const info = await this.pool.clone(volume.name, name, cloneName);
    if (info.parent?.volume !== volume.name || info.parent.snapshot !== name) this.fail(`clone ${cloneName} reports parent ${JSON.stringify(info.parent)}`);
    this.model.clone(volume, name, cloneName);
  }

  private async flatten(vol: number): Promise<void> {
    const volume = this.pickVolume(vol);
    if (!volume) return;
    const refusal = this.model.flattenRefusal(volume);
    this.log(`flatten ${volume.name}${refusal ? ` (expect ${refusal})` : ''}`);
    if (refusal) {
      await expectStrataError(this.pool.flatten(volume.name), refusal, `flatten ${volume.name}`);
      return;
    }
    await this.pool.flatten(volume.name);
    this.model.flatten(volume);
  }

  private async deleteVolume(vol: number, cloneFirst: boolean): Promise<void> {
    const clones = this.model.volumes.filter((candidate) => candidate.parent !== null);
    const volume = cloneFirst && clones.length > 0 ? clones[vol % clones.length] : this.pickVolume(vol);
    if (!volume || this.model.volumes.length <= 1) return;
    const refusal = this.model.deleteVolumeRefusal(volume);
    this.log(`deleteVolume ${volume.name}${refusal ? ` (expect ${refusal})` : ''}`);
    if (refusal) {
      await expectStrataError(this.pool.deleteVolume(volume.name), refusal, `deleteVolume ${volume.name}`);
      return;
    }
    const handle = this.head(volume);
    await this.pool.deleteVolume(volume.name);
    for (const snapshot of volume.snapshots) this.dropSnapshotHandle(volume, snapshot.name);
    this.model.deleteVolume(volume);
    await expectStrataError(handle.read(0, 1), 'STRATA_E_VOLUME_NOT_FOUND', 'read of a deleted volume');
  }

  private async rename(vol: number): Promise<void> {
    const volume = this.pickVolume(vol);
    if (!volume) return;
    const name = this.freshName('r');
    this.log(`rename ${volume.name} -> ${name}`);
    await this.pool.renameVolume(volume.name, name);
    volume.name = name;
  }

  private async resize(vol: number, size: number, force: boolean): Promise<void> {
    const volume = this.pickVolume(vol);
    if (!volume || size === volume.data.length) return;
    const shrink = size < volume.data.length;
    this.log(`resize ${volume.name} ${volume.data.length} -> ${size}${force ? ' force' : ''}`);
    if (shrink && !force) {
      await expectStrataError(this.pool.resizeVolume(volume.name, size), 'STRATA_E_SHRINK_NEEDS_FORCE', `shrink ${volume.name}`);
      return;
    }
    await this.pool.resizeVolume(volume.name, size, { force });
    this.model.resize(volume, size);
  }

  private async reopen(): Promise<void> {
    this.log('close + reopen');
    await this.pool.close();
    this.snapshotHandles.clear();
    this.pool = await openTestPool(this.dir, ModelRun.openOptions(this.config));
    this.verifyListing();
  }

  private async readSnapshot(vol: number, snap: number, range: RangeSpec, tryWrite: boolean): Promise<void> {
    const picked = this.pickSnapshot(vol, snap);
    if (!picked) return;
    const { volume, name } = picked;
    const expected = this.model.snapshot(volume, name).data;
    const handle = this.snapshotHandle(volume, name);
    const { offset, length } = placeRange(expected.length, this.config.blockSize, range);
    this.log(`read ${volume.name}@${name} [${offset}, +${length})`);
    await this.compare(handle, expected, offset, length, `read ${volume.name}@${name}`);
    if (tryWrite) {
      await expectStrataError(handle.write(offset, Buffer.alloc(length, 1)), 'STRATA_E_READ_ONLY', 'write to a snapshot');
      await expectStrataError(handle.trim(offset, length), 'STRATA_E_READ_ONLY', 'trim of a snapshot');
    }
  }

  private async blockStatus(vol: number, snap: number | null, range: RangeSpec): Promise<void> {
    const volume = this.pickVolume(vol);
    if (!volume) return;
    if (snap === null || volume.snapshots.length === 0) {
      const { offset, length } = placeRange(volume.data.length, this.config.blockSize, range);
      this.log(`blockStatus ${volume.name} [${offset}, +${length})`);
      await this.checkBlockStatus(this.head(volume), volume.data, offset, length, `blockStatus ${volume.name}`);
      return;
    }
    const snapshot = volume.snapshots[snap % volume.snapshots.length];
    const { offset, length } = placeRange(snapshot.data.length, this.config.blockSize, range);
    this.log(`blockStatus ${volume.name}@${snapshot.name} [${offset}, +${length})`);
    await this.checkBlockStatus(this.snapshotHandle(volume, snapshot.name), snapshot.data, offset, length, `blockStatus ${volume.name}@${snapshot.name}`);
  }

  /** Extents must tile the range in order; 'hole' and 'zero' extents must be zeros in the model. */
  private async checkBlockStatus(device: BlockDevice, expected: Uint8Array, offset: number, length: number, what: string): Promise<void> {
    const extents = await device.blockStatus(offset, length);
    let at = offset;
    for (const extent of extents) {
      if (extent.offset !== at || extent.length <= 0) this.fail(`${what}: extent ${JSON.stringify(extent)} does not continue at ${at}`);
      if (!['data', 'zero', 'hole'].includes(extent.type)) this.fail(`${what}: unknown extent type ${extent.type}`);
      if (extent.type !== 'data' && !isAllZero(expected.subarray(extent.offset, extent.offset + extent.length))) {
        this.fail(`${what}: extent ${JSON.stringify(extent)} claims zeros but the model holds data there`);
      }
      at += extent.length;
    }
    if (at !== offset + length) this.fail(`${what} [${offset}, +${length}): extents stop at ${at}`);
  }

  /** Volume and snapshot listings match the model: names, sizes, snapshot counts, parents. */
  private verifyListing(): void {
    const actual = this.pool
      .listVolumes()
      .map((info) => ({ name: info.name, size: info.sizeBytes, snapshots: info.snapshots, parent: info.parent }))
      .sort((a, b) => a.name.localeCompare(b.name));
    const expected = this.model.volumes
      .map((volume) => ({ name: volume.name, size: volume.data.length, snapshots: volume.snapshots.length, parent: this.model.parentInfo(volume) }))
      .sort((a, b) => a.name.localeCompare(b.name));
    if (JSON.stringify(actual) !== JSON.stringify(expected)) this.fail(`listVolumes ${JSON.stringify(actual)}, model ${JSON.stringify(expected)}`);
    for (const volume of this.model.volumes) {
      const snapshots = this.pool.listSnapshots(volume.name).map((info) => `${info.name}:${info.sizeBytes}`);
      const modelSnapshots = volume.snapshots.map((snapshot) => `${snapshot.name}:${snapshot.data.length}`);
      if (snapshots.join() !== modelSnapshots.join()) this.fail(`listSnapshots ${volume.name}: ${snapshots.join()}, model ${modelSnapshots.join()}`);
    }
  }

  /** Every head and snapshot in full (cached and fresh handles), then a deep check. */
  private async verifyEverything(): Promise<void> {
    this.verifyListing();
    for (const volume of this.model.volumes) {
      const size = volume.data.length;
      await this.compare(this.head(volume), volume.data, 0, size, `final read ${volume.name}`);
      await this.checkBlockStatus(this.head(volume), volume.data, 0, size, `final blockStatus ${volume.name}`);
      for (const snapshot of volume.snapshots) {
        const what = `final read ${volume.name}@${snapshot.name}`;
        await this.compare(this.pool.openSnapshot(volume.name, snapshot.name), snapshot.data, 0, snapshot.data.length, what);
        await this.compare(this.snapshotHandle(volume, snapshot.name), snapshot.data, 0, snapshot.data.length, `${what} (handle)`);
      }
    }
    const report = await this.pool.check({ deep: true });
    if (!report.ok || report.issues.length > 0) this.fail(`check found issues: ${JSON.stringify(report.issues)}`);
    const stats = await this.pool.stats();
    if (stats.checksumErrors !== 0) this.fail(`stats count ${stats.checksumErrors} checksum errors`);
    // Everything survives a final close and reopen too.
    await this.reopen();
    for (const volume of this.model.volumes) {
      await this.compare(this.head(volume), volume.data, 0, volume.data.length, `read ${volume.name} after the final reopen`);
    }
  }
}

/** Directories of runs still going: a run the time limit interrupts never reaches its finally. */
const liveDirs = new Set<string>();

/** Runs one generated sequence in a fresh pool directory, removed afterwards. */
async function runSequence(config: RunConfig, ops: readonly Op[]): Promise<void> {
  const dir = makeTempDir();
  liveDirs.add(dir);
  let run: ModelRun | null = null;
  try {
    run = await ModelRun.start(dir, config);
    await run.runAll(ops);
  } finally {
    try {
      await run?.close();
    } finally {
      removeTempDir(dir);
      liveDirs.delete(dir);
    }
  }
}

afterAll(() => {
  for (const dir of liveDirs) removeTempDir(dir);
});

const envNumber = (name: string): number | undefined => (process.env[name] ? Number(process.env[name]) : undefined);

describe('engine against a reference model', () => {
  it('reads back what the model holds after random sequences of I/O and admin operations, and check finds no issue', async () => {
    await fc.assert(
      fc.asyncProperty(configArb, fc.array(opArb, { minLength: 40, maxLength: 150 }), runSequence),
      {
        numRuns: envNumber('STRATA_MODEL_RUNS') ?? 120,
        seed: envNumber('STRATA_MODEL_SEED'),
        path: process.env.STRATA_MODEL_PATH,
        endOnFailure: process.env.STRATA_MODEL_PATH !== undefined,
        // Bounds the whole property, shrinking included, on slow machines.
        plugins: [fc.interruptAfterTimeLimit(envNumber('STRATA_MODEL_TIME_LIMIT_MS') ?? 45_000)],
      },
    );
  });
});

/**
 * Minimal reproductions of engine bugs the property above found (fixed in 0a4b773),
 * kept as regression tests. Each comment names the cause that was found.
 */
describe('engine bug reproductions', () => {
  /** Runs `body` on a fresh pool with one volume `v`, closing the pool and removing it afterwards. */
  async function withVolume(sizeBytes: number, options: PoolOpenOptions, body: (pool: Pool, disk: BlockDevice) => Promise<void>): Promise<void> {
    await withTempDir(async (dir) => {
      const pool = await createTestPool(dir, { blockSize: 4096, dedup: true, compression: 'lz4' }, options);
      try {
        await pool.createVolume('v', sizeBytes);
        await body(pool, pool.openVolume('v'));
      } finally {
        await pool.close();
      }
    });
  }

  // volume-handle.ts clearRange: when no whole block lies inside the range, the range is
  // passed to zeroPartial in one piece, which only handles a single block
  // (Buffer.fill past the end of the block: RangeError).
  it('trim and writeZeroes zero a range that ends in the block after the one it starts in without covering a whole block', async () => {
    await withVolume(16 * KiB, {}, async (_pool, disk) => {
      const expected = Buffer.alloc(16 * KiB, 0xab);
      await disk.write(0, expected);
      await disk.trim(2733, 1364); // [2733, 4097): the tail of block 0 and the first byte of block 1
      expected.fill(0, 2733, 4097);
      await disk.writeZeroes(8000, 400); // [8000, 8400): across the boundary of blocks 1 and 2
      expected.fill(0, 8000, 8400);
      assertSameBytes(await disk.read(0, 16 * KiB), expected, 'volume after trim and writeZeroes');
    });
  });

  // pool.ts Pool.open: `{ ...defaultTuning, ...options.tuning }` lets an explicit
  // undefined replace a default; frameRawBytesMax = undefined then makes destage's
  // writeFrames (destage.ts) compute NaN chunks per frame and append empty frames, so the
  // committed extent rows point at chunks that were never stored and read back as zeros.
  it('keeps flushed data when the open options carry an explicitly undefined tuning value', async () => {
    await withVolume(16 * KiB, { tuning: { frameRawBytesMax: undefined } }, async (pool, disk) => {
      const data = Buffer.alloc(4 * KiB, 0xab);
      await disk.write(0, data);
      await disk.flush();
      assertSameBytes(await disk.read(0, 4 * KiB), data, 'flushed block');
      const report = await pool.check({ deep: true });
      expect(report.issues).toEqual([]);
    });
  });

  // snapshots.ts flatten copies the parent's rows (at birth 0) only for blocks the clone
  // has no row for at *any* birth, and only up to the clone's *current* size. A snapshot
  // of the clone taken before the clone overwrote a block, or before it was shrunk,
  // still read those blocks from the parent; once the parent link is cut it reads zeros.
  it('flatten keeps what snapshots of the clone show for blocks the clone overwrote after them', async () => {
    await withVolume(16 * KiB, {}, async (pool, disk) => {
      const inherited = Buffer.alloc(4 * KiB, 0x11);
      await disk.write(0, inherited);
      await pool.createSnapshot('v', 'base');
      await pool.clone('v', 'base', 'c');
      await pool.createSnapshot('c', 'before');
      await pool.openVolume('c').write(0, Buffer.alloc(4 * KiB, 0x22));
      await pool.flatten('c');
      assertSameBytes(await pool.openSnapshot('c', 'before').read(0, 4 * KiB), inherited, 'c@before after flatten');
      const report = await pool.check({ deep: true });
      expect(report.issues).toEqual([]);
    });
  });

  it('flatten keeps what snapshots of the clone show beyond the size the clone was shrunk to', async () => {
    await withVolume(16 * KiB, {}, async (pool, disk) => {
      const inherited = Buffer.alloc(4 * KiB, 0x11);
      await disk.write(12 * KiB, inherited);
      await pool.createSnapshot('v', 'base');
      await pool.clone('v', 'base', 'c');
      await pool.createSnapshot('c', 'full');
      await pool.resizeVolume('c', 12 * KiB, { force: true });
      await pool.flatten('c');
      assertSameBytes(await pool.openSnapshot('c', 'full').read(12 * KiB, 4 * KiB), inherited, 'c@full after flatten');
    });
  });
});
