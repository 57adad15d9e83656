/*
 * The Strata daemon: one process that owns the data directory's pool and serves it (NBD
 * now; the REST API and web console join here). The composition root: it picks the
 * concrete drivers and wires the layers. Start order: pool (which takes the pool lock, so
 * a second daemon on the same directory stops with STRATA_E_POOL_LOCKED), then
 * listeners. Stop order: listeners drain their in-flight requests, then the pool flushes
 * and closes.
 *
 * Data directory layout:
 *   DIR/pools/default/   the pool created on first start (SQLite metadata + packs)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StrataError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { Pool, type PoolOpenOptions, type ReadVerify } from '../engine/index.js';
import { allowList, NbdServer, poolExports, type NbdTlsOptions } from '../nbd/index.js';

export const defaultPoolName = 'default';
export const defaultNbdAddress = { host: '127.0.0.1', port: 10809 };

export interface DaemonOptions {
  readonly dataDir: string;
  /** TCP address for NBD, or null for none. */
  readonly nbd: { readonly host: string; readonly port: number } | null;
  /** Unix socket path for NBD, or null for none. */
  readonly nbdSocket: string | null;
  readonly tls: NbdTlsOptions | null;
  /** Per-export client allow-lists (see allowList). */
  readonly allow: readonly { readonly export: string; readonly allow: readonly string[] }[];
  readonly logger: Logger;
  /** What reads from packs check (the pool tuning readVerify; default crc). */
  readonly readVerify?: ReadVerify;
}

export interface RunningDaemon {
  readonly pool: Pool;
  readonly nbd: NbdServer;
  readonly nbdAddress: { host: string; port: number } | null;
  readonly nbdSocket: string | null;
  stop(): Promise<void>;
}

export function poolDir(dataDir: string, name = defaultPoolName): string {
  return path.join(dataDir, 'pools', name);
}

/** Opens (creating on first start) the default pool and starts the listeners. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  fs.mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const dir = poolDir(options.dataDir);
  const open = { tuning: { readVerify: options.readVerify } };
  const pool = fs.existsSync(path.join(dir, 'meta.sqlite')) ? await Pool.open(dir, open) : await createDefaultPool(dir, options.logger, open);
  const nbd = new NbdServer({
    exports: poolExports(pool),
    logger: options.logger,
    tls: options.tls,
    access: options.allow.length > 0 ? allowList(options.allow) : undefined,
  });
  try {
    const nbdAddress = options.nbd ? await nbd.listenTcp(options.nbd.host, options.nbd.port) : null;
    const nbdSocket = options.nbdSocket ? await nbd.listenUnix(options.nbdSocket) : null;
    if (!nbdAddress && !nbdSocket) throw new StrataError('STRATA_E_INVALID_ARGUMENT', 'nothing to listen on: give --nbd or --nbd-socket');
    return {
      pool,
      nbd,
      nbdAddress,
      nbdSocket,
      async stop() {
        await nbd.close();
        await pool.close();
        options.logger.log('info', 'stopped');
      },
    };
  } catch (error) {
    await nbd.close();
    await pool.close();
    throw error;
  }
}

async function createDefaultPool(dir: string, logger: Logger, open: PoolOpenOptions): Promise<Pool> {
  const pool = await Pool.create(dir, {}, open);
  logger.log('info', 'created pool', { pool: defaultPoolName, dir, ...pool.policy });
  return pool;
}

/** Parses HOST:PORT (IPv6 in brackets: [::1]:10809). */
export function parseHostPort(text: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${JSON.stringify(text)} is not HOST:PORT`);
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}
