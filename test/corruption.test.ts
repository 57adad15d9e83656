/*
 * Corruption tests: damage pack files behind the engine's back (a flipped payload byte,
 * a flipped byte in a frame's hash table, a payload byte flipped with both CRCs
 * recomputed so only the per-chunk SHA-256 can notice, a truncated pack), then reopen.
 * Reads check the frame CRCs by default and, of a block read alone, its SHA-256 against
 * the prefix in metadata; the CRC-preserving case runs with reads verifying SHA-256 too
 * (tuning readVerify).
 *
 * The contract (DESIGN.md, "verified on every read: a mismatch is corruption, never
 * silently returned"):
 *   - reading the damaged block rejects with STRATA_E_CHECKSUM (STRATA_E_CHUNK_MISSING
 *     for a truncated pack), every time, also inside a larger read;
 *   - no read of any block ever returns wrong bytes, and the damage stays within the
 *     damaged frame: other frames of the same volume and other volumes read fine;
 *   - stats() counts checksum errors; check({ deep: true }) reports an error of the
 *     right kind and ok=false.
 * Each case runs with compression none and lz4 (the lz4 case asserts its frame really
 * is compressed, so the damage hits compressed bytes). Last, restoring a damaged block
 * by rewriting its content must heal it, however the damage was found.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../src/common/errors.js';
import type { CheckIssue, Pool, PoolOpenOptions } from '../src/engine/index.js';
import { assertSameBytes } from './helpers/data.js';
import { expectStrataError } from './helpers/errors.js';
import { codecIds, findChunk, flipByte, flipPayloadKeepingCrcs, packFrames, type PackFrame } from './helpers/pack-files.js';
import { createTestPool, openTestPool, withOpenPool, withTempDir } from './helpers/temp-pool.js';

const blockSize = 4096;
/** Two frames' worth (frames hold up to 64 KiB of new chunks), so damage to one frame can be shown contained. */
const victimBlocks = 32;
const bystanderBlocks = 16;

/** Compressible, and different for every (volume, block), so nothing dedups across them. */
function blockContent(volume: string, block: number): Buffer {
  const line = `${volume} block ${block} says hello; `;
  return Buffer.from(line.repeat(Math.ceil(blockSize / line.length)).slice(0, blockSize), 'latin1');
}

function volumeContent(volume: string, blocks: number): Buffer {
  return Buffer.concat(Array.from({ length: blocks }, (_, block) => blockContent(volume, block)));
}

/** A pool with a bystander volume, then a victim volume, each written and flushed in turn (separate frames). */
async function buildPool(dir: string, compression: 'none' | 'lz4'): Promise<void> {
  const pool = await createTestPool(dir, { blockSize, dedup: true, compression });
  try {
    for (const [name, blocks] of [['bystander', bystanderBlocks], ['victim', victimBlocks]] as const) {
      await pool.createVolume(name, blocks * blockSize);
      await pool.openVolume(name).write(0, volumeContent(name, blocks));
      await pool.flush();
    }
  } finally {
    await pool.close();
  }
}

interface DamageCase {
  readonly behaviour: string;
  /** The victim block whose chunk is damaged. */
  readonly block: number;
  readonly damage: (frame: PackFrame, slot: number) => void;
  readonly readCodes: readonly ErrorCode[];
  readonly checkKinds: readonly CheckIssue['kind'][];
  readonly countsChecksumErrors: boolean;
  /** How the pool is opened after the damage (default: default tuning, reads check CRCs). */
  readonly open?: PoolOpenOptions;
  /** The codecs the case runs with (default: all). */
  readonly codecs?: readonly ('none' | 'lz4')[];
  /** False when the damage keeps the CRCs right and reads of whole frames check only those. */
  readonly wholeFramesRefused?: boolean;
}

/** Where in the payload to hit the chunk: its own bytes when stored raw, the middle when compressed. */
function payloadPosition(frame: PackFrame, slot: number): number {
  return frame.codecId === codecIds.none ? slot * frame.blockSize + 123 : Math.floor(frame.payloadLength / 2);
}

