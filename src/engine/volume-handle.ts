/*
 * Block device handles: the writable head of a volume, and read-only snapshot views.
 * All head handles of one volume share its VolumeState, hence one write-back buffer,
 * so a flush through any of them covers writes made through all (NBD multi-conn).
 *
 * Reads copy buffered blocks synchronously first, then query the store for the rest:
 * a destage that finishes in between then shows up in the rows instead, so a read
 * always sees every write that completed before it started.
 */
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { ZERO_CHUNK, type ChunkLocation, type MappedExtent, type VolumeRecord } from '../meta/index.js';
import type { BlockDevice, BlockExtent, ExtentType, HeldPieces, ReadPiece, WriteOptions, ZeroOptions } from './block-device.js';
import { resolveBlocks } from './extent-reader.js';
import { storedRaw, type PoolContext, type VolumeState } from './pool-context.js';
import { backpressure } from './writeback.js';
import { type BufferedBlock } from './write-buffer.js';
import { LogKind, LogRecord, type LogRun } from './write-log.js';
import { crc32 } from 'node:zlib';

const windowBlocks = limits.extentWindowBlocks;
/** Blocks in one write log record at most (a 1 MiB write of 4 KiB blocks is one record). */
const logRunBlocksMax = 1024;
/** Reads of buffered blocks from this many bytes on go to the read worker (a 1 MiB read, or scattered blocks gathered). */
const logReadOffThreadBytesMin = 64 * 1024;
/** A read wanting under 1/4 of an uncompressed frame's blocks reads those blocks alone. */
const readAloneFraction = 4;
/** Block status answers at most this many blocks per call; callers continue from there. */
const statusBlocksMax = 1 << 20;

function checkRange(device: BlockDevice, offset: number, length: number, lengthMax: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', 'offset and length must be non-negative integers', { offset, length });
  }
  if (length > lengthMax) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `request of ${length} bytes is over the limit of ${lengthMax}`, { length });
  }
  if (offset + length > device.sizeBytes) {
    throw new StrataError('STRATA_E_OUT_OF_RANGE', `request [${offset}, ${offset + length}) is past the end of ${device.name} (${device.sizeBytes} bytes)`, {
      offset,
      length,
      sizeBytes: device.sizeBytes,
    });
  }
}

/**
 * Puts the verified bytes of resolved blocks into `sources` (index i for block
 * firstBlock + i): views of cached frames, of frames just loaded, or blocks read alone.
 * True when some are views of recycled spans (see SpanPool).
 */
async function collectFromStore(ctx: PoolContext, rows: (MappedExtent | null)[], sources: (Buffer | null)[]): Promise<boolean> {
  // Blocks of cached frames first (the common case): no further work for them.
  const missing: number[] = [];
  for (let index = 0; index < rows.length; index += 1) {
    const location = rows[index]?.location;
    if (location == null) continue;
    const cached = ctx.cachedChunk(location);
    if (cached === undefined) missing.push(index);
    else sources[index] = cached;
  }
  if (missing.length === 0) return false;
  const size = ctx.blockSize;
  const locations = missing.map((index) => rows[index]?.location as ChunkLocation);
  // Frames the read wants most of are read (and checked) whole, several at once on the
  // read worker; of an uncompressed frame it wants little of, blocks are read alone.
  const wanted = new Map<number, number>();
  for (const location of locations) wanted.set(location.frameId, (wanted.get(location.frameId) ?? 0) + 1);
  const alone = (location: ChunkLocation) => storedRaw(location, size) && (wanted.get(location.frameId) as number) * readAloneFraction < location.frameChunks;
  const whole = locations.filter((location) => !alone(location));
  const loaded = whole.length > 1 && whole[0].frameId !== whole[whole.length - 1].frameId ? await ctx.loadFrames(whole) : null;
  for (let at = 0; at < missing.length; at += 1) {
    const location = locations[at];
    const frame = loaded?.get(location.frameId);
    sources[missing[at]] = frame !== undefined ? ctx.loadedChunk(frame, location) : (ctx.cachedChunk(location) ?? (await ctx.readChunk(location, alone(location))));
  }
  return loaded !== null && loaded.size > 0;
}

/**
 * The pieces of [offset, offset + length) given each block's bytes (null: zeros).
 * Neighbouring views of one frame merge into one piece, as do neighbouring zeros.
 */
