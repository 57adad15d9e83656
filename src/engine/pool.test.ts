/*
 * Behaviour of the engine through its public API, on the real SQLite + local pack
 * drivers: volumes, thin provisioning, the block device contract, snapshots, clones,
 * rollback, dedup, compression, reclaim and accounting.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { limits } from '../common/limits.js';
import { nodeFileIo, type FileIo } from '../chunks/index.js';
import { Pool, type PoolPolicyOptions } from './index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dirs: string[] = [];
const pools: Pool[] = [];

const quiet = { tuning: { compactIntervalMs: 0, compactGraceMs: 0, writebackDelayMs: 0 } };

async function newPool(policy: PoolPolicyOptions = {}): Promise<Pool> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-engine-'));
  dirs.push(dir);
  const pool = await Pool.create(dir, policy, quiet);
  pools.push(pool);
  return pool;
}

/** A pool whose file operations count fsync calls. */
async function poolCountingSyncs(): Promise<{ pool: Pool; syncs: { count: number } }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-engine-'));
  dirs.push(dir);
  const syncs = { count: 0 };
  const io: FileIo = {
    ...nodeFileIo,
    fsync: (fd) => {
      syncs.count += 1;
      return nodeFileIo.fsync(fd);
    },
  };
  const pool = await Pool.create(dir, {}, { ...quiet, io });
  pools.push(pool);
  return { pool, syncs };
}

async function reopen(pool: Pool): Promise<Pool> {
  await pool.close();
  const again = await Pool.open(pool.directory, quiet);
  pools.push(again);
  return again;
}

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function pattern(length: number, seed: number): Buffer {
  const data = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) data[index] = (index * 31 + seed * 7 + (index >> 9)) & 0xff;
  return data;
}

function randomBytes(length: number, seed: number): Buffer {
  let state = seed >>> 0 || 1;
  const data = Buffer.alloc(length);
  for (let index = 0; index < length; index += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    data[index] = state & 0xff;
  }
  return data;
}

describe('pools', () => {
  it('rejects block sizes that are not powers of two between 4 KiB and 1 MiB', async () => {
    for (const blockSize of [1024, 3 * 4096, 2 * MiB]) {
      await expect(newPool({ blockSize })).rejects.toMatchObject({ code: 'STRATA_E_INVALID_ARGUMENT' });
    }
  });

  it('keeps the policy fixed at creation across reopen', async () => {
    const pool = await reopen(await newPool({ blockSize: 16 * KiB, dedup: false, compression: 'zstd' }));
    expect(pool.policy).toEqual({ blockSize: 16 * KiB, dedup: false, compression: 'zstd' });
  });

  it('refuses a second open of the same pool while it is open', async () => {
    const pool = await newPool();
    await expect(Pool.open(pool.directory, quiet)).rejects.toMatchObject({ code: 'STRATA_E_POOL_LOCKED' });
  });

  it('refuses to create a pool over an existing one and to open a missing one', async () => {
    const pool = await newPool();
    await expect(Pool.create(pool.directory, {}, quiet)).rejects.toMatchObject({ code: 'STRATA_E_POOL_EXISTS' });
    await expect(Pool.open(path.join(pool.directory, 'nothing'), quiet)).rejects.toMatchObject({ code: 'STRATA_E_POOL_NOT_FOUND' });
  });
});

