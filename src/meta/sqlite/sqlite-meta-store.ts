/*
 * SQLite MetaStore (the embedded default), on better-sqlite3. WAL journal with
 * synchronous=FULL: a commit returns only once it is durable, which is what lets the
 * engine acknowledge FLUSH after it. Statements are prepared once. better-sqlite3 is
 * synchronous, so each method runs to completion before returning its promise; batches
 * run inside one transaction.
 */
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import { StrataError, hostIoError } from '../../common/errors.js';
import { assert } from '../../common/assert.js';
import { limits } from '../../common/limits.js';
import type {
  ChunkRefCount,
  ExtentRow,
  ExtentWrite,
  FrameRecord,
  MappedExtent,
  MetaChanges,
  MetaStore,
  PackRecord,
  PackState,
  PoolCounters,
  PoolPolicy,
  SnapshotRecord,
  VolumeRecord,
} from '../meta-store.js';
import { migrations } from './migrations.js';

interface VolumeRow {
  id: number;
  name: string;
  size_bytes: number;
  head_gen: number;
  parent_id: number | null;
  parent_gen: number | null;
  created_ms: number;
}

function toVolume(row: VolumeRow): VolumeRecord {
  return {
    id: row.id,
    name: row.name,
    sizeBytes: row.size_bytes,
    headGen: row.head_gen,
    parentId: row.parent_id,
    parentGen: row.parent_gen,
    createdMs: row.created_ms,
  };
}

interface FrameRow {
  id: number;
  pack_id: number;
  offset: number;
  length: number;
  chunk_count: number;
  live_chunks: number;
}

function toFrame(row: FrameRow): FrameRecord {
  return {
    id: row.id,
    packId: row.pack_id,
    offset: row.offset,
    length: row.length,
    chunkCount: row.chunk_count,
    liveChunks: row.live_chunks,
  };
}

/** Thrown inside a transaction to roll it back on purpose (check without repair). */
const rollbackSignal = new Error('rollback');

export interface SqliteMetaStoreOptions {
  readonly cacheBytes?: number;
}

export class SqliteMetaStore implements MetaStore {
  private readonly db: Db;
  private readonly statements = new Map<string, Statement>();

  private constructor(db: Db) {
    this.db = db;
  }

