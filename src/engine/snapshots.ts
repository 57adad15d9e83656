/*
 * Snapshots, clones, rollback, flatten and volume deletion on the birth-generation
 * extent map (DESIGN.md). Every function here runs under the pool writer lock.
 *
 * - create: record (volume, gen = G), then G += 1. O(1) after the buffer is destaged.
 * - delete s (previous live point p, next live point n = next snapshot or head): only
 *   rows born in (p, s] can die; one dies when a newer row of its block is born in
 *   (s, n]. Paged over the birth index: O(rows born in the interval).
 * - rollback to s: rows born after s are dropped: O(blocks changed since s).
 * - clone: a new volume whose missing blocks fall through to (volume, s). O(1).
 * - flatten: copy the parent's visible rows (not data) into the clone at birth 0.
 *
 * Multi-batch work (reaping a deleted snapshot, rollback, deleting a volume) first
 * commits its visible effect together with a pending record in the pool table, then
 * works in batches, and drops the record with the last batch. A crash in between
 * resumes at the next open, so no row or chunk is leaked and nothing half-done shows.
 */
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { validateName } from '../common/names.js';
import type { ExtentRow, MetaChanges, SnapshotRecord } from '../meta/index.js';
import { BlockMap } from './block-map.js';
import { addRef, destageAll, logFloorKey } from './destage.js';
import { resolveBlocks } from './extent-reader.js';
import { VolumeState, type PoolContext } from './pool-context.js';

const batchRows = limits.extentBatchRowsMax;

export function findSnapshot(volume: VolumeState, name: string): SnapshotRecord {
  const snapshot = volume.snapshots.find((candidate) => candidate.name === name);
  if (!snapshot) {
    throw new StrataError('STRATA_E_SNAPSHOT_NOT_FOUND', `volume ${volume.record.name} has no snapshot ${name}`, {
      volume: volume.record.name,
      snapshot: name,
    });
  }
  return snapshot;
}

export async function createSnapshot(ctx: PoolContext, volume: VolumeState, name: string): Promise<SnapshotRecord> {
  validateName('snapshot', name);
  if (volume.snapshots.some((snapshot) => snapshot.name === name)) {
    throw new StrataError('STRATA_E_SNAPSHOT_EXISTS', `volume ${volume.record.name} already has a snapshot ${name}`, {
      volume: volume.record.name,
      snapshot: name,
    });
  }
  await destageAll(ctx);
  const snapshot: SnapshotRecord = {
    volumeId: volume.id,
    gen: volume.record.headGen,
    name,
    sizeBytes: volume.record.sizeBytes,
    createdMs: Date.now(),
  };
  await ctx.meta.createSnapshot(snapshot);
  volume.record = { ...volume.record, headGen: snapshot.gen + 1 };
  volume.snapshots.push(snapshot);
  return snapshot;
}

async function refuseIfCloned(ctx: PoolContext, volume: VolumeState, snapshot: SnapshotRecord): Promise<void> {
  const clones = await ctx.meta.listClones(volume.id, snapshot.gen);
  if (clones.length > 0) {
    const names = clones.map((clone) => clone.name);
    throw new StrataError(
      'STRATA_E_SNAPSHOT_HAS_CLONES',
      `snapshot ${volume.record.name}@${snapshot.name} has clones: ${names.join(', ')}; flatten or delete them first`,
      { volume: volume.record.name, snapshot: snapshot.name, clones: names },
    );
  }
}

/** The live points around gen: the previous snapshot (-1 for none) and the next one or the head. */
function neighbours(volume: VolumeState, gen: number): { previous: number; next: number } {
  const older = volume.snapshots.filter((snapshot) => snapshot.gen < gen);
  const newer = volume.snapshots.filter((snapshot) => snapshot.gen > gen);
  return {
    previous: older.length === 0 ? -1 : older[older.length - 1].gen,
    next: newer.length === 0 ? volume.record.headGen : newer[0].gen,
  };
}

