/*
 * In-process engine throughput: sequential and 4 KiB random, read and write, dedup on
 * and off, next to a raw file on the same file system doing the same I/O (pwrite/pread
 * plus fsync at the end), measured in the same run. Ratios are Strata / raw file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Pool } from '../src/engine/index.js';
import { fmt, MiB, printTable, randomOffsets, sampleData, timed, withScratch } from './support.js';

const seqBytes = 256 * MiB;
const ioBytes = MiB;
const randomOps = 20_000;
const tuning = { compactIntervalMs: 0, writebackDelayMs: 0 };

interface Workload {
  write(offset: number, data: Buffer): Promise<void>;
  read(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
}

async function run(target: Workload): Promise<Record<string, number>> {
  const seqWrite = await timed(async () => {
    for (let offset = 0; offset < seqBytes; offset += ioBytes) await target.write(offset, sampleData(offset, ioBytes));
    await target.flush();
  });
  const seqRead = await timed(async () => {
    for (let offset = 0; offset < seqBytes; offset += ioBytes) await target.read(offset, ioBytes);
  });
  const randWrite = await timed(async () => {
    let i = 0;
    for (const offset of randomOffsets(randomOps, seqBytes, 4096, 7)) await target.write(offset, sampleData(i++ * 4096 + 123, 4096));
    await target.flush();
  });
  const randRead = await timed(async () => {
    for (const offset of randomOffsets(randomOps, seqBytes, 4096, 11)) await target.read(offset, 4096);
  });
  return { seqWrite: seqWrite.ms, seqRead: seqRead.ms, randWrite: randWrite.ms, randRead: randRead.ms };
}

async function strata(dir: string, dedup: boolean): Promise<Record<string, number>> {
  const pool = await Pool.create(path.join(dir, `pool-${dedup}`), { dedup }, { tuning });
  try {
    await pool.createVolume('bench', seqBytes);
    const disk = pool.openVolume('bench');
    return await run({
      write: (offset, data) => disk.write(offset, data),
      read: async (offset, length) => void (await disk.read(offset, length)),
      flush: () => disk.flush(),
    });
  } finally {
    await pool.close();
  }
}

async function rawFile(dir: string): Promise<Record<string, number>> {
  const fd = fs.openSync(path.join(dir, 'raw.img'), 'w+');
  try {
    return await run({
      write: async (offset, data) => void fs.writeSync(fd, data, 0, data.length, offset),
      read: async (offset, length) => void fs.readSync(fd, Buffer.allocUnsafe(length), 0, length, offset),
      flush: async () => fs.fdatasyncSync(fd),
    });
  } finally {
    fs.closeSync(fd);
  }
}

export async function benchEngine(): Promise<void> {
  await withScratch('engine', async (dir) => {
    const raw = await rawFile(dir);
    const rows = [];
    for (const dedup of [true, false]) {
      const result = await strata(dir, dedup);
      rows.push(
        { test: `seq write 1 MiB, dedup ${dedup ? 'on' : 'off'}`, strata: `${fmt.mbps(seqBytes, result.seqWrite)} MiB/s`, 'raw file': `${fmt.mbps(seqBytes, raw.seqWrite)} MiB/s`, ratio: fmt.ratio(raw.seqWrite / result.seqWrite) },
        { test: `seq read 1 MiB, dedup ${dedup ? 'on' : 'off'}`, strata: `${fmt.mbps(seqBytes, result.seqRead)} MiB/s`, 'raw file': `${fmt.mbps(seqBytes, raw.seqRead)} MiB/s`, ratio: fmt.ratio(raw.seqRead / result.seqRead) },
        { test: `rand write 4 KiB, dedup ${dedup ? 'on' : 'off'}`, strata: `${fmt.iops(randomOps, result.randWrite)} IOPS`, 'raw file': `${fmt.iops(randomOps, raw.randWrite)} IOPS`, ratio: fmt.ratio(raw.randWrite / result.randWrite) },
        { test: `rand read 4 KiB, dedup ${dedup ? 'on' : 'off'}`, strata: `${fmt.iops(randomOps, result.randRead)} IOPS`, 'raw file': `${fmt.iops(randomOps, raw.randRead)} IOPS`, ratio: fmt.ratio(raw.randRead / result.randRead) },
      );
    }
    printTable('Engine throughput (in process, default policy: 4 KiB blocks, zstd; 256 MiB volume; raw file = pwrite/pread + fdatasync)', rows);
  });
}
