/*
 * BlockDevice: the byte-addressed disk every upper layer uses (NBD exports, VM disks,
 * import, replication). Offsets and lengths are bytes at any alignment; the engine does
 * the read-modify-write for partial blocks.
 *
 * Contract:
 * - A write completes into the volume's write-back buffer and may be volatile until
 *   flush() resolves, or until the write itself resolves when `fua` is set. flush()
 *   covers every write that resolved before it was called, through any handle of the
 *   same volume (all handles of a volume share one buffer).
 * - Reads see every write that resolved before the read was issued.
 * - Range errors (offset + length past the end, negative, too long) throw
 *   STRATA_E_OUT_OF_RANGE / STRATA_E_INVALID_ARGUMENT; writes to a read-only device throw
 *   STRATA_E_READ_ONLY; stored bytes failing verification throw STRATA_E_CHECKSUM.
 * - Concurrent calls are allowed; overlapping concurrent writes land in some order.
 */
export type ExtentType = 'data' | 'zero' | 'hole';

export interface BlockExtent {
  readonly offset: number;
  readonly length: number;
  /** data: allocated bytes; zero: allocated, reads as zeros; hole: unallocated, reads as zeros. */
  readonly type: ExtentType;
}

export interface WriteOptions {
  /** Return only once this write is durable. */
  readonly fua?: boolean;
  /**
   * The caller hands the data buffer over and never reads or changes it again: the
   * engine may keep it instead of a copy (it does when the buffer is most of the
   * memory behind it, so a small view does not pin a large allocation).
   */
  readonly adopt?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** Keep the range allocated (NBD NO_HOLE): zeros are recorded, still without data. */
  readonly allocate?: boolean;
}

/**
 * One piece of a read, in order: bytes, or a number that many zero bytes stand for.
 * Byte pieces may be views of memory the engine shares (its frame cache): nothing
 * changes them, and callers must not change them either; copy what is kept long.
 */
export type ReadPiece = Buffer | number;

/**
 * Pieces of a read that may be views of memory the engine recycles (the spans of large
 * reads): valid until release(), which the caller makes once it is done with them (a
 * reply, once the socket has taken its bytes). Releasing twice is harmless.
 */
export interface HeldPieces {
  readonly pieces: ReadPiece[];
  /** False when no piece is such a view (release may then come at once, and is a no-op). */
  readonly recycled: boolean;
  release(): void;
}

export interface BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  /** The bytes read() returns, as pieces, without copying them into one buffer. */
  readPieces(offset: number, length: number): Promise<ReadPiece[]>;
  /** As readPieces, without copying views of recycled memory: see HeldPieces. */
  readHeld(offset: number, length: number): Promise<HeldPieces>;
  write(offset: number, data: Buffer, options?: WriteOptions): Promise<void>;
  /** As write() of the pieces' bytes back to back, without joining them into one buffer first. */
  writePieces(offset: number, pieces: readonly Buffer[], options?: WriteOptions): Promise<void>;
  /** Deallocates the range; it reads back as zeros. */
  trim(offset: number, length: number, options?: WriteOptions): Promise<void>;
  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void>;
  flush(): Promise<void>;
  /**
   * Allocation of [offset, offset + length): contiguous extents in order, starting at
   * `offset`. The list may stop short of the end of a very large range (callers ask again
   * from where it stopped) but always covers at least one byte.
   */
  blockStatus(offset: number, length: number): Promise<BlockExtent[]>;
}
