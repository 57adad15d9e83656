/**
 * peers.ts - measure peer dedup tools (borg, restic) on the benchmark corpus.
 *
 * Design note
 * -----------
 * Strata's dedup + compression figures only mean something next to what
 * established tools achieve on the *same* input.  This module ingests a list
 * of disk images (normally the ext4 images from build-images.sh) into a fresh
 * repository of each peer tool/variant and records two numbers per variant:
 *
 *   storedBytes  disk usage of the repository directory after ingest
 *                (allocated blocks, like `du --block-size=1 -s`);
 *   ingestMs     wall time of the backup commands only (not `init`).
 *
 * Variants:
 *   borg 1.2   `--compression lz4` (borg's default), `--encryption=none`, with
 *              the chunkers `fixed,4096`, `fixed,65536` and the default
 *              content-defined `buzhash,19,23,21,4095`.  One archive per image,
 *              mimicking "import several disks" into one store.
 *   restic     repository format version 2 (the first with compression),
 *              `--compression auto`; restic always encrypts (fixed dummy
 *              password).  One snapshot per image.
 *
 * Images are read as plain files; holes of sparse images are read as zeros,
 * which both tools dedup to a single chunk.  Before measuring, every image is
 * read once so that all variants see an equally warm page cache.
 *
 * Every repository lives in its own temporary directory below `workDir` with
 * the tool's cache/config directories (BORG_BASE_DIR, RESTIC_CACHE_DIR) next
 * to it, and is deleted afterwards.  Processes are spawned with argument
 * arrays (never through a shell), always awaited, and killed (SIGTERM, then
 * SIGKILL) when the caller aborts or a command times out.
 *
 * A missing or too old tool yields `available: false` with the Debian package
 * to install in `reason`; it never throws.  A tool that is present but fails
 * (e.g. disk full) does throw, since its figures would be meaningless.
 *
 * Standalone:  npx tsx bench/corpus/peers.ts [--json] [--work-dir DIR] IMG...
 */

import { spawn } from "node:child_process";
import { createReadStream } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";

/** One measured (or unavailable) peer tool variant. */
export interface PeerResult {
  tool: string;
  variant: string;
  storedBytes: number;
  ingestMs: number;
  available: boolean;
  reason?: string;
  /** Version string reported by the tool, when it could be run. */
  version?: string;
}

export interface MeasureOptions {
  /** Aborting kills the running tool, removes its repository and rejects. */
  signal?: AbortSignal;
  /** Progress messages (default: none). */
  log?: (message: string) => void;
  /** Limit for any single tool command (default: 2 hours). */
  commandTimeoutMs?: number;
  /** Read every image once before measuring (default: true). */
  warmCache?: boolean;
  /** Runs before each tool variant is measured (the benchmark warms page-cache memory). */
  beforeEach?: () => void;
}

/** borg chunker variants, in measuring order. */
export const BORG_CHUNKERS = ["fixed,4096", "fixed,65536", "buzhash,19,23,21,4095"] as const;

const BORG_PACKAGE = "borgbackup";
const RESTIC_PACKAGE = "restic";
const DEFAULT_TIMEOUT_MS = 2 * 60 * 60 * 1000;
const KILL_GRACE_MS = 10_000;
const OUTPUT_TAIL_BYTES = 64 * 1024;

// ---------------------------------------------------------------------------
// Process handling

/** The tool's executable does not exist (spawn ENOENT). */
class ToolMissingError extends Error {}

interface RunResult {
  stdout: string;
  stderr: string;
}

interface RunOptions {
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  timeoutMs: number;
}

/** Keep only the last `limit` bytes of a stream's output. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit: number) {}
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0].length >= this.limit) {
      this.size -= this.chunks[0].length;
      this.chunks.shift();
    }
  }
  toString(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString("utf8");
  }
}

/**
 * Run `cmd args...` without a shell and resolve once it has exited (the
 * 'close' event, so the process is really gone).  Rejects on a non-zero exit,
 * on abort or timeout (after killing the process), and with ToolMissingError
 * when the executable is not found.
 */
