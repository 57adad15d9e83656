/*
 * The routes of /api/v1 (and /metrics), as specs: see route-spec.ts. Handlers are thin:
 * they call the engine through the pool set, start tasks for long operations, and record
 * an event for each change an operator would want in the log.
 */
import { StrataError } from '../common/errors.js';
import { validateName } from '../common/names.js';
import { limits } from '../common/limits.js';
import type { Pool, PoolSet } from '../engine/index.js';
import type { VmManager } from '../vm/index.js';
import type { EventLog } from './events.js';
import { convertFromVolume, convertIntoVolume, probeImage, type ImageFormat, type ImageSource } from './image-convert.js';
import type { Metrics } from './metrics.js';
import { poolSummary } from './pool-summary.js';
import { route, type RouteSpec } from './route-spec.js';
import * as schema from './schemas.js';
import type { TaskContext, TaskManager } from './tasks.js';
import type { TokenStore } from './tokens.js';

export interface ExportView {
  readonly name: string;
  readonly volume: string;
  readonly snapshot: string | null;
  readonly readOnly: boolean;
  readonly description: string;
  readonly uris: string[];
  readonly clients: { id: number; address: string; tls: boolean }[];
}

export interface ApiServices {
  readonly version: string;
  readonly pools: PoolSet;
  readonly tokens: TokenStore;
  readonly tasks: TaskManager;
  readonly events: EventLog;
  readonly metrics: Metrics;
  /** Every export with its client URIs and connected clients. */
  exports(): ExportView[];
  /** The NBD URI the daemon's own converter uses for an export. */
  internalUri(exportName: string): string;
  /** The VM manager (absent in a daemon without VMs). */
  readonly vms?: VmManager;
}

/** Refuses to delete or rename a volume that is a VM's disk. */
function assertNotVmDisk(services: ApiServices, volume: string): void {
  const owner = services.vms?.diskOwner(volume) ?? null;
  if (owner !== null) throw new StrataError('STRATA_E_VOLUME_IN_USE', `volume ${volume} is a disk of VM ${owner}`, { volume, vm: owner });
}

type Spec = RouteSpec<ApiServices>;

const v1 = '/api/v1';

function volumeView(services: ApiServices, poolName: string, pool: Pool, volume: string) {
  return { ...pool.volumeInfo(volume), pool: poolName };
}

function allVolumes(services: ApiServices) {
  return services.pools
    .list()
    .flatMap(({ name, pool }) => pool.listVolumes().map((info) => ({ ...info, pool: name })))
    .sort((a, b) => a.name.localeCompare(b.name));
}

async function volumeDetail(services: ApiServices, volume: string) {
  const { name: poolName, pool } = services.pools.volumePool(volume);
  const stats = await pool.volumeStats(volume);
  const clones = pool
    .listVolumes()
    .filter((info) => info.parent?.volume === volume)
    .map((info) => info.name);
  return {
    ...volumeView(services, poolName, pool, volume),
    mappedBytes: stats.mappedBytes,
    zeroBytes: stats.zeroBytes,
    uniqueStoredBytes: stats.uniqueStoredBytes,
    uniqueChunks: stats.uniqueChunks,
    sharedChunks: stats.sharedChunks,
    snapshotList: stats.snapshots,
    clones,
  };
}

function changed(services: ApiServices, kind: string, subject: string, message: string): void {
  services.events.record({ severity: 'info', kind, subject, message });
}

