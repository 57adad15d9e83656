/*
 * meta: the MetaStore interface (volumes, snapshots, extent map, chunks, frames, packs)
 * and its drivers: SQLite (embedded default). Imports only src/common (and the codec
 * name type from src/chunks); never the engine or anything above it.
 */
export * from './meta-store.js';
export { SqliteMetaStore } from './sqlite/sqlite-meta-store.js';
export type { SqliteMetaStoreOptions } from './sqlite/sqlite-meta-store.js';
export { migrations, schemaVersion } from './sqlite/migrations.js';