const reapKey = (volumeId: number, gen: number) => `reap:${volumeId}:${gen}`;

export async function deleteSnapshot(ctx: PoolContext, volume: VolumeState, name: string): Promise<void> {
  const snapshot = findSnapshot(volume, name);
  await refuseIfCloned(ctx, volume, snapshot);
  const { previous } = neighbours(volume, snapshot.gen);
  await ctx.meta.commit({
    snapshotDeletes: [{ volumeId: volume.id, gen: snapshot.gen }],
    poolValues: [{ key: reapKey(volume.id, snapshot.gen), value: JSON.stringify({ previous }) }],
  });
  volume.snapshots = volume.snapshots.filter((candidate) => candidate.gen !== snapshot.gen);
  await reapInterval(ctx, volume, previous, snapshot.gen);
}

/**
 * Pages through the rows born in (gen, next live point] and hands each page, with the
 * rows of the same blocks born in (previous, gen], to `visit`. Those older rows are
 * exactly the ones that die with snapshot gen: no live point lies between previous and
 * next any more, and the newer row hides them from every point from next on.
 */
async function forEachHiddenPage(
  ctx: PoolContext,
  volume: VolumeState,
  previous: number,
  gen: number,
  visit: (hidden: ExtentRow[], last: boolean) => Promise<void>,
): Promise<void> {
  const next = neighbours(volume, gen).next;
  let cursor: { birth: number; block: number } | null = null;
  for (;;) {
    const newer: ExtentRow[] = await ctx.meta.rowsBornIn(volume.id, gen, next, cursor, batchRows);
    const hidden = newer.length === 0 ? [] : await ctx.meta.rowsOfBlocksBornIn(volume.id, newer.map((row) => row.block), previous, gen);
    const last = newer.length < batchRows;
    await visit(hidden, last);
    if (last) return;
    cursor = { birth: newer[newer.length - 1].birth, block: newer[newer.length - 1].block };
  }
}

/** Drops the rows that died with snapshot gen (see forEachHiddenPage), in batches. */
export async function reapInterval(ctx: PoolContext, volume: VolumeState, previous: number, gen: number): Promise<void> {
  await forEachHiddenPage(ctx, volume, previous, gen, async (hidden, last) => {
    const changes: MetaChanges = { extentDeletes: [], refDeltas: new Map() };
    for (const row of hidden) {
      changes.extentDeletes!.push({ volumeId: volume.id, block: row.block, birth: row.birth });
      addRef(changes.refDeltas!, row.chunk, -1);
    }
    if (last) changes.poolValues = [{ key: reapKey(volume.id, gen), value: null }];
    await ctx.meta.commit(changes);
  });
}

/** What deleting the snapshot would give back: chunks whose last reference dies. */
export async function snapshotReclaimableBytes(ctx: PoolContext, volume: VolumeState, snapshot: SnapshotRecord): Promise<number> {
  const dying = new Map<number, number>();
  await forEachHiddenPage(ctx, volume, neighbours(volume, snapshot.gen).previous, snapshot.gen, async (hidden) => {
    for (const row of hidden) addRef(dying, row.chunk, 1);
  });
  const info = await ctx.meta.getChunkInfo([...dying.keys()]);
  let bytes = 0;
  for (const [chunkId, count] of dying) {
    const chunk = info.get(chunkId);
    if (chunk && chunk.refs <= count) bytes += chunk.storedBytes;
  }
  return Math.round(bytes);
}

/**
 * Throws away the buffered (not yet destaged) writes of a volume, and those still in
 * flight to the write log. Returns the pool value the caller's commit must carry so a
 * replay of the log after a crash does not bring them back.
 */
function discardBuffer(ctx: PoolContext, volume: VolumeState): { key: string; value: string } {
  // Their records keep their log space (and count in dirtyBytes) until the next destage.
  volume.buffer.dirty = new BlockMap();
  volume.buffer.epoch += 1;
  const floor = ctx.log.seqNext;
  ctx.logFloors.set(volume.id, floor);
  return { key: logFloorKey(volume.id), value: String(floor) };
}