function toPieces(sources: readonly (Buffer | null)[], firstBlock: number, offset: number, length: number, size: number): ReadPiece[] {
  const pieces: ReadPiece[] = [];
  const end = offset + length;
  let run: Buffer | null = null;
  let runLength = 0;
  const endRun = () => {
    if (run !== null) pieces.push(runLength === run.length ? run : Buffer.from(run.buffer, run.byteOffset, runLength));
    run = null;
  };
  for (let index = 0; index < sources.length; index += 1) {
    const blockStart = (firstBlock + index) * size;
    const from = Math.max(offset, blockStart) - blockStart;
    const to = Math.min(end, blockStart + size) - blockStart;
    const source = sources[index];
    if (source === null) {
      endRun();
      const last = pieces.length - 1;
      if (last >= 0 && typeof pieces[last] === 'number') pieces[last] = (pieces[last] as number) + (to - from);
      else pieces.push(to - from);
      continue;
    }
    const view = from === 0 && to === source.length ? source : source.subarray(from, to);
    const current = run as Buffer | null;
    if (current !== null && current.buffer === view.buffer && current.byteOffset + runLength === view.byteOffset) {
      runLength += view.length;
    } else {
      endRun();
      run = view;
      runLength = view.length;
    }
  }
  endRun();
  return pieces;
}

/**
 * Copies the bytes [from, to) of a write given as pieces (pieces[index] holds the
 * write's bytes from `pieceStart` on) into target at `at`.
 */
function copyFromPieces(pieces: readonly Buffer[], index: number, pieceStart: number, from: number, to: number, target: Buffer, at: number): void {
  while (from < to) {
    while (pieceStart + pieces[index].length <= from) {
      pieceStart += pieces[index].length;
      index += 1;
    }
    const piece = pieces[index];
    const used = Math.min(to, pieceStart + piece.length) - from;
    piece.copy(target, at, from - pieceStart, from - pieceStart + used);
    at += used;
    from += used;
    pieceStart += piece.length;
    index += 1;
  }
}

function extentType(row: MappedExtent | null): ExtentType {
  if (row === null) return 'hole';
  return row.chunk === ZERO_CHUNK ? 'zero' : 'data';
}

function bufferedType(entry: BufferedBlock): ExtentType {
  if (entry === 'hole') return 'hole';
  return entry === 'zero' ? 'zero' : 'data';
}

/** Merges per-block types into byte extents clipped to [offset, end). */
function toExtents(types: ExtentType[], firstBlock: number, blockSize: number, offset: number, end: number): BlockExtent[] {
  const extents: { offset: number; length: number; type: ExtentType }[] = [];
  for (let index = 0; index < types.length; index += 1) {
    const start = Math.max(offset, (firstBlock + index) * blockSize);
    const stop = Math.min(end, (firstBlock + index + 1) * blockSize);
    const last = extents[extents.length - 1];
    if (last && last.type === types[index]) last.length = stop - last.offset;
    else extents.push({ offset: start, length: stop - start, type: types[index] });
  }
  return extents;
}

abstract class BaseHandle implements BlockDevice {
  abstract readonly name: string;
  abstract readonly sizeBytes: number;
  abstract readonly readOnly: boolean;

  constructor(protected readonly ctx: PoolContext) {}

  get blockSize(): number {
    return this.ctx.blockSize;
  }

  protected abstract record(): VolumeRecord;
  protected abstract gen(): number;
  protected abstract buffered(block: number): BufferedBlock | undefined;
  /** Throws when the volume or snapshot behind the handle is gone. */
  protected abstract checkLive(): void;

  async read(offset: number, length: number): Promise<Buffer> {
    const held = await this.readHeld(offset, length);
    try {
      const out = Buffer.allocUnsafe(length);
      let at = 0;
      for (const piece of held.pieces) {
        if (typeof piece === 'number') {
          out.fill(0, at, at + piece);
          at += piece;
        } else {
          at += piece.copy(out, at);
        }
      }
      return out;
    } finally {
      held.release();
    }
  }

  async readPieces(offset: number, length: number): Promise<ReadPiece[]> {
    const held = await this.readHeld(offset, length);
    try {
      // Views of recycled spans are the caller's for good only as copies.
      if (!held.recycled) return held.pieces;
      return held.pieces.map((piece) => (typeof piece !== 'number' && piece.buffer instanceof SharedArrayBuffer ? Buffer.from(piece) : piece));
    } finally {
      held.release();
    }
  }