const poolRoutes: Spec[] = [
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/pools`,
    summary: 'List pools with capacity and accounting',
    tag: 'pools',
    access: 'read',
    response: schema.poolBody.array(),
    handler: (_input, services) => Promise.all(services.pools.list().map(({ name, pool }) => poolSummary(name, pool))),
  }),
  route<ApiServices, unknown, unknown, typeof schema.createPoolBody._output>({
    method: 'POST',
    path: `${v1}/pools`,
    summary: 'Create a pool with a fixed policy',
    tag: 'pools',
    access: 'admin',
    body: schema.createPoolBody,
    status: 201,
    response: schema.poolBody,
    async handler({ body }, services) {
      const { name, ...policy } = body;
      const pool = await services.pools.create(name, policy);
      changed(services, 'pool.created', `pool/${name}`, `pool ${name} created`);
      return poolSummary(name, pool);
    },
  }),
  route<ApiServices, typeof schema.poolParams._output>({
    method: 'GET',
    path: `${v1}/pools/:pool`,
    summary: 'Show a pool',
    tag: 'pools',
    access: 'read',
    params: schema.poolParams,
    response: schema.poolBody,
    handler: ({ params }, services) => poolSummary(params.pool, services.pools.get(params.pool)),
  }),
  route<ApiServices, typeof schema.poolParams._output, unknown, typeof schema.compactBody._output>({
    method: 'POST',
    path: `${v1}/pools/:pool/compact`,
    summary: 'Reclaim space now: compact sparse packs (a task)',
    tag: 'pools',
    access: 'admin',
    params: schema.poolParams,
    body: schema.compactBody,
    status: 202,
    response: schema.taskBody,
    handler({ params, body }, services) {
      const pool = services.pools.get(params.pool);
      return services.tasks.start('compact', `pool/${params.pool}`, (task) =>
        pool.reclaim({ skipGrace: body.now, onProgress: (step) => task.progress(step.doneBytes, step.totalBytes, step.phase) }),
      );
    },
  }),
  route<ApiServices, typeof schema.poolParams._output, unknown, typeof schema.checkBody._output>({
    method: 'POST',
    path: `${v1}/pools/:pool/check`,
    summary: 'Verify metadata against packs; deep re-hashes every chunk (a task)',
    tag: 'pools',
    access: 'admin',
    params: schema.poolParams,
    body: schema.checkBody,
    status: 202,
    response: schema.taskBody,
    handler({ params, body }, services) {
      const pool = services.pools.get(params.pool);
      return services.tasks.start(body.deep ? 'deep-check' : 'check', `pool/${params.pool}`, async (task) => {
        const report = await pool.check({ deep: body.deep, repair: body.repair, onProgress: (step) => task.progress(step.done, step.total, step.phase) });
        if (!report.ok) services.events.record({ severity: 'error', kind: 'pool.check-failed', subject: `pool/${params.pool}`, message: `check of pool ${params.pool} found ${report.issues.length} issues` });
        return report;
      });
    },
  }),
];

async function importImage(services: ApiServices, body: typeof schema.importVolumeBody._output, sources: ImageSource[], task: TaskContext) {
  const created: string[] = [];
  const totalBytes = sources.reduce((sum, source) => sum + source.virtualSizeBytes, 0);
  let doneBytes = 0;
  try {
    for (const [index, source] of sources.entries()) {
      const name = index === 0 ? body.name : `${body.name}-disk${index + 1}`;
      await services.pools.createVolume(name, source.virtualSizeBytes, body.pool);
      created.push(name);
      await convertIntoVolume(source, services.internalUri(name), {
        signal: task.signal,
        onProgress: (percent) => {
          if (!task.signal.aborted) task.progress(doneBytes + (source.virtualSizeBytes * percent) / 100, totalBytes, name);
        },
      });
      doneBytes += source.virtualSizeBytes;
    }
    // An import ends with its data destaged: stored, deduplicated and accounted for.
    for (const name of created) await services.pools.volumePool(name).pool.flush();
  } catch (error) {
    for (const name of created) await services.pools.volumePool(name).pool.deleteVolume(name).catch(() => undefined);
    throw error;
  }
  for (const name of created) changed(services, 'volume.imported', `volume/${name}`, `volume ${name} imported from ${body.path}`);
  return { volumes: created };
}

const volumeRoutes: Spec[] = [
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/volumes`,
    summary: 'List volumes of every pool',
    tag: 'volumes',
    access: 'read',
    response: schema.volumeBody.array(),
    handler: (_input, services) => allVolumes(services),
  }),
  route<ApiServices, unknown, unknown, typeof schema.createVolumeBody._output>({
    method: 'POST',
    path: `${v1}/volumes`,
    summary: 'Create a thin volume',
    tag: 'volumes',
    access: 'admin',
    body: schema.createVolumeBody,
    status: 201,
    response: schema.volumeBody,
    async handler({ body }, services) {
      await services.pools.createVolume(body.name, body.sizeBytes, body.pool);
      const { name: poolName, pool } = services.pools.volumePool(body.name);
      changed(services, 'volume.created', `volume/${body.name}`, `volume ${body.name} created in pool ${poolName}`);
      return volumeView(services, poolName, pool, body.name);
    },
  }),
  route<ApiServices, unknown, unknown, typeof schema.importVolumeBody._output>({
    method: 'POST',
    path: `${v1}/volumes/import`,
    summary: 'Create volumes from an image file on the daemon host: raw, qcow2, vmdk, vhdx, vdi or ova (a task)',
    tag: 'volumes',
    access: 'admin',
    body: schema.importVolumeBody,
    status: 202,
    response: schema.taskBody,
    async handler({ body }, services) {
      validateName('volume', body.name);
      services.pools.targetPool(body.pool);
      if (allVolumes(services).some((info) => info.name === body.name)) {
        throw new StrataError('STRATA_E_VOLUME_EXISTS', `a volume named ${JSON.stringify(body.name)} exists`, { volume: body.name });
      }
      const sources = await probeImage(body.path, body.format);
      return services.tasks.start('import', `volume/${body.name}`, (task) => importImage(services, body, sources, task));
    },
  }),
  route<ApiServices, typeof schema.volumeParams._output>({
    method: 'GET',
    path: `${v1}/volumes/:volume`,
    summary: 'Show a volume with its accounting, snapshots and clones',
    tag: 'volumes',
    access: 'read',
    params: schema.volumeParams,
    response: schema.volumeDetailBody,
    handler: ({ params }, services) => volumeDetail(services, params.volume),
  }),
  route<ApiServices, typeof schema.volumeParams._output, unknown, typeof schema.updateVolumeBody._output>({
    method: 'PATCH',
    path: `${v1}/volumes/:volume`,
    summary: 'Resize (shrinking needs force) or rename a volume',
    tag: 'volumes',
    access: 'admin',
    params: schema.volumeParams,
    body: schema.updateVolumeBody,
    response: schema.volumeBody,
    async handler({ params, body }, services) {
      let name = params.volume;
      const { pool } = services.pools.volumePool(name);
      if (body.sizeBytes !== undefined) {
        await pool.resizeVolume(name, body.sizeBytes, { force: body.force });
        changed(services, 'volume.resized', `volume/${name}`, `volume ${name} resized to ${body.sizeBytes} bytes`);
      }
      if (body.name !== undefined && body.name !== name) {
        assertNotVmDisk(services, name);
        await services.pools.renameVolume(name, body.name);
        changed(services, 'volume.renamed', `volume/${body.name}`, `volume ${name} renamed to ${body.name}`);
        name = body.name;
      }
      const entry = services.pools.volumePool(name);
      return volumeView(services, entry.name, entry.pool, name);
    },
  }),
  route<ApiServices, typeof schema.volumeParams._output>({
    method: 'DELETE',
    path: `${v1}/volumes/:volume`,
    summary: 'Delete a volume with its snapshots',
    tag: 'volumes',
    access: 'admin',
    params: schema.volumeParams,
    status: 204,
    async handler({ params }, services) {
      assertNotVmDisk(services, params.volume);
      await services.pools.volumePool(params.volume).pool.deleteVolume(params.volume);
      changed(services, 'volume.deleted', `volume/${params.volume}`, `volume ${params.volume} deleted`);
    },
  }),
  route<ApiServices, typeof schema.volumeParams._output>({
    method: 'POST',
    path: `${v1}/volumes/:volume/flatten`,
    summary: 'Make a clone independent of its parent snapshot (a task)',
    tag: 'volumes',
    access: 'admin',
    params: schema.volumeParams,
    status: 202,
    response: schema.taskBody,
    handler({ params }, services) {
      const { pool } = services.pools.volumePool(params.volume);
      if (!pool.volumeInfo(params.volume).parent) throw new StrataError('STRATA_E_NOT_A_CLONE', `volume ${params.volume} is not a clone`, { volume: params.volume });
      return services.tasks.start('flatten', `volume/${params.volume}`, async (task) => {
        await pool.flatten(params.volume, { onProgress: (done, total) => task.progress(done, total, 'copy') });
        changed(services, 'volume.flattened', `volume/${params.volume}`, `volume ${params.volume} flattened`);
      });
    },
  }),
  route<ApiServices, typeof schema.volumeParams._output, unknown, typeof schema.exportVolumeBody._output>({
    method: 'POST',
    path: `${v1}/volumes/:volume/export`,
    summary: 'Write a volume or one of its snapshots to a new image file on the daemon host (a task)',
    tag: 'volumes',
    access: 'admin',
    params: schema.volumeParams,
    body: schema.exportVolumeBody,
    status: 202,
    response: schema.taskBody,
    handler({ params, body }, services) {
      const { pool } = services.pools.volumePool(params.volume);
      if (body.snapshot !== undefined && !pool.listSnapshots(params.volume).some((snapshot) => snapshot.name === body.snapshot)) {
        throw new StrataError('STRATA_E_SNAPSHOT_NOT_FOUND', `volume ${params.volume} has no snapshot ${body.snapshot}`, { volume: params.volume, snapshot: body.snapshot });
      }
      const exportName = body.snapshot === undefined ? params.volume : `${params.volume}@${body.snapshot}`;
      return services.tasks.start('export', `volume/${params.volume}`, async (task) => {
        await convertFromVolume(services.internalUri(exportName), body.path, body.format as ImageFormat, {
          signal: task.signal,
          onProgress: (percent) => {
            if (!task.signal.aborted) task.progress(percent, 100, 'convert');
          },
        });
        return { path: body.path, format: body.format };
      });
    },
  }),
];

