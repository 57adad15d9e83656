/*
 * Opening a pool finishes work a crash interrupted: multi-batch deletions and
 * rollbacks leave a record in the pool table together with their first visible step,
 * and the next open completes them. Pack bytes no metadata references are cut away.
 * The interrupted states are made directly through the MetaStore, as a crash between
 * two batches would leave them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../meta/index.js';
import { Pool } from './index.js';

const KiB = 1024;
const quiet = { tuning: { compactIntervalMs: 0, compactGraceMs: 0, writebackDelayMs: 0 } };
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function poolWithData(): Promise<string> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-recovery-'));
  dirs.push(dir);
  const pool = await Pool.create(dir, {}, quiet);
  await pool.createVolume('keep', 64 * KiB);
  await pool.createVolume('gone', 64 * KiB);
  await pool.openVolume('keep').write(0, Buffer.alloc(64 * KiB, 1));
  await pool.openVolume('gone').write(0, Buffer.alloc(64 * KiB, 2));
  await pool.createSnapshot('keep', 's');
  await pool.openVolume('keep').write(0, Buffer.alloc(16 * KiB, 3));
  await pool.close();
  return dir;
}

async function interrupt(dir: string, step: (meta: SqliteMetaStore, ids: Map<string, number>) => Promise<void>): Promise<void> {
  const meta = SqliteMetaStore.open(path.join(dir, 'meta.sqlite'));
  try {
    const ids = new Map((await meta.listVolumes()).map((volume) => [volume.name, volume.id]));
    await step(meta, ids);
  } finally {
    await meta.close();
  }
}

describe('opening a pool after a crash', () => {
  it('finishes deleting a volume whose deletion was interrupted', async () => {
    const dir = await poolWithData();
    await interrupt(dir, async (meta, ids) => {
      const id = ids.get('gone')!;
      await meta.commit({ volumeUpdates: [{ id, name: `.deleting-${id}` }], poolValues: [{ key: `delete:${id}`, value: '{}' }] });
    });
    const pool = await Pool.open(dir, quiet);
    try {
      expect(pool.listVolumes().map((v) => v.name)).toEqual(['keep']);
      expect((await pool.stats()).uniqueBytes).toBe(4 * KiB * 2);
      expect((await pool.check({ deep: true })).issues).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('finishes a rollback that was interrupted', async () => {
    const dir = await poolWithData();
    await interrupt(dir, async (meta, ids) => {
      await meta.commit({ poolValues: [{ key: `rollback:${ids.get('keep')}`, value: JSON.stringify({ gen: 1 }) }] });
    });
    const pool = await Pool.open(dir, quiet);
    try {
      expect((await pool.openVolume('keep').read(0, 64 * KiB)).every((b) => b === 1)).toBe(true);
      expect((await pool.check({ deep: true })).issues).toEqual([]);
    } finally {
      await pool.close();
    }
  });

  it('cuts pack bytes no metadata references and removes unknown pack files', async () => {
    const dir = await poolWithData();
    const packs = path.join(dir, 'packs');
    const [first] = fs.readdirSync(packs);
    const before = fs.statSync(path.join(packs, first)).size;
    fs.appendFileSync(path.join(packs, first), Buffer.alloc(5000, 9));
    fs.writeFileSync(path.join(packs, 'pack-99999999.pack'), Buffer.alloc(100));
    const pool = await Pool.open(dir, quiet);
    try {
      expect(fs.statSync(path.join(packs, first)).size).toBe(before);
      expect(fs.existsSync(path.join(packs, 'pack-99999999.pack'))).toBe(false);
      expect((await pool.check({ deep: true })).issues).toEqual([]);
    } finally {
      await pool.close();
    }
  });
});