  async readHeld(offset: number, length: number): Promise<HeldPieces> {
    const pool = this.ctx.spanPool;
    const epoch = pool.enter();
    let held = true;
    const release = () => {
      if (held) pool.exit(epoch);
      held = false;
    };
    try {
      const { pieces, recycled } = await this.collectPieces(offset, length);
      // A read that fetched no span through the pool holds nothing of it.
      if (!recycled) release();
      return { pieces, recycled, release };
    } catch (error) {
      release();
      throw error;
    }
  }

  private async collectPieces(offset: number, length: number): Promise<{ pieces: ReadPiece[]; recycled: boolean }> {
    this.checkLive();
    this.ctx.lastIoMs = Date.now();
    checkRange(this, offset, length, limits.ioBytesMax);
    if (length === 0) return { pieces: [], recycled: false };
    const size = this.ctx.blockSize;
    const first = Math.floor(offset / size);
    const last = Math.floor((offset + length - 1) / size);
    const sources = new Array<Buffer | null>(last - first + 1).fill(null);
    const fromBuffer = new Uint8Array(last - first + 1);
    let stored = false;
    let recycled = false;
    const logRuns: LogRun[] = [];
    let logBytes = 0;
    for (let block = first; block <= last; block += 1) {
      const entry = this.buffered(block);
      if (entry === undefined) {
        stored = true;
        continue;
      }
      fromBuffer[block - first] = 1;
      if (entry instanceof LogRecord) {
        // The blocks of one record that follow are read (and checked) with this one.
        let count = 1;
        while (block + count <= last && this.buffered(block + count) === entry) count += 1;
        logRuns.push({ record: entry, index: block - entry.firstBlock, count });
        logBytes += count * size;
        for (let at = 1; at < count; at += 1) fromBuffer[block + at - first] = 1;
        block += count - 1;
      }
    }
    if (logRuns.length > 0) {
      const read = await this.readLogRuns(logRuns, logBytes, first, sources, logBytes < (last - first + 1) * size);
      recycled = read.recycled;
      // All of it from one read of the log (a long read of data written sequentially):
      // the reply is a view of that read, nothing to merge.
      if (read.whole !== null && logBytes === (last - first + 1) * size) {
        return { pieces: [read.whole.subarray(offset - first * size, offset - first * size + length)], recycled };
      }
    }
    if (stored) {
      const rows = await resolveBlocks(this.ctx, this.record(), this.gen(), first, last - first + 1);
      for (let index = 0; index < rows.length; index += 1) if (fromBuffer[index] === 1) rows[index] = null;
      recycled = (await collectFromStore(this.ctx, rows, sources)) || recycled;
    }
    return { pieces: toPieces(sources, first, offset, length, size), recycled };
  }

  /**
   * Puts the bytes of buffered blocks read from the write log into `sources`: small reads
   * here, one call per run; from logReadOffThreadBytesMin on, on the read worker into
   * recycled memory when the span pool has some (`recycled`), all runs back to back in
   * one buffer (`whole`; `sources` are filled only when `partial`: the runs are not the
   * whole read).
   */
  private async readLogRuns(runs: LogRun[], bytes: number, first: number, sources: (Buffer | null)[], partial: boolean): Promise<{ recycled: boolean; whole: Buffer | null }> {
    const size = this.ctx.blockSize;
    const place = (run: LogRun, read: Buffer, at: number) => {
      const block = run.record.firstBlock + run.index;
      for (let index = 0; index < run.count; index += 1) sources[block + index - first] = read.subarray(at + index * size, at + (index + 1) * size);
    };
    if (bytes < logReadOffThreadBytesMin) {
      for (const run of runs) place(run, this.ctx.log.readBlocks(run.record, run.index, run.count), 0);
      return { recycled: false, whole: null };
    }
    const pooled = this.ctx.spanPool.take(bytes);
    let read: Buffer;
    try {
      read = await this.ctx.log.readRunsOffThread(runs, this.ctx.readOffload, pooled?.buffer);
    } finally {
      pooled?.release();
    }
    let at = 0;
    for (const run of runs) {
      if (partial) place(run, read, at);
      at += run.count * size;
    }
    return { recycled: pooled !== null, whole: read };
  }