const snapshotRoutes: Spec[] = [
  route<ApiServices, typeof schema.volumeParams._output>({
    method: 'GET',
    path: `${v1}/volumes/:volume/snapshots`,
    summary: 'List snapshots of a volume, with what deleting each would free',
    tag: 'snapshots',
    access: 'read',
    params: schema.volumeParams,
    response: schema.snapshotBody.array(),
    handler: async ({ params }, services) => (await services.pools.volumePool(params.volume).pool.volumeStats(params.volume)).snapshots,
  }),
  route<ApiServices, typeof schema.volumeParams._output, unknown, typeof schema.createSnapshotBody._output>({
    method: 'POST',
    path: `${v1}/volumes/:volume/snapshots`,
    summary: 'Create a snapshot (instant)',
    tag: 'snapshots',
    access: 'admin',
    params: schema.volumeParams,
    body: schema.createSnapshotBody,
    status: 201,
    response: schema.snapshotBody,
    async handler({ params, body }, services) {
      const snapshot = await services.pools.volumePool(params.volume).pool.createSnapshot(params.volume, body.name);
      changed(services, 'snapshot.created', `volume/${params.volume}`, `snapshot ${params.volume}@${body.name} created`);
      return snapshot;
    },
  }),
  route<ApiServices, typeof schema.snapshotParams._output>({
    method: 'DELETE',
    path: `${v1}/volumes/:volume/snapshots/:snapshot`,
    summary: 'Delete a snapshot (refused while it has clones)',
    tag: 'snapshots',
    access: 'admin',
    params: schema.snapshotParams,
    status: 204,
    async handler({ params }, services) {
      await services.pools.volumePool(params.volume).pool.deleteSnapshot(params.volume, params.snapshot);
      changed(services, 'snapshot.deleted', `volume/${params.volume}`, `snapshot ${params.volume}@${params.snapshot} deleted`);
    },
  }),
  route<ApiServices, typeof schema.snapshotParams._output, unknown, typeof schema.rollbackBody._output>({
    method: 'POST',
    path: `${v1}/volumes/:volume/snapshots/:snapshot/rollback`,
    summary: 'Roll the volume back to the snapshot (older ones only with destroyNewer)',
    tag: 'snapshots',
    access: 'admin',
    params: schema.snapshotParams,
    body: schema.rollbackBody,
    response: schema.volumeBody,
    async handler({ params, body }, services) {
      const { name, pool } = services.pools.volumePool(params.volume);
      await pool.rollback(params.volume, params.snapshot, { destroyNewer: body.destroyNewer });
      changed(services, 'volume.rolled-back', `volume/${params.volume}`, `volume ${params.volume} rolled back to ${params.snapshot}`);
      return volumeView(services, name, pool, params.volume);
    },
  }),
  route<ApiServices, typeof schema.snapshotParams._output, unknown, typeof schema.cloneBody._output>({
    method: 'POST',
    path: `${v1}/volumes/:volume/snapshots/:snapshot/clones`,
    summary: 'Create a writable clone of the snapshot (instant)',
    tag: 'snapshots',
    access: 'admin',
    params: schema.snapshotParams,
    body: schema.cloneBody,
    status: 201,
    response: schema.volumeBody,
    async handler({ params, body }, services) {
      await services.pools.clone(params.volume, params.snapshot, body.name);
      const { name, pool } = services.pools.volumePool(body.name);
      changed(services, 'volume.cloned', `volume/${body.name}`, `volume ${body.name} cloned from ${params.volume}@${params.snapshot}`);
      return volumeView(services, name, pool, body.name);
    },
  }),
];

