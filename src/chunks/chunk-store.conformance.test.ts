/*
 * ChunkStore conformance: the contract every chunk driver must keep, run against each
 * driver (today local pack files; S3 joins this list when it exists).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { crc32 } from 'node:zlib';
import { decodeFrame, encodeFrame, LocalPackStore, type ChunkStore, type SpanReader } from './index.js';
import { nodeFileIo } from './local/file-io.js';
import { createHash, randomBytes } from 'node:crypto';

interface Driver {
  readonly name: string;
  open(options: { packBytesMax: number }): ChunkStore;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const drivers: Driver[] = [
  {
    name: 'local packs',
    open({ packBytesMax }) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-chunks-'));
      const store = new LocalPackStore(dir, { packBytesMax });
      cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
      cleanups.push(() => store.close());
      return store;
    },
  },
];

function frame(seed: number, blocks = 2): Buffer {
  const data = Array.from({ length: blocks }, (_, i) => Buffer.alloc(4096, seed + i));
  return encodeFrame('zstd', 4096, data, data.map((block) => createHash('sha256').update(block).digest()));
}

describe.each(drivers)('ChunkStore conformance: $name', (driver) => {
  it('reads back appended frames once synced', async () => {
    const store = driver.open({ packBytesMax: 1 << 20 });
    const records = [frame(1), frame(2), frame(3)];
    const locations = records.map((record) => store.append(record));
    await store.sync();
    for (const [index, location] of locations.entries()) {
      const bytes = await store.read(location);
      expect(bytes.equals(records[index])).toBe(true);
      expect(decodeFrame(bytes).raw.subarray(0, 4096).every((b) => b === index + 1)).toBe(true);
    }
  });

  it('appends records given in pieces in one call, sealing full packs between records', async () => {
    const size = frame(1).length;
    const store = driver.open({ packBytesMax: 2 * size + 1 });
    const records = [1, 2, 3, 4, 5].map((seed) => frame(seed));
    // Each record in three pieces, one of them empty, as a frame's header and blocks come.
    const pieces = records.map((record) => [record.subarray(0, 20), record.subarray(20, 20), record.subarray(20)]);
    const locations = store.appendMany(pieces);
    await store.sync();
    expect(locations.map((location) => location.length)).toEqual(records.map((record) => record.length));
    expect(new Set(locations.map((location) => location.packId)).size).toBe(3);
    for (const [index, location] of locations.entries()) expect((await store.read(location)).equals(records[index])).toBe(true);
    expect(store.appendMany([])).toEqual([]);
  });

  it('seals a pack once it is full and reports it once', async () => {
    const store = driver.open({ packBytesMax: frame(1).length + 1 });
    const first = store.append(frame(1));
    const second = store.append(frame(2));
    expect(second.packId).not.toBe(first.packId);
    expect(store.drainSealed()).toEqual([{ packId: first.packId, bytes: first.length }]);
    expect(store.drainSealed()).toEqual([]);
    expect(store.currentPackId()).toBe(second.packId);
  });

  it('cuts an unreferenced tail and deletes packs', async () => {
    const store = driver.open({ packBytesMax: 1 << 20 });
    const kept = store.append(frame(1));
    const dropped = store.append(frame(2));
    await store.settle();
    store.truncate(kept.packId, kept.offset + kept.length);
    await expect(store.read(dropped)).rejects.toMatchObject({ code: 'STRATA_E_CHUNK_MISSING' });
    expect(store.listPacks()).toEqual([{ packId: kept.packId, bytes: kept.length }]);
    store.deletePack(kept.packId);
    await expect(store.read(kept)).rejects.toMatchObject({ code: 'STRATA_E_CHUNK_MISSING' });
    expect(store.listPacks()).toEqual([]);
  });

  it('never reuses a pack id after the floor was raised', () => {
    const store = driver.open({ packBytesMax: 1 << 20 });
    if (store instanceof LocalPackStore) store.reserveIdsBelow(42);
    expect(store.append(frame(1)).packId).toBeGreaterThanOrEqual(42);
  });
});

describe('local packs: a failed write', () => {
  it('is reported by settle and sync, and truncate cuts the pack back', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-chunks-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    let failing = false;
    const io = { ...nodeFileIo, writev: (...args: Parameters<typeof nodeFileIo.writev>) => (failing ? Promise.reject(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' })) : nodeFileIo.writev(...args)) };
    const store = new LocalPackStore(dir, { io });
    cleanups.push(() => store.close());
    const kept = store.append(frame(1));
    await store.sync();
    failing = true;
    const lost = store.append(frame(2));
    await expect(store.sync()).rejects.toMatchObject({ code: 'STRATA_E_IO' });
    await store.settle();
    store.truncate(lost.packId, lost.offset);
    failing = false;
    const again = store.append(frame(3));
    await store.sync();
    expect(again.offset).toBe(lost.offset);
    expect((await store.read(kept)).equals(frame(1))).toBe(true);
    expect((await store.read(again)).equals(frame(3))).toBe(true);
    expect(store.listPacks()).toEqual([{ packId: kept.packId, bytes: again.offset + again.length }]);
  });
});

describe('local packs: a large read', () => {

  it('reads spans of several packs back to back through a span reader, each pack held open until it is done', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-chunks-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const store = new LocalPackStore(dir, { packBytesMax: 64 * 1024 });
    cleanups.push(() => store.close());
    // A reader that starts only after a pause, as a busy worker would.
    const reader: SpanReader = {
      async readSpans(spans, ranges) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        const bytes = Buffer.alloc(spans.reduce((sum, span) => sum + span.length, 0));
        let at = 0;
        const gots = spans.map((span) => {
          const got = fs.readSync(span.fd, bytes, at, span.length, span.position);
          at += span.length;
          return got;
        });
        const crcs: number[] = [];
        for (let index = 0; index < ranges.length; index += 2) crcs.push(crc32(bytes.subarray(ranges[index], ranges[index + 1])));
        return { bytes, gots, crcs };
      },
    };
    const records = [1, 2, 3, 4].map(() => randomBytes(40 * 1024));
    const locations = records.map((record) => store.append(record));
    await store.sync();
    expect(new Set(locations.map((location) => location.packId)).size).toBe(4);
    const wanted = [locations[3], locations[0], locations[2]];
    const ranges = [0, 100, 40 * 1024 + 5, 80 * 1024, 80 * 1024, 120 * 1024];
    const reading = store.readChecked!(wanted, ranges, reader);
    for (const location of wanted) store.deletePack(location.packId);
    const read = await reading;
    const expected = Buffer.concat([records[3], records[0], records[2]]);
    expect(read.bytes.equals(expected)).toBe(true);
    expect(read.crcs).toEqual([crc32(expected.subarray(0, 100)), crc32(expected.subarray(40 * 1024 + 5, 80 * 1024)), crc32(records[2])]);
    // Gone now; and a span longer than its pack is refused.
    await expect(store.readChecked!([locations[0]], [], reader)).rejects.toMatchObject({ code: 'STRATA_E_CHUNK_MISSING' });
    await expect(store.readChecked!([{ ...locations[1], length: locations[1].length + 1 }], [], reader)).rejects.toMatchObject({ code: 'STRATA_E_CHUNK_MISSING' });
  });
  it('keeps its descriptor open until it finishes, even when the pack is deleted meanwhile', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-chunks-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    // The read reaches the kernel only after a pause, as on a busy thread pool.
    const io = { ...nodeFileIo, read: (...args: Parameters<typeof nodeFileIo.read>) => new Promise<void>((resolve) => setTimeout(resolve, 50)).then(() => nodeFileIo.read(...args)) };
    const store = new LocalPackStore(dir, { io });
    cleanups.push(() => store.close());
    const record = randomBytes(300 * 1024);
    const location = store.append(record);
    await store.sync();
    const reading = store.read(location);
    store.deletePack(location.packId);
    // A file opened now may get the number the pack's descriptor had.
    const other = fs.openSync(path.join(dir, 'other'), 'w+');
    cleanups.push(() => fs.closeSync(other));
    expect((await reading).equals(record)).toBe(true);
    await expect(store.read(location)).rejects.toMatchObject({ code: 'STRATA_E_CHUNK_MISSING' });
  });
});