  async blockStatus(offset: number, length: number): Promise<BlockExtent[]> {
    this.checkLive();
    checkRange(this, offset, length, Number.MAX_SAFE_INTEGER);
    if (length === 0) return [];
    const size = this.ctx.blockSize;
    const first = Math.floor(offset / size);
    const last = Math.min(Math.floor((offset + length - 1) / size), first + statusBlocksMax - 1);
    const types: ExtentType[] = [];
    for (let windowStart = first; windowStart <= last; windowStart += windowBlocks) {
      const count = Math.min(windowBlocks, last - windowStart + 1);
      const buffered = new Map<number, ExtentType>();
      for (let block = windowStart; block < windowStart + count; block += 1) {
        const entry = this.buffered(block);
        if (entry !== undefined) buffered.set(block, bufferedType(entry));
      }
      const rows = await resolveBlocks(this.ctx, this.record(), this.gen(), windowStart, count, false);
      rows.forEach((row, index) => types.push(buffered.get(windowStart + index) ?? extentType(row)));
    }
    return toExtents(types, first, size, offset, Math.min(offset + length, (last + 1) * size));
  }

  write(_offset: number, _data: Buffer, _options?: WriteOptions): Promise<void> {
    return Promise.reject(this.readOnlyError());
  }

  writePieces(_offset: number, _pieces: readonly Buffer[], _options?: WriteOptions): Promise<void> {
    return Promise.reject(this.readOnlyError());
  }

  trim(_offset: number, _length: number, _options?: WriteOptions): Promise<void> {
    return Promise.reject(this.readOnlyError());
  }

  writeZeroes(_offset: number, _length: number, _options?: ZeroOptions): Promise<void> {
    return Promise.reject(this.readOnlyError());
  }

  /** Makes every write that completed before the call durable: the write log's sync. */
  async flush(): Promise<void> {
    await this.ctx.log.sync();
  }

  protected readOnlyError(): StrataError {
    return new StrataError('STRATA_E_READ_ONLY', `${this.name} is read-only`, { device: this.name });
  }
}

/** The writable head of a volume. */
export class VolumeHandle extends BaseHandle {
  readonly readOnly = false;

  constructor(
    ctx: PoolContext,
    private readonly state: VolumeState,
  ) {
    super(ctx);
  }

  get name(): string {
    return this.state.record.name;
  }

  get sizeBytes(): number {
    return this.state.record.sizeBytes;
  }

  protected record(): VolumeRecord {
    return this.state.record;
  }

  protected gen(): number {
    return this.state.record.headGen;
  }

  protected buffered(block: number): BufferedBlock | undefined {
    return this.state.buffer.lookup(block);
  }

  protected checkLive(): void {
    this.ctx.assertOpen();
    if (this.ctx.volumes.get(this.state.id) !== this.state) {
      throw new StrataError('STRATA_E_VOLUME_NOT_FOUND', `volume ${this.name} was deleted`, { volume: this.name });
    }
  }