const cases: DamageCase[] = [
  {
    behaviour: 'a flipped payload byte makes reads of the block fail with STRATA_E_CHECKSUM and check report the frame',
    block: 5,
    damage: (frame, slot) => flipByte(frame.file, frame.offset + frame.headerLength + payloadPosition(frame, slot)),
    readCodes: ['STRATA_E_CHECKSUM'],
    checkKinds: ['frame-corrupt', 'chunk-corrupt'],
    countsChecksumErrors: true,
  },
  {
    // Under the default tuning a block read alone does not read the header (see the
    // test after this table); verifying SHA-256 compares against the header's hash.
    behaviour: 'with reads verifying SHA-256, a flipped byte in the frame hash table makes reads of the block fail with STRATA_E_CHECKSUM and check report the frame',
    block: 5,
    damage: (frame, slot) => flipByte(frame.file, frame.offset + 24 + slot * 32 + 7),
    readCodes: ['STRATA_E_CHECKSUM'],
    checkKinds: ['frame-corrupt', 'chunk-corrupt'],
    countsChecksumErrors: true,
    open: { tuning: { readVerify: 'sha256' } },
  },
  {
    behaviour: 'with reads verifying SHA-256, a flipped payload byte with recomputed CRCs is still caught by the chunk SHA-256',
    block: 20,
    damage: (frame, slot) => flipPayloadKeepingCrcs(frame, payloadPosition(frame, slot)),
    readCodes: ['STRATA_E_CHECKSUM'],
    checkKinds: ['frame-corrupt', 'chunk-corrupt'],
    countsChecksumErrors: true,
    open: { tuning: { readVerify: 'sha256' } },
  },
  {
    // Reads check CRCs by default; a block read alone from an uncompressed frame is
    // checked against its SHA-256 (that is cheaper than reading the frame), so even
    // damage that keeps the CRCs right is caught there.
    behaviour: 'a flipped byte with recomputed CRCs in an uncompressed frame is caught by reads of the block under the default tuning',
    block: 20,
    damage: (frame, slot) => flipPayloadKeepingCrcs(frame, payloadPosition(frame, slot)),
    readCodes: ['STRATA_E_CHECKSUM'],
    checkKinds: ['frame-corrupt', 'chunk-corrupt'],
    countsChecksumErrors: true,
    codecs: ['none'],
    wholeFramesRefused: false,
  },
  {
    behaviour: 'a pack truncated inside its last frame makes reads of that block fail and check report the pack short',
    block: victimBlocks - 1,
    damage: (frame) => fs.truncateSync(frame.file, frame.offset + frame.headerLength + 10),
    readCodes: ['STRATA_E_CHUNK_MISSING', 'STRATA_E_CHECKSUM'],
    checkKinds: ['pack-short'],
    countsChecksumErrors: false,
  },
];

/** Reads every victim block alone: each reads back exactly or is refused with an allowed code. */
async function refusedBlocks(pool: Pool, codes: readonly ErrorCode[]): Promise<number[]> {
  const victim = pool.openVolume('victim');
  const refused: number[] = [];
  for (let block = 0; block < victimBlocks; block += 1) {
    let bytes: Buffer;
    try {
      bytes = await victim.read(block * blockSize, blockSize);
    } catch (error) {
      expect(codes).toContain((error as { code?: string }).code);
      refused.push(block);
      continue;
    }
    assertSameBytes(bytes, blockContent('victim', block), `victim block ${block}`, block * blockSize);
  }
  return refused;
}

