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
import { backpressure, flushPool } from './writeback.js';
import { entryBytes, type BufferedBlock } from './write-buffer.js';

const windowBlocks = limits.extentWindowBlocks;
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

/** A copy of a block in memory of its own (not zero-filled first, unlike Buffer.from). */
function copyOf(piece: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(piece.length);
  piece.copy(copy);
  return copy;
}

/**
 * Copies of small writes are carved from shared slabs instead of a memory allocation
 * each: a 4 KiB random write allocated and later freed an ArrayBuffer of its own, and
 * malloc, free and the collector's sweeping of them cost more than the copy. A slab
 * lives while any block in it is buffered; destage takes every buffered block, so slabs
 * die within a destage or two.
 */
const smallCopyBytesMax = 16 * 1024;
const copySlabBytes = 256 * 1024;
let copySlab = Buffer.allocUnsafeSlow(0);
let copySlabUsed = 0;

function copyOfWrite(data: Buffer): Buffer {
  const copy = roomForCopy(data.length);
  data.copy(copy);
  return copy;
}

/** Room for a copy: carved from the current copy slab when small, else memory of its own. */
function roomForCopy(length: number): Buffer {
  if (length > smallCopyBytesMax) return Buffer.allocUnsafeSlow(length);
  if (copySlab.length - copySlabUsed < length) {
    copySlab = Buffer.allocUnsafeSlow(copySlabBytes);
    copySlabUsed = 0;
  }
  const room = copySlab.subarray(copySlabUsed, copySlabUsed + length);
  copySlabUsed += length;
  return room;
}

/**
 * Copies the bytes [from, to) of a write given as pieces (pieces[index] holds the
 * write's bytes from `pieceStart` on) into target at `at`.
 */
