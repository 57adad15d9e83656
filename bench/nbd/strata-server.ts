/*
 * The Strata side of the NBD benchmark, run as its own process (as qemu-nbd and nbdkit
 * are): the daemon over a data directory, NBD on the given port, the default pool
 * policy (4 KiB blocks, dedup, zstd, checksums). Prints "ready" once listening and stops
 * cleanly on SIGTERM.
 */
import { silentLogger } from '../../src/common/log.js';
import { startDaemon } from '../../src/daemon/index.js';

const [dataDir, port, sizeBytes] = process.argv.slice(2);
const daemon = await startDaemon({ dataDir, nbd: { host: '127.0.0.1', port: Number(port) }, nbdSocket: null, tls: null, allow: [], logger: silentLogger });
const pool = daemon.pools.get('default');
if (!pool.listVolumes().some((volume) => volume.name === 'disk')) await pool.createVolume('disk', Number(sizeBytes));
console.log('ready');
process.once('SIGTERM', () => {
  void daemon.stop().then(() => process.exit(0));
});
