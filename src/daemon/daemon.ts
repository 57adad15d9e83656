/*
 * The Strata daemon: one process that owns the data directory's pools and serves them:
 * NBD (public listeners, plus a private unix socket for the daemon's own image
 * converter), and HTTP (REST API, metrics, web console). The composition root: it picks
 * the concrete drivers and wires the layers. Start order: pools (each takes its lock, so
 * a second daemon on the same directory stops with STRATA_E_POOL_LOCKED), tokens,
 * events, listeners. Stop order: tasks are cancelled, HTTP and NBD listeners drain their
 * in-flight requests, then the pools flush and close.
 *
 * Data directory layout:
 *   DIR/pools/NAME/     one folder per pool (SQLite metadata + packs); "default" is
 *                       created on the first start
 *   DIR/admin.token     the first admin token's secret (mode 0600)
 *   DIR/tokens.json     token names, roles and SHA-256 of their secrets (mode 0600)
 *   DIR/events.jsonl    recent events
 *   DIR/nbd.sock        the private NBD socket (no TLS; the directory is mode 0700)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { AlertWatcher, buildApiServer, EventLog, instrumentDevice, Metrics, poolSummary, TaskManager, TokenStore, type ApiServices, type ExportView } from '../api/index.js';
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { PoolSet, type ReadVerify } from '../engine/index.js';
import { VmManager } from '../vm/index.js';
import { allowList, NbdServer, poolExports, snapshotSeparator, type ExportSource, type NbdTlsOptions } from '../nbd/index.js';

export const defaultPoolName = 'default';
export const defaultNbdAddress = { host: '127.0.0.1', port: 10809 };
export const defaultHttpAddress = { host: '127.0.0.1', port: 7480 };

const here = path.dirname(fileURLToPath(import.meta.url));
const projectRoot = path.resolve(here, '..', '..');

export interface DaemonOptions {
  readonly dataDir: string;
  /** TCP address for NBD, or null for none. */
  readonly nbd: { readonly host: string; readonly port: number } | null;
  /** Unix socket path for NBD, or null for none. */
  readonly nbdSocket: string | null;
  /** TCP address for HTTP (API, metrics, console), or null for none. */
  readonly http?: { readonly host: string; readonly port: number } | null;
  readonly tls: NbdTlsOptions | null;
  /** Per-export client allow-lists (see allowList). */
  readonly allow: readonly { readonly export: string; readonly allow: readonly string[] }[];
  readonly logger: Logger;
  /** What reads from packs check (the pool tuning readVerify; default crc). */
  readonly readVerify?: ReadVerify;
  /** Thin over-commit ratio above which an event is raised. */
  readonly overcommitAlertRatio?: number;
  /** Pool tuning for tests (reclaim timers and the like). */
  readonly compactIntervalMs?: number;
}

export interface RunningDaemon {
  readonly pools: PoolSet;
  readonly nbd: NbdServer;
  readonly nbdAddress: { host: string; port: number } | null;
  readonly nbdSocket: string | null;
  readonly httpAddress: { host: string; port: number } | null;
  readonly services: ApiServices;
  readonly vms: VmManager;
  stop(): Promise<void>;
}

export function poolsDir(dataDir: string): string {
  return path.join(dataDir, 'pools');
}

export function poolDir(dataDir: string, name = defaultPoolName): string {
  return path.join(poolsDir(dataDir), name);
}

function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

function instrumented(source: ExportSource, metrics: Metrics): ExportSource {
  return {
    list: () => source.list(),
    open(name) {
      const opened = source.open(name);
      return opened && { ...opened, device: instrumentDevice(opened.device, name.split(snapshotSeparator)[0], metrics) };
    },
  };
}

function uriHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function exportViews(source: ExportSource, servers: readonly NbdServer[], urls: { tcp: string | null; socket: string | null }): ExportView[] {
  const clients = servers.flatMap((server) => server.clients());
  return source.list().map((entry) => {
    const at = entry.name.indexOf(snapshotSeparator);
    const uris = [
      ...(urls.tcp ? [`${urls.tcp}/${entry.name}`] : []),
      ...(urls.socket ? [`nbd+unix:///${entry.name}?socket=${urls.socket}`] : []),
    ];
    return {
      name: entry.name,
      volume: at < 0 ? entry.name : entry.name.slice(0, at),
      snapshot: at < 0 ? null : entry.name.slice(at + 1),
      readOnly: at >= 0,
      description: entry.description,
      uris,
      clients: clients
        .filter((client) => client.export === entry.name)
        .map((client) => ({ id: client.id, address: client.client.address ?? client.client.transport, tls: client.tls })),
    };
  });
}

interface Listeners {
  nbdAddress: { host: string; port: number } | null;
  nbdSocket: string | null;
  httpAddress: { host: string; port: number } | null;
}

