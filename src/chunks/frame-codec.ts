/*
 * Frame record codec: the unit written to pack files. A frame holds one or more whole
 * blocks (chunks) compressed together, so dedup works per block while compression sees
 * up to frameRawBytesMax of neighbouring data. Each record describes itself, so the
 * chunk index can be rebuilt from packs alone.
 *
 * Layout (little endian), version 1:
 *   0  u32  magic "STFR" (0x52465453)
 *   4  u8   version (1)
 *   5  u8   codec id (0 none, 1 lz4, 2 zstd)
 *   6  u16  chunk count n (1..frameChunksMax)
 *   8  u32  block size (bytes of each chunk, uncompressed)
 *  12  u32  stored payload length
 *  16  u32  CRC-32 of the stored payload
 *  20  u32  CRC-32 of bytes 0..19 and the hash table
 *  24  n * 32 bytes: SHA-256 of each chunk, in slot order
 *  24 + 32n: payload (the n blocks concatenated, then compressed)
 */
import { crc32 } from 'node:zlib';
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { codecById, codecIds, compress, decompress, type Codec } from './codecs.js';

export const frameMagic = 0x52465453;
export const frameVersion = 1;
export const frameHeaderBytes = 24;
export const hashBytes = 32;

export interface FrameHeader {
  readonly codec: Codec;
  readonly chunkCount: number;
  readonly blockSize: number;
  readonly payloadLength: number;
  readonly payloadCrc: number;
  /** The SHA-256 of each chunk, in slot order, back to back (hashAt reads one). */
  readonly hashTable: Buffer;
  /** Bytes of header plus hash table; the payload starts here. */
  readonly headerLength: number;
}

/**
 * A frame's hashes as one table of 32 bytes per slot: one buffer per frame, not one per
 * chunk (the header caches hold tens of thousands of frames, and every buffer is an
 * object the collector walks).
 */
export function hashTableOf(hashes: readonly Uint8Array[]): Buffer {
  const table = Buffer.allocUnsafe(hashes.length * hashBytes);
  hashes.forEach((hash, slot) => table.set(hash, slot * hashBytes));
  return table;
}

/** The SHA-256 of one slot of a hash table (a view of it), or undefined past its end. */
export function hashAt(table: Buffer, slot: number): Buffer | undefined {
  if (slot < 0 || (slot + 1) * hashBytes > table.length) return undefined;
  return table.subarray(slot * hashBytes, (slot + 1) * hashBytes);
}

/** The hashes of a table, one view per slot. */
export function hashesOf(table: Buffer): Buffer[] {
  const hashes: Buffer[] = [];
  for (let at = 0; at + hashBytes <= table.length; at += hashBytes) hashes.push(table.subarray(at, at + hashBytes));
  return hashes;
}

/** Encodes blocks (each exactly blockSize bytes) into one frame record, compressing here. */
export function encodeFrame(codec: Codec, blockSize: number, blocks: readonly Buffer[], hashes: readonly Buffer[]): Buffer {
  const payload = codec === 'none' ? null : compress(codec, blocks.length === 1 ? blocks[0] : Buffer.concat(blocks));
  return Buffer.concat(framePieces(codec, blockSize, blocks, payload, hashTableOf(hashes)));
}

/** True when a compressed payload saves enough of the raw bytes to be stored. */
export function worthCompressing(rawBytes: number, compressedBytes: number): boolean {
  return compressedBytes <= rawBytes * (1 - limits.compressionSavingsMinFraction);
}

/**
 * A frame record from raw blocks (each blockSize bytes) and their compressed form (made
 * here or on another thread), as pieces to write back to back: the header (with its
 * hash table), then the compressed payload or the raw blocks themselves, not copied. A
 * payload that is null or saves too little (worthCompressing) is not used: the frame is
 * stored with codec "none".
 */