describe('volumes', () => {
  it('creates, lists, renames and deletes volumes', async () => {
    const pool = await newPool();
    await pool.createVolume('b', MiB);
    await pool.createVolume('a', 2 * MiB);
    expect(pool.listVolumes().map((v) => [v.name, v.sizeBytes])).toEqual([
      ['a', 2 * MiB],
      ['b', MiB],
    ]);
    await expect(pool.createVolume('a', MiB)).rejects.toMatchObject({ code: 'STRATA_E_VOLUME_EXISTS' });
    await pool.renameVolume('a', 'c');
    await expect(pool.renameVolume('b', 'c')).rejects.toMatchObject({ code: 'STRATA_E_VOLUME_EXISTS' });
    await pool.deleteVolume('b');
    expect((await reopen(pool)).listVolumes().map((v) => v.name)).toEqual(['c']);
  });

  it('rejects invalid names and sizes with clear errors', async () => {
    const pool = await newPool();
    for (const name of ['', 'a/b', '..', 'x\u0000', 'v@s', 'n'.repeat(129)]) {
      await expect(pool.createVolume(name, MiB)).rejects.toMatchObject({ code: 'STRATA_E_INVALID_NAME' });
    }
    await expect(pool.createVolume('v', -1)).rejects.toMatchObject({ code: 'STRATA_E_INVALID_ARGUMENT' });
    await expect(pool.createVolume('v', 1.5)).rejects.toMatchObject({ code: 'STRATA_E_INVALID_ARGUMENT' });
    expect(() => pool.openVolume('missing')).toThrow(expect.objectContaining({ code: 'STRATA_E_VOLUME_NOT_FOUND' }));
  });

  it('grows freely, shrinks only with force, and reads zeros past a shrink after growing again', async () => {
    const pool = await newPool();
    await pool.createVolume('v', MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, Buffer.alloc(MiB, 9));
    await pool.resizeVolume('v', 2 * MiB);
    expect(disk.sizeBytes).toBe(2 * MiB);
    await expect(pool.resizeVolume('v', 1000)).rejects.toMatchObject({ code: 'STRATA_E_SHRINK_NEEDS_FORCE' });
    await pool.resizeVolume('v', 1000, { force: true });
    await pool.resizeVolume('v', MiB);
    const data = await disk.read(0, MiB);
    expect(data.subarray(0, 1000).every((b) => b === 9)).toBe(true);
    expect(data.subarray(1000).every((b) => b === 0)).toBe(true);
  });
});

