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
import {
  hashPrefix,
  ZERO_CHUNK,
  type ChunkCandidate,
  type ChunkLocation,
  type ChunkRef,
  type ExtentDelete,
  type ExtentRow,
  type ExtentWrite,
  type FrameRecord,
  type NewFrame,
  type MappedExtent,
  type MetaChanges,
  type MetaStore,
  type PackRecord,
  type PackState,
  type PoolCounters,
  type PoolPolicy,
  type SnapshotRecord,
  type VolumeRecord,
} from '../meta-store.js';
import { decodeGroup, emptySlots, encodeGroup, forEachRun, groupBlocks, groupOf, type GroupSlots } from './extent-groups.js';
import { foldAt, GroupViewCache, type GroupRow, type GroupView } from './group-views.js';
import { LocationTable, PrefixChunkTable } from './location-table.js';
import { migrations } from './migrations.js';
import { PrefixFilter } from './prefix-filter.js';

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

/** The columns a chunk location is read from, in ChunkLocation's order (rows in raw mode). */
const locationColumns = 'c.id, c.hash_prefix, c.frame_id, c.slot, f.pack_id, f.offset, f.length, f.chunk_count';

/** Chunk ids closer than this are located with one range query. */
const locateGapMax = 32;

/**
 * Folds group rows (ascending by group, then birth) into the newest value and its birth
 * per block of each group; births[slot] is -1 where no row sets the block.
 */
function foldGroups(rows: readonly GroupRow[], visit: (grp: number, slots: GroupSlots, births: number[]) => void): void {
  let index = 0;
  while (index < rows.length) {
    const grp = rows[index].grp;
    const slots = emptySlots();
    const births = new Array<number>(groupBlocks).fill(-1);
    for (; index < rows.length && rows[index].grp === grp; index += 1) {
      const birth = rows[index].birth;
      forEachRun(rows[index].runs, (slot, length, first) => {
        for (let offset = 0; offset < length; offset += 1) {
          slots[slot + offset] = first === null || first === 0 ? first : first + offset;
          births[slot + offset] = birth;
        }
      });
    }
    visit(grp, slots, births);
  }
}

/** The block rows one group row stands for, ascending by block. */
function expandRow(row: GroupRow): ExtentRow[] {
  const result: ExtentRow[] = [];
  const base = row.grp * groupBlocks;
  forEachRun(row.runs, (slot, length, first) => {
    for (let offset = 0; offset < length; offset += 1) {
      result.push({ block: base + slot + offset, birth: row.birth, chunk: first === null || first === 0 ? first : first + offset });
    }
  });
  return result;
}

/** Thrown inside a transaction to roll it back on purpose (check without repair). */
const rollbackSignal = new Error('rollback');

export interface SqliteMetaStoreOptions {
  readonly cacheBytes?: number;
}

/**
 * Batches of `count` items for multi-row statements: as many of 64 as fit, then of 8,
 * then single ones (three statement shapes per kind, all prepared once).
 */
function* batchesOf(count: number): Generator<{ start: number; size: number }> {
  let start = 0;
  for (const size of [64, 8, 1]) {
    for (; count - start >= size; start += size) yield { start, size };
  }
}

function placeholders(count: number, columns = 1): string {
  const row = columns === 1 ? '?' : `(${new Array(columns).fill('?').join(', ')})`;
  return new Array(count).fill(row).join(', ');
}

export class SqliteMetaStore implements MetaStore {
  private readonly db: Db;
  private readonly statements = new Map<string, Statement>();
  /**
   * Recently read chunk locations. A chunk's location changes only when it moves (heal,
   * compaction) or dies; both drop it here, inside the transaction that changes it.
   */
  private readonly locations = new LocationTable(limits.metaLocationCacheEntries);
  /** Recently read extent groups (see GroupViewCache); a commit drops the groups it changes. */
  private readonly groups = new GroupViewCache(limits.metaGroupCacheEntries);
  /** The chunk last stored or looked up per hash prefix (see recentChunks). */
  private readonly recentByPrefix = new PrefixChunkTable(limits.metaRecentChunkEntries);
  /** Per volume, a count of commits that changed its extent rows (see extentEpoch). */
  private readonly extentEpochs = new Map<number, number>();
  /** Hash-prefix buckets that hold chunks (see PrefixFilter); built on first look-up. */
  private filter: PrefixFilter | null = null;
  /** Chunks that left each frame in the transaction being applied (see leaveFrame). */
  private readonly framesLeft = new Map<number, number>();

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
        // Its rows are gone already (deleted through commits); a new volume may reuse the id.
        this.groups.clear();
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