function run(cmd: string, args: string[], opts: RunOptions): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    if (opts.signal?.aborted) {
      reject(abortError(opts.signal));
      return;
    }
    const child = spawn(cmd, args, { env: opts.env, stdio: ["ignore", "pipe", "pipe"] });
    const stdout = new Tail(OUTPUT_TAIL_BYTES);
    const stderr = new Tail(OUTPUT_TAIL_BYTES);
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));

    let spawnError: NodeJS.ErrnoException | undefined;
    let stopReason: string | undefined;
    let killTimer: NodeJS.Timeout | undefined;

    const stop = (why: string): void => {
      if (stopReason !== undefined) return;
      stopReason = why;
      child.kill("SIGTERM");
      killTimer = setTimeout(() => child.kill("SIGKILL"), KILL_GRACE_MS);
    };
    const onAbort = (): void => stop("aborted");
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    const timeout = setTimeout(() => stop(`timed out after ${opts.timeoutMs} ms`), opts.timeoutMs);

    child.on("error", (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.on("close", (code, signal) => {
      clearTimeout(timeout);
      if (killTimer) clearTimeout(killTimer);
      opts.signal?.removeEventListener("abort", onAbort);
      const shown = [cmd, ...args].join(" ");
      if (spawnError?.code === "ENOENT") {
        reject(new ToolMissingError(`${cmd}: not found`));
      } else if (spawnError) {
        reject(new Error(`${shown}: ${spawnError.message}`));
      } else if (stopReason === "aborted" && opts.signal) {
        reject(abortError(opts.signal));
      } else if (stopReason !== undefined) {
        reject(new Error(`${shown}: ${stopReason}\n${stderr.toString()}`));
      } else if (code !== 0) {
        const how = signal ? `killed by ${signal}` : `exit code ${code}`;
        reject(new Error(`${shown}: ${how}\n${stderr.toString()}`));
      } else {
        resolvePromise({ stdout: stdout.toString(), stderr: stderr.toString() });
      }
    });
  });
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error("measurement aborted");
}

/** Milliseconds taken by `fn`. */
async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** The parent's environment without any BORG_* / RESTIC_* settings. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith("BORG_") && !key.startsWith("RESTIC_")) env[key] = value;
  }
  return { ...env, LC_ALL: "C.UTF-8", ...extra };
}

// ---------------------------------------------------------------------------
// File-system helpers

/** Allocated bytes of a tree (st_blocks * 512, hard links counted once), like du. */
export async function diskUsage(path: string): Promise<number> {
  const seen = new Set<string>();
  const walk = async (p: string): Promise<number> => {
    const st = await lstat(p);
    if (st.nlink > 1 && !st.isDirectory()) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return 0;
      seen.add(key);
    }
    let total = st.blocks * 512;
    if (st.isDirectory()) {
      for (const entry of await readdir(p)) total += await walk(join(p, entry));
    }
    return total;
  };
  return walk(path);
}

/** Read a file to the end and discard it (warms the page cache). */
export function readThrough(path: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const stream = createReadStream(path, { highWaterMark: 1 << 20, signal });
    stream.on("data", () => undefined);
    stream.on("error", reject);
    stream.on("end", () => resolvePromise());
  });
}

/** A borg archive name for image number `index`. */
function archiveName(image: string, index: number): string {
  return `${String(index + 1).padStart(2, "0")}-${basename(image).replace(/[^A-Za-z0-9._-]/g, "_")}`;
}