describe('block device', () => {
  it('reads back writes at arbitrary offsets and lengths, before and after flush', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 256 * KiB);
    const disk = pool.openVolume('v');
    const model = Buffer.alloc(256 * KiB);
    const writes: [number, number][] = [
      [1, 3],
      [4095, 2],
      [5000, 9000],
      [0, 4096],
      [65535, 70000],
      [200_000, 1],
    ];
    for (const [index, [offset, length]] of writes.entries()) {
      const data = randomBytes(length, index + 1);
      await disk.write(offset, data);
      data.copy(model, offset);
    }
    expect((await disk.read(0, model.length)).equals(model)).toBe(true);
    await disk.flush();
    expect((await disk.read(0, model.length)).equals(model)).toBe(true);
    expect((await disk.read(4093, 11)).equals(model.subarray(4093, 4104))).toBe(true);
    const again = (await reopen(pool)).openVolume('v');
    expect((await again.read(0, model.length)).equals(model)).toBe(true);
  });

  it('writes pieces as the bytes they join to: blocks straddling pieces, partial and zero blocks, copies unless handed over', async () => {
    for (const blockSize of [4 * KiB, MiB]) {
      const pool = await newPool({ blockSize });
      await pool.createVolume('v', 3 * MiB);
      const disk = pool.openVolume('v');
      const model = Buffer.alloc(3 * MiB);
      // [offset, piece lengths, zero bytes from, to, adopt]
      const writes: [number, number[], number, number, boolean][] = [
        [0, [4096, 4096, 8192], 0, 0, false],
        [3, [1, 5000, 10, 12_000, 3], 4093, 8189, false],
        [40_960, [28, 65_508, 1000, 2], 4096, 12_288, true],
        [131_071, [4097, 1, 1, 60_000], 0, 0, true],
        [262_144, [100_000, 31_072], 0, 65_536, false],
        [393_216, [65_536, 65_536], 0, 0, true],
        [1_048_000, [600_000, 500_000], 0, 0, false],
        [1_048_576, [300_000, 748_576], 0, 0, true],
      ];
      for (const [index, [offset, lengths, zeroFrom, zeroTo, adopt]] of writes.entries()) {
        const total = lengths.reduce((sum, length) => sum + length, 0);
        const data = randomBytes(total, index + 11).fill(0, zeroFrom, zeroTo);
        const pieces: Buffer[] = [];
        let at = 0;
        for (const length of lengths) {
          pieces.push(Buffer.from(data.subarray(at, at + length)));
          at += length;
        }
        await disk.writePieces(offset, pieces, { adopt });
        data.copy(model, offset);
        // A caller that did not hand its pieces over may reuse them at once.
        if (!adopt) for (const piece of pieces) piece.fill(0xee);
      }
      // Nothing to write, at an unaligned offset: nothing changes.
      await disk.writePieces(4097, []);
      await disk.writePieces(4097, [Buffer.alloc(0)], { fua: true });
      expect((await disk.read(0, model.length)).equals(model)).toBe(true);
      await disk.flush();
      expect((await (await reopen(pool)).openVolume('v').read(0, model.length)).equals(model), `block size ${blockSize}`).toBe(true);
    }
  });

  it('reads as pieces: views of stored blocks merged per frame, and zero runs as lengths', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 256 * KiB);
    const disk = pool.openVolume('v');
    await disk.write(0, randomBytes(32 * KiB, 1));
    await disk.writeZeroes(32 * KiB, 16 * KiB, { allocate: true });
    await disk.write(96 * KiB, randomBytes(8 * KiB, 2));
    const readBoth = async (offset: number, length: number) => {
      const pieces = await disk.readPieces(offset, length);
      const joined = Buffer.concat(pieces.map((piece) => (typeof piece === 'number' ? Buffer.alloc(piece) : piece)));
      expect(joined.equals(await disk.read(offset, length))).toBe(true);
      return pieces.map((piece) => (typeof piece === 'number' ? piece : `${piece.length} bytes`));
    };
    // Buffered blocks come as copies, one per block; stored ones as views of their frame.
    expect((await readBoth(1, 128 * KiB)).filter((piece) => typeof piece === 'number')).toEqual([64 * KiB, 24 * KiB + 1]);
    await disk.flush();
    expect(await readBoth(1, 128 * KiB)).toEqual([`${32 * KiB - 1} bytes`, 64 * KiB, `${8 * KiB} bytes`, 24 * KiB + 1]);
    expect(await readBoth(200 * KiB, 0)).toEqual([]);
    expect(await readBoth(200 * KiB, 3)).toEqual([3]);
  });

  it('rejects out-of-range and malformed requests without changing anything', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 64 * KiB);
    const disk = pool.openVolume('v');
    await expect(disk.read(64 * KiB - 1, 2)).rejects.toMatchObject({ code: 'STRATA_E_OUT_OF_RANGE' });
    await expect(disk.write(64 * KiB, Buffer.alloc(1))).rejects.toMatchObject({ code: 'STRATA_E_OUT_OF_RANGE' });
    await expect(disk.trim(0, 64 * KiB + 1)).rejects.toMatchObject({ code: 'STRATA_E_OUT_OF_RANGE' });
    await expect(disk.read(-1, 1)).rejects.toMatchObject({ code: 'STRATA_E_INVALID_ARGUMENT' });
    await expect(disk.read(0.5, 1)).rejects.toMatchObject({ code: 'STRATA_E_INVALID_ARGUMENT' });
    expect((await pool.stats()).dirtyBytes).toBe(0);
  });

  it('reports data, allocated zeros and holes in block status, merged into extents', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 64 * KiB);
    const disk = pool.openVolume('v');
    await disk.write(4 * KiB, Buffer.alloc(8 * KiB, 1));
    await disk.writeZeroes(16 * KiB, 8 * KiB, { allocate: true });
    await disk.write(32 * KiB, Buffer.alloc(4 * KiB));
    const expected = [
      { offset: 0, length: 4 * KiB, type: 'hole' },
      { offset: 4 * KiB, length: 8 * KiB, type: 'data' },
      { offset: 12 * KiB, length: 4 * KiB, type: 'hole' },
      { offset: 16 * KiB, length: 8 * KiB, type: 'zero' },
      { offset: 24 * KiB, length: 8 * KiB, type: 'hole' },
      { offset: 32 * KiB, length: 4 * KiB, type: 'zero' },
      { offset: 36 * KiB, length: 28 * KiB, type: 'hole' },
    ];
    expect(await disk.blockStatus(0, 64 * KiB)).toEqual(expected);
    await disk.flush();
    expect(await disk.blockStatus(0, 64 * KiB)).toEqual(expected);
    expect(await disk.blockStatus(5000, 100)).toEqual([{ offset: 5000, length: 100, type: 'data' }]);
  });

  it('stores nothing for unwritten, trimmed or zero-written blocks', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 4 * MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, Buffer.alloc(MiB));
    await disk.writeZeroes(MiB, MiB);
    await pool.flush();
    expect((await pool.stats()).uniqueBytes).toBe(0);
    await disk.write(2 * MiB, randomBytes(MiB, 5));
    await pool.flush();
    expect((await pool.stats()).uniqueBytes).toBe(MiB);
    await disk.trim(2 * MiB, MiB);
    await pool.flush();
    const stats = await pool.stats();
    expect(stats.uniqueBytes).toBe(0);
    expect(stats.mappedBytes).toBe(0);
    expect((await disk.read(2 * MiB, MiB)).every((b) => b === 0)).toBe(true);
  });

  it('keeps pool mapped bytes exact across writes, overwrites, trims, zeroes, snapshots, rollback and clones', async () => {
    const pool = await newPool({ blockSize: 4 * KiB });
    await pool.createVolume('v', 8 * MiB);
    const disk = pool.openVolume('v');
    const exact = async () => {
      let sum = 0;
      for (const volume of pool.listVolumes()) sum += (await pool.volumeStats(volume.name)).mappedBytes;
      return sum;
    };
    const steps: ((seed: number) => Promise<unknown>)[] = [
      (seed) => disk.write((seed * 37 % 2000) * 4 * KiB + (seed % 3) * 1000, randomBytes(20 * KiB + seed * 7, seed)),
      (seed) => disk.trim((seed * 53 % 2000) * 4 * KiB, 9 * KiB + seed),
      (seed) => disk.writeZeroes((seed * 71 % 2000) * 4 * KiB, 12 * KiB, { allocate: seed % 2 === 0 }),
      (seed) => disk.write((seed * 11 % 2000) * 4 * KiB, Buffer.alloc(8 * KiB)),
    ];
    for (let seed = 1; seed <= 40; seed += 1) {
      await steps[seed % steps.length](seed);
      if (seed % 5 === 0) await disk.flush();
      if (seed === 20) await pool.createSnapshot('v', 's');
      if (seed === 30) await pool.clone('v', 's', 'c');
      if (seed % 5 === 0) expect((await pool.stats()).mappedBytes).toBe(await exact());
    }
    const clone = pool.openVolume('c');
    await clone.write(0, randomBytes(64 * KiB, 99));
    await clone.flush();
    expect((await pool.stats()).mappedBytes).toBe(await exact());
    await pool.rollback('v', 's');
    expect((await pool.stats()).mappedBytes).toBe(await exact());
  });

  it('zeroes partial blocks at the edges of trim and write-zeroes', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 64 * KiB);
    const disk = pool.openVolume('v');
    await disk.write(0, Buffer.alloc(64 * KiB, 0xaa));
    await disk.trim(1000, 10_000);
    await disk.writeZeroes(30_000, 5, { allocate: true });
    const data = await disk.read(0, 64 * KiB);
    const expected = Buffer.alloc(64 * KiB, 0xaa);
    expected.fill(0, 1000, 11_000);
    expected.fill(0, 30_000, 30_005);
    expect(data.equals(expected)).toBe(true);
  });

  it('makes a FUA write durable on its own: the write log is synced before it resolves', async () => {
    const { pool, syncs } = await poolCountingSyncs();
    await pool.createVolume('v', 64 * KiB);
    const before = syncs.count;
    await pool.openVolume('v').write(100, Buffer.from('durable'), { fua: true });
    expect(syncs.count).toBeGreaterThan(before);
    expect((await pool.stats()).dirtyBytes).toBeGreaterThan(0);
    await pool.flush();
    expect((await pool.stats()).dirtyBytes).toBe(0);
  });

  it('shares one buffer between handles, so a flush on one covers writes on another', async () => {
    const { pool, syncs } = await poolCountingSyncs();
    await pool.createVolume('v', 64 * KiB);
    const first = pool.openVolume('v');
    const second = pool.openVolume('v');
    await first.write(0, Buffer.from('from the first handle'));
    expect((await second.read(0, 21)).toString()).toBe('from the first handle');
    const before = syncs.count;
    await second.flush();
    expect(syncs.count).toBeGreaterThan(before);
    // Nothing is left for a second flush to do.
    const after = syncs.count;
    await first.flush();
    expect(syncs.count).toBe(after);
  });
});

