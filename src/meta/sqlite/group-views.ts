/*
 * The SQLite driver's in-memory view of extent groups: every stored row of one
 * (volume, group), ascending by birth, and (once asked) their fold into the newest value
 * and birth of each block. Reads at the head of a volume, or at a snapshot taken after
 * the group last changed, use the cached fold and need no query; older snapshots fold
 * the rows born up to their gen. A commit that writes or deletes rows of a group drops
 * its view inside the same synchronous transaction, so a view never outlives the rows
 * it was built from; once the transaction has succeeded, a group that had a view gets
 * it back with the rows the commit wrote (the next write to the group needs no query).
 */
import { GenerationalCache } from '../../common/generational-cache.js';
import { emptySlots, forEachRun, groupBlocks, type GroupSlots } from './extent-groups.js';

export interface GroupRow {
  grp: number;
  birth: number;
  runs: Buffer;
}

/** The newest value per block of a group and its birth (-1 where no row sets the block). */
export interface GroupFold {
  readonly slots: GroupSlots;
  readonly births: Int32Array;
}

export interface GroupView {
  /** All rows of the group, ascending by birth. */
  readonly rows: readonly GroupRow[];
  /** The newest birth among the rows; -1 when the group has none. */
  readonly maxBirth: number;
  /** Fold of every row, built on first use. */
  fold: GroupFold | null;
}

const emptyView: GroupView = { rows: [], maxBirth: -1, fold: null };

/** Folds rows of one group (ascending by birth) born at or before `gen`. */
export function foldRows(rows: readonly GroupRow[], gen: number): GroupFold {
  const slots = emptySlots();
  const births = new Int32Array(groupBlocks).fill(-1);
  for (const row of rows) {
    if (row.birth > gen) break;
    forEachRun(row.runs, (slot, length, first) => {
      for (let offset = 0; offset < length; offset += 1) {
        slots[slot + offset] = first === null || first === 0 ? first : first + offset;
        births[slot + offset] = row.birth;
      }
    });
  }
  return { slots, births };
}

/** The view with the row born at `birth` replaced by `runs` (inserted; removed when null). */
function withRow(view: GroupView, grp: number, birth: number, runs: Buffer | null): GroupView {
  const rows = view.rows.filter((row) => row.birth !== birth);
  if (runs !== null) {
    let at = rows.length;
    while (at > 0 && rows[at - 1].birth > birth) at -= 1;
    rows.splice(at, 0, { grp, birth, runs });
  }
  return { rows, maxBirth: rows.length > 0 ? rows[rows.length - 1].birth : -1, fold: null };
}

/** What a group shows at `gen`: the cached fold when no row is newer, else a fresh fold. */
export function foldAt(view: GroupView, gen: number): GroupFold {
  if (gen < view.maxBirth) return foldRows(view.rows, gen);
  view.fold ??= foldRows(view.rows, Number.MAX_SAFE_INTEGER);
  return view.fold;
}

/**
 * Bounded cache of group views, keyed by volume and group. Group numbers stay below 2^32
 * (volumes are at most 2^50 bytes of at least 4 KiB blocks, 64 blocks a group), so
 * volumeId * 2^32 + grp is a safe integer for any volume id under 2^21.
 */
export class GroupViewCache {
  private readonly views: GenerationalCache<number, GroupView>;
  /** Views with the rows a transaction under way rewrote (see rewrite). */
  private readonly rewritten = new Map<number, GroupView>();

  constructor(entriesMax: number) {
    this.views = new GenerationalCache(entriesMax);
  }

  /**
   * Views of groups [firstGrp, lastGrp]; the groups not cached are loaded with one call
   * of `load` (rows of a group range, ascending by group then birth).
   */
  range(volumeId: number, firstGrp: number, lastGrp: number, load: (firstGrp: number, lastGrp: number) => GroupRow[]): GroupView[] {
    const views = new Array<GroupView>(lastGrp - firstGrp + 1);
    let missingFirst = -1;
    let missingLast = -1;
    for (let grp = firstGrp; grp <= lastGrp; grp += 1) {
      const view = this.views.get(key(volumeId, grp));
      if (view !== undefined) {
        views[grp - firstGrp] = view;
        continue;
      }
      if (missingFirst < 0) missingFirst = grp;
      missingLast = grp;
    }
    if (missingFirst < 0) return views;
    const rows = load(missingFirst, missingLast);
    let index = 0;
    for (let grp = missingFirst; grp <= missingLast; grp += 1) {
      const start = index;
      while (index < rows.length && rows[index].grp === grp) index += 1;
      if (views[grp - firstGrp] !== undefined) continue;
      const view = index === start ? emptyView : { rows: rows.slice(start, index), maxBirth: rows[index - 1].birth, fold: null };
      views[grp - firstGrp] = view;
      this.views.set(key(volumeId, grp), view);
    }
    return views;
  }

  /** The cached view of a group, if any. */
  peek(volumeId: number, grp: number): GroupView | undefined {
    return this.views.get(key(volumeId, grp));
  }

  /**
   * Inside a transaction: drops the view of a group whose row born at `birth` becomes
   * `runs` (null: deleted), keeping the view with that row for keepRewritten().
   */
  rewrite(volumeId: number, grp: number, birth: number, runs: Buffer | null): void {
    const groupKey = key(volumeId, grp);
    const base = this.rewritten.get(groupKey) ?? this.views.get(groupKey);
    this.views.delete(groupKey);
    if (base !== undefined) this.rewritten.set(groupKey, withRow(base, grp, birth, runs));
  }

  /** The transaction succeeded: the rewritten groups get their views back. */
  keepRewritten(): void {
    for (const [groupKey, view] of this.rewritten) this.views.set(groupKey, view);
    this.rewritten.clear();
  }

  /** A transaction starts: nothing from one that failed is kept. */
  dropRewritten(): void {
    this.rewritten.clear();
  }

  clear(): void {
    this.views.clear();
    this.rewritten.clear();
  }
}

function key(volumeId: number, grp: number): number {
  return volumeId * 2 ** 32 + grp;
}