/** Create a fresh scratch directory below workDir, run fn in it, always remove it. */
async function withScratch<T>(workDir: string, prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  await mkdir(workDir, { recursive: true });
  const dir = await mkdtemp(join(workDir, `${prefix}-`));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Tool probing

interface Probe {
  version?: string;
  reason?: string;
}

/** Parse "1.2.4" out of a version line; undefined if absent. */
function parseVersion(text: string): number[] | undefined {
  const m = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function atLeast(v: number[], min: number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    if ((v[i] ?? 0) !== min[i]) return (v[i] ?? 0) > min[i];
  }
  return true;
}

/** Run the tool's version command; report why it is unusable, if it is. */
async function probe(
  cmd: string,
  args: string[],
  pkg: string,
  min: number[],
  opts: RunOptions,
): Promise<Probe> {
  let out: RunResult;
  try {
    out = await run(cmd, args, opts);
  } catch (err) {
    if (err instanceof ToolMissingError) {
      return { reason: `${cmd} not found: install the Debian package '${pkg}'` };
    }
    if (opts.signal?.aborted) throw err;
    return { reason: `${cmd} does not run (${(err as Error).message.split("\n")[0]}); reinstall '${pkg}'` };
  }
  const line = (out.stdout || out.stderr).trim().split("\n")[0];
  const version = parseVersion(line);
  if (!version || !atLeast(version, min)) {
    return { version: line, reason: `${cmd} ${min.join(".")} or newer needed, found '${line}' (Debian package '${pkg}')` };
  }
  return { version: line };
}

// ---------------------------------------------------------------------------
// Measurements

async function measureBorg(
  images: string[],
  workDir: string,
  chunker: string,
  opts: Required<Pick<MeasureOptions, "commandTimeoutMs">> & MeasureOptions,
): Promise<{ storedBytes: number; ingestMs: number }> {
  return withScratch(workDir, `borg-${chunker.replace(/[^A-Za-z0-9]+/g, "_")}`, async (dir) => {
    const repo = join(dir, "repo");
    const env = cleanEnv({
      // Keep borg's cache, config and security dirs inside the scratch dir.
      BORG_BASE_DIR: join(dir, "home"),
      BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes",
      BORG_RELOCATED_REPO_ACCESS_IS_OK: "yes",
      BORG_CHECK_I_KNOW_WHAT_I_AM_DOING: "NO",
      BORG_DELETE_I_KNOW_WHAT_I_AM_DOING: "NO",
    });
    const runOpts: RunOptions = { env, signal: opts.signal, timeoutMs: opts.commandTimeoutMs };
    await run("borg", ["init", "--encryption=none", repo], runOpts);
    let ingestMs = 0;
    for (const [i, image] of images.entries()) {
      opts.log?.(`borg ${chunker}: ${basename(image)}`);
      ingestMs += await timed(() =>
        run(
          "borg",
          ["create", "--compression", "lz4", "--chunker-params", chunker, `${repo}::${archiveName(image, i)}`, image],
          runOpts,
        ),
      );
    }
    return { storedBytes: await diskUsage(repo), ingestMs };
  });
}

async function measureRestic(
  images: string[],
  workDir: string,
  opts: Required<Pick<MeasureOptions, "commandTimeoutMs">> & MeasureOptions,
): Promise<{ storedBytes: number; ingestMs: number }> {
  return withScratch(workDir, "restic", async (dir) => {
    const repo = join(dir, "repo");
    const env = cleanEnv({
      RESTIC_REPOSITORY: repo,
      RESTIC_PASSWORD: "strata-bench", // restic always encrypts; the key is irrelevant here
      RESTIC_CACHE_DIR: join(dir, "cache"),
    });
    const runOpts: RunOptions = { env, signal: opts.signal, timeoutMs: opts.commandTimeoutMs };
    await run("restic", ["init", "--repository-version", "2"], runOpts);
    let ingestMs = 0;
    for (const image of images) {
      opts.log?.(`restic: ${basename(image)}`);
      ingestMs += await timed(() =>
        run(
          "restic",
          ["backup", "--quiet", "--compression", "auto", "--host", "strata-bench", "--tag", basename(image), image],
          runOpts,
        ),
      );
    }
    return { storedBytes: await diskUsage(repo), ingestMs };
  });
}

/**
 * Ingest `images` with every peer tool variant, each into a fresh repository
 * below `workDir` (removed afterwards), and report stored bytes and ingest time.
 */
export async function measurePeers(
  images: string[],
  workDir: string,
  options: MeasureOptions = {},
): Promise<PeerResult[]> {
  const opts = {
    ...options,
    commandTimeoutMs: options.commandTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    warmCache: options.warmCache ?? true,
  };
  const paths = images.map((p) => resolve(p));
  for (const p of paths) {
    if (!(await stat(p)).isFile()) throw new Error(`${p}: not a regular file`);
  }
  const root = resolve(workDir);

  if (opts.warmCache) {
    for (const p of paths) {
      opts.log?.(`warming page cache: ${basename(p)}`);
      await readThrough(p, opts.signal);
    }
  }

  const probeOpts: RunOptions = { env: cleanEnv({}), signal: opts.signal, timeoutMs: 60_000 };
  const results: PeerResult[] = [];

  // borg: fixed chunkers need 1.2.
  const borg = await probe("borg", ["--version"], BORG_PACKAGE, [1, 2], probeOpts);
  for (const chunker of BORG_CHUNKERS) {
    const variant = `${chunker} lz4`;
    if (borg.reason) {
      results.push({ tool: "borg", variant, storedBytes: 0, ingestMs: 0, available: false, reason: borg.reason, version: borg.version });
      continue;
    }
    opts.beforeEach?.();
    const m = await measureBorg(paths, root, chunker, opts);
    results.push({ tool: "borg", variant, ...m, available: true, version: borg.version });
  }

  // restic: repository format 2 (compression) needs 0.14.
  const restic = await probe("restic", ["version"], RESTIC_PACKAGE, [0, 14], probeOpts);
  const resticVariant = "cdc(1MiB avg) zstd auto, repo v2";
  if (restic.reason) {
    results.push({ tool: "restic", variant: resticVariant, storedBytes: 0, ingestMs: 0, available: false, reason: restic.reason, version: restic.version });
  } else {
    opts.beforeEach?.();
    const m = await measureRestic(paths, root, opts);
    results.push({ tool: "restic", variant: resticVariant, ...m, available: true, version: restic.version });
  }
  return results;
}

/** One borg chunker variant alone (the benchmark's head-to-head rounds). */
export async function measureBorgVariant(
  images: string[],
  workDir: string,
  chunker: string,
  options: MeasureOptions = {},
): Promise<{ storedBytes: number; ingestMs: number }> {
  return measureBorg(images.map((p) => resolve(p)), resolve(workDir), chunker, { ...options, commandTimeoutMs: options.commandTimeoutMs ?? DEFAULT_TIMEOUT_MS });
}

// ---------------------------------------------------------------------------
// Standalone use

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => r.map((cell, c) => (c === 0 || c === 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  "))
    .join("\n");
}

async function main(argv: string[]): Promise<number> {
  let json = false;
  let workDir = join(process.env.STRATA_BENCH_CACHE || join(homedir(), ".cache", "strata-bench"), "peers");
  let help = false;
  const images: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--json") json = true;
    else if (a === "--work-dir") workDir = argv[++i] ?? "";
    else if (a === "-h" || a === "--help") help = true;
    else images.push(a);
  }
  if (help || images.length === 0 || !workDir) {
    process.stderr.write("usage: npx tsx bench/corpus/peers.ts [--json] [--work-dir DIR] IMAGE...\n");
    return 2;
  }

  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\n${sig}: stopping the running tool and cleaning up...\n`);
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  // An interrupted run exits 130 once the tool is gone and its repo removed.
  controller.signal.addEventListener("abort", () => (process.exitCode = 130), { once: true });

  const log = (m: string): void => void process.stderr.write(`[peers] ${m}\n`);
  const inputs = await Promise.all(
    images.map(async (p) => ({ path: p, size: (await stat(p)).size, used: await diskUsage(p) })),
  );
  const results = await measurePeers(images, workDir, { signal: controller.signal, log });

  if (json) {
    process.stdout.write(JSON.stringify({ images: inputs, results }, null, 2) + "\n");
    return 0;
  }
  const totalSize = inputs.reduce((s, x) => s + x.size, 0);
  const totalUsed = inputs.reduce((s, x) => s + x.used, 0);
  const imageRows = [["image", "", "size MiB", "used bytes", "used MiB"]];
  for (const x of inputs) imageRows.push([basename(x.path), "", mib(x.size), String(x.used), mib(x.used)]);
  imageRows.push(["total", "", mib(totalSize), String(totalUsed), mib(totalUsed)]);
  process.stdout.write(table(imageRows) + "\n\n");

  const rows = [["tool", "variant", "stored bytes", "stored MiB", "stored/used", "ingest s", "MiB/s (size)"]];
  for (const r of results) {
    if (!r.available) {
      rows.push([r.tool, r.variant, "-", "-", "-", "-", `unavailable: ${r.reason ?? ""}`]);
      continue;
    }
    rows.push([
      r.tool,
      r.variant,
      String(r.storedBytes),
      mib(r.storedBytes),
      (r.storedBytes / totalUsed).toFixed(3),
      (r.ingestMs / 1000).toFixed(1),
      (totalSize / 2 ** 20 / (r.ingestMs / 1000)).toFixed(0),
    ]);
  }
  process.stdout.write(table(rows) + "\n");
  for (const v of new Set(results.map((r) => r.version).filter(Boolean))) log(`version: ${v}`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`peers: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(process.exitCode ?? 1);
    },
  );
}