describe('snapshots', () => {
  it('keep their content while the head changes, and are read-only', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 64 * KiB);
    const disk = pool.openVolume('v');
    await disk.write(0, Buffer.alloc(64 * KiB, 1));
    await pool.createSnapshot('v', 's1');
    await disk.write(0, Buffer.alloc(8 * KiB, 2));
    await disk.trim(32 * KiB, 32 * KiB);
    await pool.createSnapshot('v', 's2');
    await disk.write(4096, Buffer.alloc(10, 3));
    const s1 = pool.openSnapshot('v', 's1');
    const s2 = pool.openSnapshot('v', 's2');
    expect((await s1.read(0, 64 * KiB)).every((b) => b === 1)).toBe(true);
    const view2 = await s2.read(0, 64 * KiB);
    expect(view2.subarray(0, 8 * KiB).every((b) => b === 2)).toBe(true);
    expect(view2.subarray(8 * KiB, 32 * KiB).every((b) => b === 1)).toBe(true);
    expect(view2.subarray(32 * KiB).every((b) => b === 0)).toBe(true);
    await expect(s1.write(0, Buffer.alloc(1))).rejects.toMatchObject({ code: 'STRATA_E_READ_ONLY' });
    await expect(pool.createSnapshot('v', 's1')).rejects.toMatchObject({ code: 'STRATA_E_SNAPSHOT_EXISTS' });
    await expect(pool.createSnapshot('v', 'bad/name')).rejects.toMatchObject({ code: 'STRATA_E_INVALID_NAME' });
  });

  it('delete frees only what no other snapshot or the head still shows', async () => {
    const pool = await newPool({ compression: 'none' });
    await pool.createVolume('v', MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, randomBytes(MiB, 1));
    await pool.createSnapshot('v', 'a');
    await disk.write(0, randomBytes(256 * KiB, 2));
    await pool.createSnapshot('v', 'b');
    await disk.write(0, randomBytes(128 * KiB, 3));
    await pool.flush();
    const stats = await pool.volumeStats('v');
    const reclaimable = Object.fromEntries(stats.snapshots.map((s) => [s.name, s.reclaimableBytes]));
    expect(reclaimable.a).toBeGreaterThanOrEqual(256 * KiB);
    expect(reclaimable.a).toBeLessThan(256 * KiB + 16 * KiB);
    expect(reclaimable.b).toBeGreaterThanOrEqual(128 * KiB);
    expect(reclaimable.b).toBeLessThan(128 * KiB + 16 * KiB);
    const before = (await pool.stats()).uniqueBytes;
    await pool.deleteSnapshot('v', 'a');
    expect(before - (await pool.stats()).uniqueBytes).toBe(256 * KiB);
    expect(() => pool.openSnapshot('v', 'a')).toThrow(expect.objectContaining({ code: 'STRATA_E_SNAPSHOT_NOT_FOUND' }));
    const b = await pool.openSnapshot('v', 'b').read(0, MiB);
    const expected = randomBytes(MiB, 1);
    randomBytes(256 * KiB, 2).copy(expected, 0);
    expect(b.equals(expected)).toBe(true);
    expect((await pool.check({ deep: true })).issues).toEqual([]);
  });

  it('rolls back to the latest snapshot, and past newer ones only when told to destroy them', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 64 * KiB);
    const disk = pool.openVolume('v');
    await disk.write(0, Buffer.alloc(64 * KiB, 1));
    await pool.createSnapshot('v', 'one');
    await disk.write(0, Buffer.alloc(64 * KiB, 2));
    await pool.createSnapshot('v', 'two');
    await disk.write(0, Buffer.alloc(64 * KiB, 3));
    await pool.rollback('v', 'two');
    expect((await disk.read(0, 64 * KiB)).every((b) => b === 2)).toBe(true);
    await expect(pool.rollback('v', 'one')).rejects.toMatchObject({ code: 'STRATA_E_ROLLBACK_NEEDS_DESTROY' });
    await pool.rollback('v', 'one', { destroyNewer: true });
    expect((await disk.read(0, 64 * KiB)).every((b) => b === 1)).toBe(true);
    expect(pool.listSnapshots('v').map((s) => s.name)).toEqual(['one']);
    expect((await pool.check({ deep: true })).issues).toEqual([]);
  });

  it('rollback restores the size the volume had at the snapshot', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 64 * KiB);
    await pool.createSnapshot('v', 's');
    await pool.resizeVolume('v', 128 * KiB);
    await pool.openVolume('v').write(100 * KiB, Buffer.alloc(10, 1));
    await pool.rollback('v', 's');
    expect(pool.volumeInfo('v').sizeBytes).toBe(64 * KiB);
  });

  it('creation writes no extent rows, whatever the volume size', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 64 * MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, randomBytes(8 * MiB, 3));
    await pool.flush();
    const before = await pool.stats();
    await pool.createSnapshot('v', 's');
    const after = await pool.stats();
    expect(after.referencedBytes).toBe(before.referencedBytes);
    expect(after.metadataBytes - before.metadataBytes).toBeLessThan(16 * KiB);
  });
});

