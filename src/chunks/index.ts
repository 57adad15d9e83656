/*
 * chunks: where chunk bytes live. The ChunkStore interface, the frame record codec,
 * compression codecs, the decompressed-frame cache, and the local pack-file driver.
 * Imports only src/common; never meta, engine or anything above.
 */
export * from './chunk-store.js';
export * from './codecs.js';
export * from './frame-codec.js';
export { FrameCache, type CachedFrame } from './frame-cache.js';
export { LocalPackStore } from './local/local-pack-store.js';
export type { LocalPackStoreOptions } from './local/local-pack-store.js';
export { fsyncDirectory, nodeFileIo } from './local/file-io.js';
export type { FileIo } from './local/file-io.js';
