/*
 * Local pack files (the embedded ChunkStore): `packs/pack-<id>.pack`, append-only,
 * sealed once they pass packBytesMax. Appends are positional writes into the page cache,
 * made on libuv's thread pool: the caller gets the locations at once and goes on (on a
 * small machine the copy into fresh page-cache memory is the largest single cost of a
 * write, and this way it overlaps the next request's work); settle() waits for them.
 * sync() settles, then fdatasyncs every pack written since the last sync, plus the
 * directory when a pack file was created, and only then may the engine commit metadata
 * that points into them. Reads use a small table of open descriptors.
 *
 * A pool always starts a fresh pack when it opens, so a pack torn by a crash is never
 * appended to again; the engine cuts its unreferenced tail at open.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StrataError, hostIoError } from '../../common/errors.js';
import { limits } from '../../common/limits.js';
import type { CheckedBytes, ChunkStore, FrameLocation, SpanReader } from '../chunk-store.js';
import { fsyncDirectory, nodeFileIo, type FileIo } from './file-io.js';

const packPattern = /^pack-(\d{8,})\.pack$/;
/** Buffers per writev call (Linux's IOV_MAX is 1024). */
const iovecsMax = 512;
/** Reads of at least this many bytes go to libuv's thread pool. */
const asyncReadBytesMin = 256 * 1024;

function recordLength(pieces: readonly Buffer[]): number {
  let length = 0;
  for (const piece of pieces) length += piece.length;
  return length;
}

function shortPack(location: FrameLocation): StrataError {
  return new StrataError('STRATA_E_CHUNK_MISSING', `pack ${location.packId} is shorter than its metadata says`, {
    packId: location.packId,
    offset: location.offset,
  });
}

export interface LocalPackStoreOptions {
  readonly packBytesMax?: number;
  readonly io?: FileIo;
}

export class LocalPackStore implements ChunkStore {
  private readonly dir: string;
  private readonly io: FileIo;
  private readonly packBytesMax: number;
  private readonly fds = new Map<number, number>();
  private readonly sizes = new Map<number, number>();
  private readonly unsynced = new Set<number>();
  private directoryDirty = false;
  private current: { packId: number; fd: number; bytes: number } | null = null;
  private sealed: { packId: number; bytes: number }[] = [];
  private nextPackId: number;
  /** Reads under way on the thread pool per descriptor, and descriptors to close after them. */
  private readonly readsInFlight = new Map<number, number>();
  private readonly closeWhenRead = new Set<number>();
  /** Appends under way, and the first failure among them since the last settle(). */
  private readonly writing = new Set<Promise<void>>();
  private writeFailure: unknown = null;

  constructor(dir: string, options: LocalPackStoreOptions = {}) {
    this.dir = dir;
    this.io = options.io ?? nodeFileIo;
    this.packBytesMax = options.packBytesMax ?? limits.packBytesMax;
    try {
      this.io.mkdirSync(dir);
      for (const name of this.io.readdirSync(dir)) {
        const match = packPattern.exec(name);
        if (match) this.sizes.set(Number(match[1]), fs.statSync(path.join(dir, name)).size);
      }
    } catch (error) {
      throw hostIoError(error, `opening pack directory ${dir}`);
    }
    this.nextPackId = Math.max(0, ...this.sizes.keys()) + 1;
  }

  /** Pack ids are never reused: the engine raises the floor to ids its metadata has seen. */
  reserveIdsBelow(packId: number): void {
    this.nextPackId = Math.max(this.nextPackId, packId);
  }

  private packPath(packId: number): string {
    return path.join(this.dir, `pack-${String(packId).padStart(8, '0')}.pack`);
  }

  private descriptor(packId: number): number {
    const open = this.fds.get(packId);
    if (open !== undefined) return open;
    let fd: number;
    try {
      fd = this.io.openSync(this.packPath(packId), 'r+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StrataError('STRATA_E_CHUNK_MISSING', `pack ${packId} is missing`, { packId });
      }
      throw hostIoError(error, `opening pack ${packId}`);
    }
    if (this.fds.size >= 256) this.closeSome();
    this.fds.set(packId, fd);
    return fd;
  }

