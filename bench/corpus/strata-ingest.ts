/*
 * Strata's side of the corpus benchmark: import every image into one fresh pool with
 * the same code path as `strata volume import` (all-zero areas skipped, data written
 * through the block device API and flushed), then report the bytes it occupies: pack
 * files plus metadata, as `du` would count them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { dataPieces, importImage } from './raw-image.js';
import { Pool, type PoolPolicyOptions, type PoolTuning } from '../../src/engine/index.js';

export interface StrataIngestResult {
  readonly policy: Required<PoolPolicyOptions>;
  readonly ingestMs: number;
  /** Pack files plus metadata files, in allocated bytes. */
  readonly storedBytes: number;
  readonly packBytes: number;
  readonly metadataBytes: number;
  readonly uniqueBytes: number;
  readonly referencedBytes: number;
}

function allocatedBytes(file: string): number {
  const stat = fs.statSync(file);
  return stat.blocks * 512;
}

function directoryBytes(dir: string): number {
  let total = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? directoryBytes(full) : allocatedBytes(full);
  }
  return total;
}

export async function ingestStrata(
  images: string[],
  workDir: string,
  policy: Required<PoolPolicyOptions>,
  tuning: Partial<PoolTuning> = {},
): Promise<StrataIngestResult> {
  const dir = fs.mkdtempSync(path.join(workDir, 'strata-'));
  try {
    // Timed like the peers' runs (borg create, restic backup): the imports, each flushed,
    // and closing the pool; not creating it (their repository init is not timed either)
    // nor the statistics read afterwards.
    const pool = await Pool.create(dir, policy, { tuning: { compactIntervalMs: 0, ...tuning } });
    let stats;
    let ingestMs = 0;
    try {
      const start = performance.now();
      // Where the images hold data, asked before the pool grows (a process spawned from
      // a large one costs more).
      const pieces = await Promise.all(images.map((image) => dataPieces(image)));
      for (const [index, image] of images.entries()) {
        const name = path.basename(image).replace(/\.img$/, '');
        await pool.createVolume(name, fs.statSync(image).size);
        await importImage(image, pool.openVolume(name), () => undefined, pieces[index]);
      }
      ingestMs = performance.now() - start;
      stats = await pool.stats();
    } finally {
      const closing = performance.now();
      await pool.close();
      ingestMs += performance.now() - closing;
    }
    const packBytes = directoryBytes(path.join(dir, 'packs'));
    const storedBytes = directoryBytes(dir);
    return {
      policy,
      ingestMs,
      storedBytes,
      packBytes,
      metadataBytes: storedBytes - packBytes,
      uniqueBytes: stats.uniqueBytes,
      referencedBytes: stats.referencedBytes,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