  readExtents(volumeId: number, firstBlock: number, count: number, gen: number, withLocations = true): Promise<MappedExtent[]> {
    return this.run('reading the extent map', () => {
      const end = firstBlock + count;
      const firstGrp = groupOf(firstBlock);
      const views = this.groupViews(volumeId, firstGrp, groupOf(end - 1));
      // Plain parallel arrays, then one object per row: reads of large ranges make
      // hundreds of rows per call, and object spreads cost ten times more here.
      const blocks: number[] = [];
      const births: number[] = [];
      const chunks: ChunkRef[] = [];
      for (let index = 0; index < views.length; index += 1) {
        if (views[index].maxBirth < 0) continue;
        const { slots, births: slotBirths } = foldAt(views[index], gen);
        const base = (firstGrp + index) * groupBlocks;
        const last = Math.min(groupBlocks, end - base);
        for (let slot = Math.max(0, firstBlock - base); slot < last; slot += 1) {
          if (slotBirths[slot] < 0) continue;
          blocks.push(base + slot);
          births.push(slotBirths[slot]);
          chunks.push(slots[slot] as ChunkRef);
        }
      }
      const locations = withLocations ? this.locate(chunks) : new Map<number, ChunkLocation>();
      const result: MappedExtent[] = new Array<MappedExtent>(blocks.length);
      for (let index = 0; index < blocks.length; index += 1) {
        const chunk = chunks[index];
        const location = chunk !== null && chunk > 0 ? (locations.get(chunk) ?? null) : null;
        result[index] = { block: blocks[index], birth: births[index], chunk, location };
      }
      return result;
    });
  }

  /** Views of a volume's groups [firstGrp, lastGrp], from the cache or one range query. */
  private groupViews(volumeId: number, firstGrp: number, lastGrp: number) {
    return this.groups.range(
      volumeId,
      firstGrp,
      lastGrp,
      (first, last) => this.sql('SELECT grp, birth, runs FROM extent WHERE volume_id = ? AND grp >= ? AND grp <= ? ORDER BY grp, birth').all(volumeId, first, last) as GroupRow[],
    );
  }

  /**
   * Locations of the listed chunks that exist (and maybe of some neighbours): from the
   * location cache, the rest with one range query per cluster of ids.
   */
  private locate(chunks: readonly ChunkRef[]): Map<number, ChunkLocation> {
    const result = new Map<number, ChunkLocation>();
    const missing = new Set<number>();
    for (const chunk of chunks) {
      if (chunk === null || chunk <= 0 || result.has(chunk)) continue;
      const cached = this.locations.get(chunk);
      if (cached === undefined) missing.add(chunk);
      else result.set(chunk, cached);
    }
    const ids = [...missing].sort((a, b) => a - b);
    if (ids.length === 0) return result;
    // Rows as arrays (raw mode): a large read locates hundreds of chunks, and building
    // the row objects costs better-sqlite3 more than the query does.
    const statement = this.sql(
      `SELECT ${locationColumns} FROM chunk c JOIN frame f ON f.id = c.frame_id WHERE c.id >= ? AND c.id <= ? /* raw */`,
    ).raw(true);
    for (let index = 0; index < ids.length; ) {
      let last = index;
      while (last + 1 < ids.length && ids[last + 1] - ids[last] <= locateGapMax) last += 1;
      // The whole aligned window of ids around the cluster: neighbours (mostly the same
      // frame's chunks) come at little extra cost and spare later random reads a query.
      const from = ids[index] - (ids[index] % locateGapMax);
      const to = ids[last] - (ids[last] % locateGapMax) + locateGapMax - 1;
      for (const row of statement.all(from, to) as number[][]) {
        const location = this.rememberRow(row);
        result.set(location.chunkId, location);
      }
      index = last + 1;
    }
    return result;
  }


  /** A chunk location from a raw row of `locationColumns`, remembered in the location table. */
  private rememberRow([chunkId, hashPrefix, frameId, slot, packId, offset, length, frameChunks]: number[]): ChunkLocation {
    const location: ChunkLocation = { chunkId, hashPrefix, frameId, slot, packId, offset, length, frameChunks };
    this.locations.set(location);
    return location;
  }

