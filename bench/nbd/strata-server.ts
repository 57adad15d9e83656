/*
 * The Strata side of the NBD benchmark, run as its own process (as qemu-nbd and nbdkit
 * are): the daemon over a data directory, NBD on the given port, the default pool
 * policy (4 KiB blocks, dedup, zstd, checksums). Prints "ready" once listening and stops
 * cleanly on SIGTERM.
 */
import { silentLogger } from '../../src/common/log.js';
import * as fs from 'node:fs';
import { poolDir, startDaemon } from '../../src/daemon/index.js';
import { Pool } from '../../src/engine/index.js';

const [dataDir, port, sizeBytes] = process.argv.slice(2);
const blockSize = process.env.STRATA_BENCH_NBD_BLOCK_SIZE;
if (blockSize !== undefined && !fs.existsSync(poolDir(dataDir))) {
  fs.mkdirSync(poolDir(dataDir), { recursive: true });
  await (await Pool.create(poolDir(dataDir), { blockSize: Number(blockSize) })).close();
}
const daemon = await startDaemon({ dataDir, nbd: { host: '127.0.0.1', port: Number(port) }, nbdSocket: null, tls: null, allow: [], logger: silentLogger });
const pool = daemon.pools.get('default');
if (!pool.listVolumes().some((volume) => volume.name === 'disk')) await pool.createVolume('disk', Number(sizeBytes));
console.log('ready');
process.once('SIGTERM', () => {
  void daemon.stop().then(() => process.exit(0));
});