  /** Opens (creating the file if needed) and migrates the schema. */
  static open(file: string, options: SqliteMetaStoreOptions = {}): SqliteMetaStore {
    let db: Db;
    try {
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = OFF');
      db.pragma(`cache_size = -${Math.floor((options.cacheBytes ?? limits.metaCacheBytesMax) / 1024)}`);
      db.pragma('temp_store = MEMORY');
      db.defaultSafeIntegers(false);
    } catch (error) {
      throw hostIoError(error, `opening metadata ${file}`);
    }
    const store = new SqliteMetaStore(db);
    store.migrate();
    return store;
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > migrations.length) {
      throw new StrataError('STRATA_E_POOL_VERSION', `metadata schema ${version} is newer than this Strata (${migrations.length})`);
    }
    for (let index = version; index < migrations.length; index += 1) {
      this.db.transaction(() => {
        this.db.exec(migrations[index]);
        this.db.pragma(`user_version = ${index + 1}`);
      })();
    }
  }

  private sql(text: string): Statement {
    let statement = this.statements.get(text);
    if (!statement) {
      statement = this.db.prepare(text);
      this.statements.set(text, statement);
    }
    return statement;
  }

  private run<T>(what: string, body: () => T): Promise<T> {
    try {
      return Promise.resolve(body());
    } catch (error) {
      return Promise.reject(error instanceof StrataError ? error : hostIoError(error, what));
    }
  }

  initialize(policy: PoolPolicy): Promise<void> {
    return this.run('initializing the pool', () => {
      if (this.sql('SELECT value FROM pool WHERE key = ?').get('policy')) {
        throw new StrataError('STRATA_E_POOL_EXISTS', 'the metadata store already holds a pool');
      }
      this.sql('INSERT INTO pool (key, value) VALUES (?, ?)').run('policy', JSON.stringify(policy));
    });
  }

  readPolicy(): Promise<PoolPolicy | null> {
    return this.run('reading the pool policy', () => {
      const row = this.sql('SELECT value FROM pool WHERE key = ?').get('policy') as { value: string } | undefined;
      return row ? (JSON.parse(row.value) as PoolPolicy) : null;
    });
  }

  close(): Promise<void> {
    return this.run('closing metadata', () => {
      if (!this.db.open) return;
      try {
        this.db.pragma('wal_checkpoint(TRUNCATE)');
      } finally {
        // A failed checkpoint (full disk) is harmless: the WAL is replayed at next open.
        this.db.close();
      }
    });
  }

  readPoolValues(prefix: string): Promise<Map<string, string>> {
    return this.run('reading pool records', () => {
      const rows = this.sql('SELECT key, value FROM pool WHERE key >= ? AND key < ? ORDER BY key').all(prefix, `${prefix}\uffff`) as {
        key: string;
        value: string;
      }[];
      return new Map(rows.map((row) => [row.key, row.value]));
    });
  }

  listVolumes(): Promise<VolumeRecord[]> {
    return this.run('listing volumes', () => (this.sql('SELECT * FROM volume ORDER BY name').all() as VolumeRow[]).map(toVolume));
  }

  getVolume(id: number): Promise<VolumeRecord | null> {
    return this.run('reading a volume', () => {
      const row = this.sql('SELECT * FROM volume WHERE id = ?').get(id) as VolumeRow | undefined;
      return row ? toVolume(row) : null;
    });
  }

  getVolumeByName(name: string): Promise<VolumeRecord | null> {
    return this.run('reading a volume', () => {
      const row = this.sql('SELECT * FROM volume WHERE name = ?').get(name) as VolumeRow | undefined;
      return row ? toVolume(row) : null;
    });
  }

  createVolume(volume: Omit<VolumeRecord, 'id'>): Promise<VolumeRecord> {
    return this.run('creating a volume', () => {
      if (this.sql('SELECT id FROM volume WHERE name = ?').get(volume.name)) {
        throw new StrataError('STRATA_E_VOLUME_EXISTS', `volume ${volume.name} already exists`, { volume: volume.name });
      }
      const result = this.sql(
        `INSERT INTO volume (name, size_bytes, head_gen, parent_id, parent_gen, created_ms) VALUES (?, ?, ?, ?, ?, ?)`,
      ).run(volume.name, volume.sizeBytes, volume.headGen, volume.parentId, volume.parentGen, volume.createdMs);
      return { ...volume, id: Number(result.lastInsertRowid) };
    });
  }

  deleteVolumeRecord(id: number): Promise<void> {
    return this.run('deleting a volume', () => {
      this.db.transaction(() => {
        this.sql('DELETE FROM snapshot WHERE volume_id = ?').run(id);
        this.sql('DELETE FROM volume WHERE id = ?').run(id);
      })();
    });
  }

  listSnapshots(volumeId: number): Promise<SnapshotRecord[]> {
    return this.run('listing snapshots', () =>
      (this.sql('SELECT * FROM snapshot WHERE volume_id = ? ORDER BY gen').all(volumeId) as {
        volume_id: number;
        gen: number;
        name: string;
        size_bytes: number;
        created_ms: number;
      }[]).map((row) => ({
        volumeId: row.volume_id,
        gen: row.gen,
        name: row.name,
        sizeBytes: row.size_bytes,
        createdMs: row.created_ms,
      })),
    );
  }

  createSnapshot(snapshot: SnapshotRecord): Promise<void> {
    return this.run('creating a snapshot', () => {
      this.db.transaction(() => {
        if (this.sql('SELECT gen FROM snapshot WHERE volume_id = ? AND name = ?').get(snapshot.volumeId, snapshot.name)) {
          throw new StrataError('STRATA_E_SNAPSHOT_EXISTS', `snapshot ${snapshot.name} already exists`, { snapshot: snapshot.name });
        }
        this.sql('INSERT INTO snapshot (volume_id, gen, name, size_bytes, created_ms) VALUES (?, ?, ?, ?, ?)').run(
          snapshot.volumeId,
          snapshot.gen,
          snapshot.name,
          snapshot.sizeBytes,
          snapshot.createdMs,
        );
        this.sql('UPDATE volume SET head_gen = ? WHERE id = ?').run(snapshot.gen + 1, snapshot.volumeId);
      })();
    });
  }

  listClones(volumeId: number, gen?: number): Promise<VolumeRecord[]> {
    return this.run('listing clones', () => {
      const rows =
        gen === undefined
          ? this.sql('SELECT * FROM volume WHERE parent_id = ? ORDER BY name').all(volumeId)
          : this.sql('SELECT * FROM volume WHERE parent_id = ? AND parent_gen = ? ORDER BY name').all(volumeId, gen);
      return (rows as VolumeRow[]).map(toVolume);
    });
  }

  readExtents(volumeId: number, firstBlock: number, count: number, gen: number): Promise<MappedExtent[]> {
    return this.run('reading the extent map', () => {
      const rows = this.sql(
        `SELECT e.block, e.birth, e.chunk, c.hash, c.frame_id, c.slot, f.pack_id, f.offset, f.length
           FROM extent e
           LEFT JOIN chunk c ON c.id = e.chunk
           LEFT JOIN frame f ON f.id = c.frame_id
          WHERE e.volume_id = ? AND e.block >= ? AND e.block < ? AND e.birth <= ?
          ORDER BY e.block, e.birth`,
      ).all(volumeId, firstBlock, firstBlock + count, gen) as {
        block: number;
        birth: number;
        chunk: number | null;
        hash: Buffer | null;
        frame_id: number | null;
        slot: number | null;
        pack_id: number | null;
        offset: number | null;
        length: number | null;
      }[];
      const result: MappedExtent[] = [];
      for (const row of rows) {
        const location =
          row.chunk !== null && row.chunk > 0 && row.hash !== null
            ? {
                chunkId: row.chunk,
                hash: row.hash,
                frameId: row.frame_id as number,
                slot: row.slot as number,
                packId: row.pack_id as number,
                offset: row.offset as number,
                length: row.length as number,
              }
            : null;
        const extent = { block: row.block, birth: row.birth, chunk: row.chunk, location };
        // Rows come in ascending birth per block: the last one of each block wins.
        if (result.length > 0 && result[result.length - 1].block === row.block) result[result.length - 1] = extent;
        else result.push(extent);
      }
      return result;
    });
  }

  latestRows(volumeId: number, blocks: readonly number[]): Promise<Map<number, ExtentRow>> {
    return this.run('reading the extent map', () => {
      const result = new Map<number, ExtentRow>();
      if (blocks.length === 0) return result;
      const low = Math.min(...blocks);
      const high = Math.max(...blocks);
      if (high - low < 4 * blocks.length) {
        // Dense (a sequential write): one range scan instead of a seek per block.
        const wanted = new Set(blocks);
        const rows = this.sql(
          'SELECT block, birth, chunk FROM extent WHERE volume_id = ? AND block >= ? AND block <= ? ORDER BY block, birth',
        ).all(volumeId, low, high) as ExtentRow[];
        for (const row of rows) if (wanted.has(row.block)) result.set(row.block, row);
        return result;
      }
      const statement = this.sql(
        'SELECT block, birth, chunk FROM extent WHERE volume_id = ? AND block = ? ORDER BY birth DESC LIMIT 1',
      );
      for (const block of blocks) {
        const row = statement.get(volumeId, block) as ExtentRow | undefined;
        if (row) result.set(block, row);
      }
      return result;
    });
  }

  rowsBornIn(
    volumeId: number,
    afterGen: number,
    upToGen: number,
    after: { birth: number; block: number } | null,
    limit: number,
  ): Promise<ExtentRow[]> {
    return this.run('reading the extent map', () => {
      assert(afterGen >= 1, 'rows born at gen 0 or 1 are not indexed by birth');
      const cursor = after ?? { birth: afterGen, block: Number.MAX_SAFE_INTEGER };
      return this.sql(
        `SELECT block, birth, chunk FROM extent INDEXED BY extent_birth
          WHERE volume_id = ? AND birth > 1 AND birth <= ? AND (birth > ? OR (birth = ? AND block > ?))
          ORDER BY birth, block LIMIT ?`,
      ).all(volumeId, upToGen, cursor.birth, cursor.birth, cursor.block, limit) as ExtentRow[];
    });
  }

  rowsFrom(volumeId: number, afterBlock: number, limit: number): Promise<ExtentRow[]> {
    return this.run('reading the extent map', () => {
      return this.sql(
        'SELECT block, birth, chunk FROM extent WHERE volume_id = ? AND block > ? ORDER BY block, birth LIMIT ?',
      ).all(volumeId, afterBlock, limit) as ExtentRow[];
    });
  }

  blocksWithRowBornIn(volumeId: number, blocks: readonly number[], afterGen: number, upToGen: number): Promise<Set<number>> {
    return this.run('reading the extent map', () => {
      const statement = this.sql(
        'SELECT 1 FROM extent WHERE volume_id = ? AND block = ? AND birth > ? AND birth <= ? LIMIT 1',
      );
      const result = new Set<number>();
      for (const block of blocks) if (statement.get(volumeId, block, afterGen, upToGen)) result.add(block);
      return result;
    });
  }

  rowsOfBlocksBornIn(volumeId: number, blocks: readonly number[], afterGen: number, upToGen: number): Promise<ExtentRow[]> {
    return this.run('reading the extent map', () => {
      const statement = this.sql('SELECT block, birth, chunk FROM extent WHERE volume_id = ? AND block = ? AND birth > ? AND birth <= ?');
      const result: ExtentRow[] = [];
      for (const block of blocks) result.push(...(statement.all(volumeId, block, afterGen, upToGen) as ExtentRow[]));
      return result;
    });
  }

  findChunksByHash(hashes: readonly Buffer[]): Promise<Map<string, ChunkRefCount>> {
    return this.run('looking up chunk hashes', () => {
      const statement = this.sql('SELECT id, refs FROM chunk WHERE substr(hash, 1, 8) = ? AND hash = ? LIMIT 1');
      const result = new Map<string, ChunkRefCount>();
      for (const hash of hashes) {
        const row = statement.get(hash.subarray(0, 8), hash) as { id: number; refs: number } | undefined;
        if (row) result.set(hash.toString('latin1'), { chunkId: row.id, refs: row.refs });
      }
      return result;
    });
  }

  getChunkInfo(chunkIds: readonly number[]): Promise<Map<number, { refs: number; storedBytes: number }>> {
    return this.run('reading chunk references', () => {
      const statement = this.sql(
        'SELECT c.refs, f.length * 1.0 / f.chunk_count AS stored FROM chunk c JOIN frame f ON f.id = c.frame_id WHERE c.id = ?',
      );
      const result = new Map<number, { refs: number; storedBytes: number }>();
      for (const id of chunkIds) {
        const row = statement.get(id) as { refs: number; stored: number } | undefined;
        if (row) result.set(id, { refs: row.refs, storedBytes: row.stored });
      }
      return result;
    });
  }

  nextIds(): Promise<{ frameId: number; chunkId: number; volumeId: number }> {
    return this.run('reading ids', () => {
      const max = (table: string) => (this.sql(`SELECT COALESCE(MAX(id), 0) AS m FROM ${table}`).get() as { m: number }).m;
      return { frameId: max('frame') + 1, chunkId: max('chunk') + 1, volumeId: max('volume') + 1 };
    });
  }

  commit(changes: MetaChanges): Promise<void> {
    return this.run('committing metadata', () => this.db.transaction(() => this.apply(changes))());
  }

  private apply(changes: MetaChanges): void {
    for (const pack of changes.packs ?? []) {
      this.sql(
        `INSERT INTO pack (id, state, bytes, chunk_count, live_chunks, retired_ms) VALUES (?, ?, ?, 0, 0, ?)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, bytes = excluded.bytes, retired_ms = excluded.retired_ms`,
      ).run(pack.id, pack.state, pack.bytes, pack.retiredMs ?? null);
    }
    for (const frame of changes.frames ?? []) {
      this.sql('INSERT INTO frame (id, pack_id, offset, length, chunk_count, live_chunks) VALUES (?, ?, ?, ?, ?, ?)').run(
        frame.id,
        frame.packId,
        frame.offset,
        frame.length,
        frame.chunkCount,
        frame.chunkCount,
      );
      this.sql('UPDATE pack SET chunk_count = chunk_count + ?, live_chunks = live_chunks + ? WHERE id = ?').run(
        frame.chunkCount,
        frame.chunkCount,
        frame.packId,
      );
    }
    for (const chunk of changes.chunks ?? []) {
      this.sql('INSERT INTO chunk (id, hash, frame_id, slot, refs) VALUES (?, ?, ?, ?, ?)').run(
        chunk.id,
        chunk.hash,
        chunk.frameId,
        chunk.slot,
        chunk.refs,
      );
    }
    const deleteExtent = this.sql('DELETE FROM extent WHERE volume_id = ? AND block = ? AND birth = ?');
    for (const row of changes.extentDeletes ?? []) deleteExtent.run(row.volumeId, row.block, row.birth);
    const writeExtent = this.sql('INSERT OR REPLACE INTO extent (volume_id, block, birth, chunk) VALUES (?, ?, ?, ?)');
    for (const row of changes.extentWrites ?? []) writeExtent.run(row.volumeId, row.block, row.birth, row.chunk);
    for (const move of changes.chunkMoves ?? []) this.moveChunk(move.chunkId, move.frameId, move.slot);
    for (const [chunkId, delta] of changes.refDeltas ?? []) {
      if (delta !== 0) this.adjustRefs(chunkId, delta);
    }
    for (const update of changes.volumeUpdates ?? []) this.updateVolume(update);
    for (const snapshot of changes.snapshotDeletes ?? []) {
      this.sql('DELETE FROM snapshot WHERE volume_id = ? AND gen = ?').run(snapshot.volumeId, snapshot.gen);
    }
    for (const record of changes.poolValues ?? []) {
      if (record.value === null) this.sql('DELETE FROM pool WHERE key = ?').run(record.key);
      else this.sql('INSERT OR REPLACE INTO pool (key, value) VALUES (?, ?)').run(record.key, record.value);
    }
  }

  private moveChunk(chunkId: number, frameId: number, slot: number): void {
    const old = this.sql('SELECT frame_id FROM chunk WHERE id = ?').get(chunkId) as { frame_id: number } | undefined;
    if (!old) return;
    this.sql('UPDATE chunk SET frame_id = ?, slot = ? WHERE id = ?').run(frameId, slot, chunkId);
    this.leaveFrame(old.frame_id);
  }

  /** One chunk fewer lives in the frame (and its pack). */
  private leaveFrame(frameId: number): void {
    const frame = this.sql('UPDATE frame SET live_chunks = live_chunks - 1 WHERE id = ? RETURNING pack_id').get(frameId) as
      | { pack_id: number }
      | undefined;
    if (frame) this.sql('UPDATE pack SET live_chunks = live_chunks - 1 WHERE id = ?').run(frame.pack_id);
  }

  private adjustRefs(chunkId: number, delta: number): void {
    const row = this.sql('UPDATE chunk SET refs = refs + ? WHERE id = ? RETURNING refs, frame_id').get(delta, chunkId) as
      | { refs: number; frame_id: number }
      | undefined;
    if (!row || row.refs > 0) return;
    this.sql('DELETE FROM chunk WHERE id = ?').run(chunkId);
    this.leaveFrame(row.frame_id);
  }

  private updateVolume(update: NonNullable<MetaChanges['volumeUpdates']>[number]): void {
    const sets: string[] = [];
    const values: unknown[] = [];
    const fields: [string, unknown][] = [
      ['size_bytes', update.sizeBytes],
      ['head_gen', update.headGen],
      ['name', update.name],
    ];
    for (const [column, value] of fields) {
      if (value === undefined) continue;
      sets.push(`${column} = ?`);
      values.push(value);
    }
    if (update.parentId === null) sets.push('parent_id = NULL', 'parent_gen = NULL');
    if (sets.length === 0) return;
    this.db.prepare(`UPDATE volume SET ${sets.join(', ')} WHERE id = ?`).run(...values, update.id);
  }

  listPacks(): Promise<PackRecord[]> {
    return this.run('listing packs', () =>
      (this.sql('SELECT * FROM pack ORDER BY id').all() as {
        id: number;
        state: PackState;
        bytes: number;
        chunk_count: number;
        live_chunks: number;
        retired_ms: number | null;
      }[]).map((row) => ({
        id: row.id,
        state: row.state,
        bytes: row.bytes,
        chunkCount: row.chunk_count,
        liveChunks: row.live_chunks,
        retiredMs: row.retired_ms,
      })),
    );
  }

  liveFramesOfPack(packId: number): Promise<FrameRecord[]> {
    return this.run('listing frames', () =>
      (this.sql('SELECT * FROM frame WHERE pack_id = ? AND live_chunks > 0 ORDER BY offset').all(packId) as FrameRow[]).map(
        toFrame,
      ),
    );
  }

  chunksOfFrame(frameId: number, hashes: readonly Buffer[]): Promise<{ chunkId: number; slot: number; hash: Buffer }[]> {
    return this.run('listing chunks of a frame', () => {
      const statement = this.sql('SELECT id, slot, hash FROM chunk WHERE substr(hash, 1, 8) = ? AND frame_id = ?');
      const seen = new Set<number>();
      const result: { chunkId: number; slot: number; hash: Buffer }[] = [];
      for (const hash of hashes) {
        for (const row of statement.all(hash.subarray(0, 8), frameId) as { id: number; slot: number; hash: Buffer }[]) {
          if (seen.has(row.id) || !row.hash.equals(hash)) continue;
          seen.add(row.id);
          result.push({ chunkId: row.id, slot: row.slot, hash: row.hash });
        }
      }
      return result.sort((a, b) => a.slot - b.slot);
    });
  }

  deletePackRecord(packId: number): Promise<void> {
    return this.run('deleting a pack record', () => {
      this.db.transaction(() => {
        this.sql('DELETE FROM frame WHERE pack_id = ?').run(packId);
        this.sql('DELETE FROM pack WHERE id = ?').run(packId);
      })();
    });
  }

  packFrameEnds(): Promise<Map<number, number>> {
    return this.run('reading pack ends', () => {
      const rows = this.sql('SELECT pack_id, MAX(offset + length) AS end FROM frame GROUP BY pack_id').all() as {
        pack_id: number;
        end: number;
      }[];
      return new Map(rows.map((row) => [row.pack_id, row.end]));
    });
  }

  counters(): Promise<PoolCounters> {
    return this.run('reading pool counters', () => {
      const chunks = this.sql('SELECT COUNT(*) AS n, COALESCE(SUM(refs), 0) AS refs FROM chunk').get() as { n: number; refs: number };
      const frames = this.sql(
        `SELECT COALESCE(SUM(length), 0) AS bytes,
                COALESCE(SUM(CASE WHEN live_chunks > 0 THEN length * live_chunks * 1.0 / chunk_count ELSE 0 END), 0) AS live
           FROM frame`,
      ).get() as { bytes: number; live: number };
      const pageSize = this.db.pragma('page_size', { simple: true }) as number;
      const pageCount = this.db.pragma('page_count', { simple: true }) as number;
      return {
        chunkCount: chunks.n,
        frameBytes: frames.bytes,
        liveFrameBytes: Math.round(frames.live),
        referencedChunks: chunks.refs,
        metadataBytes: pageSize * pageCount,
      };
    });
  }

  volumeUsage(
    volumeId: number,
    gen: number,
  ): Promise<{ mappedBlocks: number; zeroBlocks: number; uniqueChunks: number; sharedChunks: number; uniqueStoredBytes: number }> {
    return this.run('measuring volume usage', () => {
      const visible = this.sql(
        `SELECT SUM(CASE WHEN chunk > 0 THEN 1 ELSE 0 END) AS mapped, SUM(CASE WHEN chunk = 0 THEN 1 ELSE 0 END) AS zero
           FROM extent e
          WHERE volume_id = ? AND birth = (SELECT MAX(birth) FROM extent x WHERE x.volume_id = e.volume_id AND x.block = e.block AND x.birth <= ?)`,
      ).get(volumeId, gen) as { mapped: number | null; zero: number | null };
      const sharing = this.sql(
        `SELECT SUM(CASE WHEN u.n = c.refs THEN 1 ELSE 0 END) AS uniq,
                SUM(CASE WHEN u.n < c.refs THEN 1 ELSE 0 END) AS shared,
                SUM(CASE WHEN u.n = c.refs THEN f.length * 1.0 / f.chunk_count ELSE 0 END) AS uniq_bytes
           FROM (SELECT chunk, COUNT(*) AS n FROM extent WHERE volume_id = ? AND chunk > 0 GROUP BY chunk) u
           JOIN chunk c ON c.id = u.chunk JOIN frame f ON f.id = c.frame_id`,
      ).get(volumeId) as { uniq: number | null; shared: number | null; uniq_bytes: number | null };
      return {
        mappedBlocks: visible.mapped ?? 0,
        zeroBlocks: visible.zero ?? 0,
        uniqueChunks: sharing.uniq ?? 0,
        sharedChunks: sharing.shared ?? 0,
        uniqueStoredBytes: Math.round(sharing.uniq_bytes ?? 0),
      };
    });
  }

  scanChunks(afterId: number, limit: number): Promise<{ id: number; hash: Buffer; frameId: number; slot: number; refs: number }[]> {
    return this.run('scanning chunks', () =>
      (this.sql('SELECT id, hash, frame_id, slot, refs FROM chunk WHERE id > ? ORDER BY id LIMIT ?').all(afterId, limit) as {
        id: number;
        hash: Buffer;
        frame_id: number;
        slot: number;
        refs: number;
      }[]).map((row) => ({ id: row.id, hash: row.hash, frameId: row.frame_id, slot: row.slot, refs: row.refs })),
    );
  }

  scanFrames(afterId: number, limit: number): Promise<FrameRecord[]> {
    return this.run('scanning frames', () =>
      (this.sql('SELECT * FROM frame WHERE id > ? ORDER BY id LIMIT ?').all(afterId, limit) as FrameRow[]).map(toFrame),
    );
  }

  countRefsFromExtents(afterChunkId: number, limit: number): Promise<Map<number, number>> {
    return this.run('counting references', () => {
      // One pass over the extent map per page of chunk ids: the map has no index on
      // chunk (it would cost as much as the map itself), and check is rare.
      const ids = this.sql('SELECT id FROM chunk WHERE id > ? ORDER BY id LIMIT ?').pluck().all(afterChunkId, limit) as number[];
      const result = new Map<number, number>(ids.map((id) => [id, 0]));
      if (ids.length === 0) return result;
      const rows = this.sql(
        'SELECT chunk, COUNT(*) AS n FROM extent WHERE chunk > ? AND chunk <= ? GROUP BY chunk',
      ).all(afterChunkId, ids[ids.length - 1]) as { chunk: number; n: number }[];
      for (const row of rows) result.set(row.chunk, row.n);
      return result;
    });
  }

  danglingExtentRefs(limit: number): Promise<ExtentWrite[]> {
    return this.run('finding dangling references', () =>
      (this.sql(
        `SELECT e.volume_id, e.block, e.birth, e.chunk FROM extent e
          WHERE e.chunk > 0 AND NOT EXISTS (SELECT 1 FROM chunk c WHERE c.id = e.chunk) LIMIT ?`,
      ).all(limit) as { volume_id: number; block: number; birth: number; chunk: number }[]).map((row) => ({
        volumeId: row.volume_id,
        block: row.block,
        birth: row.birth,
        chunk: row.chunk,
      })),
    );
  }

  repairChunkRefs(fixes: Map<number, number>): Promise<void> {
    return this.run('repairing references', () => {
      this.db.transaction(() => {
        for (const [chunkId, refs] of fixes) {
          this.sql('UPDATE chunk SET refs = ? WHERE id = ?').run(refs, chunkId);
          if (refs === 0) this.adjustRefs(chunkId, 0);
        }
      })();
    });
  }

  chunkIdsOfFrame(frameId: number): Promise<number[]> {
    return this.run('listing chunks of a frame', () => this.sql('SELECT id FROM chunk WHERE frame_id = ?').pluck().all(frameId) as number[]);
  }

  chunksWithoutFrame(limit: number): Promise<number[]> {
    return this.run('finding chunks without frames', () =>
      this.sql(
        `SELECT c.id FROM chunk c LEFT JOIN frame f ON f.id = c.frame_id
          WHERE f.id IS NULL OR c.slot >= f.chunk_count OR c.slot < 0 LIMIT ?`,
      )
        .pluck()
        .all(limit) as number[],
    );
  }

  repairFrameAndPackCounters(dryRun: boolean): Promise<number> {
    return this.run('repairing counters', () => {
      let changed = 0;
      try {
        this.db.transaction(() => {
          changed = this.recountFramesAndPacks();
          if (dryRun) throw rollbackSignal;
        })();
      } catch (error) {
        if (error !== rollbackSignal) throw error;
      }
      return changed;
    });
  }

  private recountFramesAndPacks(): number {
    this.db.exec(`DROP TABLE IF EXISTS temp.frame_live;
      CREATE TEMP TABLE frame_live (frame_id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
      INSERT INTO frame_live SELECT frame_id, COUNT(*) FROM chunk GROUP BY frame_id;`);
    // Prepared here, not cached: they name a temp table that is rebuilt on every call.
    const frames = this.db
      .prepare(
        `UPDATE frame SET live_chunks = COALESCE((SELECT n FROM frame_live l WHERE l.frame_id = frame.id), 0)
          WHERE live_chunks != COALESCE((SELECT n FROM frame_live l WHERE l.frame_id = frame.id), 0)`,
      )
      .run().changes;
    const packs = this.db
      .prepare(
        `UPDATE pack SET live_chunks = (SELECT COALESCE(SUM(live_chunks), 0) FROM frame f WHERE f.pack_id = pack.id),
                         chunk_count = (SELECT COALESCE(SUM(chunk_count), 0) FROM frame f WHERE f.pack_id = pack.id)
          WHERE live_chunks != (SELECT COALESCE(SUM(live_chunks), 0) FROM frame f WHERE f.pack_id = pack.id)
             OR chunk_count != (SELECT COALESCE(SUM(chunk_count), 0) FROM frame f WHERE f.pack_id = pack.id)`,
      )
      .run().changes;
    this.db.exec('DROP TABLE temp.frame_live');
    return frames + packs;
  }
}
