/*
 * ChunkStore: where frame records live. The engine decides what goes into a frame and
 * records locations in the MetaStore (the source of truth); a ChunkStore only appends,
 * syncs, reads and deletes packs. Only the pool's single writer appends, truncates or
 * deletes; reads may come from anywhere at any time.
 */
export interface FrameLocation {
  readonly packId: number;
  readonly offset: number;
  readonly length: number;
}

/** Bytes read at a location, with the CRC-32 of each range asked for. */
export interface CheckedBytes {
  readonly bytes: Buffer;
  readonly crcs: readonly number[];
}

/** Part of a file, for SpanReader. */
export interface PackSpan {
  readonly fd: number;
  readonly position: number;
  readonly length: number;
}

/** What SpanReader.readSpans gives back. */
export interface SpansRead {
  /** The spans' bytes back to back. */
  readonly bytes: Buffer;
  /** How much of each span was read, in order; a span cut short ends the list (and leaves crcs empty). */
  readonly gots: readonly number[];
  readonly crcs: readonly number[];
}

/**
 * Reads from file descriptors and checksums ranges of what it read, on a thread of its
 * own (the engine's read worker), so that a large read costs the caller neither the
 * reads nor the CRC-32s. A failed read rejects with the system error (its `code` kept).
 */
export interface SpanReader {
  /**
   * `ranges` holds [start, end) pairs into the bytes read (the spans back to back). The
   * bytes land at the start of `into` when given, else in memory of their own.
   */
  readSpans(spans: readonly PackSpan[], ranges: readonly number[], into?: SharedArrayBuffer): Promise<SpansRead>;
}

export interface ChunkStore {
  /**
   * Appends one frame record to the open pack and returns where it landed. The write
   * may still be under way when this returns (settle() waits for it); the bytes are not
   * readable before settle() nor durable before sync() resolves. When the open pack has
   * reached its size limit it is sealed first and a new one opened.
   */
  append(record: Buffer): FrameLocation;
  /**
   * Appends records given as pieces (written back to back, without joining them first),
   * in order, with as few writes as possible; as append, a full pack is sealed between
   * records. A failed write is reported by the next settle() or sync(), and nothing of
   * it stays referenced (the pack is cut back to where it began).
   */
  appendMany(records: readonly (readonly Buffer[])[]): FrameLocation[];
  /** Waits for the appends under way; rejects with the first that failed since the last settle. */
  settle(): Promise<void>;
  /** Settles, then resolves once every byte appended so far is durable (data and directory entries). */
  sync(): Promise<void>;
  /** Reads `length` bytes at `offset` of a pack. STRATA_E_CHUNK_MISSING if it is gone or short. */
  read(location: FrameLocation): Promise<Buffer>;
  /**
   * As read for each location, through `reader` (into `into` when given), their bytes
   * back to back, also giving the CRC-32 of each [start, end) range in `ranges` (offsets
   * into those bytes). Stores whose data is not in local files leave it out; callers
   * then read and check themselves.
   */
  readChecked?(locations: readonly FrameLocation[], ranges: readonly number[], reader: SpanReader, into?: SharedArrayBuffer): Promise<CheckedBytes>;
  /** The pack appends go to now, or null when none is open yet. */
  currentPackId(): number | null;
  /** Packs sealed since the last call (by size or by sealOpenPack), with their final sizes. */
  drainSealed(): { packId: number; bytes: number }[];
  /** Seals the open pack (no further appends) if it holds anything; returns its id. */
  sealOpenPack(): number | null;
  /** Cuts a pack back to `length` bytes: drops a tail no metadata references. */
  truncate(packId: number, length: number): void;
  deletePack(packId: number): void;
  /** Ids of every pack present, with sizes. */
  listPacks(): { packId: number; bytes: number }[];
  /** Waits for appends under way, then closes every descriptor. */
  close(): Promise<void>;
}
