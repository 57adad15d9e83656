/*
 * Snapshot create and delete cost as volumes grow. DESIGN.md promises O(1) create and
 * delete in time proportional to the blocks changed in the snapshot's interval, never
 * to volume size. To reach 100 GiB of written data without hashing 100 GiB, the extent
 * map is filled through the MetaStore directly: one row per 64 KiB block, all pointing
 * at one stored chunk — exactly what writing the same block everywhere leaves behind
 * (the pool passes check). Changes between snapshots are real writes.
 */
import * as path from 'node:path';
import { SqliteMetaStore } from '../src/meta/index.js';
import { Pool } from '../src/engine/index.js';
import { fmt, GiB, median, printTable, sampleData, timed, withScratch } from './support.js';

const blockSize = 64 * 1024;
const tuning = { compactIntervalMs: 0, writebackDelayMs: 0 };
const fillBatchRows = 100_000;

async function buildPool(dir: string, writtenBytes: number): Promise<Pool> {
  const pool = await Pool.create(dir, { blockSize }, { tuning });
  await pool.createVolume('v', writtenBytes);
  await pool.openVolume('v').write(0, sampleData(0, blockSize), { fua: true });
  await pool.close();
  const meta = SqliteMetaStore.open(path.join(dir, 'meta.sqlite'));
  try {
    const volume = (await meta.getVolumeByName('v'))!;
    const [row] = await meta.readExtents(volume.id, 0, 1, volume.headGen);
    const blocks = writtenBytes / blockSize;
    for (let first = 1; first < blocks; first += fillBatchRows) {
      const count = Math.min(fillBatchRows, blocks - first);
      const extentWrites = Array.from({ length: count }, (_, i) => ({ volumeId: volume.id, block: first + i, birth: 1, chunk: row.chunk }));
      await meta.commit({ extentWrites, refDeltas: new Map([[row.chunk as number, count]]) });
    }
  } finally {
    await meta.close();
  }
  return Pool.open(dir, { tuning });
}

/** Writes `count` distinct blocks spread over the volume, then flushes. */
async function change(pool: Pool, count: number, salt: number): Promise<void> {
  const disk = pool.openVolume('v');
  const stride = Math.floor(disk.sizeBytes / blockSize / count);
  for (let i = 0; i < count; i += 1) await disk.write(i * stride * blockSize, sampleData((i + salt) * 4099, blockSize));
  await disk.flush();
}

async function measure(writtenBytes: number, changed: number): Promise<Record<string, string>> {
  return withScratch('snapshots', async (dir) => {
    const pool = await buildPool(path.join(dir, 'pool'), writtenBytes);
    try {
      const creates: number[] = [];
      for (let i = 0; i < 5; i += 1) {
        await change(pool, 10, i * 100);
        creates.push((await timed(() => pool.createSnapshot('v', `c${i}`))).ms);
      }
      await change(pool, changed, 1000);
      await pool.createSnapshot('v', 'after');
      const removal = await timed(() => pool.deleteSnapshot('v', 'c4'));
      return {
        'written data': `${writtenBytes / GiB} GiB`,
        'extent rows': String(writtenBytes / blockSize),
        'create (median of 5)': `${fmt.ms(median(creates))} ms`,
        'blocks changed': String(changed),
        delete: `${fmt.ms(removal.ms)} ms`,
      };
    } finally {
      await pool.close();
    }
  });
}

export async function benchSnapshots(sizesGiB = [1, 10, 100]): Promise<void> {
  const rows = [];
  for (const size of sizesGiB) rows.push(await measure(size * GiB, 1000));
  for (const changed of [100, 10_000]) rows.push(await measure(sizesGiB[1] * GiB, changed));
  printTable('Snapshot create and delete (64 KiB blocks; delete = snapshot whose interval holds the changed blocks)', rows);
}