const rollbackKey = (volumeId: number) => `rollback:${volumeId}`;

export async function rollback(ctx: PoolContext, volume: VolumeState, name: string, destroyNewer: boolean): Promise<void> {
  const snapshot = findSnapshot(volume, name);
  const newer = volume.snapshots.filter((candidate) => candidate.gen > snapshot.gen);
  if (newer.length > 0 && !destroyNewer) {
    throw new StrataError(
      'STRATA_E_ROLLBACK_NEEDS_DESTROY',
      `rolling ${volume.record.name} back to ${name} destroys newer snapshots: ${newer.map((s) => s.name).join(', ')}`,
      { volume: volume.record.name, snapshot: name, newer: newer.map((s) => s.name) },
    );
  }
  for (const candidate of newer) await refuseIfCloned(ctx, volume, candidate);
  for (const candidate of [...newer].reverse()) await deleteSnapshot(ctx, volume, candidate.name);
  const floor = discardBuffer(ctx, volume);
  await ctx.meta.commit({
    poolValues: [{ key: rollbackKey(volume.id), value: JSON.stringify({ gen: snapshot.gen }) }, floor],
    volumeUpdates: [{ id: volume.id, sizeBytes: snapshot.sizeBytes }],
  });
  volume.record = { ...volume.record, sizeBytes: snapshot.sizeBytes };
  await dropRowsBornAfter(ctx, volume.id, snapshot.gen, volume.record.headGen);
}

/** Deletes every row of the volume born in (gen, headGen], in batches. */
export async function dropRowsBornAfter(ctx: PoolContext, volumeId: number, gen: number, headGen: number): Promise<void> {
  for (;;) {
    const rows = await ctx.meta.rowsBornIn(volumeId, gen, headGen, null, batchRows);
    const changes: MetaChanges = { extentDeletes: [], refDeltas: new Map() };
    for (const row of rows) {
      changes.extentDeletes!.push({ volumeId, block: row.block, birth: row.birth });
      addRef(changes.refDeltas!, row.chunk, -1);
    }
    if (rows.length < batchRows) changes.poolValues = [{ key: rollbackKey(volumeId), value: null }];
    await ctx.meta.commit(changes);
    if (rows.length < batchRows) return;
  }
}

export async function cloneVolume(ctx: PoolContext, volume: VolumeState, snapshotName: string, cloneName: string): Promise<VolumeState> {
  validateName('volume', cloneName);
  const snapshot = findSnapshot(volume, snapshotName);
  const record = await ctx.meta.createVolume({
    name: cloneName,
    sizeBytes: snapshot.sizeBytes,
    headGen: 1,
    parentId: volume.id,
    parentGen: snapshot.gen,
    createdMs: Date.now(),
  });
  const state = new VolumeState(record, []);
  ctx.volumes.set(record.id, state);
  return state;
}

/**
 * Copies the parent's visible rows into the clone at birth 0, then cuts the parent
 * link. A block needs the copy when some live point of the clone reads through to the
 * parent: the head when the clone has no row for it at all, or a snapshot of the clone
 * older than the clone's oldest row for it. The walk covers the largest size the clone
 * or any of its snapshots has.
 */