export function framePieces(
  codec: Codec,
  blockSize: number,
  blocks: readonly Buffer[],
  compressed: Buffer | null,
  hashTable: Buffer,
  /** The CRC-32 of the payload that will be stored, when the caller computed it already. */
  payloadCrc?: number,
): Buffer[] {
  const rawLength = blocks.length * blockSize;
  const useCompressed = compressed !== null && codec !== 'none' && worthCompressing(rawLength, compressed.length);
  const payload: readonly Buffer[] = useCompressed ? [compressed] : blocks;
  const usedCodec: Codec = useCompressed ? codec : 'none';
  const chunkCount = hashTable.length / hashBytes;
  const header = Buffer.allocUnsafe(frameHeaderBytes + hashBytes * chunkCount);
  header.writeUInt32LE(frameMagic, 0);
  header.writeUInt8(frameVersion, 4);
  header.writeUInt8(codecIds[usedCodec], 5);
  header.writeUInt16LE(chunkCount, 6);
  header.writeUInt32LE(blockSize, 8);
  header.writeUInt32LE(useCompressed ? compressed.length : rawLength, 12);
  let crc = payloadCrc;
  if (crc === undefined) {
    crc = 0;
    for (const piece of payload) crc = crc32(piece, crc);
  }
  header.writeUInt32LE(crc, 16);
  hashTable.copy(header, frameHeaderBytes);
  header.writeUInt32LE(crc32(header.subarray(frameHeaderBytes), crc32(header.subarray(0, 20))), 20);
  return [header, ...payload];
}

function corrupt(message: string, details: Record<string, unknown>): StrataError {
  return new StrataError('STRATA_E_CHECKSUM', message, details);
}

/** Decodes and checks a frame header; `bytes` must hold at least the header and hash table. */
export function decodeFrameHeader(bytes: Buffer, where: Record<string, unknown> = {}): FrameHeader {
  if (bytes.length < frameHeaderBytes) throw corrupt('frame header is truncated', where);
  if (bytes.readUInt32LE(0) !== frameMagic) throw corrupt('frame magic is wrong', where);
  if (bytes.readUInt8(4) !== frameVersion) throw corrupt(`frame version ${bytes.readUInt8(4)} is unknown`, where);
  const codec = codecById[bytes.readUInt8(5)];
  if (codec === undefined) throw corrupt(`frame codec ${bytes.readUInt8(5)} is unknown`, where);
  const chunkCount = bytes.readUInt16LE(6);
  const blockSize = bytes.readUInt32LE(8);
  const payloadLength = bytes.readUInt32LE(12);
  if (chunkCount < 1 || chunkCount > limits.frameChunksMax) throw corrupt(`frame chunk count ${chunkCount} is out of range`, where);
  if (blockSize < limits.blockSizeMinBytes || blockSize > limits.blockSizeMaxBytes) throw corrupt('frame block size is out of range', where);
  if (payloadLength > chunkCount * blockSize) throw corrupt('frame payload is longer than its blocks', where);
  const headerLength = frameHeaderBytes + hashBytes * chunkCount;
  if (bytes.length < headerLength) throw corrupt('frame hash table is truncated', where);
  const headerCrc = crc32(bytes.subarray(frameHeaderBytes, headerLength), crc32(bytes.subarray(0, 20)));
  if (headerCrc !== bytes.readUInt32LE(20)) throw corrupt('frame header checksum mismatch', where);
  // A copy: the header may be a view of a large read.
  const hashTable = Buffer.from(bytes.subarray(frameHeaderBytes, headerLength));
  return { codec, chunkCount, blockSize, payloadLength, payloadCrc: bytes.readUInt32LE(16), hashTable, headerLength };
}

/** Decodes a whole frame record into its raw blocks (concatenated), verifying both CRCs. */
export function decodeFrame(record: Buffer, where: Record<string, unknown> = {}): { header: FrameHeader; raw: Buffer } {
  const header = decodeFrameHeader(record, where);
  if (record.length !== header.headerLength + header.payloadLength) throw corrupt('frame length does not match its header', where);
  const payload = record.subarray(header.headerLength);
  if (crc32(payload) !== header.payloadCrc) throw corrupt('frame payload checksum mismatch', where);
  let raw: Buffer;
  try {
    raw = decompress(header.codec, payload);
  } catch (error) {
    throw new StrataError('STRATA_E_CHECKSUM', 'frame payload does not decompress', where, { cause: error });
  }
  if (raw.length !== header.chunkCount * header.blockSize) throw corrupt('frame decompressed to the wrong length', where);
  return { header, raw };
}
