/*
 * daemon: the composition root, the only place that picks concrete drivers (MetaStore,
 * ChunkStore) and wires engine, NBD server, API and VMs together. Imported only by the
 * CLI (`strata serve`).
 */
export { startDaemon, parseHostPort, poolDir, poolsDir, defaultNbdAddress, defaultHttpAddress, defaultPoolName } from './daemon.js';
export type { DaemonOptions, RunningDaemon } from './daemon.js';
