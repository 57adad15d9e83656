/*
 * The CLI against a real daemon: a daemon started in-process (pools on disk, NBD, HTTP
 * on free loopback ports) and the CLI's main() talking to it over HTTP with --url and
 * --token; then `strata serve` as its own process (first start, health, SIGTERM, the
 * pool lock). Commands, JSON output, and the documented exit codes for bad input.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../common/log.js';
import { startDaemon, type RunningDaemon } from '../daemon/index.js';
import { makeTempDir, removeTempDir } from '../../test/helpers/temp-pool.js';
import { hasTool, runOk } from '../../test/helpers/tools.js';
import { main } from './main.js';

const MiB = 1024 * 1024;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let dir: string;
let daemon: RunningDaemon;
let globals: string[];

async function strata(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((line: unknown) => void out.push(String(line)));
  vi.spyOn(console, 'error').mockImplementation((line: unknown) => void err.push(String(line)));
  process.exitCode = undefined;
  const code = await main(['node', 'strata', ...globals, ...args]);
  vi.restoreAllMocks();
  process.exitCode = undefined;
  return { code, out: out.join('\n'), err: err.join('\n') };
}

async function json(...args: string[]): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const result = await strata('--json', ...args);
  expect(result.code, result.err).toBe(0);
  return JSON.parse(result.out);
}

beforeAll(async () => {
  dir = makeTempDir();
  daemon = await startDaemon({ dataDir: dir, nbd: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, nbdSocket: null, tls: null, allow: [], logger: silentLogger, compactIntervalMs: 0 });
  const token = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
  globals = ['--url', `http://127.0.0.1:${daemon.httpAddress!.port}`, '--token', token];
});

afterAll(async () => {
  await daemon?.stop();
  removeTempDir(dir);
});

afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

describe('strata CLI against a daemon', () => {
  it('creates volumes, snapshots and clones and reports them as tables and JSON', async () => {
    expect((await strata('volume', 'create', 'disk0', '--size', '64M')).code).toBe(0);
    await daemon.pools.get('default').openVolume('disk0').write(0, Buffer.alloc(MiB, 3), { fua: true });
    expect((await strata('snapshot', 'create', 'disk0@base')).code).toBe(0);
    expect((await strata('volume', 'clone', 'disk0@base', 'vm1')).code).toBe(0);
    const list = await strata('volume', 'list');
    expect(list.out).toMatch(/^NAME\s+POOL\s+SIZE/);
    expect(list.out).toContain('disk0@base');
    expect((await json('volume', 'list')).map((v: { name: string }) => v.name)).toEqual(['disk0', 'vm1']);
    const shown = await json('volume', 'show', 'disk0');
    expect(shown.clones).toEqual(['vm1']);
    expect(shown.snapshotList[0].name).toBe('base');
    expect((await strata('volume', 'show', 'disk0')).out).toContain('frees-if-deleted'.toUpperCase());
    expect((await json('snapshot', 'list', 'disk0'))[0].name).toBe('base');
    expect((await strata('snapshot', 'delete', 'disk0@base')).code).toBe(4);
    expect((await strata('volume', 'flatten', 'vm1')).code).toBe(0);
    expect((await strata('snapshot', 'delete', 'disk0@base')).code).toBe(0);
    expect((await strata('volume', 'resize', 'vm1', '--size', '128M')).code).toBe(0);
    expect((await strata('volume', 'rename', 'vm1', 'vm2')).code).toBe(0);
    await strata('snapshot', 'create', 'vm2@one');
    await strata('snapshot', 'create', 'vm2@two');
    expect((await strata('volume', 'rollback', 'vm2@one')).code).toBe(4);
    expect((await strata('volume', 'rollback', 'vm2@one', '--destroy-newer')).code).toBe(0);
    expect((await strata('volume', 'delete', 'vm2')).code).toBe(0);
    const exports = await json('export', 'list');
    expect(exports[0].uris[0]).toBe(`nbd://127.0.0.1:${daemon.nbdAddress!.port}/disk0`);
  });

  it('shows, creates, compacts and checks pools', async () => {
    expect((await json('pool', 'list')).map((p: { name: string }) => p.name)).toEqual(['default']);
    expect((await strata('pool', 'create', 'big', '--block-size', '64K', '--dedup', 'off', '--compression', 'lz4')).code).toBe(0);
    expect((await json('pool', 'show', 'big')).policy).toEqual({ blockSize: 64 * 1024, dedup: false, compression: 'lz4' });
    const stats = await strata('pool', 'stats');
    expect(stats.out).toContain('pool default');
    expect(stats.out).toContain('dedup');
    expect((await json('pool', 'compact', '--now')).map((r: { pool: string }) => r.pool)).toEqual(['big', 'default']);
    const check = await json('check', '--deep');
    expect(check.every((report: { ok: boolean }) => report.ok)).toBe(true);
    expect((await strata('volume', 'create', 'inbig', '--size', '1M', '--pool', 'big')).code).toBe(0);
    expect((await json('volume', 'show', 'inbig')).pool).toBe('big');
  });

  it('creates, lists and revokes tokens; a read-only token reads but cannot change', async () => {
    const secret = (await json('token', 'create', 'monitor', '--read-only')).secret as string;
    expect((await json('token', 'list')).map((t: { name: string; role: string }) => `${t.name}:${t.role}`)).toEqual(['admin:admin', 'monitor:read-only']);
    const saved = globals;
    globals = [saved[0], saved[1], '--token', secret];
    try {
      expect((await strata('volume', 'list')).code).toBe(0);
      const refused = await strata('volume', 'create', 'nope', '--size', '1M');
      expect(refused.code).toBe(8);
      expect(refused.err).toContain('STRATA_E_FORBIDDEN');
    } finally {
      globals = saved;
    }
    expect((await strata('token', 'revoke', 'monitor')).code).toBe(0);
    expect((await strata('token', 'revoke', 'admin')).code).toBe(4);
    const events = await strata('event', 'list');
    expect(events.out).toContain('token.revoked');
    expect((await json('task', 'list')).length).toBeGreaterThan(0);
  });

  it('maps errors to documented exit codes with the error code in the message', async () => {
    const bad = await strata('volume', 'create', '../etc', '--size', '1G');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('STRATA_E_INVALID_NAME');
    expect((await strata('volume', 'create', 'v', '--size', 'lots')).code).toBe(2);
    expect((await strata('volume', 'create', 'v', '--size', '1M')).code).toBe(0);
    expect((await strata('volume', 'create', 'v', '--size', '1M')).code).toBe(4);
    expect((await strata('volume', 'resize', 'v', '--size', '4K')).code).toBe(4);
    expect((await strata('snapshot', 'delete', 'v@none')).code).toBe(3);
    expect((await strata('snapshot', 'create', 'no-at-sign')).code).toBe(2);
    expect((await strata('volume', 'show', 'missing')).code).toBe(3);
    expect((await strata('no-such-noun')).code).toBe(2);
    const saved = globals;
    globals = ['--url', 'http://127.0.0.1:1', '--token', 'x'];
    try {
      const unreachable = await strata('volume', 'list');
      expect(unreachable.code).toBe(10);
      expect(unreachable.err).toContain('STRATA_E_DAEMON_UNREACHABLE');
      globals = [saved[0], saved[1]];
      expect((await strata('volume', 'list')).code).toBe(8);
    } finally {
      globals = saved;
    }
    const verify = await strata('serve', '--data', path.join(dir, 'other'), '--read-verify', 'md5');
    expect(verify.code).toBe(2);
    expect(verify.err).toContain('--read-verify takes crc or sha256');
  });

  it('defines, shows, changes, snapshots, clones and deletes VMs, with exit codes for bad definitions', async () => {
    expect((await strata('volume', 'create', 'vmroot', '--size', '4M')).code).toBe(0);
    expect((await strata('vm', 'create', 'db', '--disk', 'missing')).code).toBe(3);
    expect((await strata('vm', 'create', 'db', '--disk', 'vmroot', '--memory', 'lots')).code).toBe(2);
    expect((await strata('vm', 'create', 'db', '--disk', 'vmroot', '--nic', 'wifi')).code).toBe(2);
    const created = await strata('vm', 'create', 'db', '--cpus', '2', '--memory', '256M', '--disk', 'vmroot', '--nic', 'user');
    expect(created.code, created.err).toBe(0);
    expect((await strata('vm', 'create', 'db', '--disk', 'vmroot')).code).toBe(4);
    expect((await json('vm', 'list'))[0]).toMatchObject({ name: 'db', state: 'stopped' });
    expect((await strata('vm', 'show', 'db')).out).toMatch(/2 vCPUs, 256\.0 MiB, disks vmroot, nics user 52:54:00(:[0-9a-f]{2}){3}/);
    expect((await strata('vm', 'set', 'db', '--nic', 'bridge:br0,speed=10')).code).toBe(2);
    const bridged = await strata('vm', 'set', 'db', '--nic', 'user', '--nic', 'bridge:br0,mac=02:00:00:aa:bb:cc');
    expect(bridged.code, bridged.err).toBe(0);
    expect(bridged.out).toMatch(/nics user 52:54:00\S+, bridge br0 02:00:00:aa:bb:cc/);
    expect((await strata('vm', 'stop', 'db')).code).toBe(4);
    const set = await strata('vm', 'set', 'db', '--cpus', '3', '--memory', '384M', '--nic', 'none');
    expect(set.code, set.err).toBe(0);
    expect(set.out).toContain('3 vCPUs, 384.0 MiB, disks vmroot, nics none');
    expect((await strata('vm', 'set', 'db')).code).toBe(2);
    expect((await strata('vm', 'set', 'db', '--append', 'quiet')).code).toBe(2);
    expect((await strata('vm', 'set', 'db', '--cpus', '0')).code).toBe(2);
    expect((await strata('vm', 'set', 'nope', '--cpus', '1')).code).toBe(3);
    expect((await json('vm', 'show', 'db')).definition).toMatchObject({ cpus: 3, memoryBytes: 384 * 1024 * 1024, nics: [] });
    expect((await json('vm', 'snapshot', 'db@cold')).method).toBe('offline');
    expect((await strata('vm', 'clone', 'db@cold', 'db2')).code).toBe(0);
    expect((await strata('vm', 'restore', 'db@cold')).code).toBe(0);
    expect((await strata('vm', 'delete', 'db2', '--with-volumes')).code).toBe(0);
    expect((await strata('vm', 'delete', 'db')).code).toBe(0);
    expect((await strata('vm', 'show', 'db')).code).toBe(3);
  });

  it.runIf(hasTool('qemu-img', 'qemu-utils'))('imports a qcow2 image and exports a volume as vmdk through qemu-img', async () => {
    const work = makeTempDir();
    try {
      const image = path.join(work, 'in.qcow2');
      await runOk('qemu-img', ['create', '-f', 'qcow2', image, '4M']);
      await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 64k', image]);
      const imported = await strata('volume', 'import', 'imported', image);
      expect(imported.code, imported.err).toBe(0);
      expect((await json('volume', 'show', 'imported')).sizeBytes).toBe(4 * MiB);
      const out = path.join(work, 'out.vmdk');
      const exported = await strata('volume', 'export', 'imported', out, '--format', 'vmdk');
      expect(exported.code, exported.err).toBe(0);
      await runOk('qemu-img', ['compare', image, out]);
      expect((await strata('volume', 'export', 'imported', out, '--format', 'vmdk')).code).toBe(2);
    } finally {
      removeTempDir(work);
    }
  });
});

describe('strata serve as a process', () => {
  it('creates the pool and admin token on first start, answers health, refuses a second daemon, and stops on SIGTERM', async () => {
    const data = makeTempDir();
    const serve = (...extra: string[]) =>
      spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'src/cli/run.ts'), 'serve', '--data', data, '--nbd', '127.0.0.1:0', ...extra], {
        cwd: repoRoot,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
    const config = path.join(data, 'strata.json');
    fs.writeFileSync(config, JSON.stringify({ http: '127.0.0.1:0', logLevel: 'info' }));
    const child = serve('--config', config);
    try {
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
      const ready = await new Promise<{ http: { port: number } }>((resolve, reject) => {
        child.stderr!.on('data', () => {
          const line = stderr.split('\n').find((candidate) => candidate.includes('"message":"ready"'));
          if (line) resolve(JSON.parse(line) as { http: { port: number } });
        });
        child.once('close', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      expect(fs.statSync(path.join(data, 'admin.token')).mode & 0o777).toBe(0o600);
      expect(fs.existsSync(path.join(data, 'pools', 'default', 'meta.sqlite'))).toBe(true);
      const health = await fetch(`http://127.0.0.1:${ready.http.port}/api/v1/health`);
      expect(health.status).toBe(200);
      const second = serve('--http', 'off');
      const secondExit = await new Promise<number | null>((resolve) => second.once('close', resolve));
      expect(secondExit).toBe(4);
      fs.writeFileSync(config, JSON.stringify({ htp: '127.0.0.1:0' }));
      const misspelt = serve('--config', config);
      expect(await new Promise<number | null>((resolve) => misspelt.once('close', resolve))).toBe(2);
      const exit = new Promise<number | null>((resolve) => child.once('close', resolve));
      process.kill(child.pid!, 'SIGTERM');
      expect(await exit).toBe(0);
      expect(stderr).toContain('"message":"stopped"');
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
      removeTempDir(data);
    }
  });
});