describe('clones', () => {
  it('read the parent snapshot until written, and are independent afterwards', async () => {
    const pool = await newPool();
    await pool.createVolume('base', 64 * KiB);
    await pool.openVolume('base').write(0, Buffer.alloc(64 * KiB, 7));
    await pool.createSnapshot('base', 'gold');
    const info = await pool.clone('base', 'gold', 'vm1');
    expect(info.parent).toEqual({ volume: 'base', snapshot: 'gold' });
    const clone = pool.openVolume('vm1');
    await clone.write(0, Buffer.alloc(4 * KiB, 8));
    await clone.trim(60 * KiB, 4 * KiB);
    await pool.openVolume('base').write(0, Buffer.alloc(64 * KiB, 9));
    const data = await clone.read(0, 64 * KiB);
    expect(data.subarray(0, 4 * KiB).every((b) => b === 8)).toBe(true);
    expect(data.subarray(4 * KiB, 60 * KiB).every((b) => b === 7)).toBe(true);
    expect(data.subarray(60 * KiB).every((b) => b === 0)).toBe(true);
  });

  it('pin their snapshot and volume until flattened', async () => {
    const pool = await newPool();
    await pool.createVolume('base', 64 * KiB);
    await pool.openVolume('base').write(0, Buffer.alloc(64 * KiB, 7));
    await pool.createSnapshot('base', 'gold');
    await pool.clone('base', 'gold', 'vm1');
    await pool.clone('base', 'gold', 'vm2');
    const refused = pool.deleteSnapshot('base', 'gold');
    await expect(refused).rejects.toMatchObject({ code: 'STRATA_E_SNAPSHOT_HAS_CLONES', details: { clones: ['vm1', 'vm2'] } });
    await expect(pool.deleteSnapshot('base', 'gold')).rejects.toThrow(/vm1, vm2/);
    await expect(pool.deleteVolume('base')).rejects.toMatchObject({ code: 'STRATA_E_VOLUME_HAS_CLONES' });
    await pool.flatten('vm1');
    await pool.deleteVolume('vm2');
    await pool.deleteSnapshot('base', 'gold');
    await pool.deleteVolume('base');
    expect((await pool.openVolume('vm1').read(0, 64 * KiB)).every((b) => b === 7)).toBe(true);
    expect(pool.volumeInfo('vm1').parent).toBeNull();
    await expect(pool.flatten('vm1')).rejects.toMatchObject({ code: 'STRATA_E_NOT_A_CLONE' });
    expect((await pool.check({ deep: true })).issues).toEqual([]);
  });
});