  override write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    return this.writePieces(offset, [data], options);
  }

  /**
   * Whole blocks go to the write log as runs (data, or allocated zeros for all-zero
   * blocks), straight from the caller's pieces: nothing is copied but a block that
   * straddles two pieces. Partial blocks are read, modified and logged whole. The write
   * resolves once its records are in the log and the buffer.
   */
  override async writePieces(offset: number, pieces: readonly Buffer[], options: WriteOptions = {}): Promise<void> {
    this.checkLive();
    this.ctx.lastIoMs = Date.now();
    let length = 0;
    for (const piece of pieces) length += piece.length;
    checkRange(this, offset, length, limits.ioBytesMax);
    if (length === 0) return this.afterWrite(options);
    const size = this.ctx.blockSize;
    const end = offset + length;
    const firstFull = Math.ceil(offset / size);
    const endFull = Math.floor(end / size);
    if (firstFull >= endFull) {
      // Inside one block, or over the border of two.
      for (let block = Math.floor(offset / size); block * size < end; block += 1) {
        const from = Math.max(offset, block * size);
        const to = Math.min(end, (block + 1) * size);
        await this.modifyBlock(block, (target) => copyFromPieces(pieces, 0, offset, from, to, target, from - block * size));
      }
      return this.afterWrite(options);
    }
    if (offset < firstFull * size) {
      const block = firstFull - 1;
      await this.modifyBlock(block, (target) => copyFromPieces(pieces, 0, offset, offset, firstFull * size, target, offset - block * size));
    }
    if (length === size && offset === firstFull * size && pieces.length === 1) {
      // One whole block (a small random write): logged as it is.
      await this.logBlock(firstFull, pieces[0]);
      return this.afterWrite(options);
    }
    const logged = (endFull - firstFull) * size >= limits.logCrcOffThreadBytesMin ? await this.logStaged(pieces, offset, firstFull, endFull) : null;
    if (logged === null) await this.logInline(pieces, offset, firstFull, endFull);
    if (end > endFull * size) {
      await this.modifyBlock(endFull, (target) => copyFromPieces(pieces, 0, offset, endFull * size, end, target, 0));
    }
    return this.afterWrite(options);
  }

  /**
   * Logs blocks [firstFull, endFull) of a write whose pieces start at `offset`, their
   * CRC-32s taken here. Resolves once they are logged.
   */
  private logInline(pieces: readonly Buffer[], offset: number, firstFull: number, endFull: number): Promise<void> {
    const size = this.ctx.blockSize;
    const runs = new LogRuns(this, firstFull, endFull - firstFull);
    let index = 0;
    let pieceStart = offset;
    for (let block = firstFull; block < endFull; block += 1) {
      const from = block * size;
      while (from >= pieceStart + pieces[index].length) {
        pieceStart += pieces[index].length;
        index += 1;
      }
      const piece = pieces[index];
      if (from + size <= pieceStart + piece.length) {
        const at = from - pieceStart;
        const bytes = at === 0 && piece.length === size ? piece : piece.subarray(at, at + size);
        const crc = crc32(bytes);
        runs.add(piece, at, size, this.isZero(bytes, crc), crc);
      } else {
        const bytes = Buffer.allocUnsafe(size);
        copyFromPieces(pieces, index, pieceStart, from, from + size, bytes, 0);
        const crc = crc32(bytes);
        runs.add(bytes, 0, size, this.isZero(bytes, crc), crc);
      }
    }
    return runs.finish();
  }

  /**
   * As logInline, from a copy in shared memory whose CRC-32s the destage workers take
   * meanwhile; null (nothing done) when the staging memory is spent.
   */
  private async logStaged(pieces: readonly Buffer[], offset: number, firstFull: number, endFull: number): Promise<true | null> {
    const size = this.ctx.blockSize;
    const count = endFull - firstFull;
    const taken = this.ctx.staging.take(count * size);
    if (taken === null) return null;
    copyFromPieces(pieces, 0, offset, firstFull * size, endFull * size, Buffer.from(taken, 0, count * size), 0);
    let checked: { bytes: ArrayBuffer; crcs: Uint32Array };
    try {
      checked = await this.ctx.offload.blockCrcs(taken, count, size);
    } catch (error) {
      this.ctx.staging.lost(count * size);
      throw error;
    }
    const copy = Buffer.from(checked.bytes, 0, count * size);
    try {
      const runs = new LogRuns(this, firstFull, count);
      for (let index = 0; index < count; index += 1) {
        const crc = checked.crcs[index];
        const zero = crc === this.ctx.zeroBlockCrc && this.ctx.zeroBlock.equals(copy.subarray(index * size, (index + 1) * size));
        runs.add(copy, index * size, size, zero, crc);
      }
      await runs.finish();
      return true;
    } finally {
      // Every run has been written or has failed by now (a failed batch fails all
      // queued behind it at once): nothing reads the copy any more.
      this.ctx.staging.give(checked.bytes);
    }
  }

  override async trim(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    await this.clearRange(offset, length, 'hole', options);
  }

  override async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    await this.clearRange(offset, length, options.allocate ? 'zero' : 'hole', options);
  }

  private async clearRange(offset: number, length: number, marker: 'zero' | 'hole', options: WriteOptions): Promise<void> {
    this.checkLive();
    this.ctx.lastIoMs = Date.now();
    checkRange(this, offset, length, Number.MAX_SAFE_INTEGER);
    if (length === 0) return this.afterWrite(options);
    const size = this.ctx.blockSize;
    const end = offset + length;
    const firstFull = Math.ceil(offset / size);
    const endFull = Math.floor(end / size);
    if (firstFull >= endFull) {
      // The range lies inside one block or straddles two partial ones.
      await this.zeroPartial(offset, end);
    } else {
      if (offset < firstFull * size) await this.zeroPartial(offset, firstFull * size);
      if (end > endFull * size) await this.zeroPartial(endFull * size, end);
      for (let windowStart = firstFull; windowStart < endFull; windowStart += windowBlocks) {
        const count = Math.min(windowBlocks, endFull - windowStart);
        if (marker === 'zero') await this.logRun(LogKind.Zero, windowStart, count, [], null);
        else await this.holeWindow(windowStart, count);
        await backpressure(this.ctx);
      }
    }
    await this.afterWrite(options);
  }

  /** Logs holes for the blocks of a window that hold anything now (buffered or stored). */
  private async holeWindow(first: number, count: number): Promise<void> {
    const buffer = this.state.buffer;
    const holding = new Uint8Array(count);
    const note = () => {
      for (let block = first; block < first + count; block += 1) if (buffer.lookup(block) !== undefined || this.inFlightTo(block) >= 0) holding[block - first] = 1;
    };
    note();
    const rows = await resolveBlocks(this.ctx, this.state.record, this.state.record.headGen, first, count, false);
    rows.forEach((row, index) => {
      if (row !== null) holding[index] = 1;
    });
    note();
    const logged: Promise<void>[] = [];
    for (let index = 0; index < count; ) {
      if (holding[index] === 0) {
        index += 1;
        continue;
      }
      let run = 1;
      while (index + run < count && holding[index + run] === 1) run += 1;
      logged.push(this.logRun(LogKind.Hole, first + index, run, [], null));
      index += run;
    }
    await Promise.all(logged);
  }

  /** Zeroes [from, to), a range that covers no whole block (it may touch two). */
  private async zeroPartial(from: number, to: number): Promise<void> {
    const size = this.ctx.blockSize;
    for (let block = Math.floor(from / size); block * size < to; block += 1) {
      const start = Math.max(from, block * size) - block * size;
      const end = Math.min(to, (block + 1) * size) - block * size;
      await this.modifyBlock(block, (target) => target.fill(0, start, end));
    }
  }

  /** After logging: the log sync FUA asks for, else backpressure's wait (undefined when there is none). */
  private afterWrite(options: WriteOptions): Promise<void> | undefined {
    return options.fua ? this.ctx.log.sync().then(() => backpressure(this.ctx)) : backpressure(this.ctx);
  }

  /**
   * Appends a run of blocks to the write log; they enter the buffer once written (see
   * PoolContext.applyLogRecord). Until then the blocks are pending: a read-modify-write
   * of one waits, so it reads a base that holds every write before it.
   */
  logRun(kind: LogKind, first: number, count: number, pieces: Buffer[], crcs: Uint32Array | null): Promise<void> {
    return this.ctx.log.append(this.state.id, kind, first, count, pieces, crcs);
  }

  /** The seq of the latest log record in flight to a block, else -1. */
  private inFlightTo(block: number): number {
    return this.ctx.log.inFlightTo(this.state.id, block);
  }

  /** Whether a block whose CRC-32 is `crc` is all zeros (only a zero block's CRC needs the comparison). */
  private isZero(bytes: Buffer, crc: number): boolean {
    return crc === this.ctx.zeroBlockCrc && this.ctx.zeroBlock.equals(bytes);
  }

  /** Logs one whole block: allocated zeros when it is all zeros. */
  private logBlock(block: number, bytes: Buffer): Promise<void> {
    const crc = crc32(bytes);
    if (this.isZero(bytes, crc)) return this.logRun(LogKind.Zero, block, 1, [], null);
    return this.logRun(LogKind.Data, block, 1, [bytes], Uint32Array.of(crc));
  }

  /** A private copy of a buffered block's bytes. */
  private bufferedBytes(block: number, entry: BufferedBlock): Buffer {
    if (typeof entry === 'string') return Buffer.alloc(this.ctx.blockSize);
    return this.ctx.log.readBlocks(entry, block - entry.firstBlock, 1);
  }

  /**
   * Read-modify-write of one block: after any write in flight to it, from its buffered
   * bytes, or else from the store (retried if a write or a destage landed meanwhile, as
   * the base may have gone stale), then logged whole.
   */
  private async modifyBlock(block: number, apply: (target: Buffer) => void): Promise<void> {
    const buffer = this.state.buffer;
    for (;;) {
      const pending = this.inFlightTo(block);
      if (pending >= 0) {
        await this.ctx.log.appliedPast(pending);
        continue;
      }
      const entry = buffer.lookup(block);
      let base: Buffer;
      if (entry !== undefined) {
        base = this.bufferedBytes(block, entry);
      } else {
        const epoch = buffer.epoch;
        const rows = await resolveBlocks(this.ctx, this.state.record, this.state.record.headGen, block, 1);
        base = Buffer.alloc(this.ctx.blockSize);
        if (rows[0]?.location) (await this.ctx.readChunk(rows[0].location)).copy(base);
        if (buffer.lookup(block) !== undefined || this.inFlightTo(block) >= 0 || epoch !== buffer.epoch) continue;
      }
      apply(base);
      return this.logBlock(block, base);
    }
  }
}

