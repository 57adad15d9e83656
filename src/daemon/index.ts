/*
 * daemon: the composition root, the only place that picks concrete drivers (MetaStore,
 * ChunkStore) and wires engine, NBD server, API and VMs together. Not built yet: until
 * it is, the CLI opens pools directly.
 */
export {};
