import { describe, expect, it } from 'vitest';
import type { ChunkLocation } from '../meta-store.js';
import { LocationTable } from './location-table.js';

const location = (chunkId: number): ChunkLocation => ({
  chunkId,
  hashPrefix: (chunkId * 2654435761) | 0,
  frameId: 1000 + chunkId,
  slot: chunkId % 16,
  packId: 7,
  offset: 4096 * chunkId,
  length: 65_000,
  frameChunks: 16,
});

describe('location table', () => {
  it('keeps a consecutive range of chunks up to its bound, growing as it fills', () => {
    const table = new LocationTable(1 << 14);
    for (let id = 1; id <= 1 << 14; id += 1) table.set(location(id));
    for (let id = 1; id <= 1 << 14; id += 1) expect(table.get(id)).toEqual(location(id));
    expect(table.get((1 << 14) + 1)).toBeUndefined();
  });

  it('past its bound keeps the newer of two colliding chunks, and forgets deleted ones', () => {
    const table = new LocationTable(4096);
    table.set(location(5));
    table.set(location(5 + 4096));
    expect(table.get(5)).toBeUndefined();
    expect(table.get(5 + 4096)).toEqual(location(5 + 4096));
    table.delete(5);
    expect(table.get(5 + 4096)).toEqual(location(5 + 4096));
    table.delete(5 + 4096);
    expect(table.get(5 + 4096)).toBeUndefined();
    table.set(location(2 ** 40 + 3));
    expect(table.get(2 ** 40 + 3)).toEqual(location(2 ** 40 + 3));
    table.clear();
    expect(table.get(2 ** 40 + 3)).toBeUndefined();
  });
});