function copyFromPieces(pieces: readonly Buffer[], index: number, pieceStart: number, from: number, to: number, target: Buffer, at: number): void {
  while (from < to) {
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

function bufferedType(entry: BufferedBlock, zeroBlock: Buffer): ExtentType {
  if (entry === 'hole') return 'hole';
  return entry === 'zero' || entry.equals(zeroBlock) ? 'zero' : 'data';
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
    checkRange(this, offset, length, limits.ioBytesMax);
    if (length === 0) return { pieces: [], recycled: false };
    const size = this.ctx.blockSize;
    const first = Math.floor(offset / size);
    const last = Math.floor((offset + length - 1) / size);
    const sources = new Array<Buffer | null>(last - first + 1).fill(null);
    const fromBuffer = new Uint8Array(last - first + 1);
    let stored = false;
    let recycled = false;
    for (let block = first; block <= last; block += 1) {
      const entry = this.buffered(block);
      if (entry === undefined) {
        stored = true;
        continue;
      }
      fromBuffer[block - first] = 1;
      // Buffered blocks change in place under later partial writes: the read keeps a copy.
      if (typeof entry !== 'string') sources[block - first] = copyOf(entry);
    }
    if (stored) {
      const rows = await resolveBlocks(this.ctx, this.record(), this.gen(), first, last - first + 1);
      for (let index = 0; index < rows.length; index += 1) if (fromBuffer[index] === 1) rows[index] = null;
      recycled = await collectFromStore(this.ctx, rows, sources);
    }
    return { pieces: toPieces(sources, first, offset, length, size), recycled };
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
        if (entry !== undefined) buffered.set(block, bufferedType(entry, this.ctx.zeroBlock));
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

  async flush(): Promise<void> {
    await flushPool(this.ctx);
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

  override async writePieces(offset: number, pieces: readonly Buffer[], options: WriteOptions = {}): Promise<void> {
    this.checkLive();
    let length = 0;
    for (const piece of pieces) length += piece.length;
    checkRange(this, offset, length, limits.ioBytesMax);
    if (length === 0) return this.afterWrite(options);
    const size = this.ctx.blockSize;
    const end = offset + length;
    // Whole blocks inside one piece are views of it: of the piece itself when handed over
    // (and most of the memory behind it, so a small view does not pin a large
    // allocation), else of one copy of the piece (the caller may reuse its bytes). A
    // block straddling two pieces is copied on its own.
    let index = 0;
    let pieceStart = offset;
    let kept: Buffer | null = null;
    for (let block = Math.floor(offset / size); block * size < end; block += 1) {
      const blockStart = block * size;
      const from = Math.max(offset, blockStart);
      const to = Math.min(end, blockStart + size);
      while (from >= pieceStart + pieces[index].length) {
        pieceStart += pieces[index].length;
        index += 1;
        kept = null;
      }
      const piece = pieces[index];
      if (to - from < size) {
        await this.modifyBlock(block, (target) => copyFromPieces(pieces, index, pieceStart, from, to, target, from - blockStart));
        continue;
      }
      let entry: Buffer;
      if (to <= pieceStart + piece.length) {
        entry = piece.subarray(from - pieceStart, to - pieceStart);
        if (this.ctx.zeroBlock.equals(entry)) {
          this.setEntry(block, 'zero');
          continue;
        }
        kept ??= options.adopt === true && piece.length * 2 >= piece.buffer.byteLength ? piece : copyOfWrite(piece);
        entry = kept.subarray(from - pieceStart, to - pieceStart);
      } else {
        entry = roomForCopy(size);
        copyFromPieces(pieces, index, pieceStart, from, to, entry, 0);
        if (this.ctx.zeroBlock.equals(entry)) {
          this.setEntry(block, 'zero');
          continue;
        }
      }
      this.setEntry(block, entry);
    }
    const wait = this.afterWrite(options);
    if (wait !== undefined) await wait;
  }

  override async trim(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    await this.clearRange(offset, length, 'hole', options);
  }

  override async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    await this.clearRange(offset, length, options.allocate ? 'zero' : 'hole', options);
  }

  private async clearRange(offset: number, length: number, marker: 'zero' | 'hole', options: WriteOptions): Promise<void> {
    this.checkLive();
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
        if (marker === 'zero') {
          for (let block = windowStart; block < windowStart + count; block += 1) this.setEntry(block, 'zero');
        } else {
          await this.holeWindow(windowStart, count);
        }
        await backpressure(this.ctx);
      }
    }
    await this.afterWrite(options);
  }

  /** Marks as holes the blocks of a window that hold anything now (buffered or stored). */
  private async holeWindow(first: number, count: number): Promise<void> {
    const before: number[] = [];
    for (let block = first; block < first + count; block += 1) if (this.state.buffer.lookup(block) !== undefined) before.push(block);
    const rows = await resolveBlocks(this.ctx, this.state.record, this.state.record.headGen, first, count, false);
    for (const block of before) this.setEntry(block, 'hole');
    rows.forEach((row, index) => {
      if (row !== null) this.setEntry(first + index, 'hole');
    });
    for (let block = first; block < first + count; block += 1) if (this.state.buffer.lookup(block) !== undefined) this.setEntry(block, 'hole');
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

  /** After buffering: the flush FUA asks for, else backpressure's wait (undefined when there is none). */
  private afterWrite(options: WriteOptions): Promise<void> | undefined {
    return options.fua ? flushPool(this.ctx) : backpressure(this.ctx);
  }

  private setEntry(block: number, entry: BufferedBlock): void {
    const dirty = this.state.buffer.dirty;
    const old = dirty.get(block);
    this.ctx.dirtyBytes += entryBytes(entry) - (old === undefined ? 0 : entryBytes(old));
    dirty.set(block, entry);
  }

  /**
   * Read-modify-write of one block. A dirty data entry is changed in place; a frozen
   * (destaging) one is copied first; otherwise the stored block is read, and the read is
   * retried if a destage finished meanwhile (its base may have gone stale).
   */
  private async modifyBlock(block: number, apply: (target: Buffer) => void): Promise<void> {
    const buffer = this.state.buffer;
    for (;;) {
      const dirty = buffer.dirty.get(block);
      if (dirty instanceof Buffer) return apply(dirty);
      const frozen = dirty ?? buffer.destaging?.get(block);
      if (frozen !== undefined) {
        const base = frozen instanceof Buffer ? Buffer.from(frozen) : Buffer.alloc(this.ctx.blockSize);
        apply(base);
        return this.setEntry(block, base);
      }
      const epoch = buffer.epoch;
      const rows = await resolveBlocks(this.ctx, this.state.record, this.state.record.headGen, block, 1);
      const base = Buffer.alloc(this.ctx.blockSize);
      if (rows[0]?.location) (await this.ctx.readChunk(rows[0].location)).copy(base);
      if (buffer.lookup(block) !== undefined || epoch !== buffer.epoch) continue;
      apply(base);
      return this.setEntry(block, base);
    }
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
