/*
 * CPU offload: worker threads that, for destage, find all-zero blocks, hash the rest
 * with SHA-256 and compress frames, while the main thread reads and writes metadata
 * and keeps accepting writes; and, for large reads, read spans of packs and check their
 * frames' CRC-32s, and decompress compressed frames (a second instance, so reads never
 * queue behind a destage). An
 * instance may run several workers, each request going to the least busy. Blocks
 * travel in a SharedArrayBuffer slab all workers see (one copy, no serialisation);
 * results come back as transferred buffers.
 *
 * The worker's code is a small CommonJS script run with `eval`, so it works the same
 * from compiled output and from the TypeScript sources under test; it loads the
 * compression addons relative to this module.
 */
import { Worker } from 'node:worker_threads';
import type { PackSpan, SpanReader, SpansRead } from '../chunks/index.js';
import type { Codec } from '../common/codec-names.js';
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { createRequire } = require('node:module');
const crypto = require('node:crypto');
// The one-shot crypto.hash (Node 20.12+) skips the Hash object per block.
const sha256 = typeof crypto.hash === 'function'
  ? (data) => crypto.hash('sha256', data, 'buffer')
  : (data) => crypto.createHash('sha256').update(data).digest();
const { crc32 } = require('node:zlib');
const fs = require('node:fs');
const load = createRequire(workerData.moduleUrl);
const lz4 = load('lz4-napi');
const zstd = load('zstd-napi');
let zstdCompressor = null;
function compress(codec, raw) {
  if (codec === 'lz4') return lz4.compressSync(raw);
  if (codec === 'zstd') {
    if (zstdCompressor === null) {
      zstdCompressor = new zstd.Compressor();
      zstdCompressor.setParameters({ compressionLevel: workerData.zstdLevel });
    }
    return zstdCompressor.compress(raw);
  }
  return null;
}
let zstdDecompressor = null;
function decompress(codec, stored) {
  if (codec === 'none') return stored;
  if (codec === 'lz4') return lz4.uncompressSync(stored);
  if (zstdDecompressor === null) zstdDecompressor = new zstd.Decompressor();
  return zstdDecompressor.decompress(stored);
}
// Checks a frame record (inside one of the spans) whose header the main thread already
// decoded: payload CRC, decompression to the expected length, then (when asked) each
// chunk against its SHA-256. The blocks come back in a buffer of their own.
function decodeFrame(frame, spans) {
  const record = Buffer.from(spans[frame.span], frame.start, frame.length);
  const payload = record.subarray(frame.headerLength);
  if (crc32(payload) !== frame.payloadCrc) return { error: 'frame payload checksum mismatch' };
  let raw;
  try {
    raw = decompress(frame.codec, payload);
  } catch (error) {
    return { error: 'frame payload does not decompress' };
  }
  if (raw.length !== frame.chunkCount * frame.blockSize) return { error: 'frame decompressed to the wrong length' };
  const verified = new Uint8Array(frame.chunkCount);
  for (let slot = 0; frame.checkHashes && slot < frame.chunkCount; slot += 1) {
    const digest = sha256(raw.subarray(slot * frame.blockSize, (slot + 1) * frame.blockSize));
    if (digest.equals(record.subarray(24 + slot * 32, 24 + (slot + 1) * 32))) verified[slot] = 1;
  }
  const copy = new Uint8Array(raw.length);
  copy.set(raw);
  return { raw: copy, verified };
}
function decodeFrames(message) {
  const frames = message.frames.map((frame) => decodeFrame(frame, message.spans));
  const transfer = [];
  for (const result of frames) if (result.verified) transfer.push(result.verified.buffer, result.raw.buffer);
  return { result: { frames }, transfer };
}
function hashBlocks(message) {
  const slab = Buffer.from(message.slab);
  const size = message.blockSize;
  const hashes = new Uint8Array(32 * message.count);
  const zero = new Uint8Array(message.count);
  const zeroBlock = Buffer.alloc(size);
  for (let i = 0; i < message.count; i += 1) {
    const at = (message.first + i) * size;
    const block = slab.subarray(at, at + size);
    if (block.equals(zeroBlock)) { zero[i] = 1; continue; }
    hashes.set(sha256(block), i * 32);
  }
  return { result: { hashes, zero }, transfer: [hashes.buffer, zero.buffer] };
}
// Whether raw looks incompressible, judged from up to 4 KiB sampled in 16-byte pieces
// (as btrfs does): high Shannon entropy of the sampled bytes (bits per byte, with the
// Miller-Madow correction for the small sample) and no repeated pieces (repeats mean
// matches, which compress whatever the byte statistics). The stride is odd so that the
// samples do not keep landing on the same field of a record-structured block.
// At most 256 pieces are sampled: the first 8 bytes of each go into a small open-
// addressing table (a generation number per slot instead of clearing it), and the
// entropy comes from a table of log2 of the counts: a Set and Math.log2 per call cost
// as much as hashing the block.
const sampleCounts = new Uint32Array(256);
const pieceSlots = 1024;
const pieceLow = new Uint32Array(pieceSlots);
const pieceHigh = new Uint32Array(pieceSlots);
const pieceGen = new Uint32Array(pieceSlots);
let sampleGen = 0;
const log2Of = new Float64Array(16 * 300);
for (let i = 1; i < log2Of.length; i += 1) log2Of[i] = Math.log2(i);
function looksIncompressible(raw) {
  const counts = sampleCounts;
  counts.fill(0);
  sampleGen = (sampleGen + 1) >>> 0;
  if (sampleGen === 0) { pieceGen.fill(0); sampleGen = 1; }
  // 256 pieces of a large frame; a small one (a random write's block) gets as few as 64:
  // about 1 KiB of samples, still a tight estimate, at a third of the cost.
  const wanted = Math.min(256, Math.max(64, raw.length >>> 6));
  const stride = Math.max(16, Math.floor(raw.length / wanted)) + 9;
  let samples = 0;
  let pieces = 0;
  let repeats = 0;
  for (let at = 0; at + 16 <= raw.length; at += stride) {
    for (let i = at; i < at + 16; i += 1) counts[raw[i]] += 1;
    samples += 16;
    const low = raw.readUInt32LE(at);
    const high = raw.readUInt32LE(at + 4);
    let slot = (Math.imul(low ^ Math.imul(high, 0x9e3779b1), 0x85ebca6b) >>> 22) & (pieceSlots - 1);
    for (;;) {
      if (pieceGen[slot] !== sampleGen) {
        pieceGen[slot] = sampleGen;
        pieceLow[slot] = low;
        pieceHigh[slot] = high;
        pieces += 1;
        break;
      }
      if (pieceLow[slot] === low && pieceHigh[slot] === high) {
        repeats += 1;
        break;
      }
      slot = (slot + 1) & (pieceSlots - 1);
    }
  }
  if (samples === 0 || repeats * 32 >= pieces + repeats) return false;
  // Shannon entropy of the counts: log2(n) - sum(c * log2 c) / n.
  let weighted = 0;
  let seen = 0;
  for (let byte = 0; byte < 256; byte += 1) {
    const count = counts[byte];
    if (count === 0) continue;
    weighted += count * log2Of[count];
    seen += 1;
  }
  const bits = log2Of[samples] - weighted / samples;
  return bits + (seen - 1) / (2 * samples * Math.LN2) > workerData.entropyBitsMax;
}
// A frame's blocks are usually consecutive slots (sequential data; one-block frames):
// then the frame is a view of the slab, not a copy.
function frameBytes(slab, slots, size) {
  const first = slots[0];
  let consecutive = true;
  for (let i = 1; consecutive && i < slots.length; i += 1) consecutive = slots[i] === first + i;
  if (consecutive) return slab.subarray(first * size, (first + slots.length) * size);
  return Buffer.concat(slots.map((slot) => slab.subarray(slot * size, (slot + 1) * size)));
}
function compressFrames(message) {
  const slab = Buffer.from(message.slab);
  const size = message.blockSize;
  const payloads = [];
  const transfer = [];
  for (const slots of message.frames) {
    const raw = frameBytes(slab, slots, size);
    const packed = looksIncompressible(raw) ? null : compress(message.codec, raw);
    if (packed === null || packed.length > raw.length * (1 - workerData.savingsMinFraction)) {
      payloads.push({ payload: null, crc: crc32(raw) });
      continue;
    }
    const copy = new Uint8Array(packed.length);
    copy.set(packed);
    payloads.push({ payload: copy, crc: crc32(copy) });
    transfer.push(copy.buffer);
  }
  return { result: payloads, transfer };
}
// Spans of packs for a large read, back to back (into the shared buffer given, else into
// memory of its own, handed over), then the CRC-32 of each [start, end) range asked for
// (the frame payloads in them): the main thread is left to compare numbers. A failed
// read comes back as its system error; a span cut short by the end of its file, as how
// much of it was read.
function readSpans(message) {
  const total = message.spans.reduce((sum, span) => sum + span.length, 0);
  const bytes = message.into ? Buffer.from(message.into, 0, total) : Buffer.allocUnsafeSlow(total);
  const gots = [];
  let at = 0;
  try {
    for (const span of message.spans) {
      let got = 0;
      while (got < span.length) {
        const n = fs.readSync(span.fd, bytes, at + got, span.length - got, span.position + got);
        if (n === 0) break;
        got += n;
      }
      gots.push(got);
      if (got < span.length) break;
      at += span.length;
    }
  } catch (error) {
    return { result: { failure: { code: error.code, message: error.message } }, transfer: [] };
  }
  if (gots.length < message.spans.length || gots[gots.length - 1] < message.spans[gots.length - 1].length) return { result: { gots, crcs: [] }, transfer: [] };
  const crcs = [];
  for (let i = 0; i + 1 < message.ranges.length; i += 2) crcs.push(crc32(bytes.subarray(message.ranges[i], message.ranges[i + 1])));
  if (message.into) return { result: { gots, crcs }, transfer: [] };
  return { result: { bytes: bytes.buffer, gots, crcs }, transfer: [bytes.buffer] };
}
function blockCrcs(message) {
  const crcs = new Uint32Array(message.count);
  const bytes = Buffer.from(message.bytes, 0, message.count * message.blockSize);
  for (let i = 0; i < message.count; i += 1) crcs[i] = crc32(bytes.subarray(i * message.blockSize, (i + 1) * message.blockSize));
  return { result: { bytes: message.bytes, crcs }, transfer: [message.bytes, crcs.buffer] };
}
const ops = { hash: hashBlocks, decode: decodeFrames, compress: compressFrames, read: readSpans, crc: blockCrcs };
parentPort.on('message', (message) => {
  try {
    const op = ops[message.op];
    const { result, transfer } = op(message);
    parentPort.postMessage({ id: message.id, result }, transfer);
  } catch (error) {
    parentPort.postMessage({ id: message.id, error: String(error && error.stack || error) });
  }
});
`;

export interface HashResult {
  /** 32 bytes per block; undefined content for zero blocks. */
  readonly hashes: Uint8Array;
  /** 1 where the block is all zeros. */
  readonly zero: Uint8Array;
}

export interface CompressedFrame {
  readonly payload: Uint8Array | null;
  readonly crc: number;
}

export interface FrameToDecode {
  /** The frame record is bytes [start, start + length) of spans[span]. */
  readonly span: number;
  readonly start: number;
  readonly length: number;
  readonly headerLength: number;
  readonly codec: Codec;
  readonly payloadCrc: number;
  readonly chunkCount: number;
  readonly blockSize: number;
  /** Check each chunk against its SHA-256 (reads verify `sha256`); else verified stays 0. */
  readonly checkHashes: boolean;
}

/** The frame's blocks, decompressed and checked, in a buffer of their own. */
export type DecodedFrame = { readonly raw: Uint8Array; readonly verified: Uint8Array; readonly error?: undefined } | { readonly error: string };

export interface DecodedSpans {
  readonly frames: DecodedFrame[];
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface Lane {
  readonly worker: Worker;
  /** Requests sent to this worker and not answered yet. */
  inFlight: number;
}

export class CpuOffload implements SpanReader {
  private readonly lanes: Lane[];
  private readonly pending = new Map<number, Pending & { readonly lane: Lane }>();
  private nextId = 1;
  private slab = new SharedArrayBuffer(0);

  /**
   * `workers` threads share the work: each request goes to the one with the fewest
   * requests in flight, so the slices of a destage hash and compress side by side.
   */
  constructor(zstdLevel: number, workers = 1) {
    const workerData = { moduleUrl: import.meta.url, zstdLevel, savingsMinFraction: limits.compressionSavingsMinFraction, entropyBitsMax: limits.compressEntropyBitsMax };
    this.lanes = Array.from({ length: Math.max(1, workers) }, () => ({ worker: new Worker(workerSource, { eval: true, workerData }), inFlight: 0 }));
    for (const { worker } of this.lanes) {
      worker.unref();
      worker.on('message', (message: { id: number; result?: unknown; error?: string }) => {
        const pending = this.pending.get(message.id);
        if (!pending) return;
        this.pending.delete(message.id);
        pending.lane.inFlight -= 1;
        if (message.error !== undefined) pending.reject(new StrataError('STRATA_E_IO', `destage worker failed: ${message.error}`));
        else pending.resolve(message.result);
      });
      worker.on('error', (error) => this.failAll(error));
      worker.on('exit', () => this.failAll(new Error('destage worker exited')));
    }
  }

  private failAll(error: Error): void {
    for (const pending of this.pending.values()) pending.reject(new StrataError('STRATA_E_IO', `destage worker failed: ${error.message}`));
    this.pending.clear();
  }

  private request<T>(message: Record<string, unknown>, transfer: ArrayBuffer[] = []): Promise<T> {
    const id = this.nextId;
    this.nextId += 1;
    const lane = this.lanes.reduce((best, candidate) => (candidate.inFlight < best.inFlight ? candidate : best));
    lane.inFlight += 1;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, lane });
      lane.worker.postMessage({ ...message, id }, transfer);
    });
  }

  /**
   * Makes room for `slots` blocks in the shared slab (reused between destages; only one
   * destage runs at a time). Its contents are lost when it grows: call before load.
   */
  reserve(slots: number, blockSize: number): void {
    const bytes = slots * blockSize;
    if (this.slab.byteLength < bytes) this.slab = new SharedArrayBuffer(Math.max(bytes, this.slab.byteLength * 2));
  }

  /** Copies blocks into the slab: blocks[i] into slot first + i. */
  load(blocks: readonly Buffer[], blockSize: number, first: number): void {
    const view = Buffer.from(this.slab, first * blockSize, blocks.length * blockSize);
    // Blocks that lie back to back in one buffer (a large write's) are copied as one run.
    let runStart = 0;
    for (let index = 1; index <= blocks.length; index += 1) {
      const head = blocks[runStart];
      const next = blocks[index];
      const contiguous =
        next !== undefined && head.length === blockSize && next.buffer === head.buffer && next.byteOffset === head.byteOffset + (index - runStart) * blockSize && next.length === blockSize;
      if (contiguous) continue;
      const source = index - runStart === 1 ? head : Buffer.from(head.buffer, head.byteOffset, (index - runStart) * blockSize);
      source.copy(view, runStart * blockSize);
      runStart = index;
    }
  }

  /** Hashes slots [first, first + count); results are indexed from first. */
  hash(first: number, count: number, blockSize: number): Promise<HashResult> {
    return this.request<HashResult>({ op: 'hash', slab: this.slab, first, count, blockSize });
  }

  /**
   * Per frame (slots into the slab): the compressed payload, or null where compression
   * would not save enough, and the CRC-32 of the payload to store (compressed or raw).
   */
  compress(codec: Codec, blockSize: number, frames: number[][]): Promise<CompressedFrame[]> {
    return this.request<CompressedFrame[]>({ op: 'compress', slab: this.slab, blockSize, frames, codec });
  }

  /**
   * Verifies and decompresses frame records off this thread. The spans holding them are
   * handed over and back (detached meanwhile: use the returned ones). A failed frame
   * comes back with the reason; a chunk whose bytes do not match its hash is left
   * unverified (the caller reports it).
   */
  decodeFrames(spans: readonly Buffer[], frames: readonly FrameToDecode[]): Promise<DecodedSpans> {
    // A span sharing its memory (Node's small-buffer pool) is copied into memory of its
    // own (not with Buffer.from, which may pool again): only such memory can be handed over.
    // Shared memory (a recycled read span) is never handed over: it is copied too.
    const buffers = spans.map((span) => (span.byteOffset === 0 && span.buffer.byteLength === span.length && !(span.buffer instanceof SharedArrayBuffer) ? span : new Uint8Array(span)).buffer as ArrayBuffer);
    return this.request<DecodedSpans>({ op: 'decode', spans: buffers, frames }, buffers);
  }

  /**
   * The CRC-32 of each of the `count` blocks at the start of `bytes`, which is handed
   * over and back (detached meanwhile: use the returned one). Copying into shared memory
   * instead costs more than the CRC-32 itself (V8 copies into it with relaxed atomics).
   */
  blockCrcs(bytes: ArrayBuffer, count: number, blockSize: number): Promise<{ bytes: ArrayBuffer; crcs: Uint32Array }> {
    return this.request<{ bytes: ArrayBuffer; crcs: Uint32Array }>({ op: 'crc', bytes, count, blockSize }, [bytes]);
  }

  /** SpanReader: large reads and the CRC-32s of their frames' payloads, on the worker. */
  async readSpans(spans: readonly PackSpan[], ranges: readonly number[], into?: SharedArrayBuffer): Promise<SpansRead> {
    const read = await this.request<{ bytes?: ArrayBuffer; gots: number[]; crcs: number[]; failure?: { code?: string; message: string } }>({ op: 'read', spans, ranges, into });
    if (read.failure) throw Object.assign(new Error(read.failure.message), { code: read.failure.code });
    const length = spans.reduce((sum, span) => sum + span.length, 0);
    return { bytes: into ? Buffer.from(into, 0, length) : Buffer.from(read.bytes ?? new ArrayBuffer(0)), gots: read.gots, crcs: read.crcs };
  }

  async close(): Promise<void> {
    await Promise.all(this.lanes.map((lane) => lane.worker.terminate()));
  }
}
