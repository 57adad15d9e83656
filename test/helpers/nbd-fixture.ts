/*
 * An in-process NBD server over a fresh pool, for interop tests: TCP on a free loopback
 * port and a unix socket. stop() closes the server (draining in-flight requests), the
 * pool, and removes the directory.
 */
import * as path from 'node:path';
import type { Pool } from '../../src/engine/index.js';
import { NbdServer, poolExports, type ExportAccess, type NbdTlsOptions } from '../../src/nbd/index.js';
import { memoryLogger } from '../../src/common/log.js';
import type { Limits } from '../../src/common/limits.js';
import { createTestPool, makeTempDir, removeTempDir } from './temp-pool.js';

export interface NbdFixture {
  readonly pool: Pool;
  readonly server: NbdServer;
  readonly port: number;
  readonly socket: string;
  readonly dir: string;
  readonly log: ReturnType<typeof memoryLogger>;
  /** nbd://127.0.0.1:PORT/NAME */
  uri(name: string): string;
  /** nbd+unix:///NAME?socket=PATH */
  unixUri(name: string): string;
  stop(): Promise<void>;
}

export async function startNbd(
  options: { tls?: NbdTlsOptions; access?: ExportAccess; limits?: Partial<Limits>; blockSize?: number } = {},
): Promise<NbdFixture> {
  const dir = makeTempDir();
  const pool = await createTestPool(path.join(dir, 'pool'), { blockSize: options.blockSize ?? 4096 });
  const log = memoryLogger();
  const server = new NbdServer({ exports: poolExports(pool), logger: log, tls: options.tls, access: options.access, limits: options.limits });
  const { port } = await server.listenTcp('127.0.0.1', 0);
  const socket = await server.listenUnix(path.join(dir, 'nbd.sock'));
  let stopped = false;
  return {
    pool,
    server,
    port,
    socket,
    dir,
    log,
    uri: (name) => `nbd://127.0.0.1:${port}/${encodeURIComponent(name)}`,
    unixUri: (name) => `nbd+unix:///${encodeURIComponent(name)}?socket=${socket}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await server.close();
        await pool.close();
      } finally {
        removeTempDir(dir);
      }
    },
  };
}
