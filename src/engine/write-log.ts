/*
 * The write log (the pool's intent log, as ZFS has its ZIL). Every write, trim and
 * zeroing is appended here as a record before it is acknowledged; a FLUSH or FUA then
 * only waits for the log's fdatasync, and destage (hashing, dedup, compression, pack
 * appends, the metadata commit) runs later in the background, reading the blocks back
 * from the log. The write-back buffer holds references to log records, not the bytes.
 *
 * Files: `log/log-<n>.log`, segments of at most logSegmentBytesMax. A record:
 *
 *   magic u32 | header CRC-32 u32 (of the rest of the header and the CRC table) |
 *   seq f64 | volume id u32 | kind u32 (data, zero, hole) | first block f64 |
 *   block count u32 | block size u32 | reserved u64 |
 *   data only: a CRC-32 per block, then the blocks.
 *
 * Appends are written one batch at a time, in order, on libuv's thread pool (what
 * arrives while a batch is written goes in the next one): a failed batch is cut off
 * the segment again and nothing after it was written, so a segment never holds a
 * record after a gap. A record is applied (handed to `apply`, which puts it into the
 * write-back buffer) once written, in sequence order, so memory always equals a replay
 * of the log. Records with seq below the `log:applied` pool value are in the packs and
 * metadata already (destage commits that value in its transaction); segments wholly
 * below it are deleted.
 *
 * Replay at open reads every segment in order and stops within a segment at the first
 * record that does not check (a torn tail: nothing after it was acknowledged as
 * durable, since a sync waits for every append before it).
 */
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { StrataError, hostIoError } from '../common/errors.js';
import { fsyncDirectory, type FileIo, type SpanReader } from '../chunks/index.js';

export const LogKind = { Data: 1, Zero: 2, Hole: 3 } as const;
export type LogKind = (typeof LogKind)[keyof typeof LogKind];

const magic = 0x474f4c53;
const headerBytes = 48;
const segmentPattern = /^log-(\d{8,})\.log$/;
/** Buffers per writev call (Linux's IOV_MAX is 1024). */
const iovecsMax = 512;

interface Segment {
  readonly id: number;
  readonly fd: number;
  /** Bytes assigned to records (written or queued). */
  bytes: number;
  /** Lowest and highest seq of a record in it, -1 when none. */
  minSeq: number;
  maxSeq: number;
  unsynced: boolean;
  /** fsyncs and worker reads under way on its descriptor (it is not closed under them). */
  syncing: number;
  reading: number;
}

/** One record: its blocks live in the segment at dataOffset, block after block. */
export class LogRecord {
  constructor(
    readonly seq: number,
    readonly volumeId: number,
    readonly kind: LogKind,
    readonly firstBlock: number,
    readonly count: number,
    /** Per-block CRC-32 of data records, else null. */
    readonly crcs: Uint32Array | null,
    readonly segment: Segment,
    readonly dataOffset: number,
    readonly blockSize: number,
  ) {}
}

/** Blocks [index, index + count) of a data record. */
export interface LogRun {
  readonly record: LogRecord;
  readonly index: number;
  readonly count: number;
}

interface Queued {
  readonly record: LogRecord;
  readonly pieces: Buffer[];
  readonly offset: number;
  readonly length: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

export class WriteLog {
  private readonly segments = new Map<number, Segment>();
  private current: Segment | null = null;
  private nextSegmentId: number;
  private queue: Queued[] = [];
  private writing = false;
  /** The segment of the batch being written, and the batch. */
  private writingSegment: Segment | null = null;
  private writingBatch: Queued[] = [];
  /** Waiters for a seq to be applied, by seq. */
  private appliedWaiters: { seq: number; wake: () => void }[] = [];
  private idleWaiters: (() => void)[] = [];
  private directoryDirty = false;
  private syncing: Promise<void> | null = null;
  /** Seq of the next record to be appended. */
  private nextSeq: number;
  /** Every record below this seq has been applied (written, or dropped by a failure). */
  private appliedBelow: number;
  /** Every record below this seq is on stable storage. */
  private syncedBelow: number;
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly io: FileIo,
    private readonly blockSize: number,
    private readonly segmentBytesMax: number,
    firstSeq: number,
    private readonly apply: (record: LogRecord) => void,
  ) {
    this.nextSeq = firstSeq;
    this.appliedBelow = firstSeq;
    this.syncedBelow = firstSeq;
    this.nextSegmentId = 1;
  }

