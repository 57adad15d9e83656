/*
 * The REST API in-process: a real daemon (pools on disk, NBD, HTTP on a free loopback
 * port) driven with fetch. Every route, bad bodies, missing and read-only tokens,
 * path-traversal names, tasks, events (SSE), metrics, and the OpenAPI document kept in
 * step with docs/openapi.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../common/log.js';
import { startDaemon, type RunningDaemon } from '../daemon/index.js';
import { makeTempDir, removeTempDir } from '../../test/helpers/temp-pool.js';
import { hasTool, runOk } from '../../test/helpers/tools.js';
import { apiDocument, allRoutes } from './server.js';

const MiB = 1024 * 1024;
let dir: string;
let daemon: RunningDaemon;
let base: string;
let admin: string;

interface Answer {
  status: number;
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  text: string;
}

async function call(method: string, url: string, options: { token?: string | null; body?: unknown; raw?: string } = {}): Promise<Answer> {
  const token = options.token === undefined ? admin : options.token;
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined || options.raw !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${base}${url}`, { method, headers, body: options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body)) });
  const text = await response.text();
  return { status: response.status, body: parseJson(text), text };
}

function parseJson(text: string): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

async function waitTask(id: number): Promise<Answer['body']> {
  for (;;) {
    const task = (await call('GET', `/api/v1/tasks/${id}`)).body;
    if (task.state !== 'running') return task;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  dir = makeTempDir();
  daemon = await startDaemon({ dataDir: dir, nbd: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, nbdSocket: null, tls: null, allow: [], logger: silentLogger, compactIntervalMs: 0 });
  base = `http://127.0.0.1:${daemon.httpAddress!.port}`;
  admin = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
});

afterAll(async () => {
  await daemon?.stop();
  removeTempDir(dir);
});

describe('REST API', () => {
  it('answers health without a token and writes the admin token with mode 0600 on first start', async () => {
    const health = await call('GET', '/api/v1/health', { token: null });
    expect(health.status).toBe(200);
    expect(health.body.status).toBe('ok');
    expect(fs.statSync(path.join(dir, 'admin.token')).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'tokens.json')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(path.join(dir, 'tokens.json'), 'utf8')).not.toContain(admin);
  });

  it('refuses requests without a token, with a wrong token, and changes with a read-only token', async () => {
    expect((await call('GET', '/api/v1/volumes', { token: null })).body.code).toBe('STRATA_E_UNAUTHORIZED');
    expect((await call('GET', '/api/v1/volumes', { token: 'strata_wrong' })).status).toBe(401);
    expect((await call('GET', '/metrics', { token: null })).status).toBe(401);
    const created = await call('POST', '/api/v1/tokens', { body: { name: 'viewer', readOnly: true } });
    expect(created.status).toBe(201);
    const viewer = created.body.secret as string;
    expect((await call('GET', '/api/v1/volumes', { token: viewer })).status).toBe(200);
    const refused = await call('POST', '/api/v1/volumes', { token: viewer, body: { name: 'x', sizeBytes: MiB } });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('STRATA_E_FORBIDDEN');
    expect((await call('GET', '/api/v1/tokens', { token: viewer })).status).toBe(403);
    expect((await call('GET', '/api/v1/tokens')).body.map((t: { name: string }) => t.name)).toEqual(['admin', 'viewer']);
    expect((await call('POST', '/api/v1/tokens', { body: { name: 'viewer' } })).body.code).toBe('STRATA_E_TOKEN_EXISTS');
    expect((await call('DELETE', '/api/v1/tokens/viewer')).status).toBe(204);
    expect((await call('GET', '/api/v1/volumes', { token: viewer })).status).toBe(401);
    expect((await call('DELETE', '/api/v1/tokens/admin')).body.code).toBe('STRATA_E_LAST_ADMIN_TOKEN');
    expect((await call('DELETE', '/api/v1/tokens/nobody')).status).toBe(404);
  });

  it('rejects bad bodies, unknown keys, malformed JSON, over-large bodies and unknown routes with catalogue codes', async () => {
    const missing = await call('POST', '/api/v1/volumes', { body: { name: 'a' } });
    expect(missing.status).toBe(400);
    expect(missing.body.code).toBe('STRATA_E_INVALID_ARGUMENT');
    expect(missing.body.message).toContain('sizeBytes');
    expect((await call('POST', '/api/v1/volumes', { body: { name: 'a', sizeBytes: MiB, colour: 'red' } })).body.message).toContain('colour');
    expect((await call('POST', '/api/v1/volumes', { body: { name: 'a', sizeBytes: -1 } })).status).toBe(400);
    expect((await call('POST', '/api/v1/volumes', { body: { name: 'a', sizeBytes: '1G' } })).status).toBe(400);
    const malformed = await call('POST', '/api/v1/volumes', { raw: '{"name": "a",' });
    expect(malformed.status).toBe(400);
    expect(malformed.body.code).toBe('STRATA_E_INVALID_ARGUMENT');
    const huge = await call('POST', '/api/v1/volumes', { raw: JSON.stringify({ name: 'a', sizeBytes: 1, pad: 'x'.repeat(2 * MiB) }) });
    expect(huge.status).toBe(400);
    expect(huge.body.code).toBe('STRATA_E_INVALID_ARGUMENT');
    const nowhere = await call('GET', '/api/v1/nowhere');
    expect(nowhere.status).toBe(404);
    expect(nowhere.body.code).toBe('STRATA_E_ROUTE_NOT_FOUND');
    expect((await call('GET', '/api/v1/tasks/abc')).status).toBe(400);
  });

  it('refuses names with slashes, dot-dot and control characters', async () => {
    for (const name of ['../etc', 'a/b', '..', 'bad\u0001name', ' ', 'x'.repeat(200)]) {
      const answer = await call('POST', '/api/v1/volumes', { body: { name, sizeBytes: MiB } });
      expect(answer.status, name).toBe(400);
    }
    expect((await call('POST', '/api/v1/volumes', { body: { name: '../etc', sizeBytes: MiB } })).body.code).toBe('STRATA_E_INVALID_NAME');
    // Encoded slashes and dots either fail the naming rules or match no route.
    for (const url of ['/api/v1/volumes/..%2F..%2Fetc%2Fpasswd', '/api/v1/volumes/%2E%2E/snapshots', '/api/v1/pools/..%2Fpools', '/api/v1/volumes/a%00b']) {
      const answer = await call('GET', url);
      expect([400, 404], url).toContain(answer.status);
      expect(['STRATA_E_INVALID_NAME', 'STRATA_E_ROUTE_NOT_FOUND'], url).toContain(answer.body.code);
    }
    expect((await call('GET', '/api/v1/volumes/bad%01name')).body.code).toBe('STRATA_E_INVALID_NAME');
    expect(fs.readdirSync(path.join(dir, 'pools'))).toEqual(['default']);
  });

  it('manages volumes, snapshots and clones with their accounting and events', async () => {
    const created = await call('POST', '/api/v1/volumes', { body: { name: 'disk0', sizeBytes: 16 * MiB } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'disk0', pool: 'default', sizeBytes: 16 * MiB, parent: null });
    expect((await call('POST', '/api/v1/volumes', { body: { name: 'disk0', sizeBytes: MiB } })).body.code).toBe('STRATA_E_VOLUME_EXISTS');
    const device = daemon.pools.get('default').openVolume('disk0');
    await device.write(0, Buffer.alloc(MiB, 7), { fua: true });
    expect((await call('POST', '/api/v1/volumes/disk0/snapshots', { body: { name: 'base' } })).status).toBe(201);
    await device.write(0, Buffer.alloc(MiB, 9), { fua: true });
    // Accounting follows destage (the writeback timer's, here the pool's flush).
    await daemon.pools.get('default').flush();
    const detail = (await call('GET', '/api/v1/volumes/disk0')).body;
    expect(detail.mappedBytes).toBe(MiB);
    expect(detail.snapshotList[0]).toMatchObject({ name: 'base', sizeBytes: 16 * MiB });
    expect(detail.snapshotList[0].reclaimableBytes).toBeGreaterThan(0);
    const clone = await call('POST', '/api/v1/volumes/disk0/snapshots/base/clones', { body: { name: 'vm1' } });
    expect(clone.status).toBe(201);
    expect(clone.body.parent).toEqual({ volume: 'disk0', snapshot: 'base' });
    expect((await call('GET', '/api/v1/volumes/disk0')).body.clones).toEqual(['vm1']);
    const busy = await call('DELETE', '/api/v1/volumes/disk0/snapshots/base');
    expect(busy.status).toBe(409);
    expect(busy.body.code).toBe('STRATA_E_SNAPSHOT_HAS_CLONES');
    expect(busy.body.message).toContain('vm1');
    const flatten = await call('POST', '/api/v1/volumes/vm1/flatten');
    expect(flatten.status).toBe(202);
    expect((await waitTask(flatten.body.id)).state).toBe('succeeded');
    expect((await call('GET', '/api/v1/volumes/vm1')).body.parent).toBeNull();
    const shrink = await call('PATCH', '/api/v1/volumes/disk0', { body: { sizeBytes: MiB } });
    expect(shrink.body.code).toBe('STRATA_E_SHRINK_NEEDS_FORCE');
    expect((await call('PATCH', '/api/v1/volumes/disk0', { body: { sizeBytes: 32 * MiB } })).body.sizeBytes).toBe(32 * MiB);
    expect((await call('PATCH', '/api/v1/volumes/vm1', { body: { name: 'vm2' } })).body.name).toBe('vm2');
    expect((await call('POST', '/api/v1/volumes/disk0/snapshots/base/rollback', { body: {} })).status).toBe(200);
    expect((await daemon.pools.get('default').openVolume('disk0').read(0, 4)).equals(Buffer.alloc(4, 7))).toBe(true);
    expect((await call('DELETE', '/api/v1/volumes/disk0/snapshots/base')).status).toBe(204);
    expect((await call('GET', '/api/v1/volumes/disk0/snapshots')).body).toEqual([]);
    expect((await call('DELETE', '/api/v1/volumes/vm2')).status).toBe(204);
    expect((await call('GET', '/api/v1/volumes/vm2')).body.code).toBe('STRATA_E_VOLUME_NOT_FOUND');
    const kinds = (await call('GET', '/api/v1/events')).body.map((event: { kind: string }) => event.kind);
    expect(kinds).toEqual(expect.arrayContaining(['volume.created', 'snapshot.created', 'volume.cloned', 'volume.flattened', 'volume.resized', 'volume.renamed', 'volume.rolled-back', 'snapshot.deleted', 'volume.deleted']));
  });

  it('lists exports with URIs, and creates pools whose volume names stay unique across pools', async () => {
    const exports = (await call('GET', '/api/v1/exports')).body;
    const disk = exports.find((entry: { name: string }) => entry.name === 'disk0');
    expect(disk.uris[0]).toBe(`nbd://127.0.0.1:${daemon.nbdAddress!.port}/disk0`);
    expect(disk.readOnly).toBe(false);
    const pool = await call('POST', '/api/v1/pools', { body: { name: 'fast', blockSize: 65536, compression: 'lz4', dedup: false } });
    expect(pool.status).toBe(201);
    expect(pool.body.policy).toEqual({ blockSize: 65536, dedup: false, compression: 'lz4' });
    expect((await call('POST', '/api/v1/pools', { body: { name: 'fast' } })).body.code).toBe('STRATA_E_POOL_EXISTS');
    expect((await call('POST', '/api/v1/pools', { body: { name: 'odd', blockSize: 3000 } })).status).toBe(400);
    expect((await call('POST', '/api/v1/volumes', { body: { name: 'disk0', sizeBytes: MiB, pool: 'fast' } })).body.code).toBe('STRATA_E_VOLUME_EXISTS');
    expect((await call('POST', '/api/v1/volumes', { body: { name: 'fastdisk', sizeBytes: MiB, pool: 'fast' } })).body.pool).toBe('fast');
    expect((await call('POST', '/api/v1/volumes', { body: { name: 'y', sizeBytes: MiB, pool: 'nopool' } })).body.code).toBe('STRATA_E_POOL_NOT_FOUND');
    const pools = (await call('GET', '/api/v1/pools')).body;
    expect(pools.map((entry: { name: string }) => entry.name)).toEqual(['default', 'fast']);
    expect(pools[0].capacityBytes).toBeGreaterThan(pools[0].storedBytes);
    expect((await call('GET', '/api/v1/pools/fast')).body.volumes).toBe(1);
  });

  it('runs compaction and check as tasks with progress, and cancels a running task', async () => {
    const compact = await call('POST', '/api/v1/pools/default/compact', { body: { now: true } });
    expect(compact.status).toBe(202);
    const done = await waitTask(compact.body.id);
    expect(done).toMatchObject({ state: 'succeeded', percent: 100, kind: 'compact', subject: 'pool/default' });
    const check = await waitTask((await call('POST', '/api/v1/pools/default/check', { body: { deep: true } })).body.id);
    expect(check.state).toBe('succeeded');
    expect(check.result.ok).toBe(true);
    expect((await call('GET', '/api/v1/tasks')).body[0].id).toBe(check.id);
    const task = daemon.services.tasks.start('wait', 'test/1', (context) => new Promise((_resolve, reject) => context.signal.addEventListener('abort', () => reject(new Error('stopped')))));
    expect((await call('POST', `/api/v1/tasks/${task.id}/cancel`)).status).toBe(200);
    expect((await waitTask(task.id)).state).toBe('cancelled');
    expect((await call('GET', '/api/v1/tasks/99999')).body.code).toBe('STRATA_E_TASK_NOT_FOUND');
  });

  it('streams events as server-sent events', async () => {
    const after = (await call('GET', '/api/v1/events')).body.at(-1).id as number;
    const controller = new AbortController();
    const response = await fetch(`${base}/api/v1/events/stream?after=${after}`, { headers: { authorization: `Bearer ${admin}` }, signal: controller.signal });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.getReader();
    await call('POST', '/api/v1/volumes', { body: { name: 'streamed', sizeBytes: MiB } });
    let text = '';
    while (!text.includes('streamed')) text += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    expect(text).toMatch(/^id: \d+\nevent: event\ndata: \{.*"kind":"volume.created"/m);
  });

  it('serves Prometheus metrics with pool gauges and I/O totals', async () => {
    const metrics = await call('GET', '/metrics');
    expect(metrics.status).toBe(200);
    for (const name of ['strata_pool_capacity_bytes{pool="default"}', 'strata_pool_dedup_ratio', 'strata_pool_compression_ratio', 'strata_pool_checksum_errors_total', 'strata_pool_gc_runs_total']) {
      expect(metrics.text).toContain(name);
    }
    expect((await call('GET', '/api/v1/io')).body.volumes).toEqual(expect.any(Array));
  });

  it.runIf(hasTool('qemu-io', 'qemu-utils'))('counts NBD operations, bytes and latency per volume', async () => {
    await call('POST', '/api/v1/volumes', { body: { name: 'metered', sizeBytes: 4 * MiB } });
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 0 1M', '-c', 'read 0 1M', '-c', 'flush', `nbd://127.0.0.1:${daemon.nbdAddress!.port}/metered`]);
    const text = (await call('GET', '/metrics')).text;
    expect(text).toMatch(/strata_volume_operations_total\{volume="metered",op="write"\} [1-9]/);
    expect(text).toContain(`strata_volume_bytes_total{volume="metered",op="write"} ${MiB}`);
    expect(text).toMatch(/strata_volume_operation_seconds_bucket\{le="\+Inf",volume="metered",op="read"\} [1-9]/);
    const io = (await call('GET', '/api/v1/io')).body.volumes.find((entry: { volume: string }) => entry.volume === 'metered');
    expect(io).toMatchObject({ writeBytes: MiB, readBytes: MiB });
  });

  it('defines VMs with checked bodies, refuses bad definitions, and protects their disks', async () => {
    await call('POST', '/api/v1/volumes', { body: { name: 'vmdisk', sizeBytes: 4 * MiB } });
    expect((await call('POST', '/api/v1/vms', { body: { name: 'web1' } })).body.code).toBe('STRATA_E_INVALID_ARGUMENT');
    expect((await call('POST', '/api/v1/vms', { body: { name: 'web1', disks: ['vmdisk'], gpu: true } })).body.message).toContain('gpu');
    expect((await call('POST', '/api/v1/vms', { body: { name: 'web1', disks: ['nodisk'] } })).body.code).toBe('STRATA_E_VOLUME_NOT_FOUND');
    const huge = await call('POST', '/api/v1/vms', { body: { name: 'web1', disks: ['vmdisk'], memoryBytes: 1024 ** 5 } });
    expect(huge.status).toBe(400);
    expect(huge.body.message).toContain('more than the host has');
    expect((await call('POST', '/api/v1/vms', { body: { name: '../web', disks: ['vmdisk'] } })).body.code).toBe('STRATA_E_INVALID_NAME');
    expect((await call('GET', '/api/v1/vms')).body).toEqual([]);
    const created = await call('POST', '/api/v1/vms', { body: { name: 'web1', cpus: 2, memoryBytes: 256 * MiB, disks: ['vmdisk'] } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'web1', state: 'stopped', definition: { cpus: 2, nics: [{ mode: 'user' }] } });
    expect((await call('POST', '/api/v1/vms', { body: { name: 'web1', disks: [] } })).body.code).toBe('STRATA_E_INVALID_ARGUMENT');
    expect((await call('POST', '/api/v1/vms', { body: { name: 'web2', disks: ['vmdisk'] } })).body.code).toBe('STRATA_E_VOLUME_IN_USE');
    expect((await call('DELETE', '/api/v1/volumes/vmdisk')).body.code).toBe('STRATA_E_VOLUME_IN_USE');
    expect((await call('PATCH', '/api/v1/volumes/vmdisk', { body: { name: 'renamed' } })).body.code).toBe('STRATA_E_VOLUME_IN_USE');
    expect((await call('POST', '/api/v1/vms/web1/pause')).body.code).toBe('STRATA_E_VM_STATE');
    expect((await call('GET', '/api/v1/vms/web1/console/log')).body.code).toBe('STRATA_E_VM_STATE');
    expect((await call('POST', '/api/v1/vms/nobody/start')).status).toBe(404);
    const snapshot = await call('POST', '/api/v1/vms/web1/snapshots', { body: { name: 'cold' } });
    expect(snapshot.body).toMatchObject({ method: 'offline', disks: [{ volume: 'vmdisk', snapshot: 'cold' }] });
    const clone = await call('POST', '/api/v1/vms/web1/clones', { body: { name: 'web3', snapshot: 'cold' } });
    expect(clone.body.definition.disks).toEqual([{ volume: 'web3-disk0' }]);
    // Every NIC has an address of its own: assigned, kept across changes, new in a clone.
    const mac = created.body.definition.nics[0].mac as string;
    expect(mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(clone.body.definition.nics[0].mac).toMatch(/^52:54:00:/);
    expect(clone.body.definition.nics[0].mac).not.toBe(mac);
    expect((await call('PATCH', '/api/v1/vms/web1', { body: { cpus: 1 } })).body.definition.nics).toEqual([{ mode: 'user', mac }]);
    const replaced = await call('PATCH', '/api/v1/vms/web1', { body: { nics: [{ mode: 'tap', tap: 'tap7' }, { mode: 'user', mac: '02:AA:BB:CC:DD:EE' }] } });
    expect(replaced.body.definition.nics).toEqual([{ mode: 'tap', tap: 'tap7', mac }, { mode: 'user', mac: '02:aa:bb:cc:dd:ee' }]);
    for (const [nics, message] of [
      [[{ mode: 'user', mac }], `belongs to a NIC of VM web1`],
      [[{ mode: 'user', mac: '01:00:5e:00:00:01' }], 'multicast'],
      [[{ mode: 'user', mac: '02:00:00:00:00:01' }, { mode: 'user', mac: '02:00:00:00:00:01' }], 'cannot share'],
    ] as const) {
      const refused = await call('PATCH', '/api/v1/vms/web3', { body: { nics } });
      expect(refused.body.code).toBe('STRATA_E_INVALID_ARGUMENT');
      expect(refused.body.message).toContain(message);
    }
    expect((await call('PATCH', '/api/v1/vms/web3', { body: { nics: [{ mode: 'user', mac: 'zz:00:00:00:00:01' }] } })).status).toBe(400);
    expect((await call('GET', '/api/v1/vms/web3')).body.definition.nics).toEqual(clone.body.definition.nics);
    expect((await call('GET', '/metrics')).text).toContain('strata_vm_running{vm="web1"} 0');
    expect((await call('DELETE', '/api/v1/vms/web3?withVolumes=true')).status).toBe(204);
    expect((await call('GET', '/api/v1/volumes/web3-disk0')).status).toBe(404);
    expect((await call('DELETE', '/api/v1/vms/web1')).status).toBe(204);
    expect((await call('DELETE', '/api/v1/volumes/vmdisk')).status).toBe(204);
  });

  it('serves an OpenAPI document generated from the route schemas, equal to docs/openapi.json', async () => {
    const served = await call('GET', '/api/v1/openapi.json');
    expect(served.status).toBe(200);
    const document = apiDocument(daemon.services.version);
    expect(served.body).toEqual(document);
    const committed = JSON.parse(fs.readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')) as unknown;
    expect(committed, 'docs/openapi.json drifted from the route schemas: run npm run openapi').toEqual(document);
    const paths = document.paths as Record<string, Record<string, unknown>>;
    for (const spec of allRoutes()) expect(paths[spec.path.replace(/:([A-Za-z]+)/g, '{$1}')]?.[spec.method.toLowerCase()], spec.path).toBeDefined();
  });
});

describe.runIf(hasTool('qemu-img', 'qemu-utils') && hasTool('tar', 'tar'))('image import and export through qemu-img', () => {
  it('imports qcow2 and OVA images into thin volumes and exports a snapshot to qcow2', async () => {
    const work = makeTempDir();
    try {
      const qcow2 = path.join(work, 'disk.qcow2');
      await runOk('qemu-img', ['create', '-f', 'qcow2', qcow2, '8M']);
      await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 1M 1M', qcow2]);
      const task = await call('POST', '/api/v1/volumes/import', { body: { name: 'fromqcow', path: qcow2 } });
      expect(task.status).toBe(202);
      const done = await waitTask(task.body.id);
      expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
      const device = daemon.pools.get('default').openVolume('fromqcow');
      expect(device.sizeBytes).toBe(8 * MiB);
      expect((await device.read(MiB, MiB)).equals(Buffer.alloc(MiB, 0x5a))).toBe(true);
      expect((await call('GET', '/api/v1/volumes/fromqcow')).body.mappedBytes).toBe(MiB);

      const vmdk = path.join(work, 'disk1.vmdk');
      await runOk('qemu-img', ['convert', '-f', 'qcow2', '-O', 'vmdk', qcow2, vmdk]);
      fs.writeFileSync(path.join(work, 'appliance.ovf'), '<?xml version="1.0"?><Envelope/>');
      const ova = path.join(work, 'appliance.ova');
      await runOk('tar', ['-C', work, '-cf', ova, 'appliance.ovf', 'disk1.vmdk']);
      const ovaDone = await waitTask((await call('POST', '/api/v1/volumes/import', { body: { name: 'appliance', path: ova } })).body.id);
      expect(ovaDone.state, JSON.stringify(ovaDone.error)).toBe('succeeded');
      expect((await daemon.pools.get('default').openVolume('appliance').read(MiB, MiB)).equals(Buffer.alloc(MiB, 0x5a))).toBe(true);

      expect((await call('POST', '/api/v1/volumes/import', { body: { name: 'nofile', path: path.join(work, 'missing.img') } })).status).toBe(400);
      expect((await call('POST', '/api/v1/volumes/import', { body: { name: 'fromqcow', path: qcow2 } })).body.code).toBe('STRATA_E_VOLUME_EXISTS');

      await call('POST', '/api/v1/volumes/fromqcow/snapshots', { body: { name: 's1' } });
      const out = path.join(work, 'out.qcow2');
      const exported = await waitTask((await call('POST', '/api/v1/volumes/fromqcow/export', { body: { path: out, format: 'qcow2', snapshot: 's1' } })).body.id);
      expect(exported.state, JSON.stringify(exported.error)).toBe('succeeded');
      await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', qcow2, out]);
      const again = await waitTask((await call('POST', '/api/v1/volumes/fromqcow/export', { body: { path: out, format: 'qcow2' } })).body.id);
      expect(again.state).toBe('failed');
      expect(again.error.code).toBe('STRATA_E_INVALID_ARGUMENT');
      expect((await call('GET', '/api/v1/events')).body.some((event: { kind: string }) => event.kind === 'task.failed')).toBe(true);
    } finally {
      removeTempDir(work);
    }
  });
});
