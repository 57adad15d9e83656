/*
 * MetaStore conformance: the contract every metadata driver must keep, run against each
 * driver (today SQLite; PostgreSQL joins this list when it exists).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { hashPrefix, SqliteMetaStore, ZERO_CHUNK, type MetaStore } from './index.js';

interface Driver {
  readonly name: string;
  open(): Promise<MetaStore>;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const drivers: Driver[] = [
  {
    name: 'sqlite',
    async open() {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-meta-'));
      const store = SqliteMetaStore.open(path.join(dir, 'meta.sqlite'));
      cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      cleanups.push(() => store.close());
      await store.initialize({ blockSize: 4096, dedup: true, compression: 'zstd' });
      return store;
    },
  },
];

function hash(byte: number, tail = 0): Buffer {
  const value = Buffer.alloc(32, byte);
  value[31] = tail;
  return value;
}

async function volumeWithChunks(store: MetaStore, chunkIds: number[]): Promise<number> {
  const volume = await store.createVolume({ name: 'v', sizeBytes: 1 << 20, headGen: 1, parentId: null, parentGen: null, createdMs: 0 });
  await store.commit({
    packs: [{ id: 1, state: 'open', bytes: 1000 }],
    frames: [{ id: 1, packId: 1, offset: 0, length: 1000, chunkCount: chunkIds.length }],
    chunks: chunkIds.map((id, slot) => ({ id, hash: hash(id), frameId: 1, slot, refs: 0 })),
  });
  return volume.id;
}

describe.each(drivers)('MetaStore conformance: $name', (driver) => {
  it('records the policy once and refuses a second initialisation', async () => {
    const store = await driver.open();
    expect(await store.readPolicy()).toEqual({ blockSize: 4096, dedup: true, compression: 'zstd' });
    await expect(store.initialize({ blockSize: 4096, dedup: true, compression: 'zstd' })).rejects.toMatchObject({ code: 'STRATA_E_POOL_EXISTS' });
  });

  it('keeps volume names unique and lists volumes by name', async () => {
    const store = await driver.open();
    const base = { sizeBytes: 10, headGen: 1, parentId: null, parentGen: null, createdMs: 0 };
    await store.createVolume({ ...base, name: 'b' });
    await store.createVolume({ ...base, name: 'a' });
    await expect(store.createVolume({ ...base, name: 'a' })).rejects.toMatchObject({ code: 'STRATA_E_VOLUME_EXISTS' });
    expect((await store.listVolumes()).map((v) => v.name)).toEqual(['a', 'b']);
  });

  it('creates a snapshot and moves the head in one step, refusing duplicate names', async () => {
    const store = await driver.open();
    const volumeId = await volumeWithChunks(store, []);
    await store.createSnapshot({ volumeId, gen: 1, name: 's', sizeBytes: 10, createdMs: 0 });
    expect((await store.getVolume(volumeId))!.headGen).toBe(2);
    await expect(store.createSnapshot({ volumeId, gen: 2, name: 's', sizeBytes: 10, createdMs: 0 })).rejects.toMatchObject({
      code: 'STRATA_E_SNAPSHOT_EXISTS',
    });
    expect((await store.getVolume(volumeId))!.headGen).toBe(2);
  });

  it('serves each block from the newest row born at or before the generation read', async () => {
    const store = await driver.open();
    const volumeId = await volumeWithChunks(store, [10, 11]);
    await store.commit({
      extentWrites: [
        { volumeId, block: 0, birth: 1, chunk: 10 },
        { volumeId, block: 0, birth: 3, chunk: 11 },
        { volumeId, block: 1, birth: 2, chunk: null },
        { volumeId, block: 2, birth: 1, chunk: ZERO_CHUNK },
      ],
      refDeltas: new Map([
        [10, 1],
        [11, 1],
      ]),
    });
    const atTwo = await store.readExtents(volumeId, 0, 4, 2);
    expect(atTwo.map((row) => [row.block, row.birth, row.chunk])).toEqual([
      [0, 1, 10],
      [1, 2, null],
      [2, 1, ZERO_CHUNK],
    ]);
    expect(atTwo[0].location).toMatchObject({ chunkId: 10, frameId: 1, slot: 0, packId: 1, offset: 0, length: 1000 });
    expect(atTwo[1].location).toBeNull();
    // Without locations: the same rows, no location looked up.
    const mappedOnly = await store.readExtents(volumeId, 0, 4, 2, false);
    expect(mappedOnly.map((row) => [row.block, row.birth, row.chunk, row.location])).toEqual([
      [0, 1, 10, null],
      [1, 2, null, null],
      [2, 1, ZERO_CHUNK, null],
    ]);
    const atThree = await store.readExtents(volumeId, 0, 1, 3);
    expect(atThree[0].chunk).toBe(11);
    expect((await store.latestRows(volumeId, [0, 1, 5])).get(0)).toEqual({ block: 0, birth: 3, chunk: 11 });
    // Reads after a change see it (whatever was cached), and the volume's epoch moves.
    const epoch = store.extentEpoch(volumeId);
    await store.commit({ extentDeletes: [{ volumeId, block: 0, birth: 3 }], extentWrites: [{ volumeId, block: 2, birth: 3, chunk: null }], refDeltas: new Map([[11, -1]]) });
    expect(store.extentEpoch(volumeId)).not.toBe(epoch);
    expect((await store.readExtents(volumeId, 0, 4, 3)).map((row) => [row.block, row.birth, row.chunk])).toEqual([
      [0, 1, 10],
      [1, 2, null],
      [2, 3, null],
    ]);
    expect((await store.readExtents(volumeId, 0, 4, 2)).map((row) => [row.block, row.chunk])).toEqual([
      [0, 10],
      [1, null],
      [2, ZERO_CHUNK],
    ]);
    const unchanged = store.extentEpoch(volumeId);
    await store.commit({ poolValues: [{ key: 'k', value: 'v' }] });
    expect(store.extentEpoch(volumeId)).toBe(unchanged);
  });

  it('pages rows born in an interval by (birth, block)', async () => {
    const store = await driver.open();
    const volumeId = await volumeWithChunks(store, []);
    const extentWrites = [];
    for (let block = 0; block < 10; block += 1) extentWrites.push({ volumeId, block, birth: 2 + (block % 3), chunk: null });
    await store.commit({ extentWrites });
    const seen: [number, number][] = [];
    let cursor: { birth: number; block: number } | null = null;
    for (;;) {
      const page = await store.rowsBornIn(volumeId, 2, 4, cursor, 2);
      seen.push(...page.map((row): [number, number] => [row.birth, row.block]));
      if (page.length < 2) break;
      cursor = page[page.length - 1];
    }
    expect(seen).toEqual([
      [3, 1],
      [3, 4],
      [3, 7],
      [4, 2],
      [4, 5],
      [4, 8],
    ]);
    expect(await store.blocksWithRowBornIn(volumeId, [0, 1, 2], 2, 3)).toEqual(new Set([1]));
  });

  it('deletes a chunk when its last reference goes, and keeps frame and pack live counts', async () => {
    const store = await driver.open();
    const volumeId = await volumeWithChunks(store, [1, 2]);
    await store.commit({
      extentWrites: [
        { volumeId, block: 0, birth: 1, chunk: 1 },
        { volumeId, block: 1, birth: 1, chunk: 2 },
      ],
      refDeltas: new Map([
        [1, 1],
        [2, 1],
      ]),
    });
    await store.commit({ extentDeletes: [{ volumeId, block: 0, birth: 1 }], refDeltas: new Map([[1, -1]]) });
    expect(await store.getChunkInfo([1, 2])).toEqual(new Map([[2, { refs: 1, storedBytes: 500 }]]));
    expect((await store.listPacks())[0]).toMatchObject({ chunkCount: 2, liveChunks: 1 });
    expect(await store.repairFrameAndPackCounters(true)).toBe(0);
  });

  it('offers chunks committed after an earlier look-up, and none for prefixes never stored', async () => {
    const store = await driver.open();
    await store.commit({ packs: [{ id: 1, state: 'open', bytes: 30 }], frames: [{ id: 1, packId: 1, offset: 0, length: 10, chunkCount: 1 }] });
    expect((await store.chunkCandidates([hash(9), hash(10)])).size).toBe(0);
    await store.commit({
      frames: [{ id: 2, packId: 1, offset: 10, length: 10, chunkCount: 1 }],
      chunks: [{ id: 5, hash: hash(9), frameId: 2, slot: 0, refs: 1 }],
    });
    const found = await store.chunkCandidates([hash(9), hash(10), hash(11)]);
    expect([...found.keys()]).toEqual([hash(9).toString('latin1')]);
    expect(found.get(hash(9).toString('latin1'))!.map((c) => c.chunkId)).toEqual([5]);
  });

  it('offers every chunk sharing a hash prefix as a dedup candidate, with its location', async () => {
    const store = await driver.open();
    await store.commit({
      packs: [{ id: 1, state: 'open', bytes: 10 }],
      frames: [{ id: 1, packId: 1, offset: 0, length: 10, chunkCount: 2 }],
      chunks: [
        { id: 1, hash: hash(7, 1), frameId: 1, slot: 0, refs: 1 },
        { id: 2, hash: hash(7, 2), frameId: 1, slot: 1, refs: 3 },
      ],
    });
    const found = await store.chunkCandidates([hash(7, 3), hash(8)]);
    expect([...found.keys()]).toEqual([hash(7, 3).toString('latin1')]);
    expect(found.get(hash(7, 3).toString('latin1'))!.map((c) => [c.chunkId, c.refs, c.location.slot, c.location.frameChunks])).toEqual([
      [1, 1, 0, 2],
      [2, 3, 1, 2],
    ]);
    expect(found.get(hash(7, 3).toString('latin1'))![0].location).toMatchObject({ frameId: 1, packId: 1, offset: 0, length: 10, hashPrefix: hashPrefix(hash(7)) });
    // A frame's chunks are matched to the header's hashes by slot.
    expect((await store.chunksOfFrame(1, [hash(7, 1), hash(7, 2)])).map((c) => [c.chunkId, c.hash])).toEqual([
      [1, hash(7, 1)],
      [2, hash(7, 2)],
    ]);
    expect(await store.chunksOfFrame(1, [hash(9), hash(9)])).toEqual([]);
  });

  it('stores runs of neighbouring blocks and answers per block across group edges and births', async () => {
    const store = await driver.open();
    const ids = Array.from({ length: 200 }, (_, index) => index + 1);
    const volumeId = await volumeWithChunks(store, ids);
    // Blocks 30..229 map chunks 1..200 at birth 1; then birth 2 punches holes, zeros and
    // a rewritten chunk into the middle, across the 64-block group edge.
    await store.commit({ extentWrites: ids.map((id) => ({ volumeId, block: 29 + id, birth: 1, chunk: id })) });
    await store.commit({
      extentWrites: [
        { volumeId, block: 62, birth: 2, chunk: null },
        { volumeId, block: 63, birth: 2, chunk: ZERO_CHUNK },
        { volumeId, block: 64, birth: 2, chunk: 7 },
        { volumeId, block: 500, birth: 2, chunk: 8 },
      ],
    });
    const at = async (gen: number, first: number, count: number) =>
      (await store.readExtents(volumeId, first, count, gen)).map((row) => [row.block, row.birth, row.chunk, row.location?.chunkId ?? null]);
    expect(await at(1, 61, 5)).toEqual([
      [61, 1, 32, 32],
      [62, 1, 33, 33],
      [63, 1, 34, 34],
      [64, 1, 35, 35],
      [65, 1, 36, 36],
    ]);
    expect(await at(2, 61, 5)).toEqual([
      [61, 1, 32, 32],
      [62, 2, null, null],
      [63, 2, 0, null],
      [64, 2, 7, 7],
      [65, 1, 36, 36],
    ]);
    expect(await at(5, 228, 300)).toEqual([
      [228, 1, 199, 199],
      [229, 1, 200, 200],
      [500, 2, 8, 8],
    ]);
    expect([...(await store.latestRows(volumeId, [29, 30, 63, 500])).values()]).toEqual([
      { block: 30, birth: 1, chunk: 1 },
      { block: 63, birth: 2, chunk: 0 },
      { block: 500, birth: 2, chunk: 8 },
    ]);
    const born = await store.rowsBornIn(volumeId, 1, 2, null, 3);
    expect(born).toEqual([
      { block: 62, birth: 2, chunk: null },
      { block: 63, birth: 2, chunk: 0 },
      { block: 64, birth: 2, chunk: 7 },
    ]);
    expect(await store.rowsBornIn(volumeId, 1, 2, { birth: 2, block: 64 }, 3)).toEqual([{ block: 500, birth: 2, chunk: 8 }]);
    expect([...(await store.blocksWithRowBornIn(volumeId, [61, 63, 500], 1, 2))].sort((a, b) => a - b)).toEqual([63, 500]);
    expect(await store.rowsOfBlocksBornIn(volumeId, [64, 65], 0, 1)).toEqual([
      { block: 64, birth: 1, chunk: 35 },
      { block: 65, birth: 1, chunk: 36 },
    ]);
    expect((await store.rowsFrom(volumeId, 228, 1)).map((row) => row.block)).toEqual([229]);
    expect((await store.rowsFrom(volumeId, 228, 2)).map((row) => row.block)).toEqual([229, 500]);
    // Deleting every row of a group removes it; the neighbours stay.
    await store.commit({ extentDeletes: [62, 63, 64].map((block) => ({ volumeId, block, birth: 2 })) });
    expect(await at(2, 62, 3)).toEqual([
      [62, 1, 33, 33],
      [63, 1, 34, 34],
      [64, 1, 35, 35],
    ]);
    expect(await store.rowsBornIn(volumeId, 1, 2, null, 10)).toEqual([{ block: 500, birth: 2, chunk: 8 }]);
    const counted = await store.countRefsFromExtents(0, 300);
    expect([counted.get(1), counted.get(8), counted.get(200)]).toEqual([1, 2, 1]);
    expect(await store.danglingExtentRefs(10)).toEqual([]);
    const usage = await store.volumeUsage(volumeId, 2);
    expect(usage).toMatchObject({ mappedBlocks: 201, zeroBlocks: 0 });
    expect(await store.blockCounts(volumeId, 2)).toEqual({ mappedBlocks: 201, zeroBlocks: 0 });
  });

  it('applies a batch atomically: a failing batch changes nothing', async () => {
    const store = await driver.open();
    const volumeId = await volumeWithChunks(store, [1]);
    await expect(
      store.commit({
        extentWrites: [{ volumeId, block: 0, birth: 1, chunk: 1 }],
        chunks: [{ id: 1, hash: hash(1), frameId: 1, slot: 0, refs: 1 }],
      }),
    ).rejects.toBeTruthy();
    expect(await store.readExtents(volumeId, 0, 1, 10)).toEqual([]);
  });

  it('keeps pool records for interrupted work until they are cleared', async () => {
    const store = await driver.open();
    await store.commit({ poolValues: [{ key: 'reap:1:2', value: '{"previous":-1}' }, { key: 'rollback:1', value: '{}' }] });
    expect(await store.readPoolValues('reap:')).toEqual(new Map([['reap:1:2', '{"previous":-1}']]));
    await store.commit({ poolValues: [{ key: 'reap:1:2', value: null }] });
    expect((await store.readPoolValues('reap:')).size).toBe(0);
  });
});