describe.each(['none', 'lz4'] as const)('damaged pack files (compression %s)', (compression) => {
  for (const damageCase of cases.filter((c) => c.codecs === undefined || c.codecs.includes(compression))) {
    it(damageCase.behaviour, async () => {
      await withTempDir(async (dir) => {
        await buildPool(dir, compression);
        const { frame, slot } = findChunk(dir, blockContent('victim', damageCase.block));
        expect(frame.codecId).toBe(codecIds[compression]);
        if (damageCase.checkKinds.includes('pack-short')) {
          // The truncation must only cut the victim's last frame.
          expect(packFrames(frame.file).at(-1)!.offset).toBe(frame.offset);
        }
        damageCase.damage(frame, slot);

        await withOpenPool(dir, damageCase.open ?? {}, async (pool) => {
          const victim = pool.openVolume('victim');
          const at = damageCase.block * blockSize;
          // Refused every time: nothing wrong was cached by the first attempt.
          for (let attempt = 0; attempt < 2; attempt += 1) {
            await expectStrataError(victim.read(at, blockSize), damageCase.readCodes, `read of the damaged block (attempt ${attempt + 1})`);
          }
          // A larger read covering the damaged block is refused as a whole, not returned in part.
          const start = Math.max(0, at - blockSize / 2);
          await expectStrataError(victim.read(start, Math.min(2 * blockSize, victimBlocks * blockSize - start)), damageCase.readCodes, 'spanning read');
          // So is a read of the whole victim, whose two frames are read and checked together.
          if (damageCase.wholeFramesRefused !== false) {
            await expectStrataError(victim.read(0, victimBlocks * blockSize), damageCase.readCodes, 'read of both frames');
          }

          // No block returns wrong bytes; the damage stays within one frame of the victim.
          const refused = await refusedBlocks(pool, damageCase.readCodes);
          expect(refused).toContain(damageCase.block);
          expect(refused.length).toBeLessThan(victimBlocks);
          const bystander = await pool.openVolume('bystander').read(0, bystanderBlocks * blockSize);
          assertSameBytes(bystander, volumeContent('bystander', bystanderBlocks), 'bystander');

          const stats = await pool.stats();
          if (damageCase.countsChecksumErrors) expect(stats.checksumErrors).toBeGreaterThan(0);

          const report = await pool.check({ deep: true });
          expect(report.ok).toBe(false);
          const errors = report.issues.filter((issue) => issue.severity === 'error');
          expect(errors.some((issue) => damageCase.checkKinds.includes(issue.kind)), JSON.stringify(report.issues)).toBe(true);
        });
      });
    });
  }
});

describe('a damaged frame hash table under the default tuning', () => {
  it('still serves an intact block read alone (its SHA-256 checked against metadata), refuses whole-frame reads, and check reports the frame', async () => {
    await withTempDir(async (dir) => {
      await buildPool(dir, 'none');
      const { frame, slot } = findChunk(dir, blockContent('victim', 5));
      flipByte(frame.file, frame.offset + 24 + slot * 32 + 7);
      await withOpenPool(dir, {}, async (pool) => {
        const victim = pool.openVolume('victim');
        assertSameBytes(await victim.read(5 * blockSize, blockSize), blockContent('victim', 5), 'victim block 5', 5 * blockSize);
        await expectStrataError(victim.read(0, 16 * blockSize), ['STRATA_E_CHECKSUM'], 'read of the whole frame');
        const report = await pool.check({ deep: true });
        expect(report.ok).toBe(false);
      });
    });
  });
});

