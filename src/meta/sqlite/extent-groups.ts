/*
 * Extent group codec of the SQLite driver. The MetaStore speaks of one row per
 * (volume, block, birth); the driver stores the rows of `groupBlocks` neighbouring blocks
 * born at the same generation as one table row whose blob lists runs:
 *
 *   u8 first slot, u8 run length, varint value
 *
 * where value 0 is a hole (null), 1 allocated zeros (ZERO_CHUNK), and v >= 2 a run of
 * consecutive chunk ids starting at v - 1. New chunks get consecutive ids in block order,
 * and a file copied whole from one image to another keeps its order, so a run usually
 * covers a whole group: on the dedup corpus 510k block rows fold into 15k runs.
 */
import { StrataError } from '../../common/errors.js';
import type { ChunkRef } from '../meta-store.js';

/** Blocks per stored group row (a power of two, at most 256 for the u8 fields). */
export const groupBlocks = 64;
export const groupShift = 6;

/** One slot per block of the group: undefined when the row does not set the block. */
export type GroupSlots = (ChunkRef | undefined)[];

export function groupOf(block: number): number {
  return Math.floor(block / groupBlocks);
}

export function emptySlots(): GroupSlots {
  return new Array<ChunkRef | undefined>(groupBlocks).fill(undefined);
}

function continues(previous: ChunkRef, next: ChunkRef | undefined): boolean {
  if (next === undefined) return false;
  if (previous === null || next === null) return previous === next;
  return previous === 0 ? next === 0 : next === previous + 1;
}

/** Encodes the set slots as runs; null when no slot is set (the row should go). */
export function encodeGroup(slots: GroupSlots): Buffer | null {
  const bytes: number[] = [];
  let slot = 0;
  while (slot < groupBlocks) {
    const value = slots[slot];
    if (value === undefined) {
      slot += 1;
      continue;
    }
    let length = 1;
    let last: ChunkRef = value;
    while (slot + length < groupBlocks && continues(last, slots[slot + length])) {
      last = slots[slot + length] as ChunkRef;
      length += 1;
    }
    bytes.push(slot, length);
    let code = value === null ? 0 : value + 1;
    while (code >= 0x80) {
      bytes.push((code % 0x80) | 0x80);
      code = Math.floor(code / 0x80);
    }
    bytes.push(code);
    slot += length;
  }
  return bytes.length === 0 ? null : Buffer.from(bytes);
}

function malformed(): StrataError {
  return new StrataError('STRATA_E_METADATA_CORRUPT', 'an extent group row is malformed');
}

/** Calls visit(slot, length, first) for each run; chunk runs count up from `first`. */
export function forEachRun(blob: Uint8Array, visit: (slot: number, length: number, first: ChunkRef) => void): void {
  let at = 0;
  while (at < blob.length) {
    if (at + 2 >= blob.length) throw malformed();
    const slot = blob[at];
    const length = blob[at + 1];
    at += 2;
    let code = 0;
    let scale = 1;
    for (;;) {
      if (at >= blob.length || scale > 2 ** 49) throw malformed();
      const byte = blob[at];
      at += 1;
      code += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
    }
    if (length === 0 || slot + length > groupBlocks) throw malformed();
    visit(slot, length, code === 0 ? null : code - 1);
  }
}

/** Applies a row's runs onto slots (later births are applied later and win). */
export function decodeInto(blob: Uint8Array, slots: GroupSlots): GroupSlots {
  forEachRun(blob, (slot, length, first) => {
    for (let index = 0; index < length; index += 1) slots[slot + index] = first === null || first === 0 ? first : first + index;
  });
  return slots;
}

export function decodeGroup(blob: Uint8Array): GroupSlots {
  return decodeInto(blob, emptySlots());
}