  /**
   * Opens the log in `dir` and replays it: `apply` gets every valid record with seq at
   * or above `appliedSeq`, in order, and later every record appended once it is
   * written. New records go to a new segment.
   */
  static open(dir: string, io: FileIo, blockSize: number, segmentBytesMax: number, appliedSeq: number, apply: (record: LogRecord) => void): WriteLog {
    const log = new WriteLog(dir, io, blockSize, segmentBytesMax, appliedSeq, apply);
    let names: string[];
    try {
      io.mkdirSync(dir);
      names = io.readdirSync(dir);
    } catch (error) {
      throw hostIoError(error, `opening the write log in ${dir}`);
    }
    const ids = names.map((name) => segmentPattern.exec(name)).filter((match) => match !== null).map((match) => Number(match[1])).sort((a, b) => a - b);
    let lastSeq = appliedSeq - 1;
    for (const id of ids) {
      let fd: number;
      try {
        fd = io.openSync(log.segmentPath(id), 'r+');
      } catch (error) {
        throw hostIoError(error, `opening write log segment ${id}`);
      }
      const size = io.fstatSize(fd);
      const segment: Segment = { id, fd, bytes: size, minSeq: -1, maxSeq: -1, unsynced: false, syncing: 0, reading: 0 };
      log.segments.set(id, segment);
      let at = 0;
      for (;;) {
        const record = log.readRecord(segment, at, size);
        if (record === null) break;
        if (segment.minSeq < 0) segment.minSeq = record.seq;
        segment.maxSeq = record.seq;
        at = record.dataOffset + (record.kind === LogKind.Data ? record.count * blockSize : 0);
        if (record.seq > lastSeq) lastSeq = record.seq;
        if (record.seq >= appliedSeq) apply(record);
      }
      segment.bytes = at;
      if (segment.maxSeq < appliedSeq) {
        // Destaged whole before the crash (or holds nothing whole): not needed any more.
        log.segments.delete(id);
        try {
          io.closeSync(fd);
          io.unlinkSync(log.segmentPath(id));
        } catch {
          // Left for the next open.
        }
      }
    }
    log.nextSegmentId = Math.max(0, ...ids) + 1;
    log.nextSeq = lastSeq + 1;
    log.appliedBelow = log.nextSeq;
    log.syncedBelow = log.nextSeq;
    return log;
  }

  private segmentPath(id: number): string {
    return path.join(this.dir, `log-${String(id).padStart(8, '0')}.log`);
  }

  /** The record at `at` of a segment when it is whole and checks, else null. */
  private readRecord(segment: Segment, at: number, size: number): LogRecord | null {
    if (at + headerBytes > size) return null;
    const header = Buffer.allocUnsafe(headerBytes);
    this.io.readSync(segment.fd, header, 0, headerBytes, at);
    if (header.readUInt32LE(0) !== magic) return null;
    const seq = header.readDoubleLE(8);
    const volumeId = header.readUInt32LE(16);
    const kind = header.readUInt32LE(20) as LogKind;
    const firstBlock = header.readDoubleLE(24);
    const count = header.readUInt32LE(32);
    if (header.readUInt32LE(36) !== this.blockSize || count === 0 || (kind !== LogKind.Data && kind !== LogKind.Zero && kind !== LogKind.Hole)) return null;
    const tableBytes = kind === LogKind.Data ? count * 4 : 0;
    const dataBytes = kind === LogKind.Data ? count * this.blockSize : 0;
    if (at + headerBytes + tableBytes + dataBytes > size) return null;
    const table = Buffer.allocUnsafe(tableBytes);
    if (tableBytes > 0) this.io.readSync(segment.fd, table, 0, tableBytes, at + headerBytes);
    if (crc32(table, crc32(header.subarray(8))) !== header.readUInt32LE(4)) return null;
    const crcs = kind === LogKind.Data ? new Uint32Array(count) : null;
    for (let index = 0; crcs !== null && index < count; index += 1) crcs[index] = table.readUInt32LE(index * 4);
    const record = new LogRecord(seq, volumeId, kind, firstBlock, count, crcs, segment, at + headerBytes + tableBytes, this.blockSize);
    if (crcs !== null) {
      try {
        this.readBlocks(record, 0, count);
      } catch {
        return null;
      }
    }
    return record;
  }