  /**
   * Closes a descriptor, or once the reads under way on it finish: closed under a read
   * on the thread pool, its number could be reused by another file and the read land there.
   */
  private closeDescriptor(fd: number): void {
    if ((this.readsInFlight.get(fd) ?? 0) > 0) this.closeWhenRead.add(fd);
    else this.io.closeSync(fd);
  }

  private readDone(fd: number): void {
    const left = (this.readsInFlight.get(fd) ?? 1) - 1;
    if (left > 0) return void this.readsInFlight.set(fd, left);
    this.readsInFlight.delete(fd);
    if (this.closeWhenRead.delete(fd)) this.io.closeSync(fd);
  }

  private closeSome(): void {
    for (const [packId, fd] of this.fds) {
      if (this.current?.packId === packId || this.unsynced.has(packId)) continue;
      this.closeDescriptor(fd);
      this.fds.delete(packId);
      if (this.fds.size < 128) return;
    }
  }

  private startPack(): { packId: number; fd: number; bytes: number } {
    const packId = this.nextPackId;
    this.nextPackId += 1;
    let fd: number;
    try {
      fd = this.io.openSync(this.packPath(packId), 'wx+');
    } catch (error) {
      throw hostIoError(error, `creating pack ${packId}`);
    }
    this.fds.set(packId, fd);
    this.sizes.set(packId, 0);
    this.directoryDirty = true;
    this.current = { packId, fd, bytes: 0 };
    return this.current;
  }

  append(record: Buffer): FrameLocation {
    return this.appendMany([[record]])[0];
  }

  appendMany(records: readonly (readonly Buffer[])[]): FrameLocation[] {
    const locations: FrameLocation[] = [];
    let index = 0;
    while (index < records.length) {
      const first = recordLength(records[index]);
      if (this.current && this.current.bytes > 0 && this.current.bytes + first > this.packBytesMax) this.sealOpenPack();
      const pack = this.current ?? this.startPack();
      // The records that fit in this pack (at least one), written together.
      const start = pack.bytes;
      let end = start;
      const pieces: Buffer[] = [];
      const batch: FrameLocation[] = [];
      while (index < records.length) {
        const length = recordLength(records[index]);
        if (batch.length > 0 && end + length > this.packBytesMax) break;
        batch.push({ packId: pack.packId, offset: end, length });
        pieces.push(...records[index]);
        end += length;
        index += 1;
      }
      this.writeAll(pack, pieces, start, end - start);
      pack.bytes = end;
      this.sizes.set(pack.packId, end);
      this.unsynced.add(pack.packId);
      locations.push(...batch);
    }
    return locations;
  }

  /** Starts writing pieces at `offset` of the pack; settle() waits for it. */
  private writeAll(pack: { packId: number; fd: number }, pieces: Buffer[], offset: number, length: number): void {
    const write = this.writePieces(pack, pieces, offset, length).catch((error: unknown) => {
      this.writeFailure ??= error;
    });
    this.writing.add(write);
    void write.finally(() => this.writing.delete(write));
  }

  /**
   * Writes pieces at `offset`, in as few system calls as the kernel allows. A failure
   * is left for the engine to cut back (truncate() after settle()), since later appends
   * may be under way behind this one.
   */
  private async writePieces(pack: { packId: number; fd: number }, pieces: Buffer[], offset: number, length: number): Promise<void> {
    try {
      let written = 0;
      let first = 0;
      while (written < length) {
        const batch = pieces.slice(first, first + iovecsMax);
        let n = await this.io.writev(pack.fd, batch, offset + written);
        written += n;
        // Skip the pieces written whole; resume inside a piece written in part.
        while (first < pieces.length && n >= pieces[first].length) {
          n -= pieces[first].length;
          first += 1;
        }
        if (n > 0) pieces[first] = pieces[first].subarray(n);
      }
    } catch (error) {
      throw hostIoError(error, `appending to pack ${pack.packId}`);
    }
  }

  async settle(): Promise<void> {
    while (this.writing.size > 0) await Promise.all(this.writing);
    const failure = this.writeFailure;
    this.writeFailure = null;
    if (failure !== null) throw failure;
  }