async function listen(options: DaemonOptions, nbd: NbdServer, internal: NbdServer, internalSocket: string, http: FastifyInstance | null): Promise<Listeners> {
  const nbdAddress = options.nbd ? await nbd.listenTcp(options.nbd.host, options.nbd.port) : null;
  const nbdSocket = options.nbdSocket ? await nbd.listenUnix(options.nbdSocket) : null;
  fs.rmSync(internalSocket, { force: true });
  await internal.listenUnix(internalSocket);
  let httpAddress: Listeners['httpAddress'] = null;
  if (http && options.http) {
    await http.listen({ host: options.http.host, port: options.http.port });
    const address = http.server.address();
    if (address && typeof address === 'object') httpAddress = { host: address.address, port: address.port };
  }
  if (!nbdAddress && !nbdSocket && !httpAddress) throw new StrataError('STRATA_E_INVALID_ARGUMENT', 'nothing to listen on: give --http, --nbd or --nbd-socket');
  return { nbdAddress, nbdSocket, httpAddress };
}

/** Opens (creating on first start) the pools and starts the listeners. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { logger } = options;
  fs.mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const tuning = { readVerify: options.readVerify, compactIntervalMs: options.compactIntervalMs };
  const { set: pools, created } = await PoolSet.open(poolsDir(options.dataDir), defaultPoolName, { tuning });
  if (created) logger.log('info', 'created pool', { pool: defaultPoolName, dir: poolDir(options.dataDir), ...pools.get(defaultPoolName).policy });
  const tokens = TokenStore.open(options.dataDir);
  const events = new EventLog(path.join(options.dataDir, 'events.jsonl'), logger);
  const tasks = new TaskManager(events);
  const summaries = () => Promise.all(pools.list().map(({ name, pool }) => poolSummary(name, pool)));
  const internalSocket = path.join(options.dataDir, 'nbd.sock');
  const vms = await VmManager.open({ dataDir: options.dataDir, pools, nbdSocket: internalSocket, events, logger });
  const metrics = new Metrics(summaries, () => vms.usage());
  const source = instrumented(
    poolExports(() => pools.list().map((entry) => entry.pool)),
    metrics,
  );
  const nbd = new NbdServer({ exports: source, logger, tls: options.tls, access: options.allow.length > 0 ? allowList(options.allow) : undefined });
  const internal = new NbdServer({ exports: source, logger });
  const urls = { tcp: null as string | null, socket: null as string | null };
  const services: ApiServices = {
    version: packageVersion(),
    pools,
    tokens,
    tasks,
    events,
    metrics,
    exports: () => exportViews(source, [nbd, internal], urls),
    internalUri: (name) => `nbd+unix:///${name}?socket=${internalSocket}`,
    vms,
  };
  const http = options.http
    ? await buildApiServer({
        services,
        logger,
        consoleDir: path.join(projectRoot, 'web'),
        assets: {
          '/vendor/uplot/': path.join(projectRoot, 'node_modules', 'uplot', 'dist'),
          '/vendor/xterm/': path.join(projectRoot, 'node_modules', '@xterm', 'xterm'),
          '/vendor/xterm-addon-fit/': path.join(projectRoot, 'node_modules', '@xterm', 'addon-fit'),
          '/vendor/novnc/': path.join(projectRoot, 'node_modules', '@novnc', 'novnc'),
        },
      })
    : null;
  const alerts = new AlertWatcher(events, { overcommitRatio: options.overcommitAlertRatio });
  let alertTimer: NodeJS.Timeout | null = null;
  const stop = async () => {
    if (alertTimer) clearInterval(alertTimer);
    await tasks.stopAll();
    await http?.close();
    await nbd.close();
    await vms.close();
    await internal.close();
    fs.rmSync(internalSocket, { force: true });
    await pools.close();
    logger.log('info', 'stopped');
  };
  try {
    const bound = await listen(options, nbd, internal, internalSocket, http);
    const scheme = options.tls?.required ? 'nbds' : 'nbd';
    urls.tcp = bound.nbdAddress ? `${scheme}://${uriHost(bound.nbdAddress.host)}:${bound.nbdAddress.port}` : null;
    urls.socket = bound.nbdSocket;
    const checkAlerts = () => void summaries().then((list) => alerts.observe(list), () => undefined);
    checkAlerts();
    alertTimer = setInterval(checkAlerts, limits.alertIntervalMs);
    alertTimer.unref();
    return { pools, nbd, ...bound, services, vms, stop };
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
}

/** Parses HOST:PORT (IPv6 in brackets: [::1]:10809). */
export function parseHostPort(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${JSON.stringify(text)} is not HOST:PORT`);
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}