/**
 * Cuts a write's whole blocks into log records: runs of data blocks (their bytes as few
 * views of the caller's pieces as they came in) and runs of zero blocks.
 */
class LogRuns {
  private readonly logged: Promise<void>[] = [];
  private runFirst: number;
  private runZero = false;
  private count = 0;
  private readonly pieces: Buffer[] = [];
  /** The part of a piece the run's bytes use last: [pieceFrom, pieceTo) of `piece`. */
  private piece: Buffer | null = null;
  private pieceFrom = 0;
  private pieceTo = 0;
  private readonly crcs: Uint32Array;
  private next: number;

  constructor(
    private readonly handle: VolumeHandle,
    first: number,
    blocks: number,
  ) {
    this.runFirst = first;
    this.next = first;
    this.crcs = new Uint32Array(Math.min(logRunBlocksMax, blocks));
  }

  /** Adds the next block: `at` bytes into `piece` (or a copy of its own when it straddled two). */
  add(piece: Buffer, at: number, size: number, zero: boolean, crc: number): void {
    if (this.count > 0 && (zero !== this.runZero || this.count === logRunBlocksMax)) this.flush();
    if (this.count === 0) {
      this.runFirst = this.next;
      this.runZero = zero;
    }
    this.next += 1;
    if (zero) {
      this.count += 1;
      return;
    }
    this.crcs[this.count] = crc;
    this.count += 1;
    if (this.piece === piece && this.pieceTo === at) {
      this.pieceTo = at + size;
      return;
    }
    this.endPiece();
    this.piece = piece;
    this.pieceFrom = at;
    this.pieceTo = at + size;
  }

