/*
 * Reading and damaging pack files from the outside, the way a failing disk would.
 *
 * Packs live in <pool>/packs/pack-XXXXXXXX.pack as a sequence of frame records
 * (layout in src/chunks/frame-codec.ts, restated here on purpose so the tests do not
 * trust the code under test): a 24-byte header (magic, version, codec, chunk count,
 * block size, payload length, payload CRC-32, header CRC-32), a SHA-256 per chunk,
 * then the payload (the blocks concatenated, maybe compressed).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';

const frameHeaderBytes = 24;
const hashBytes = 32;
export const codecIds = { none: 0, lz4: 1, zstd: 2 } as const;

export interface PackFrame {
  readonly file: string;
  readonly offset: number;
  readonly length: number;
  readonly codecId: number;
  readonly hashes: readonly Buffer[];
  readonly headerLength: number;
  readonly payloadLength: number;
  readonly blockSize: number;
}

export function packFiles(poolDir: string): string[] {
  const dir = path.join(poolDir, 'packs');
  return fs
    .readdirSync(dir)
    .filter((name) => /^pack-\d{8,}\.pack$/.test(name))
    .sort()
    .map((name) => path.join(dir, name));
}

/** Walks the frame records of one pack file. */
export function packFrames(file: string): PackFrame[] {
  const bytes = fs.readFileSync(file);
  const frames: PackFrame[] = [];
  for (let offset = 0; offset + frameHeaderBytes <= bytes.length; ) {
    const chunkCount = bytes.readUInt16LE(offset + 6);
    const payloadLength = bytes.readUInt32LE(offset + 12);
    const headerLength = frameHeaderBytes + hashBytes * chunkCount;
    const hashes: Buffer[] = [];
    for (let slot = 0; slot < chunkCount; slot += 1) {
      const start = offset + frameHeaderBytes + slot * hashBytes;
      hashes.push(Buffer.from(bytes.subarray(start, start + hashBytes)));
    }
    const length = headerLength + payloadLength;
    frames.push({ file, offset, length, codecId: bytes.readUInt8(offset + 5), hashes, headerLength, payloadLength, blockSize: bytes.readUInt32LE(offset + 8) });
    offset += length;
  }
  return frames;
}

/** The frame (and slot) holding the chunk with exactly these bytes, searching every pack. */
export function findChunk(poolDir: string, block: Buffer): { frame: PackFrame; slot: number } {
  const hash = createHash('sha256').update(block).digest();
  for (const file of packFiles(poolDir)) {
    for (const frame of packFrames(file)) {
      const slot = frame.hashes.findIndex((candidate) => candidate.equals(hash));
      if (slot >= 0) return { frame, slot };
    }
  }
  throw new Error('no pack frame holds that block');
}

/** XORs one byte of a file. */
export function flipByte(file: string, position: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, position);
    byte[0] ^= 0x5a;
    fs.writeSync(fd, byte, 0, 1, position);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Flips a payload byte and rewrites both CRCs so the frame looks intact: only the
 * per-chunk SHA-256 can catch it (silent corruption that a CRC would miss).
 */
export function flipPayloadKeepingCrcs(frame: PackFrame, payloadPosition: number): void {
  const bytes = fs.readFileSync(frame.file);
  const record = bytes.subarray(frame.offset, frame.offset + frame.length);
  record[frame.headerLength + payloadPosition] ^= 0x5a;
  record.writeUInt32LE(crc32(record.subarray(frame.headerLength)), 16);
  const headerCrc = crc32(record.subarray(frameHeaderBytes, frame.headerLength), crc32(record.subarray(0, 20)));
  record.writeUInt32LE(headerCrc, 20);
  fs.writeFileSync(frame.file, bytes);
}