describe('a damaged one-block frame (a block rewritten on its own)', () => {
  const rewritten = Buffer.alloc(blockSize, 'rewritten alone; ');
  const cases: { what: string; damage: (frame: PackFrame) => void; open?: PoolOpenOptions }[] = [
    { what: 'a flipped payload byte', damage: (frame) => flipByte(frame.file, frame.offset + frame.headerLength + 99) },
    { what: 'a flipped hash byte', damage: (frame) => flipByte(frame.file, frame.offset + 24 + 3) },
    { what: 'a flipped header byte', damage: (frame) => flipByte(frame.file, frame.offset + 13) },
    { what: 'a flipped payload byte with recomputed CRCs, reads verifying SHA-256', damage: (frame) => flipPayloadKeepingCrcs(frame, 99), open: { tuning: { readVerify: 'sha256' } } },
  ];
  for (const { what, damage, open } of cases) {
    it(`refuses the block after ${what}, and serves its neighbours`, async () => {
      await withTempDir(async (dir) => {
        await buildPool(dir, 'none');
        await withOpenPool(dir, {}, async (pool) => {
          await pool.openVolume('victim').write(7 * blockSize, rewritten);
          await pool.flush();
        });
        const { frame } = findChunk(dir, rewritten);
        expect(frame.hashes.length).toBe(1);
        damage(frame);
        await withOpenPool(dir, open ?? {}, async (pool) => {
          const victim = pool.openVolume('victim');
          for (let attempt = 0; attempt < 2; attempt += 1) {
            await expectStrataError(victim.read(7 * blockSize, blockSize), ['STRATA_E_CHECKSUM'], `read of the damaged block (attempt ${attempt + 1})`);
          }
          assertSameBytes(await victim.read(6 * blockSize, blockSize), blockContent('victim', 6), 'victim block 6', 6 * blockSize);
          expect((await pool.stats()).checksumErrors).toBeGreaterThan(0);
        });
      });
    });
  }
});

/**
 * Restoring a damaged block from a backup writes the very bytes the damaged chunk should
 * hold. With dedup on, destage finds the damaged chunk by its hash; the engine heals it
 * (stores a fresh copy and moves the chunk) only if it knows the chunk is damaged. The
 * damage may have been found by a read, by check, or in an earlier session (the CLI
 * runs check in its own process; a daemon restarts) - a restore must heal in every case.
 */
describe('restoring a damaged block', () => {
  const detections: { how: string; detect: (pool: Pool, dir: string) => Promise<Pool> }[] = [
    {
      how: 'a read in the same session',
      detect: async (pool) => {
        await expectStrataError(pool.openVolume('victim').read(5 * blockSize, blockSize), 'STRATA_E_CHECKSUM', 'read of the damaged block');
        return pool;
      },
    },
    {
      how: 'check in the same session',
      detect: async (pool) => {
        expect((await pool.check({ deep: true })).ok).toBe(false);
        return pool;
      },
    },
    {
      how: 'a read in an earlier session',
      detect: async (pool, dir) => {
        await expectStrataError(pool.openVolume('victim').read(5 * blockSize, blockSize), 'STRATA_E_CHECKSUM', 'read of the damaged block');
        await pool.close();
        return openTestPool(dir);
      },
    },
  ];

  for (const { how, detect } of detections) {
    it(`rewriting the block with its correct content makes it readable again when the damage was found by ${how}`, async () => {
      await withTempDir(async (dir) => {
        await buildPool(dir, 'none');
        const block = 5;
        const { frame, slot } = findChunk(dir, blockContent('victim', block));
        flipByte(frame.file, frame.offset + frame.headerLength + payloadPosition(frame, slot));
        let pool = await openTestPool(dir);
        try {
          pool = await detect(pool, dir);
          const victim = pool.openVolume('victim');
          await victim.write(block * blockSize, blockContent('victim', block));
          await victim.flush();
          assertSameBytes(await victim.read(block * blockSize, blockSize), blockContent('victim', block), 'restored block');
        } finally {
          await pool.close();
        }
      });
    });
  }
});

describe('reclaiming around a damaged frame', () => {
  it('skips a pack holding a damaged frame instead of failing, and keeps the damage readable as an error and reported', async () => {
    await withTempDir(async (dir) => {
      await buildPool(dir, 'lz4');
      const { frame, slot } = findChunk(dir, blockContent('victim', 5));
      flipByte(frame.file, frame.offset + frame.headerLength + payloadPosition(frame, slot));
      await withOpenPool(dir, {}, async (pool) => {
        // Make every pack sparse so all of them are candidates for compaction.
        await pool.openVolume('victim').trim(16 * blockSize, 16 * blockSize);
        await pool.openVolume('bystander').trim(0, 8 * blockSize);
        const report = await pool.reclaim({ skipGrace: true, liveFractionMax: 1.01 });
        expect(report.packsSkipped).toBe(1);
        assertSameBytes(await pool.openVolume('bystander').read(8 * blockSize, 8 * blockSize), volumeContent('bystander', 16).subarray(8 * blockSize), 'bystander after reclaim');
        await expectStrataError(pool.openVolume('victim').read(5 * blockSize, blockSize), 'STRATA_E_CHECKSUM', 'read of the damaged block after reclaim');
        const check = await pool.check({ deep: true });
        expect(check.ok).toBe(false);
        expect(check.issues.map((issue) => issue.kind)).toContain('frame-corrupt');
      });
    });
  });
});