  private endPiece(): void {
    const piece = this.piece;
    if (piece === null) return;
    this.pieces.push(this.pieceFrom === 0 && this.pieceTo === piece.length ? piece : piece.subarray(this.pieceFrom, this.pieceTo));
    this.piece = null;
  }

  private flush(): void {
    if (this.count === 0) return;
    if (this.runZero) {
      this.logged.push(this.handle.logRun(LogKind.Zero, this.runFirst, this.count, [], null));
    } else {
      this.endPiece();
      this.logged.push(this.handle.logRun(LogKind.Data, this.runFirst, this.count, this.pieces.splice(0), this.crcs.slice(0, this.count)));
    }
    this.count = 0;
  }

  /** Logs the last run; resolves once every run is written (rejects if one failed). */
  finish(): Promise<void> {
    this.flush();
    const all = this.logged.length === 1 ? this.logged[0] : Promise.all(this.logged).then(() => undefined);
    all.catch(() => undefined);
    return all;
  }
}

/** A read-only view of a volume at a snapshot. */
export class SnapshotHandle extends BaseHandle {
  readonly readOnly = true;

  constructor(
    ctx: PoolContext,
    private readonly state: VolumeState,
    private readonly snapshotGen: number,
    readonly name: string,
    readonly sizeBytes: number,
  ) {
    super(ctx);
  }

  protected record(): VolumeRecord {
    return this.state.record;
  }

  protected gen(): number {
    return this.snapshotGen;
  }

  protected buffered(): BufferedBlock | undefined {
    return undefined;
  }

  protected checkLive(): void {
    this.ctx.assertOpen();
    const live = this.ctx.volumes.get(this.state.id) === this.state && this.state.snapshots.some((s) => s.gen === this.snapshotGen);
    if (!live) throw new StrataError('STRATA_E_SNAPSHOT_NOT_FOUND', `snapshot ${this.name} was deleted`, { snapshot: this.name });
  }
}
