/*
 * Shared pieces of the benchmarks: timing, a scratch directory that is always removed,
 * table printing, and realistic sample data (bytes of the running node binary, which
 * compress and dedup like ordinary executables do).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

export const MiB = 1024 * 1024;

/** True when a command is on the PATH (benchmarks skip a peer that is missing). */
export function have(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
export const GiB = 1024 * MiB;

export function cacheDir(): string {
  return process.env.STRATA_BENCH_CACHE ?? path.join(os.homedir(), '.cache', 'strata-bench');
}

export async function withScratch<T>(label: string, body: (dir: string) => Promise<T>): Promise<T> {
  fs.mkdirSync(cacheDir(), { recursive: true });
  const dir = fs.mkdtempSync(path.join(cacheDir(), `scratch-${label}-`));
  try {
    return await body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Writes and deletes a scratch file of `bytes` in `dir`, so the next run writes into
 * page-cache memory the machine has used before. On a VM whose host hands memory out
 * lazily (as here), the first touch of a page costs far more than the write itself (a
 * 1 MiB write loop into never-used memory ran at 3 s/GiB, into recycled memory at
 * 0.25 s/GiB): without this, that cost falls on whichever tool runs first.
 */
export function warmPageCache(dir: string, bytes: number): void {
  const file = path.join(dir, 'page-cache-warm-up');
  const piece = Buffer.alloc(MiB);
  const fd = fs.openSync(file, 'w');
  try {
    for (let at = 0; at < bytes; at += MiB) fs.writeSync(fd, piece, 0, MiB, at);
    // Written back before it is deleted: otherwise the flusher is still writing it out
    // while the next tool runs.
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
    fs.rmSync(file, { force: true });
  }
}

export async function timed<T>(body: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await body();
  return { ms: performance.now() - start, value };
}

let sample: Buffer | null = null;

/** `length` bytes of real executable content starting at `offset` (wrapping around). */
export function sampleData(offset: number, length: number): Buffer {
  sample ??= fs.readFileSync(process.execPath);
  const out = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const from = (offset + filled) % sample.length;
    filled += sample.copy(out, filled, from, Math.min(sample.length, from + length - filled));
  }
  return out;
}

/** The middle value (the upper one of an even count). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function printTable(title: string, rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padStart(i === 0 ? 0 : widths[i]).padEnd(i === 0 ? widths[i] : 0)).join('  ');
  console.log(`\n## ${title}\n`);
  console.log(line(columns));
  for (const row of rows) console.log(line(columns.map((c) => String(row[c]))));
}

export const fmt = {
  mbps: (bytes: number, ms: number) => (bytes / MiB / (ms / 1000)).toFixed(1),
  iops: (ops: number, ms: number) => Math.round(ops / (ms / 1000)).toString(),
  ms: (ms: number) => ms.toFixed(2),
  mib: (bytes: number) => (bytes / MiB).toFixed(1),
  ratio: (value: number) => `${value.toFixed(2)}x`,
};

/** Deterministic pseudo-random offsets. */
export function* randomOffsets(count: number, span: number, align: number, seed = 1): Generator<number> {
  let state = seed;
  for (let i = 0; i < count; i += 1) {
    state = (state * 1103515245 + 12345) % 2147483648;
    yield Math.floor((state / 2147483648) * (span / align)) * align;
  }
}