describe('dedup and compression', () => {
  it('stores identical blocks once across volumes, and not at all with dedup off twice', async () => {
    const data = randomBytes(MiB, 11);
    for (const dedup of [true, false]) {
      const pool = await newPool({ dedup, compression: 'none' });
      for (const name of ['a', 'b']) {
        await pool.createVolume(name, 2 * MiB);
        await pool.openVolume(name).write(name === 'a' ? 0 : 64 * KiB, data);
      }
      await pool.flush();
      const stats = await pool.stats();
      expect(stats.referencedBytes).toBe(2 * MiB);
      expect(stats.uniqueBytes).toBe(dedup ? MiB : 2 * MiB);
      expect(stats.dedupRatio).toBeCloseTo(dedup ? 2 : 1);
    }
  });

  it('tells apart blocks whose hashes share their first 32 bits, within a destage and across', async () => {
    // 4 KiB of 7s with a little-endian u32 at offset 0: SHA-256 of 4954 and of 24095 both begin fc5347fc.
    const block = (counter: number) => {
      const data = Buffer.alloc(4 * KiB, 7);
      data.writeUInt32LE(counter, 0);
      return data;
    };
    const [a, b] = [block(4954), block(24095)];
    const pool = await newPool({ compression: 'none' });
    await pool.createVolume('v', MiB);
    const volume = pool.openVolume('v');
    await volume.write(0, Buffer.concat([a, b, a, b]));
    await pool.flush();
    await volume.write(64 * KiB, Buffer.concat([b, a]));
    await pool.flush();
    const stats = await pool.stats();
    expect(stats.referencedBytes).toBe(24 * KiB);
    expect(stats.uniqueBytes).toBe(8 * KiB);
    expect(await volume.read(0, 16 * KiB)).toEqual(Buffer.concat([a, b, a, b]));
    expect(await volume.read(64 * KiB, 8 * KiB)).toEqual(Buffer.concat([b, a]));
  });

  it('destages more data than its slab holds at once, with repeats across slices', async () => {
    // One slice more than the slab's regions, so later slices reuse regions of earlier ones.
    const blocks = (limits.destageSlabSlices + 1) * (limits.destageSliceBytes / (4 * KiB)) + 3;
    const data = Buffer.alloc(blocks * 4 * KiB);
    const origin = (block: number): number => (block % 5 === 4 && block >= 3000 ? origin(block - 3000) : block);
    for (let block = 0; block < blocks; block += 1) {
      // Every fifth block repeats the one 3000 blocks before (usually in another slice).
      const source = origin(block);
      data.write(`block ${source} `.repeat(300), block * 4 * KiB, 'latin1');
      data.writeUInt32LE(source, block * 4 * KiB);
    }
    const pool = await newPool();
    await pool.createVolume('v', data.length);
    const volume = pool.openVolume('v');
    for (let at = 0; at < data.length; at += 8 * MiB) await volume.write(at, data.subarray(at, at + 8 * MiB));
    await pool.flush();
    const stats = await pool.stats();
    expect(stats.referencedBytes).toBe(data.length);
    expect(stats.uniqueBytes).toBe(data.length - Math.floor((blocks - 3000) / 5) * 4 * KiB);
    expect(stats.compressionRatio).toBeGreaterThan(2);
    for (let at = 0; at < data.length; at += 8 * MiB) expect((await volume.read(at, Math.min(8 * MiB, data.length - at))).equals(data.subarray(at, at + 8 * MiB))).toBe(true);
  });

  it('compresses compressible data with lz4 and zstd', async () => {
    for (const compression of ['lz4', 'zstd'] as const) {
      const pool = await newPool({ compression });
      await pool.createVolume('v', 4 * MiB);
      await pool.openVolume('v').write(0, Buffer.concat(Array.from({ length: 64 }, (_, i) => pattern(64 * KiB, i))));
      await pool.flush();
      const stats = await pool.stats();
      expect(stats.compressionRatio).toBeGreaterThan(2);
      expect(stats.storedBytes).toBeLessThan(2 * MiB);
    }
  });

  it('reads right bytes through recycled span memory, held across other reads or copied', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-engine-'));
    dirs.push(dir);
    // A span pool of 15 spans of 1.0625 MiB (a MiB of frames with their headers) for 15
    // reads at once besides the held one: spans keep being reused, and the pool runs
    // short by one.
    const small = { tuning: { ...quiet.tuning, readSpanPoolBytesMax: 16 * MiB } };
    const pool = await Pool.create(dir, { compression: 'none' }, small);
    await pool.createVolume('v', 16 * MiB);
    const data = randomBytes(16 * MiB, 5);
    await pool.openVolume('v').write(0, data);
    await pool.close();
    const again = await Pool.open(dir, small);
    pools.push(again);
    const volume = again.openVolume('v');
    const joined = (pieces: readonly (Buffer | number)[]) => Buffer.concat(pieces.map((piece) => (typeof piece === 'number' ? Buffer.alloc(piece) : piece)));
    const others = [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15].map((index) => index * MiB);
    const readOthers = () =>
      Promise.all(
        others.map(async (offset) => {
          const other = await volume.readHeld(offset, MiB);
          try {
            expect(joined(other.pieces).equals(data.subarray(offset, offset + MiB))).toBe(true);
          } finally {
            other.release();
          }
        }),
      );
    await readOthers();
    // Held: a span of the others' size (the pool keeps sizes apart), taken last, so that
    // it is the first the pool would hand out again.
    const held = await volume.readHeld(4 * MiB, MiB);
    const before = Buffer.from(joined(held.pieces));
    expect(before.equals(data.subarray(4 * MiB, 5 * MiB))).toBe(true);
    for (let pass = 0; pass < 3; pass += 1) {
      await readOthers();
      expect((await volume.read(3 * MiB + 5, 2 * MiB)).equals(data.subarray(3 * MiB + 5, 5 * MiB + 5))).toBe(true);
    }
    // The held read's bytes are still its own.
    expect(joined(held.pieces).equals(before)).toBe(true);
    held.release();
    held.release();
    // readPieces hands out copies: they outlive later reads.
    const copied = await volume.readPieces(0, 2 * MiB);
    for (let offset = 2 * MiB; offset < 16 * MiB; offset += MiB) await volume.read(offset, MiB);
    expect(joined(copied).equals(data.subarray(0, 2 * MiB))).toBe(true);
  });

  it('stores data that compression would shrink by less than 1/8 uncompressed, and reads it back', async () => {
    const pool = await newPool({ compression: 'zstd' });
    await pool.createVolume('v', 4 * MiB);
    // Random bytes with every eighth one zero: zstd saves a few per cent, not 1/8.
    const data = randomBytes(2 * MiB, 9);
    for (let index = 0; index < data.length; index += 8) data[index] = 0;
    await pool.openVolume('v').write(0, data);
    await pool.flush();
    expect((await pool.stats()).compressionRatio).toBeLessThanOrEqual(1);
    expect((await pool.openVolume('v').read(0, 2 * MiB)).equals(data)).toBe(true);
  });
});