export async function flatten(ctx: PoolContext, clone: VolumeState, onProgress?: (done: number, total: number) => void): Promise<void> {
  const parentId = clone.record.parentId;
  if (parentId === null) {
    throw new StrataError('STRATA_E_NOT_A_CLONE', `volume ${clone.record.name} is not a clone`, { volume: clone.record.name });
  }
  await destageAll(ctx);
  const parent = ctx.volumeState(parentId).record;
  const parentGen = clone.record.parentGen as number;
  const sizeBytes = Math.max(clone.record.sizeBytes, ...clone.snapshots.map((snapshot) => snapshot.sizeBytes));
  const blocks = Math.ceil(sizeBytes / ctx.blockSize);
  const oldestSnapshot = clone.snapshots.length > 0 ? clone.snapshots[0].gen : null;
  const window = limits.extentWindowBlocks;
  for (let first = 0; first < blocks; first += window) {
    const count = Math.min(window, blocks - first);
    const anyRow = new Set((await ctx.meta.readExtents(clone.id, first, count, Number.MAX_SAFE_INTEGER)).map((row) => row.block));
    const earlyRow =
      oldestSnapshot === null ? anyRow : new Set((await ctx.meta.readExtents(clone.id, first, count, oldestSnapshot)).map((row) => row.block));
    const inherited = await resolveBlocks(ctx, parent, parentGen, first, count);
    const changes: MetaChanges = { extentWrites: [], refDeltas: new Map() };
    inherited.forEach((row, index) => {
      const block = first + index;
      if (row === null || (anyRow.has(block) && earlyRow.has(block))) return;
      changes.extentWrites!.push({ volumeId: clone.id, block, birth: 0, chunk: row.chunk });
      addRef(changes.refDeltas!, row.chunk, 1);
    });
    if (changes.extentWrites!.length > 0) await ctx.meta.commit(changes);
    onProgress?.(first + count, blocks);
  }
  await ctx.meta.commit({ volumeUpdates: [{ id: clone.id, parentId: null, parentGen: null }] });
  clone.record = { ...clone.record, parentId: null, parentGen: null };
}

const deleteKey = (volumeId: number) => `delete:${volumeId}`;

export async function deleteVolume(ctx: PoolContext, volume: VolumeState): Promise<void> {
  const clones = await ctx.meta.listClones(volume.id);
  if (clones.length > 0) {
    const names = clones.map((clone) => clone.name);
    throw new StrataError('STRATA_E_VOLUME_HAS_CLONES', `volume ${volume.record.name} has clones: ${names.join(', ')}`, {
      volume: volume.record.name,
      clones: names,
    });
  }
  const floor = discardBuffer(ctx, volume);
  await ctx.meta.commit({
    volumeUpdates: [{ id: volume.id, name: `.deleting-${volume.id}` }],
    poolValues: [{ key: deleteKey(volume.id), value: '{}' }, floor],
  });
  ctx.volumes.delete(volume.id);
  await dropVolumeRows(ctx, volume.id);
}

export async function dropVolumeRows(ctx: PoolContext, volumeId: number): Promise<void> {
  for (;;) {
    const rows = await ctx.meta.rowsFrom(volumeId, -1, batchRows);
    const changes: MetaChanges = { extentDeletes: [], refDeltas: new Map() };
    for (const row of rows) {
      changes.extentDeletes!.push({ volumeId, block: row.block, birth: row.birth });
      addRef(changes.refDeltas!, row.chunk, -1);
    }
    const done = rows.length < batchRows;
    if (done) changes.poolValues = [{ key: deleteKey(volumeId), value: null }];
    await ctx.meta.commit(changes);
    if (done) {
      await ctx.meta.deleteVolumeRecord(volumeId);
      return;
    }
  }
}

/** Finishes multi-batch work a crash interrupted. Runs at open, before any I/O. */
export async function resumePendingWork(ctx: PoolContext): Promise<void> {
  for (const key of (await ctx.meta.readPoolValues('delete:')).keys()) {
    await dropVolumeRows(ctx, Number(key.split(':')[1]));
  }
  for (const [key, value] of await ctx.meta.readPoolValues('rollback:')) {
    const volume = ctx.volumeState(Number(key.split(':')[1]));
    await dropRowsBornAfter(ctx, volume.id, (JSON.parse(value) as { gen: number }).gen, volume.record.headGen);
  }
  for (const [key, value] of await ctx.meta.readPoolValues('reap:')) {
    const [, volumeId, gen] = key.split(':').map(Number);
    const volume = ctx.volumes.get(volumeId);
    if (volume) await reapInterval(ctx, volume, (JSON.parse(value) as { previous: number }).previous, gen);
    else await ctx.meta.commit({ poolValues: [{ key, value: null }] });
  }
}
