/*
 * Resolving what a volume shows at a generation: for each block the newest extent row
 * with birth <= gen; a block with no row falls through to the parent snapshot of a
 * clone, and finally reads as a hole. One range query per level of the clone chain.
 */
import type { MappedExtent, VolumeRecord } from '../meta/index.js';
import type { PoolContext } from './pool-context.js';

/**
 * Visible rows for blocks [first, first + count): index i is block first + i; null = hole.
 * Without locations the rows only tell what is mapped (see MetaStore.readExtents).
 */
export async function resolveBlocks(
  ctx: PoolContext,
  volume: VolumeRecord,
  gen: number,
  first: number,
  count: number,
  withLocations = true,
): Promise<(MappedExtent | null)[]> {
  const result: (MappedExtent | null)[] = new Array<MappedExtent | null>(count).fill(null);
  const resolved = new Uint8Array(count);
  let unresolved = count;
  let level: VolumeRecord | null = volume;
  let levelGen = gen;
  while (level !== null && unresolved > 0) {
    const rows = await ctx.meta.readExtents(level.id, first, count, levelGen, withLocations);
    for (const row of rows) {
      const index = row.block - first;
      if (resolved[index] === 1) continue;
      resolved[index] = 1;
      unresolved -= 1;
      result[index] = row.chunk === null ? null : row;
    }
    if (level.parentId === null) break;
    levelGen = level.parentGen as number;
    level = ctx.volumeState(level.parentId).record;
  }
  return result;
}