describe('writeback timer', () => {
  it('waits while the pool serves I/O, then destages once it pauses', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-engine-'));
    dirs.push(dir);
    const pool = await Pool.create(dir, {}, { tuning: { compactIntervalMs: 0, compactGraceMs: 0, writebackDelayMs: 50 } });
    pools.push(pool);
    await pool.createVolume('v', MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, randomBytes(64 * KiB, 1));
    // Reads far more often than the idle time the timer waits for: it keeps waiting.
    for (let round = 0; round < 60; round += 1) {
      await disk.read(0, 4 * KiB);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect((await pool.stats()).dirtyBytes).toBeGreaterThan(0);
    for (let wait = 0; wait < 200 && (await pool.stats()).dirtyBytes > 0; wait += 1) await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await pool.stats()).dirtyBytes).toBe(0);
    expect((await disk.read(0, 64 * KiB)).equals(randomBytes(64 * KiB, 1))).toBe(true);
  });
});

describe('space reclaim', () => {
  it('gives the space of deleted data back to the host file system', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-engine-'));
    dirs.push(dir);
    const pool = await Pool.create(dir, { compression: 'none' }, { ...quiet, packBytesMax: MiB });
    pools.push(pool);
    await pool.createVolume('v', 16 * MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, randomBytes(8 * MiB, 1));
    await pool.flush();
    const packBytes = () => fs.readdirSync(path.join(dir, 'packs')).reduce((sum, f) => sum + fs.statSync(path.join(dir, 'packs', f)).size, 0);
    expect(packBytes()).toBeGreaterThan(8 * MiB);
    await disk.trim(0, 6 * MiB);
    await pool.flush();
    const progress: number[] = [];
    const report = await pool.reclaim({ skipGrace: true, onProgress: (p) => progress.push(p.doneBytes) });
    expect(report.packsDeleted).toBeGreaterThan(0);
    expect(progress.length).toBeGreaterThan(0);
    expect(packBytes()).toBeLessThan(3 * MiB);
    expect((await disk.read(6 * MiB, 2 * MiB)).equals(randomBytes(8 * MiB, 1).subarray(6 * MiB))).toBe(true);
    expect((await pool.check({ deep: true })).issues).toEqual([]);
  });

  it('keeps replaced packs for the grace period', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-engine-'));
    dirs.push(dir);
    const pool = await Pool.create(dir, { compression: 'none' }, { tuning: { ...quiet.tuning, compactGraceMs: 3_600_000 }, packBytesMax: MiB });
    pools.push(pool);
    await pool.createVolume('v', 4 * MiB);
    await pool.openVolume('v').write(0, randomBytes(3 * MiB, 1), { fua: true });
    await pool.flush();
    await pool.openVolume('v').trim(0, 2 * MiB);
    const report = await pool.reclaim();
    expect(report.packsCompacted).toBeGreaterThan(0);
    expect(report.packsDeleted).toBe(0);
    expect((await pool.reclaim({ skipGrace: true })).packsDeleted).toBe(report.packsCompacted);
  });
});
