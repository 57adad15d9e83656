/*
 * Every limit Strata enforces or defaults to, in one place, unit last in the name.
 * Pools may override the tunable ones at open time; the hard ones protect the process
 * from hostile or mistaken input.
 */
import { KiB, MiB, TiB } from './units.js';

export const limits = {
  /** Pool block: the unit of the extent map, of dedup and of checksums. */
  blockSizeMinBytes: 4 * KiB,
  blockSizeMaxBytes: 1 * MiB,
  blockSizeDefaultBytes: 4 * KiB,
  /** New chunks are compressed together in frames of at most this many raw bytes. */
  frameRawBytesMax: 64 * KiB,
  /**
   * A frame is stored compressed only when that saves at least this fraction of its raw
   * bytes (as ZFS does with 1/8): barely compressible data then reads without being
   * decompressed, and a block of it can be read and verified alone.
   */
  compressionSavingsMinFraction: 0.125,
  /**
   * Destage does not try to compress a frame whose sampled byte entropy is above this
   * (bits per byte, 8 for random bytes) and whose samples never repeat: such data cannot
   * save the fraction above, and zstd is at its slowest on it (btrfs judges the same way).
   */
  compressEntropyBitsMax: 7.5,
  /** A pack file is sealed once it grows past this size. */
  packBytesMax: 64 * MiB,
  /** Largest volume; keeps every byte offset a safe JavaScript integer with room to spare. */
  volumeSizeMaxBytes: 1024 * TiB,
  /** Largest single read or write payload accepted by the block device API. */
  ioBytesMax: 64 * MiB,
  /** Volume, snapshot and pool names. */
  nameLengthMaxChars: 128,
  /**
   * Bytes written to the write log and not yet destaged before writes wait for destage
   * (destage starts in the background at half, and from the writeback timer). They are
   * on disk, not in memory (the buffer holds 64 bytes or so per block): bursts up to
   * half of this are taken at the log's speed, longer runs at destage's. A pool takes
   * at most a quarter of its file system's free space at open for it.
   */
  writeBufferBytesMax: 8 * 1024 * MiB,
  /** The write log's bound is never cut below this by the free-space rule. */
  writeBufferBytesMinBound: 256 * MiB,
  /**
   * Whole blocks of a write from this size on are copied into shared memory and their
   * CRC-32s taken on the destage workers (the copy costs the main thread a third of the
   * CRC-32); up to this much such memory in all, beyond which writes take them inline.
   */
  logCrcOffThreadBytesMin: 256 * KiB,
  logStagingBytesMax: 64 * MiB,
  /** A write log segment is closed once it grows past this (segments are deleted whole once destaged). */
  logSegmentBytesMax: 256 * MiB,
  /**
   * A destage hashes, resolves and compresses its data in slices of this size, so the
   * worker thread and the main thread work on different slices at once.
   */
  destageSliceBytes: 16 * MiB,
  /**
   * Slices the destage slab holds at once (its memory: this many slices, whatever the
   * destage's size; a slab grown to a whole 128-256 MiB destage was memory never touched
   * before, which costs 2-3 s/GiB on some virtual machines).
   */
  destageSlabSlices: 4,
  /**
   * Worker threads that hash and compress destage slices (one per CPU up to this): the
   * main thread mostly waits while they compress, so on two CPUs two of them finish a
   * destage about a tenth sooner than one.
   */
  destageWorkersMax: 4,
  /**
   * Buffered writes older than this are destaged by the background timer (they are
   * durable in the write log already; ZFS's transaction groups close every 5 s too).
   */
  writebackDelayMs: 5000,
  /** The writeback timer waits for this long without I/O on the pool... */
  writebackIdleMs: 1000,
  /** ...but destages buffered writes at the latest this long after the first of them. */
  writebackDelayMaxMs: 60_000,
  /** Decompressed frames kept for reads. */
  frameCacheBytesMax: 64 * MiB,
  /** Frames that sit back to back in a pack are read with one read of at most this. */
  readSpanBytesMax: 4 * MiB,
  /**
   * Recycled memory for the spans of large reads in flight (see SpanPool; a 1 MiB read
   * takes a span of 1.0625 MiB, spans being rounded up to 64 KiB); reads beyond it use
   * memory of their own.
   */
  readSpanPoolBytesMax: 128 * MiB,
  /** Frame headers (the SHA-256 of each chunk) kept to confirm dedup candidates. */
  frameHeaderCacheEntries: 16384,
  /**
   * Chunk locations the metadata store keeps in memory for reads (40 bytes each, in
   * typed arrays that grow to this bound as needed): 2^20 cover 4 GiB of 4 KiB chunks.
   */
  metaLocationCacheEntries: 1 << 20,
  /** Hash prefixes whose latest chunk the metadata store remembers for dedup (12 bytes each). */
  metaRecentChunkEntries: 1 << 20,
  /**
   * Extent groups (64 blocks each) the metadata store keeps decoded for reads: 16384
   * cover 4 GiB of a volume at 4 KiB blocks, in about 16 MiB.
   */
  metaGroupCacheEntries: 16384,
  /**
   * The metadata store's bitmap of hash-prefix buckets that hold chunks (2^27 bits =
   * 16 MiB): a dedup look-up of a new block's hash skips the query when its bucket is empty.
   */
  metaPrefixFilterLog2Bits: 27,
  /** SQLite page cache of the metadata store. */
  metaCacheBytesMax: 32 * MiB,
  /**
   * Pool statistics count a volume's mapped blocks by walking its extent map. A walk
   * faster than this is redone whenever the volume changed; a slower one only once its
   * last result is older than `statsRecountCostFactor` times what it cost (a walk of a
   * 1 GiB volume of 4 KiB blocks takes about half a second: at most every 50 s).
   */
  statsRecountCheapMs: 20,
  statsRecountCostFactor: 100,
  /** Blocks resolved per metadata query when walking large ranges (trim, status, flatten). */
  extentWindowBlocks: 16384,
  /** Damaged chunks remembered for healing by a rewrite of the same content. */
  damagedChunksMax: 65536,
  /** Extent rows fetched per metadata query when walking large ranges. */
  extentBatchRowsMax: 4096,
  /** A sealed pack whose live fraction falls below this is compacted. */
  compactLiveFractionMax: 0.6,
  /** Packs replaced by compaction are deleted this long after the swap. */
  compactGraceMs: 30_000,
  /** How often the background reclaimer looks for work. */
  compactIntervalMs: 60_000,
  /** Reading a pack frame header: a frame never claims more chunks than this. */
  frameChunksMax: 256,
  /** NBD: open connections per server; more are refused at accept. */
  nbdConnectionsMax: 256,
  /** NBD: requests of one connection being served at once; reading pauses beyond. */
  nbdRequestsInFlightMax: 64,
  /** NBD: payload bytes of one connection's requests being served at once. */
  nbdBytesInFlightMax: 128 * MiB,
  /** NBD: reply bytes queued for a slow client before its requests stop being read. */
  nbdReplyBacklogBytesMax: 64 * MiB,
  /** NBD: largest READ or WRITE payload (advertised as the maximum block size). */
  nbdPayloadBytesMax: 32 * MiB,
  /** NBD: largest option payload read during the handshake. */
  nbdOptionBytesMax: 64 * KiB,
  /** NBD: options one handshake may send before the server gives up on it. */
  nbdOptionsMax: 256,
  /** NBD: time a client has to finish the handshake (TLS included). */
  nbdHandshakeTimeoutMs: 30_000,
  /** NBD: extents in one BLOCK_STATUS reply. */
  nbdBlockStatusExtentsMax: 1024,
  /** NBD: bytes read ahead per piece for a CACHE request. */
  nbdCachePieceBytes: 4 * MiB,
  /** API: largest request body. */
  apiBodyBytesMax: 1 * MiB,
  /** API: finished tasks kept for listing (running ones are always kept). */
  tasksKeptMax: 256,
  /** API: events kept in memory and in the events file. */
  eventsKeptMax: 1000,
  /** API: event-stream (SSE) subscribers at once. */
  eventSubscribersMax: 64,
  /** API: how often pool usage, over-commit and checksum counters are checked for alerts. */
  alertIntervalMs: 10_000,
  /** Alerts: pool usage (stored / capacity) that raises a warning, then an error. */
  poolUsageWarnFraction: 0.8,
  poolUsageCriticalFraction: 0.9,
  /** Alerts: thin over-commit (logical / capacity) above which an event is raised, unless configured. */
  overcommitAlertRatio: 3,
  /** Tokens: named tokens one daemon keeps. */
  tokensMax: 1000,
  /** QMP: connecting to QEMU's socket and reading its greeting. */
  qmpConnectTimeoutMs: 5_000,
  /** QMP: the longest a command may take unless the caller says otherwise. */
  qmpCommandTimeoutMs: 10_000,
  /** QMP: the longest line QEMU may send (a reply or event). */
  qmpLineBytesMax: 16 * MiB,
  /** Guest agent: how long to wait for guest-ping / fsfreeze before falling back to pause. */
  guestAgentTimeoutMs: 3_000,
  /** KVM probe: a short boot of a stub VM under KVM must reach QMP and run within this. */
  kvmProbeTimeoutMs: 5_000,
  /** VM stop: ACPI power-down, then a hard stop after this long. */
  vmPowerdownTimeoutMs: 30_000,
  /** VMs a daemon keeps definitions for. */
  vmsMax: 4096,
  /** Serial console: bytes of recent output kept per VM for new viewers. */
  serialBacklogBytesMax: 256 * KiB,
  /** Image conversion (qemu-img): the longest an info probe may take. */
  imageProbeTimeoutMs: 60_000,
} as const;

export type Limits = { readonly [K in keyof typeof limits]: number };