function sendEventStream(services: ApiServices, after: number, reply: import('fastify').FastifyReply): void {
  if (services.events.subscriberCount >= limits.eventSubscribersMax) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `at most ${limits.eventSubscribersMax} event streams may be open`);
  }
  reply.hijack();
  const out = reply.raw;
  out.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
  out.write(': connected\n\n');
  const send = (event: { id: number }) => out.write(`id: ${event.id}\nevent: event\ndata: ${JSON.stringify(event)}\n\n`);
  for (const event of services.events.list(after)) send(event);
  const unsubscribe = services.events.subscribe(send);
  const heartbeat = setInterval(() => out.write(': keep-alive\n\n'), 15_000);
  out.on('close', () => {
    clearInterval(heartbeat);
    unsubscribe();
  });
}

const serviceRoutes: Spec[] = [
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/health`,
    summary: 'Ready check (no token needed)',
    tag: 'service',
    access: 'public',
    response: schema.healthBody,
    handler: (_input, services) => ({ status: 'ok', version: services.version }),
  }),
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/exports`,
    summary: 'NBD exports with their URIs and connected clients',
    tag: 'exports',
    access: 'read',
    response: schema.exportBody.array(),
    handler: (_input, services) => services.exports(),
  }),
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/tasks`,
    summary: 'List tasks, newest first',
    tag: 'tasks',
    access: 'read',
    response: schema.taskBody.array(),
    handler: (_input, services) => services.tasks.list(),
  }),
  route<ApiServices, typeof schema.taskParams._output>({
    method: 'GET',
    path: `${v1}/tasks/:id`,
    summary: 'Show a task',
    tag: 'tasks',
    access: 'read',
    params: schema.taskParams,
    response: schema.taskBody,
    handler: ({ params }, services) => services.tasks.get(params.id),
  }),
  route<ApiServices, typeof schema.taskParams._output>({
    method: 'POST',
    path: `${v1}/tasks/:id/cancel`,
    summary: 'Cancel a running task',
    tag: 'tasks',
    access: 'admin',
    params: schema.taskParams,
    response: schema.taskBody,
    handler: ({ params }, services) => services.tasks.cancel(params.id),
  }),
  route<ApiServices, unknown, typeof schema.eventsQuery._output>({
    method: 'GET',
    path: `${v1}/events`,
    summary: 'Events after an id, oldest first',
    tag: 'events',
    access: 'read',
    query: schema.eventsQuery,
    response: schema.eventBody.array(),
    handler: ({ query }, services) => services.events.list(query.after ?? 0),
  }),
  route<ApiServices, unknown, typeof schema.eventsQuery._output>({
    method: 'GET',
    path: `${v1}/events/stream`,
    summary: 'Server-sent events: recent events after an id, then each new one',
    tag: 'events',
    access: 'read',
    query: schema.eventsQuery,
    produces: 'text/event-stream',
    raw: (_request, reply, services, { query }) => sendEventStream(services, query.after ?? 0, reply),
  }),
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/io`,
    summary: 'Running I/O totals per volume (the console computes rates from two readings)',
    tag: 'metrics',
    access: 'read',
    response: schema.ioBody,
    handler: (_input, services) => ({ timeMs: Date.now(), volumes: services.metrics.ioTotals() }),
  }),
  route<ApiServices>({
    method: 'GET',
    path: '/metrics',
    summary: 'Prometheus metrics',
    tag: 'metrics',
    access: 'read',
    produces: 'text/plain',
    async raw(_request, reply, services) {
      const text = await services.metrics.text();
      await reply.type(services.metrics.contentType).send(text);
    },
  }),
];

