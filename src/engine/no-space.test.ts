/*
 * A full file system: a write that cannot be appended to the write log fails with
 * STRATA_E_NO_SPACE; logged writes that cannot be destaged stay in the log, readable,
 * and come back at the next open; everything acknowledged stays intact. With injected
 * faults in the pool's file operations (all of them, or the packs' only), and once on a
 * real, tiny tmpfs (needs root and mount; skipped loudly otherwise).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { seededBytes } from '../../test/helpers/data.js';
import { nodeFileIo, type FileIo } from '../chunks/index.js';
import { Pool } from './index.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const quiet = { compactIntervalMs: 0, compactGraceMs: 0, writebackDelayMs: 0 };
const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      cleanup();
    } catch {
      // best effort
    }
  }
});

describe('a full file system', () => {
  it('fails a write that cannot be logged with STRATA_E_NO_SPACE, keeps what was acknowledged, and succeeds once space returns', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-nospace-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    let full = false;
    const io: FileIo = {
      ...nodeFileIo,
      writev: (...args) => {
        if (full) return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
        return nodeFileIo.writev(...args);
      },
    };
    const pool = await Pool.create(dir, { compression: 'none' }, { tuning: quiet, io });
    try {
      await pool.createVolume('v', 4 * MiB);
      const disk = pool.openVolume('v');
      const first = seededBytes(MiB, 1);
      await disk.write(0, first, { fua: true });
      full = true;
      await expect(disk.write(MiB, seededBytes(MiB, 2))).rejects.toMatchObject({ code: 'STRATA_E_NO_SPACE' });
      await expect(disk.write(2 * MiB, seededBytes(4 * KiB, 3), { fua: true })).rejects.toMatchObject({ code: 'STRATA_E_NO_SPACE' });
      await expect(pool.flush()).rejects.toMatchObject({ code: 'STRATA_E_NO_SPACE' });
      await disk.flush();
      expect((await disk.read(0, MiB)).equals(first)).toBe(true);
      expect((await disk.read(MiB, MiB)).every((byte) => byte === 0)).toBe(true);
      full = false;
      const second = seededBytes(MiB, 2);
      await disk.write(MiB, second);
      await pool.flush();
      expect((await pool.stats()).dirtyBytes).toBe(0);
      expect((await disk.read(MiB, MiB)).equals(second)).toBe(true);
      expect((await pool.check({ deep: true })).issues).toEqual([]);
    } finally {
      await pool.close();
    }
    const again = await Pool.open(dir, { tuning: quiet });
    try {
      const disk = again.openVolume('v');
      expect((await disk.read(0, MiB)).equals(seededBytes(MiB, 1))).toBe(true);
      expect((await disk.read(MiB, MiB)).equals(seededBytes(MiB, 2))).toBe(true);
    } finally {
      await again.close();
    }
  });

  it('keeps logged writes readable and durable when destage cannot append to the packs', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-nospace-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    let packsFull = false;
    const packFds = new Set<number>();
    const io: FileIo = {
      ...nodeFileIo,
      openSync: (file, flags) => {
        const fd = nodeFileIo.openSync(file, flags);
        if (file.includes(`${path.sep}packs${path.sep}`)) packFds.add(fd);
        else packFds.delete(fd);
        return fd;
      },
      writev: (fd, ...rest) => {
        if (packsFull && packFds.has(fd)) return Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' }));
        return nodeFileIo.writev(fd, ...rest);
      },
    };
    const pool = await Pool.create(dir, { compression: 'none' }, { tuning: quiet, io });
    const first = seededBytes(MiB, 4);
    try {
      await pool.createVolume('v', 4 * MiB);
      const disk = pool.openVolume('v');
      packsFull = true;
      await disk.write(0, first, { fua: true });
      await expect(pool.flush()).rejects.toMatchObject({ code: 'STRATA_E_NO_SPACE' });
      expect((await disk.read(0, MiB)).equals(first)).toBe(true);
      expect((await pool.stats()).dirtyBytes).toBeGreaterThan(0);
    } finally {
      await pool.close().catch(() => undefined);
    }
    // The close could not destage either: the log still holds the write, and the next open replays it.
    const again = await Pool.open(dir, { tuning: quiet });
    try {
      expect((await again.openVolume('v').read(0, MiB)).equals(first)).toBe(true);
      await again.flush();
      expect((await again.stats()).dirtyBytes).toBe(0);
      expect((await again.check({ deep: true })).issues).toEqual([]);
    } finally {
      await again.close();
    }
    const third = await Pool.open(dir, { tuning: quiet });
    try {
      expect((await third.openVolume('v').read(0, MiB)).equals(first)).toBe(true);
      expect(fs.readdirSync(path.join(dir, 'log'))).toEqual([]);
    } finally {
      await third.close();
    }
  });

  const canMount = process.getuid?.() === 0 && (() => {
    const probe = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-mount-probe-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
      execFileSync('umount', [probe], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    } finally {
      fs.rmSync(probe, { recursive: true, force: true });
    }
  })();
  if (!canMount) console.warn('SKIPPED: the real-tmpfs ENOSPC test needs root and mount(8) (Debian package: mount)');

  it.runIf(canMount)('on a real tiny tmpfs loses nothing that a flush acknowledged', async () => {
    const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mountPoint]);
    cleanups.push(() => fs.rmSync(mountPoint, { recursive: true, force: true }));
    cleanups.push(() => execFileSync('umount', ['-l', mountPoint]));
    const dir = path.join(mountPoint, 'pool');
    const pool = await Pool.create(dir, { compression: 'none' }, { tuning: quiet, packBytesMax: MiB });
    const acknowledged: number[] = [];
    let failure: unknown = null;
    try {
      await pool.createVolume('v', 64 * MiB);
      const disk = pool.openVolume('v');
      for (let index = 0; index < 64; index += 1) {
        try {
          await disk.write(index * 256 * KiB, seededBytes(256 * KiB, index + 10), { fua: true });
          acknowledged.push(index);
        } catch (error) {
          failure = error;
          break;
        }
      }
      expect(failure).toMatchObject({ code: 'STRATA_E_NO_SPACE' });
      for (const index of acknowledged) {
        expect((await disk.read(index * 256 * KiB, 256 * KiB)).equals(seededBytes(256 * KiB, index + 10))).toBe(true);
      }
    } finally {
      await pool.close().catch(() => undefined);
    }
    expect(acknowledged.length).toBeGreaterThan(4);
    const again = await Pool.open(dir, { tuning: quiet });
    try {
      const disk = again.openVolume('v');
      for (const index of acknowledged) {
        expect((await disk.read(index * 256 * KiB, 256 * KiB)).equals(seededBytes(256 * KiB, index + 10))).toBe(true);
      }
      const report = await again.check({ deep: true });
      expect(report.ok).toBe(true);
    } finally {
      await again.close().catch(() => undefined);
    }
  });
});