  async sync(): Promise<void> {
    await this.settle();
    const packs = [...this.unsynced];
    try {
      for (const packId of packs) await this.io.fsync(this.descriptor(packId));
      if (this.directoryDirty) {
        this.directoryDirty = false;
        await fsyncDirectory(this.io, this.dir);
      }
    } catch (error) {
      this.directoryDirty = true;
      throw hostIoError(error, 'syncing packs');
    }
    for (const packId of packs) this.unsynced.delete(packId);
  }

  async read(location: FrameLocation): Promise<Buffer> {
    const fd = this.descriptor(location.packId);
    const buffer = Buffer.allocUnsafe(location.length);
    let got = 0;
    // Small reads inline (a thread-pool round trip costs more than they do); large ones
    // (sequential reads fetch spans of a MiB) off this thread, the descriptor held open.
    const inline = location.length < asyncReadBytesMin;
    if (!inline) this.readsInFlight.set(fd, (this.readsInFlight.get(fd) ?? 0) + 1);
    try {
      while (got < location.length) {
        const n = inline
          ? this.io.readSync(fd, buffer, got, location.length - got, location.offset + got)
          : await this.io.read(fd, buffer, got, location.length - got, location.offset + got);
        if (n === 0) break;
        got += n;
      }
    } catch (error) {
      throw hostIoError(error, `reading pack ${location.packId}`);
    } finally {
      if (!inline) this.readDone(fd);
    }
    if (got < location.length) throw shortPack(location);
    return buffer;
  }

  /** As read, on the reader's thread, the descriptor held open meanwhile. */
  async readChecked(locations: readonly FrameLocation[], ranges: readonly number[], reader: SpanReader, into?: SharedArrayBuffer): Promise<CheckedBytes> {
    // Each descriptor is held open from when it is taken (opening the next may close
    // others) until the reads are done.
    const fds: number[] = [];
    let read;
    try {
      for (const location of locations) {
        const fd = this.descriptor(location.packId);
        this.readsInFlight.set(fd, (this.readsInFlight.get(fd) ?? 0) + 1);
        fds.push(fd);
      }
      read = await reader.readSpans(
        locations.map((location, index) => ({ fd: fds[index], position: location.offset, length: location.length })),
        ranges,
        into,
      );
    } catch (error) {
      if (error instanceof StrataError) throw error;
      throw hostIoError(error, `reading pack ${[...new Set(locations.map((location) => location.packId))].join(', ')}`);
    } finally {
      for (const fd of fds) this.readDone(fd);
    }
    const short = locations.findIndex((location, index) => !(read.gots[index] >= location.length));
    if (short >= 0) throw shortPack(locations[short]);
    return { bytes: read.bytes, crcs: read.crcs };
  }

  currentPackId(): number | null {
    return this.current?.packId ?? null;
  }

  sealOpenPack(): number | null {
    if (!this.current || this.current.bytes === 0) return null;
    const packId = this.current.packId;
    this.sealed.push({ packId, bytes: this.current.bytes });
    this.current = null;
    return packId;
  }

  drainSealed(): { packId: number; bytes: number }[] {
    const sealed = this.sealed;
    this.sealed = [];
    return sealed;
  }

  truncate(packId: number, length: number): void {
    try {
      this.io.ftruncateSync(this.descriptor(packId), length);
    } catch (error) {
      throw hostIoError(error, `truncating pack ${packId}`);
    }
    this.sizes.set(packId, length);
    if (this.current?.packId === packId) this.current.bytes = length;
    this.unsynced.add(packId);
  }

  deletePack(packId: number): void {
    const fd = this.fds.get(packId);
    if (fd !== undefined) {
      this.closeDescriptor(fd);
      this.fds.delete(packId);
    }
    if (this.current?.packId === packId) this.current = null;
    try {
      this.io.unlinkSync(this.packPath(packId));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw hostIoError(error, `deleting pack ${packId}`);
    }
    this.sizes.delete(packId);
    this.unsynced.delete(packId);
    this.directoryDirty = true;
  }

  listPacks(): { packId: number; bytes: number }[] {
    return [...this.sizes].map(([packId, bytes]) => ({ packId, bytes })).sort((a, b) => a.packId - b.packId);
  }

  /** Waits for appends under way (a descriptor must not close under a write), then closes. */
  async close(): Promise<void> {
    await this.settle().catch(() => undefined);
    for (const fd of this.fds.values()) this.closeDescriptor(fd);
    this.fds.clear();
    this.current = null;
  }
}