  extentEpoch(volumeId: number): number {
    return this.extentEpochs.get(volumeId) ?? 0;
  }

  latestRows(volumeId: number, blocks: readonly number[]): Promise<Map<number, ExtentRow>> {
    return this.run('reading the extent map', () => {
      const result = new Map<number, ExtentRow>();
      if (blocks.length === 0) return result;
      const groups = [...new Set(blocks.map(groupOf))].sort((a, b) => a - b);
      const views = new Map<number, GroupView>();
      if (groups[groups.length - 1] - groups[0] < 4 * groups.length) {
        // Dense (a sequential write): one range scan instead of a seek per group.
        this.groupViews(volumeId, groups[0], groups[groups.length - 1]).forEach((view, index) => views.set(groups[0] + index, view));
      } else {
        for (const grp of groups) views.set(grp, this.groupViews(volumeId, grp, grp)[0]);
      }
      for (const block of blocks) {
        const view = views.get(groupOf(block)) as GroupView;
        if (view.maxBirth < 0) continue;
        const fold = foldAt(view, Number.MAX_SAFE_INTEGER);
        const slot = block % groupBlocks;
        if (fold.births[slot] >= 0) result.set(block, { block, birth: fold.births[slot], chunk: fold.slots[slot] as ChunkRef });
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
      const statement = this.sql(
        `SELECT grp, birth, runs FROM extent INDEXED BY extent_birth
          WHERE volume_id = ? AND birth > 1 AND birth <= ? AND (birth > ? OR (birth = ? AND grp >= ?))
          ORDER BY birth, grp LIMIT ?`,
      );
      const result: ExtentRow[] = [];
      let key = after === null ? { birth: afterGen, grp: Number.MAX_SAFE_INTEGER } : { birth: after.birth, grp: groupOf(after.block) };
      for (;;) {
        const rows = statement.all(volumeId, upToGen, key.birth, key.birth, key.grp, limit) as GroupRow[];
        for (const row of rows) {
          for (const extent of expandRow(row)) {
            if (after !== null && extent.birth === after.birth && extent.block <= after.block) continue;
            result.push(extent);
            if (result.length === limit) return result;
          }
        }
        if (rows.length < limit) return result;
        const last = rows[rows.length - 1];
        key = { birth: last.birth, grp: last.grp + 1 };
      }
    });
  }

  rowsFrom(volumeId: number, afterBlock: number, limit: number): Promise<ExtentRow[]> {
    return this.run('reading the extent map', () => {
      const next = this.sql('SELECT MIN(grp) AS grp FROM extent WHERE volume_id = ? AND grp >= ?');
      const window = this.sql('SELECT grp, birth, runs FROM extent WHERE volume_id = ? AND grp >= ? AND grp < ? ORDER BY grp, birth');
      const windowGroups = Math.max(1, Math.ceil(limit / groupBlocks));
      const result: ExtentRow[] = [];
      let grp = groupOf(afterBlock + 1);
      while (result.length < limit) {
        const first = (next.get(volumeId, grp) as { grp: number | null }).grp;
        if (first === null) break;
        const rows = window.all(volumeId, first, first + windowGroups) as GroupRow[];
        const extents = rows.flatMap(expandRow).filter((row) => row.block > afterBlock);
        extents.sort((a, b) => a.block - b.block || a.birth - b.birth);
        result.push(...extents);
        grp = first + windowGroups;
      }
      return result;
    });
  }

  blocksWithRowBornIn(volumeId: number, blocks: readonly number[], afterGen: number, upToGen: number): Promise<Set<number>> {
    return this.run('reading the extent map', () => {
      const wanted = new Set(blocks);
      return new Set(this.rowsOfGroupsBornIn(volumeId, blocks, afterGen, upToGen).filter((row) => wanted.has(row.block)).map((row) => row.block));
    });
  }

  rowsOfBlocksBornIn(volumeId: number, blocks: readonly number[], afterGen: number, upToGen: number): Promise<ExtentRow[]> {
    return this.run('reading the extent map', () => {
      const wanted = new Set(blocks);
      return this.rowsOfGroupsBornIn(volumeId, blocks, afterGen, upToGen).filter((row) => wanted.has(row.block));
    });
  }

  /** Every row born in (afterGen, upToGen] of the groups holding the listed blocks. */
  private rowsOfGroupsBornIn(volumeId: number, blocks: readonly number[], afterGen: number, upToGen: number): ExtentRow[] {
    const statement = this.sql('SELECT grp, birth, runs FROM extent WHERE volume_id = ? AND grp = ? AND birth > ? AND birth <= ?');
    const result: ExtentRow[] = [];
    for (const grp of new Set(blocks.map(groupOf))) {
      for (const row of statement.all(volumeId, grp, afterGen, upToGen) as GroupRow[]) result.push(...expandRow(row));
    }
    return result;
  }

  private prefixFilter(): PrefixFilter {
    if (this.filter === null) {
      const filter = new PrefixFilter(limits.metaPrefixFilterLog2Bits);
      for (const prefix of this.sql('SELECT hash_prefix FROM chunk').pluck().iterate() as IterableIterator<number>) filter.add(prefix);
      this.filter = filter;
    }
    return this.filter;
  }

  recentChunks(hashes: readonly Buffer[]): (ChunkLocation | undefined)[] {
    return hashes.map((hash) => {
      const chunkId = this.recentByPrefix.get(hashPrefix(hash));
      // A chunk that died or moved has left the location table: no hint then.
      return chunkId === undefined ? undefined : this.locations.get(chunkId);
    });
  }

  chunkCandidates(hashes: readonly Buffer[]): Promise<Map<string, ChunkCandidate[]>> {
    return this.run('looking up chunk hashes', () => {
      // Rows as arrays (raw mode): this runs once per block a destage stores.
      const statement = this.sql(
        `SELECT ${locationColumns}, c.refs FROM chunk c JOIN frame f ON f.id = c.frame_id WHERE c.hash_prefix = ? /* raw */`,
      ).raw(true);
      const result = new Map<string, ChunkCandidate[]>();
      const filter = this.prefixFilter();
      for (const hash of hashes) {
        const prefix = hashPrefix(hash);
        if (!filter.mayHave(prefix)) continue;
        const rows = statement.all(prefix) as number[][];
        if (rows.length === 0) continue;
        result.set(
          hash.toString('latin1'),
          rows.map((row) => {
            const location = this.rememberRow(row);
            this.recentByPrefix.set(prefix, location.chunkId);
            return { chunkId: location.chunkId, refs: row[8], location };
          }),
        );
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
    return this.run('committing metadata', () => {
      this.db.transaction(() => this.apply(changes))();
      this.rememberNewChunks(changes);
      this.groups.keepRewritten();
    });
  }

  /**
   * Puts the locations of the chunks a commit stored (in frames it recorded) into the
   * location cache, once the commit is durable: the reads that follow a write find them
   * without a query.
   */
  private rememberNewChunks(changes: MetaChanges): void {
    if (!changes.chunks?.length || !changes.frames?.length) return;
    const frames = new Map<number, NewFrame>();
    for (const frame of changes.frames) frames.set(frame.id, frame);
    for (const chunk of changes.chunks) {
      const frame = frames.get(chunk.frameId);
      if (frame === undefined) continue;
      const prefix = hashPrefix(chunk.hash);
      this.recentByPrefix.set(prefix, chunk.id);
      this.locations.set({
        chunkId: chunk.id,
        hashPrefix: prefix,
        frameId: frame.id,
        slot: chunk.slot,
        packId: frame.packId,
        offset: frame.offset,
        length: frame.length,
        frameChunks: frame.chunkCount,
      });
    }
  }

  private apply(changes: MetaChanges): void {
    this.framesLeft.clear(); // nothing left over from a transaction that failed
    this.groups.dropRewritten();
    for (const pack of changes.packs ?? []) {
      this.sql(
        `INSERT INTO pack (id, state, bytes, chunk_count, live_chunks, retired_ms) VALUES (?, ?, ?, 0, 0, ?)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, bytes = excluded.bytes, retired_ms = excluded.retired_ms`,
      ).run(pack.id, pack.state, pack.bytes, pack.retiredMs ?? null);
    }
    const packChunks = new Map<number, number>();
    const frames = changes.frames ?? [];
    const frameValues = new Array<number>(frames.length * 6);
    frames.forEach((frame, index) => {
      const at = index * 6;
      frameValues[at] = frame.id;
      frameValues[at + 1] = frame.packId;
      frameValues[at + 2] = frame.offset;
      frameValues[at + 3] = frame.length;
      frameValues[at + 4] = frame.chunkCount;
      frameValues[at + 5] = frame.chunkCount;
      packChunks.set(frame.packId, (packChunks.get(frame.packId) ?? 0) + frame.chunkCount);
    });
    this.insertRows('INSERT INTO frame (id, pack_id, offset, length, chunk_count, live_chunks)', 6, frameValues);
    // One update per pack, not per frame: random writes make many one-chunk frames.
    for (const [packId, count] of packChunks) {
      this.sql('UPDATE pack SET chunk_count = chunk_count + ?, live_chunks = live_chunks + ? WHERE id = ?').run(count, count, packId);
    }
    const chunks = changes.chunks ?? [];
    const chunkValues = new Array<number>(chunks.length * 5);
    chunks.forEach((chunk, index) => {
      const at = index * 5;
      const prefix = hashPrefix(chunk.hash);
      chunkValues[at] = chunk.id;
      chunkValues[at + 1] = prefix;
      chunkValues[at + 2] = chunk.frameId;
      chunkValues[at + 3] = chunk.slot;
      chunkValues[at + 4] = chunk.refs;
      // Set before the commit is known to succeed: a bit too many only costs a query.
      this.filter?.add(prefix);
    });
    this.insertRows('INSERT INTO chunk (id, hash_prefix, frame_id, slot, refs)', 5, chunkValues);
    this.applyExtentChanges(changes.extentDeletes ?? [], changes.extentWrites ?? []);
    for (const move of changes.chunkMoves ?? []) this.moveChunk(move.chunkId, move.frameId, move.slot);
    const dropsOfOne: number[] = [];
    for (const [chunkId, delta] of changes.refDeltas ?? []) {
      if (delta === -1) dropsOfOne.push(chunkId);
      else if (delta !== 0) this.adjustRefs(chunkId, delta);
    }
    this.dropOneRef(dropsOfOne);
    this.settleFrameCounts();
    for (const update of changes.volumeUpdates ?? []) this.updateVolume(update);
    for (const snapshot of changes.snapshotDeletes ?? []) {
      this.sql('DELETE FROM snapshot WHERE volume_id = ? AND gen = ?').run(snapshot.volumeId, snapshot.gen);
    }
    for (const record of changes.poolValues ?? []) {
      if (record.value === null) this.sql('DELETE FROM pool WHERE key = ?').run(record.key);
      else this.sql('INSERT OR REPLACE INTO pool (key, value) VALUES (?, ?)').run(record.key, record.value);
    }
  }

  /**
   * Inserts rows given as one flat list of values, `columns` per row, with multi-row
   * statements (see batchesOf; a destage inserts thousands; one statement per
   * row spent more time binding than SQLite spent inserting).
   */
  private insertRows(insert: string, columns: number, values: readonly number[]): void {
    for (const { start, size } of batchesOf(values.length / columns)) {
      this.sql(`${insert} VALUES ${placeholders(size, columns)}`).run(values.slice(start * columns, (start + size) * columns));
    }
  }

  /** Block-row deletes then writes, folded into one rewrite per touched group row. */
  private applyExtentChanges(deletes: readonly ExtentDelete[], writes: readonly ExtentWrite[]): void {
    if (deletes.length === 0 && writes.length === 0) return;
    const read = this.sql('SELECT runs FROM extent WHERE volume_id = ? AND grp = ? AND birth = ?');
    const touched = new Map<string, { volumeId: number; grp: number; birth: number; slots: GroupSlots }>();
    // Rows come in block order: most belong to the group of the row before.
    let last: { volumeId: number; grp: number; birth: number; slots: GroupSlots } | undefined;
    const slotsOf = (volumeId: number, block: number, birth: number): GroupSlots => {
      const grp = groupOf(block);
      if (last !== undefined && last.grp === grp && last.volumeId === volumeId && last.birth === birth) return last.slots;
      const key = `${volumeId}:${grp}:${birth}`;
      let entry = touched.get(key);
      if (entry === undefined) {
        // A cached view holds every row of its group: no query needed.
        const view = this.groups.peek(volumeId, grp);
        const row = view !== undefined ? view.rows.find((candidate) => candidate.birth === birth) : (read.get(volumeId, grp, birth) as { runs: Buffer } | undefined);
        entry = { volumeId, grp, birth, slots: row ? decodeGroup(row.runs) : emptySlots() };
        touched.set(key, entry);
      }
      last = entry;
      return entry.slots;
    };
    for (const row of deletes) slotsOf(row.volumeId, row.block, row.birth)[row.block % groupBlocks] = undefined;
    for (const row of writes) slotsOf(row.volumeId, row.block, row.birth)[row.block % groupBlocks] = row.chunk;
    const remove = this.sql('DELETE FROM extent WHERE volume_id = ? AND grp = ? AND birth = ?');
    // Rewritten rows go in multi-row statements (random writes rewrite thousands of groups).
    const rows: (number | Buffer)[][] = [];
    for (const entry of touched.values()) {
      // Moved once per touched group: the number only has to change.
      this.extentEpochs.set(entry.volumeId, (this.extentEpochs.get(entry.volumeId) ?? 0) + 1);
      const runs = encodeGroup(entry.slots);
      this.groups.rewrite(entry.volumeId, entry.grp, entry.birth, runs);
      if (runs === null) remove.run(entry.volumeId, entry.grp, entry.birth);
      else rows.push([entry.volumeId, entry.grp, entry.birth, runs]);
    }
    for (const { start, size } of batchesOf(rows.length)) {
      this.sql(`INSERT OR REPLACE INTO extent (volume_id, grp, birth, runs) VALUES ${placeholders(size, 4)}`).run(rows.slice(start, start + size).flat());
    }
  }

  private moveChunk(chunkId: number, frameId: number, slot: number): void {
    this.locations.delete(chunkId);
    const old = this.sql('SELECT frame_id FROM chunk WHERE id = ?').get(chunkId) as { frame_id: number } | undefined;
    if (!old) return;
    this.sql('UPDATE chunk SET frame_id = ?, slot = ? WHERE id = ?').run(frameId, slot, chunkId);
    this.leaveFrame(old.frame_id);
  }

  /** One chunk fewer lives in the frame (and its pack): counted, applied by settleFrameCounts. */
  private leaveFrame(frameId: number): void {
    this.framesLeft.set(frameId, (this.framesLeft.get(frameId) ?? 0) + 1);
  }

  /**
   * Applies the live-count decrements leaveFrame gathered, once per frame and once per
   * pack (overwrites and deletes kill many chunks of the same frames and packs). Runs
   * inside the transaction that killed or moved the chunks.
   */
  private settleFrameCounts(): void {
    const packsLeft = new Map<number, number>();
    // Random overwrites leave one chunk fewer in thousands of frames: multi-row updates.
    const left = [...this.framesLeft];
    for (const { start, size } of batchesOf(left.length)) {
      const values = left.slice(start, start + size).flat();
      const updated = this.sql(
        `UPDATE frame SET live_chunks = live_chunks - d.column2 FROM (VALUES ${placeholders(size, 2)}) AS d WHERE frame.id = d.column1 RETURNING frame.id, frame.pack_id`,
      ).all(values) as { id: number; pack_id: number }[];
      for (const frame of updated) {
        const count = this.framesLeft.get(frame.id) as number;
        packsLeft.set(frame.pack_id, (packsLeft.get(frame.pack_id) ?? 0) + count);
      }
    }
    this.framesLeft.clear();
    for (const [packId, count] of packsLeft) this.sql('UPDATE pack SET live_chunks = live_chunks - ? WHERE id = ?').run(count, packId);
  }

  /**
   * One reference fewer for each chunk, in batches: most such chunks die (an overwrite of
   * data nothing else shares), so they are deleted first, and the survivors updated.
   */
  private dropOneRef(chunkIds: readonly number[]): void {
    for (const { start, size } of batchesOf(chunkIds.length)) {
      const batch = chunkIds.slice(start, start + size);
      const dead = this.sql(`DELETE FROM chunk WHERE id IN (${placeholders(size)}) AND refs <= 1 RETURNING id, frame_id`).all(batch) as { id: number; frame_id: number }[];
      for (const row of dead) {
        this.locations.delete(row.id);
        this.leaveFrame(row.frame_id);
      }
      if (dead.length === batch.length) continue;
      const gone = new Set(dead.map((row) => row.id));
      for (const chunkId of batch) if (!gone.has(chunkId)) this.sql('UPDATE chunk SET refs = refs - 1 WHERE id = ?').run(chunkId);
    }
  }

  private adjustRefs(chunkId: number, delta: number): void {
    if (delta <= 0) {
      // Most decrements kill the chunk (an overwrite of data nothing else shares): try
      // that first, one statement.
      const dead = this.sql('DELETE FROM chunk WHERE id = ? AND refs + ? <= 0 RETURNING frame_id').get(chunkId, delta) as { frame_id: number } | undefined;
      if (dead) {
        this.locations.delete(chunkId);
        this.leaveFrame(dead.frame_id);
        return;
      }
    }
    this.sql('UPDATE chunk SET refs = refs + ? WHERE id = ?').run(delta, chunkId);
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
      const statement = this.sql('SELECT id, slot, hash_prefix FROM chunk WHERE hash_prefix = ? AND frame_id = ?');
      const bySlot = new Map<number, { chunkId: number; slot: number; hash: Buffer }>();
      for (const prefix of new Set(hashes.map(hashPrefix))) {
        for (const row of statement.all(prefix, frameId) as { id: number; slot: number; hash_prefix: number }[]) {
          const hash = hashes[row.slot];
          if (hash === undefined || hashPrefix(hash) !== row.hash_prefix) continue;
          bySlot.set(row.slot, { chunkId: row.id, slot: row.slot, hash });
        }
      }
      return [...bySlot.values()].sort((a, b) => a.slot - b.slot);
    });
  }

  deletePackRecord(packId: number): Promise<void> {
    return this.run('deleting a pack record', () => {
      this.locations.clear();
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

  blockCounts(volumeId: number, gen: number): Promise<{ mappedBlocks: number; zeroBlocks: number }> {
    return this.run('counting volume blocks', () => this.countBlocks(volumeId, gen));
  }

  /** Walks the volume's group rows visible at gen, counting its blocks; each page is also handed to `visit`. */
  private countBlocks(volumeId: number, gen: number, visit?: (page: GroupRow[]) => void): { mappedBlocks: number; zeroBlocks: number } {
    let mappedBlocks = 0;
    let zeroBlocks = 0;
    for (const page of this.extentPages(volumeId)) {
      foldGroups(
        page.filter((row) => row.birth <= gen),
        (_grp, slots, births) => {
          for (let slot = 0; slot < groupBlocks; slot += 1) {
            if (births[slot] < 0) continue;
            const chunk = slots[slot] as ChunkRef;
            if (chunk === ZERO_CHUNK) zeroBlocks += 1;
            else if (chunk !== null) mappedBlocks += 1;
          }
        },
      );
      visit?.(page);
    }
    return { mappedBlocks, zeroBlocks };
  }

  volumeUsage(
    volumeId: number,
    gen: number,
  ): Promise<{ mappedBlocks: number; zeroBlocks: number; uniqueChunks: number; sharedChunks: number; uniqueStoredBytes: number }> {
    return this.run('measuring volume usage', () => {
      // Every run of chunk ids any row of the volume holds, as +1/-1 events.
      const events: number[][] = [];
      const { mappedBlocks, zeroBlocks } = this.countBlocks(volumeId, gen, (page) => {
        for (const row of page) {
          forEachRun(row.runs, (_slot, length, first) => {
            if (first !== null && first > 0) events.push([first, 1], [first + length, -1]);
          });
        }
      });
      // Sweep the events: each stretch of ids has a constant count of references from
      // this volume; a chunk is unique to the volume when that count is all its refs.
      events.sort((a, b) => a[0] - b[0]);
      const statement = this.sql(
        `SELECT c.refs, f.length * 1.0 / f.chunk_count AS stored FROM chunk c JOIN frame f ON f.id = c.frame_id
          WHERE c.id >= ? AND c.id < ?`,
      );
      let uniqueChunks = 0;
      let sharedChunks = 0;
      let uniqueStoredBytes = 0;
      let depth = 0;
      for (let index = 0; index < events.length; index += 1) {
        depth += events[index][1];
        const from = events[index][0];
        const to = index + 1 < events.length ? events[index + 1][0] : from;
        if (depth <= 0 || to <= from) continue;
        for (const row of statement.all(from, to) as { refs: number; stored: number }[]) {
          if (row.refs === depth) {
            uniqueChunks += 1;
            uniqueStoredBytes += row.stored;
          } else if (row.refs > depth) {
            sharedChunks += 1;
          }
        }
      }
      return { mappedBlocks, zeroBlocks, uniqueChunks, sharedChunks, uniqueStoredBytes: Math.round(uniqueStoredBytes) };
    });
  }

  /**
   * All group rows (of one volume, or of the pool), in pages by primary key so nothing
   * holds the statement open between pages and memory stays bounded by the page.
   */
  private *extentPages(volumeId?: number): Generator<(GroupRow & { volume_id: number })[]> {
    const statement = this.sql(
      `SELECT volume_id, grp, birth, runs FROM extent
        WHERE (volume_id, grp, birth) > (?, ?, ?) AND (? IS NULL OR volume_id = ?)
        ORDER BY volume_id, grp, birth LIMIT ?`,
    );
    let key = [volumeId ?? -1, -1, -1];
    for (;;) {
      const page = statement.all(...key, volumeId ?? null, volumeId ?? null, limits.extentBatchRowsMax) as (GroupRow & { volume_id: number })[];
      if (page.length === 0) return;
      // A page may end inside a group's births; fold only whole groups per page.
      let cut = page.length;
      if (page.length === limits.extentBatchRowsMax) {
        const last = page[page.length - 1];
        while (cut > 0 && page[cut - 1].volume_id === last.volume_id && page[cut - 1].grp === last.grp) cut -= 1;
        if (cut === 0) cut = page.length;
      }
      const whole = page.slice(0, cut);
      yield whole;
      const last = whole[whole.length - 1];
      key = [last.volume_id, last.grp, last.birth];
    }
  }

  scanChunks(afterId: number, limit: number): Promise<{ id: number; hashPrefix: number; frameId: number; slot: number; refs: number }[]> {
    return this.run('scanning chunks', () =>
      (this.sql('SELECT id, hash_prefix, frame_id, slot, refs FROM chunk WHERE id > ? ORDER BY id LIMIT ?').all(afterId, limit) as {
        id: number;
        hash_prefix: number;
        frame_id: number;
        slot: number;
        refs: number;
      }[]).map((row) => ({ id: row.id, hashPrefix: row.hash_prefix, frameId: row.frame_id, slot: row.slot, refs: row.refs })),
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
      const low = afterChunkId + 1;
      const high = ids[ids.length - 1];
      for (const page of this.extentPages()) {
        for (const row of page) {
          forEachRun(row.runs, (_slot, length, first) => {
            if (first === null || first === 0) return;
            for (let id = Math.max(first, low); id <= Math.min(first + length - 1, high); id += 1) {
              const count = result.get(id);
              if (count !== undefined) result.set(id, count + 1);
            }
          });
        }
      }
      return result;
    });
  }

  danglingExtentRefs(limit: number): Promise<ExtentWrite[]> {
    return this.run('finding dangling references', () => {
      const count = this.sql('SELECT COUNT(*) FROM chunk WHERE id >= ? AND id < ?').pluck();
      const exists = this.sql('SELECT 1 FROM chunk WHERE id = ?').pluck();
      const result: ExtentWrite[] = [];
      for (const page of this.extentPages()) {
        for (const row of page) {
          forEachRun(row.runs, (slot, length, first) => {
            if (first === null || first === 0 || result.length >= limit) return;
            if ((count.get(first, first + length) as number) === length) return;
            for (let index = 0; index < length && result.length < limit; index += 1) {
              if (exists.get(first + index) === undefined) {
                result.push({ volumeId: row.volume_id, block: row.grp * groupBlocks + slot + index, birth: row.birth, chunk: first + index });
              }
            }
          });
        }
        if (result.length >= limit) break;
      }
      return result;
    });
  }

  repairChunkRefs(fixes: Map<number, number>): Promise<void> {
    return this.run('repairing references', () => {
      this.db.transaction(() => {
        this.framesLeft.clear();
        for (const [chunkId, refs] of fixes) {
          this.sql('UPDATE chunk SET refs = ? WHERE id = ?').run(refs, chunkId);
          if (refs === 0) this.adjustRefs(chunkId, 0);
        }
        this.settleFrameCounts();
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