/**
 * A long read of blocks written one at a time among others' (data written at random)
 * finds one small frame per run in the packs; together they are read on the read worker
 * in one go, and must be checked as strictly as frames read one by one.
 */
describe('a damaged frame among scattered one-block frames', () => {
  const blocks = 32;
  const scattered = (block: number) => Buffer.alloc(blockSize, `scattered ${block}; `);

  async function buildScattered(dir: string): Promise<void> {
    const pool = await createTestPool(dir, { blockSize, dedup: true, compression: 'none' });
    try {
      await pool.createVolume('victim', blocks * blockSize);
      await pool.createVolume('other', blocks * blockSize);
      // Each victim block lands between two blocks of the other volume in the pack.
      for (let block = 0; block < blocks; block += 1) {
        await pool.openVolume('victim').write(block * blockSize, scattered(block));
        await pool.openVolume('other').write(block * blockSize, blockContent('other', block));
        await pool.flush();
      }
    } finally {
      await pool.close();
    }
  }

  const whole = () => Buffer.concat(Array.from({ length: blocks }, (_, block) => scattered(block)));

  it('reads back exactly when intact', async () => {
    await withTempDir(async (dir) => {
      await buildScattered(dir);
      const { frame } = findChunk(dir, scattered(3));
      expect(frame.hashes.length).toBe(1);
      await withOpenPool(dir, {}, async (pool) => {
        assertSameBytes(await pool.openVolume('victim').read(0, blocks * blockSize), whole(), 'victim');
        assertSameBytes(await pool.openVolume('victim').read(5 * blockSize + 7, 20 * blockSize), whole().subarray(5 * blockSize + 7, 25 * blockSize + 7), 'victim, unaligned');
      });
    });
  });

  const damages: { what: string; damage: (frame: PackFrame) => void; codes: ErrorCode[] }[] = [
    { what: 'a flipped payload byte', damage: (frame) => flipByte(frame.file, frame.offset + frame.headerLength + 99), codes: ['STRATA_E_CHECKSUM'] },
    { what: 'a flipped header byte', damage: (frame) => flipByte(frame.file, frame.offset + 13), codes: ['STRATA_E_CHECKSUM'] },
    { what: 'the pack cut inside the frame', damage: (frame) => fs.truncateSync(frame.file, frame.offset + frame.headerLength + 10), codes: ['STRATA_E_CHUNK_MISSING', 'STRATA_E_CHECKSUM'] },
  ];
  for (const { what, damage, codes } of damages) {
    it(`refuses the long read and the block after ${what}, and serves every other block`, async () => {
      await withTempDir(async (dir) => {
        await buildScattered(dir);
        const damaged = blocks - 1; // the last victim frame, so cutting the pack there spares the others
        const { frame } = findChunk(dir, scattered(damaged));
        damage(frame);
        await withOpenPool(dir, {}, async (pool) => {
          const victim = pool.openVolume('victim');
          for (let attempt = 0; attempt < 2; attempt += 1) {
            await expectStrataError(victim.read(0, blocks * blockSize), codes, `long read (attempt ${attempt + 1})`);
          }
          await expectStrataError(victim.read(damaged * blockSize, blockSize), codes, 'read of the damaged block');
          assertSameBytes(await victim.read(0, damaged * blockSize), whole().subarray(0, damaged * blockSize), 'the other blocks, in one read');
        });
      });
    });
  }
});
