/*
 * NBD data path against the peers, all started here on loopback in the same run:
 * Strata (`strata serve`'s daemon, default policy: dedup, zstd, checksums), qemu-nbd on
 * a raw file and on a qcow2 file, and nbdkit's memory plugin (no storage work at all).
 * fio's nbd engine drives each: sequential 1 MiB write (end_fsync) and read, 4 KiB
 * random read and write at queue depth 32; then nbdcopy copies the export to null:.
 * fio's buffers are random bytes, which neither compress nor dedup: Strata's worst case.
 * Every server is stopped by its PID, even when a run fails.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { GiB, have, MiB, printTable, warmPageCache, withScratch } from '../support.js';

const sizeBytes = Number(process.env.STRATA_BENCH_NBD_BYTES ?? GiB);
const runtimeSeconds = Number(process.env.STRATA_BENCH_NBD_SECONDS ?? 10);
const basePort = 10900;
/** STRATA_BENCH_NBD_SERVERS=strata,raw keeps the servers whose names contain one of these. */
const serverFilter = process.env.STRATA_BENCH_NBD_SERVERS?.split(',') ?? null;

interface Target {
  readonly name: string;
  readonly uri: string;
  readonly start: (dir: string, port: number) => ChildProcess;
}

function startProcess(command: string, args: string[]): ChildProcess {
  return spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      execFileSync('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/disk`], { stdio: 'ignore', timeout: 5000 });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  throw new Error(`nothing answered on port ${port}`);
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    process.kill(child.pid, 'SIGTERM');
  });
}

function targets(): Target[] {
  const list: Target[] = [
    {
      name: 'strata',
      uri: 'disk',
      start: (dir, port) =>
        startProcess(process.execPath, ['--import', 'tsx', path.join('bench', 'nbd', 'strata-server.ts'), path.join(dir, 'data'), String(port), String(sizeBytes)]),
    },
  ];
  if (have('qemu-nbd') && have('qemu-img')) {
    for (const format of ['raw', 'qcow2'] as const) {
      list.push({
        name: `qemu-nbd ${format}`,
        uri: 'disk',
        start: (dir, port) => {
          const file = path.join(dir, `disk.${format}`);
          execFileSync('qemu-img', ['create', '-q', '-f', format, file, String(sizeBytes)]);
          return startProcess('qemu-nbd', ['-t', '-f', format, '-x', 'disk', '-b', '127.0.0.1', '-p', String(port), '--shared=8', '--discard=unmap', file]);
        },
      });
    }
  } else {
    console.log('(qemu-nbd missing: Debian package qemu-utils)');
  }
  if (have('nbdkit')) {
    list.push({ name: 'nbdkit memory', uri: 'disk', start: (_dir, port) => startProcess('nbdkit', ['--foreground', '-i', '127.0.0.1', '-p', String(port), 'memory', String(sizeBytes)]) });
  } else {
    console.log('(nbdkit missing: Debian package nbdkit)');
  }
  return list;
}

interface FioJob {
  readonly key: string;
  readonly args: string[];
}

const jobs: FioJob[] = [
  { key: 'seq write MiB/s', args: ['--rw=write', '--bs=1M', '--iodepth=8', `--size=${sizeBytes}`, '--end_fsync=1'] },
  { key: 'seq read MiB/s', args: ['--rw=read', '--bs=1M', '--iodepth=8', `--size=${sizeBytes}`] },
  { key: '4K rand read IOPS', args: ['--rw=randread', '--bs=4k', '--iodepth=32', `--size=${sizeBytes}`, '--time_based', `--runtime=${runtimeSeconds}`] },
  { key: '4K rand write IOPS', args: ['--rw=randwrite', '--bs=4k', '--iodepth=32', `--size=${sizeBytes}`, '--time_based', `--runtime=${runtimeSeconds}`] },
];

function runFio(uri: string, job: FioJob): number {
  const out = execFileSync('fio', ['--name=bench', '--ioengine=nbd', `--uri=${uri}`, '--output-format=json', ...job.args], { encoding: 'utf8', timeout: 600_000, maxBuffer: 64 * MiB });
  const result = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: { bw_bytes: number; iops: number }; write: { bw_bytes: number; iops: number } }[] };
  const side = job.args.some((arg) => arg.includes('write')) ? result.jobs[0].write : result.jobs[0].read;
  return job.key.includes('IOPS') ? Math.round(side.iops) : side.bw_bytes / MiB;
}

function runNbdcopy(uri: string): number {
  const start = performance.now();
  execFileSync('nbdcopy', [uri, 'null:'], { timeout: 600_000 });
  return sizeBytes / MiB / ((performance.now() - start) / 1000);
}

export async function benchNbd(): Promise<void> {
  for (const tool of ['fio', 'nbdinfo', 'nbdcopy']) {
    if (!have(tool)) return void console.log(`\n## NBD: skipped, ${tool} is missing (Debian packages fio, libnbd-bin)`);
  }
  const results = new Map<string, Record<string, number>>();
  let port = basePort;
  for (const target of targets().filter((t) => serverFilter === null || serverFilter.some((part) => t.name.includes(part)))) {
    await withScratch('nbd', async (dir) => {
      port += 1;
      const child = target.start(dir, port);
      try {
        await waitForPort(port, child);
        // After the server is up, not before: this VM hands freed memory back to its host
        // within seconds, so memory warmed before a server that takes a second or two to
        // start (Strata's daemon) would be cold again when its first write comes.
        warmPageCache(dir, 2 * sizeBytes);
        const uri = `nbd://127.0.0.1:${port}/${target.uri}`;
        const figures: Record<string, number> = {};
        for (const job of jobs) figures[job.key] = runFio(uri, job);
        figures['nbdcopy to null: MiB/s'] = runNbdcopy(uri);
        results.set(target.name, figures);
        console.log(`${target.name}: ${JSON.stringify(Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, Math.round(v)])))}`);
      } finally {
        await stop(child);
      }
    });
  }
  const raw = results.get('qemu-nbd raw');
  const qcow2 = results.get('qemu-nbd qcow2');
  const rows = [...results].flatMap(([name, figures]) =>
    Object.entries(figures).map(([key, value]) => ({
      server: name,
      figure: key,
      value: value.toFixed(key.includes('IOPS') ? 0 : 1),
      'vs qemu-nbd raw': raw ? `${(value / raw[key]).toFixed(2)}x` : '-',
      'vs qemu-nbd qcow2': qcow2 ? `${(value / qcow2[key]).toFixed(2)}x` : '-',
    })),
  );
  printTable(`NBD: fio nbd engine over loopback, ${sizeBytes / MiB} MiB export, random data (higher is better)`, rows);
}