  /** Seq of the next record. */
  get seqNext(): number {
    return this.nextSeq;
  }

  /** Every record below this seq is in the write-back buffer (or was dropped by a failed append). */
  get appliedSeq(): number {
    return this.appliedBelow;
  }

  /**
   * Appends a record and resolves once it is written (in the page cache) and applied.
   * `pieces` hold the blocks back to back (data records), `crcs` their CRC-32s.
   */
  append(volumeId: number, kind: LogKind, firstBlock: number, count: number, pieces: Buffer[], crcs: Uint32Array | null): Promise<void> {
    if (this.closed) return Promise.reject(new StrataError('STRATA_E_POOL_CLOSED', 'the pool is closed'));
    const tableBytes = crcs === null ? 0 : count * 4;
    const length = headerBytes + tableBytes + (kind === LogKind.Data ? count * this.blockSize : 0);
    let segment = this.current;
    if (segment !== null && segment.bytes > 0 && segment.bytes + length > this.segmentBytesMax) segment = null;
    if (segment === null) {
      try {
        segment = this.startSegment();
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const seq = this.nextSeq;
    this.nextSeq += 1;
    const offset = segment.bytes;
    segment.bytes += length;
    if (segment.minSeq < 0) segment.minSeq = seq;
    segment.maxSeq = seq;
    const record = new LogRecord(seq, volumeId, kind, firstBlock, count, crcs, segment, offset + headerBytes + tableBytes, this.blockSize);
    const head = Buffer.allocUnsafe(headerBytes + tableBytes);
    head.writeUInt32LE(magic, 0);
    head.writeUInt32LE(0, 40);
    head.writeUInt32LE(0, 44);
    head.writeDoubleLE(seq, 8);
    head.writeUInt32LE(volumeId, 16);
    head.writeUInt32LE(kind, 20);
    head.writeDoubleLE(firstBlock, 24);
    head.writeUInt32LE(count, 32);
    head.writeUInt32LE(this.blockSize, 36);
    if (crcs !== null) for (let index = 0; index < count; index += 1) head.writeUInt32LE(crcs[index], headerBytes + index * 4);
    head.writeUInt32LE(crc32(head.subarray(8)), 4);
    return new Promise((resolve, reject) => {
      this.queue.push({ record, pieces: [head, ...pieces], offset, length, resolve, reject });
      this.pump();
    });
  }

  private startSegment(): Segment {
    const id = this.nextSegmentId;
    let fd: number;
    try {
      fd = this.io.openSync(this.segmentPath(id), 'wx+');
    } catch (error) {
      throw hostIoError(error, `creating write log segment ${id}`);
    }
    this.nextSegmentId += 1;
    const segment: Segment = { id, fd, bytes: 0, minSeq: -1, maxSeq: -1, unsynced: true, syncing: 0, reading: 0 };
    this.segments.set(id, segment);
    this.current = segment;
    this.directoryDirty = true;
    return segment;
  }

  /** New records go to a new segment (destage calls this, so the old ones can go once it commits). */
  rotate(): void {
    if (this.current !== null && this.current.bytes > 0) this.current = null;
  }

  /** Writes the queued records: one batch (records back to back in one segment) at a time. */
  private pump(): void {
    if (this.writing || this.queue.length === 0) return;
    const first = this.queue[0];
    let count = 0;
    let pieces = 0;
    let end = first.offset;
    while (count < this.queue.length) {
      const next = this.queue[count];
      if (next.record.segment !== first.record.segment || next.offset !== end) break;
      if (count > 0 && pieces + next.pieces.length > iovecsMax) break;
      pieces += next.pieces.length;
      end += next.length;
      count += 1;
    }
    const batch = this.queue.splice(0, count);
    this.writing = true;
    this.writingSegment = first.record.segment;
    this.writingBatch = batch;
    void this.writeBatch(first.record.segment, batch, first.offset, end - first.offset).then(
      () => this.finish(batch, null),
      (error: unknown) => this.finish(batch, error),
    );
  }

  private async writeBatch(segment: Segment, batch: Queued[], offset: number, length: number): Promise<void> {
    const pieces: Buffer[] = [];
    for (const item of batch) for (const piece of item.pieces) pieces.push(piece);
    let written = 0;
    let first = 0;
    while (written < length) {
      let n = await this.io.writev(segment.fd, pieces.slice(first, first + iovecsMax), offset + written);
      written += n;
      while (first < pieces.length && n >= pieces[first].length) {
        n -= pieces[first].length;
        first += 1;
      }
      if (n > 0) pieces[first] = pieces[first].subarray(n);
    }
  }

  private finish(batch: Queued[], error: unknown): void {
    this.writing = false;
    this.writingSegment = null;
    this.writingBatch = [];
    if (error === null) {
      for (const item of batch) {
        item.record.segment.unsynced = true;
        this.appliedBelow = item.record.seq + 1;
        this.apply(item.record);
      }
      for (const item of batch) item.resolve();
    } else {
      // Nothing after the failed batch may be written: everything queued fails with it,
      // and the segment is cut back to where the batch began.
      const failed = [...batch, ...this.queue];
      this.queue = [];
      const segment = batch[0].record.segment;
      const failure = hostIoError(error, `appending to write log segment ${segment.id}`);
      // Queued records in later segments were never written: those segments end where
      // their first failed record began.
      for (const item of failed) {
        const at = item.record.segment;
        if (at !== segment) at.bytes = Math.min(at.bytes, item.offset);
      }
      try {
        this.io.ftruncateSync(segment.fd, batch[0].offset);
        segment.bytes = batch[0].offset;
      } catch {
        // Later records go to a new segment; replay stops at this one's torn tail.
        if (this.current === segment) this.current = null;
      }
      this.appliedBelow = this.nextSeq;
      for (const item of failed) item.reject(failure);
    }
    if (this.appliedWaiters.length > 0) {
      const ready = this.appliedWaiters.filter((waiter) => waiter.seq < this.appliedBelow);
      this.appliedWaiters = this.appliedWaiters.filter((waiter) => waiter.seq >= this.appliedBelow);
      for (const waiter of ready) waiter.wake();
    }
    this.pump();
    if (!this.writing && this.queue.length === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** The highest seq of a record in flight (queued or being written) that covers a block of a volume, else -1. */
  inFlightTo(volumeId: number, block: number): number {
    let seq = -1;
    const scan = (items: readonly Queued[]) => {
      for (const item of items) {
        const record = item.record;
        if (record.volumeId === volumeId && block >= record.firstBlock && block < record.firstBlock + record.count) seq = Math.max(seq, record.seq);
      }
    };
    scan(this.writingBatch);
    scan(this.queue);
    return seq;
  }

  /** Resolves once the record `seq` (and every one before it) is applied or failed. */
  appliedPast(seq: number): Promise<void> {
    if (seq < this.appliedBelow) return Promise.resolve();
    return new Promise((wake) => this.appliedWaiters.push({ seq, wake }));
  }

  /** Waits until every record appended before the call is written (or failed). */
  settle(): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Makes every record appended before the call durable. */
  async sync(): Promise<void> {
    const target = this.nextSeq;
    while (this.syncedBelow < target) {
      if (this.syncing === null) {
        this.syncing = this.syncOnce().finally(() => {
          this.syncing = null;
        });
      }
      await this.syncing;
    }
  }

  private async syncOnce(): Promise<void> {
    const upTo = this.nextSeq;
    await this.settle();
    const dirty = [...this.segments.values()].filter((segment) => segment.unsynced);
    for (const segment of dirty) {
      segment.unsynced = false;
      segment.syncing += 1;
    }
    try {
      for (const segment of dirty) await this.io.fsync(segment.fd);
      if (this.directoryDirty) {
        this.directoryDirty = false;
        await fsyncDirectory(this.io, this.dir);
      }
    } catch (error) {
      for (const segment of dirty) segment.unsynced = true;
      this.directoryDirty = true;
      throw hostIoError(error, 'syncing the write log');
    } finally {
      for (const segment of dirty) segment.syncing -= 1;
    }
    this.syncedBelow = Math.max(this.syncedBelow, upTo);
  }

  /**
   * The verified bytes of blocks [index, index + count) of a data record (read from the
   * page cache or the device, checked against the record's CRC-32s).
   */
  readBlocks(record: LogRecord, index: number, count: number): Buffer {
    const size = this.blockSize;
    const out = Buffer.allocUnsafe(count * size);
    let got = 0;
    try {
      while (got < out.length) {
        const n = this.io.readSync(record.segment.fd, out, got, out.length - got, record.dataOffset + index * size + got);
        if (n === 0) break;
        got += n;
      }
    } catch (error) {
      throw hostIoError(error, `reading write log segment ${record.segment.id}`);
    }
    if (got < out.length) {
      throw new StrataError('STRATA_E_CHUNK_MISSING', `write log segment ${record.segment.id} is shorter than its records`, { segment: record.segment.id });
    }
    const crcs = record.crcs as Uint32Array;
    for (let at = 0; at < count; at += 1) {
      if (crc32(out.subarray(at * size, (at + 1) * size)) !== crcs[index + at]) {
        throw new StrataError('STRATA_E_CHECKSUM', `block ${record.firstBlock + index + at} of volume ${record.volumeId} in write log segment ${record.segment.id} fails its CRC-32`, {
          segment: record.segment.id,
        });
      }
    }
    return out;
  }

  /**
   * As readBlocks for several runs at once, read back to back by a worker (`reader`)
   * into `into` when given, with their CRC-32s taken there; the segments stay open
   * meanwhile.
   */
  async readRunsOffThread(runs: readonly LogRun[], reader: SpanReader, into?: SharedArrayBuffer): Promise<Buffer> {
    const size = this.blockSize;
    const ranges: number[] = [];
    let at = 0;
    for (const run of runs) {
      for (let index = 0; index < run.count; index += 1) ranges.push(at + index * size, at + (index + 1) * size);
      at += run.count * size;
    }
    const spans = runs.map((run) => ({ fd: run.record.segment.fd, position: run.record.dataOffset + run.index * size, length: run.count * size }));
    for (const run of runs) run.record.segment.reading += 1;
    let read;
    try {
      read = await reader.readSpans(spans, ranges, into);
    } catch (error) {
      throw hostIoError(error, 'reading the write log');
    } finally {
      for (const run of runs) run.record.segment.reading -= 1;
    }
    let crc = 0;
    runs.forEach((run, which) => {
      if (!(read.gots[which] >= run.count * size)) {
        throw new StrataError('STRATA_E_CHUNK_MISSING', `write log segment ${run.record.segment.id} is shorter than its records`, { segment: run.record.segment.id });
      }
      const crcs = run.record.crcs as Uint32Array;
      for (let index = 0; index < run.count; index += 1, crc += 1) {
        if (read.crcs[crc] !== crcs[run.index + index]) {
          throw new StrataError('STRATA_E_CHECKSUM', `block ${run.record.firstBlock + run.index + index} of volume ${run.record.volumeId} in write log segment ${run.record.segment.id} fails its CRC-32`, {
            segment: run.record.segment.id,
          });
        }
      }
    });
    return read.bytes;
  }

  /** Deletes the segments whose every record has seq below `seq` (their data is destaged). */
  release(seq: number): void {
    for (const segment of [...this.segments.values()]) {
      if (segment === this.current || segment.maxSeq >= seq) continue;
      if (segment === this.writingSegment || segment.syncing > 0 || segment.reading > 0 || this.queue.some((item) => item.record.segment === segment)) continue;
      this.segments.delete(segment.id);
      try {
        this.io.closeSync(segment.fd);
        this.io.unlinkSync(this.segmentPath(segment.id));
      } catch {
        // A segment left behind is below the applied seq: the next open deletes it.
      }
      this.directoryDirty = true;
    }
  }

  /** Whether some segment holds a record below `seq`. */
  holdsBelow(seq: number): boolean {
    for (const segment of this.segments.values()) if (segment.bytes > 0 && segment.minSeq >= 0 && segment.minSeq < seq) return true;
    return false;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.settle();
    for (const segment of this.segments.values()) {
      try {
        this.io.closeSync(segment.fd);
      } catch {
        // already closed
      }
    }
    this.segments.clear();
    this.current = null;
  }
}
