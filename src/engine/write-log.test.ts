/*
 * The write log as a crash leaves it. A pool's directory is copied while the pool is
 * open (what a killed process leaves behind: the page cache holds every write the log
 * took), then opened: acknowledged writes come back from the log, a torn tail is cut
 * off, damaged records are not replayed, and writes a rollback or a volume deletion
 * threw away stay thrown away.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { seededBytes } from '../../test/helpers/data.js';
import { Pool } from './index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const quiet = { tuning: { compactIntervalMs: 0, compactGraceMs: 0, writebackDelayMs: 0 } };
const dirs: string[] = [];
const pools: Pool[] = [];

afterEach(async () => {
  for (const pool of pools.splice(0)) await pool.close().catch(() => undefined);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-log-'));
  dirs.push(dir);
  return dir;
}

async function newPool(): Promise<Pool> {
  const pool = await Pool.create(path.join(tempDir(), 'pool'), {}, quiet);
  pools.push(pool);
  return pool;
}

/** Opens a copy of an open pool's directory, as a restart after a SIGKILL would find it. */
async function openCrashCopy(pool: Pool, damage?: (logDir: string) => void): Promise<Pool> {
  const copy = path.join(tempDir(), 'pool');
  fs.cpSync(pool.directory, copy, { recursive: true });
  fs.rmSync(path.join(copy, 'strata.lock'), { force: true });
  damage?.(path.join(copy, 'log'));
  const opened = await Pool.open(copy, quiet);
  pools.push(opened);
  return opened;
}

function segments(logDir: string): string[] {
  return fs.readdirSync(logDir).sort().map((name) => path.join(logDir, name));
}

describe('the write log after a crash', () => {
  it('replays writes, trims and zeroes that were never destaged', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 4 * MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, seededBytes(2 * MiB, 1));
    await pool.flush();
    await disk.write(MiB, seededBytes(MiB, 2));
    await disk.write(3 * MiB + 100, seededBytes(5000, 3));
    await disk.trim(0, 256 * KiB);
    await disk.writeZeroes(512 * KiB, 64 * KiB, { allocate: true });
    await disk.flush();
    const expected = await disk.read(0, 4 * MiB);
    const copy = await openCrashCopy(pool);
    expect((await copy.openVolume('v').read(0, 4 * MiB)).equals(expected)).toBe(true);
    expect((await copy.stats()).dirtyBytes).toBeGreaterThan(0);
    await copy.flush();
    expect((await copy.stats()).dirtyBytes).toBe(0);
    expect((await copy.openVolume('v').read(0, 4 * MiB)).equals(expected)).toBe(true);
    expect((await copy.check({ deep: true })).issues).toEqual([]);
  });

  it('cuts off a torn tail and keeps every record before it', async () => {
    const pool = await newPool();
    await pool.createVolume('v', MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, seededBytes(64 * KiB, 4));
    await disk.write(64 * KiB, seededBytes(64 * KiB, 5));
    await disk.flush();
    const copy = await openCrashCopy(pool, (logDir) => {
      const last = segments(logDir).at(-1)!;
      fs.truncateSync(last, fs.statSync(last).size - 100);
    });
    const read = copy.openVolume('v');
    expect((await read.read(0, 64 * KiB)).equals(seededBytes(64 * KiB, 4))).toBe(true);
    expect((await read.read(64 * KiB, 64 * KiB)).every((byte) => byte === 0)).toBe(true);
    // New records go after the cut: written, logged and replayed again.
    await read.write(64 * KiB, seededBytes(64 * KiB, 6), { fua: true });
    const again = await openCrashCopy(copy);
    expect((await again.openVolume('v').read(64 * KiB, 64 * KiB)).equals(seededBytes(64 * KiB, 6))).toBe(true);
  });

  it('does not replay a record whose bytes fail their CRC-32', async () => {
    const pool = await newPool();
    await pool.createVolume('v', MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, seededBytes(64 * KiB, 7), { fua: true });
    const copy = await openCrashCopy(pool, (logDir) => {
      const file = segments(logDir).at(-1)!;
      const data = fs.readFileSync(file);
      data[data.length - 10] ^= 0xff;
      fs.writeFileSync(file, data);
    });
    expect((await copy.openVolume('v').read(0, 64 * KiB)).every((byte) => byte === 0)).toBe(true);
  });

  it('reads a block from the log only when it matches its CRC-32', async () => {
    const pool = await newPool();
    await pool.createVolume('v', MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, seededBytes(64 * KiB, 8), { fua: true });
    const file = segments(path.join(pool.directory, 'log')).at(-1)!;
    const data = fs.readFileSync(file);
    data[data.length - 10] ^= 0xff;
    fs.writeFileSync(file, data);
    await expect(disk.read(0, 64 * KiB)).rejects.toMatchObject({ code: 'STRATA_E_CHECKSUM' });
    expect((await disk.read(0, 32 * KiB)).equals(seededBytes(64 * KiB, 8).subarray(0, 32 * KiB))).toBe(true);
  });

  it('does not bring back writes a rollback or a deletion threw away', async () => {
    const pool = await newPool();
    await pool.createVolume('v', MiB);
    await pool.createVolume('gone', MiB);
    const disk = pool.openVolume('v');
    await disk.write(0, seededBytes(64 * KiB, 9));
    await pool.createSnapshot('v', 's');
    await disk.write(0, seededBytes(64 * KiB, 10), { fua: true });
    await pool.openVolume('gone').write(0, seededBytes(64 * KiB, 11), { fua: true });
    await pool.rollback('v', 's');
    await pool.deleteVolume('gone');
    await pool.createVolume('new', MiB);
    await pool.openVolume('new').write(64 * KiB, seededBytes(4 * KiB, 12), { fua: true });
    const copy = await openCrashCopy(pool);
    expect((await copy.openVolume('v').read(0, 64 * KiB)).equals(seededBytes(64 * KiB, 9))).toBe(true);
    expect(copy.listVolumes().map((volume) => volume.name)).toEqual(['new', 'v']);
    const fresh = copy.openVolume('new');
    expect((await fresh.read(0, 64 * KiB)).every((byte) => byte === 0)).toBe(true);
    expect((await fresh.read(64 * KiB, 4 * KiB)).equals(seededBytes(4 * KiB, 12))).toBe(true);
    expect((await copy.check({ deep: true })).issues).toEqual([]);
  });

  it('is deleted segment by segment as destage catches up, and empty after a clean close', async () => {
    const pool = await newPool();
    await pool.createVolume('v', 8 * MiB);
    const disk = pool.openVolume('v');
    const logDir = path.join(pool.directory, 'log');
    await disk.write(0, seededBytes(MiB, 13));
    expect(segments(logDir).length).toBe(1);
    await pool.flush();
    await disk.write(MiB, seededBytes(MiB, 14));
    await pool.flush();
    expect(segments(logDir).length).toBeLessThanOrEqual(1);
    await pool.close();
    expect(segments(logDir)).toEqual([]);
    const again = await Pool.open(pool.directory, quiet);
    pools.push(again);
    expect((await again.openVolume('v').read(0, 2 * MiB)).equals(Buffer.concat([seededBytes(MiB, 13), seededBytes(MiB, 14)]))).toBe(true);
  });
});