const tokenRoutes: Spec[] = [
  route<ApiServices>({
    method: 'GET',
    path: `${v1}/tokens`,
    summary: 'List tokens (names and roles, never secrets)',
    tag: 'tokens',
    access: 'admin',
    response: schema.tokenBody.array(),
    handler: (_input, services) => services.tokens.list(),
  }),
  route<ApiServices, unknown, unknown, typeof schema.createTokenBody._output>({
    method: 'POST',
    path: `${v1}/tokens`,
    summary: 'Create a token; its secret is in this answer only',
    tag: 'tokens',
    access: 'admin',
    body: schema.createTokenBody,
    status: 201,
    response: schema.createdTokenBody,
    handler({ body }, services) {
      const created = services.tokens.create(body.name, body.readOnly ? 'read-only' : 'admin');
      changed(services, 'token.created', `token/${body.name}`, `token ${body.name} (${created.token.role}) created`);
      return created;
    },
  }),
  route<ApiServices, typeof schema.tokenParams._output>({
    method: 'DELETE',
    path: `${v1}/tokens/:token`,
    summary: 'Revoke a token',
    tag: 'tokens',
    access: 'admin',
    params: schema.tokenParams,
    status: 204,
    handler({ params }, services) {
      services.tokens.revoke(params.token);
      changed(services, 'token.revoked', `token/${params.token}`, `token ${params.token} revoked`);
    },
  }),
];

export const apiRoutes: readonly Spec[] = [...serviceRoutes, ...poolRoutes, ...volumeRoutes, ...snapshotRoutes, ...tokenRoutes];
