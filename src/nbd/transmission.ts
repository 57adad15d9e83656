/*
 * The transmission phase: read a request (and a WRITE's payload), start serving it, and
 * read the next one while it runs, within the connection's limits on requests and bytes
 * in flight and on replies queued for a slow reader. Replies go out as requests finish,
 * in any order (the cookie pairs them). DISC waits for everything in flight.
 *
 * Validation happens here, at the edge: unknown commands and flags, flags a command does
 * not take, ranges past the end (reads EINVAL, writes ENOSPC as the spec asks), writes to
 * a read-only export (EPERM). A WRITE that is refused still has its payload read, so the
 * stream stays in step.
 */
import type { BlockExtent, ReadPiece } from '../engine/index.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_STATE_HOLE,
  NBD_STATE_ZERO,
  REQUEST_BYTES,
  commandName,
} from '../protocol/nbd/constants.js';
import {
  decodeRequest,
  encodeBlockStatus,
  encodeDoneChunk,
  encodeErrorChunk,
  encodeOffsetDataHead,
  encodeOffsetHole,
  encodeSimpleReply,
  type Request,
} from '../protocol/nbd/messages.js';
import type { Connection } from './connection.js';
import { nbdErrno } from './errno.js';
import { baseAllocationContextId, type ChosenExport } from './negotiation.js';

/** Flags each command accepts; FUA is accepted on every command. */
const allowedFlags: Readonly<Record<number, number>> = {
  [NBD_CMD_READ]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_DF,
  [NBD_CMD_WRITE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_DISC]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_FLUSH]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_TRIM]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_CACHE]: NBD_CMD_FLAG_FUA,
  [NBD_CMD_WRITE_ZEROES]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO,
  [NBD_CMD_BLOCK_STATUS]: NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE,
};

/** A request refused before it reaches the device: an error value and a short reason. */
class Refusal {
  constructor(
    readonly errno: number,
    readonly message: string,
  ) {}
}

class InFlight {
  requests = 0;
  bytes = 0;
  private waiters: (() => void)[] = [];

  add(bytes: number): void {
    this.requests += 1;
    this.bytes += bytes;
  }

  remove(bytes: number): void {
    this.requests -= 1;
    this.bytes -= bytes;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

export async function transmit(connection: Connection, chosen: ChosenExport): Promise<void> {
  const inFlight = new InFlight();
  try {
    await readRequests(connection, chosen, inFlight);
  } finally {
    // Requests already read are served (and their writes kept) even when the client
    // went away or the server is stopping.
    while (inFlight.requests > 0) await inFlight.changed();
  }
}

async function readRequests(connection: Connection, chosen: ChosenExport, inFlight: InFlight): Promise<void> {
  const limits = connection.limits;
  for (;;) {
    while (inFlight.requests >= limits.nbdRequestsInFlightMax || inFlight.bytes >= limits.nbdBytesInFlightMax) await inFlight.changed();
    if (connection.backlogBytes > limits.nbdReplyBacklogBytesMax) await connection.waitForDrain();
    const reader = connection.reader;
    const request = decodeRequest(reader.takeBuffered(REQUEST_BYTES) ?? (await reader.read(REQUEST_BYTES)));
    if (request.type === NBD_CMD_DISC) return;
    let payload: Buffer[] | null = null;
    if (request.type === NBD_CMD_WRITE) {
      if (request.length > limits.nbdPayloadBytesMax) {
        await reader.discard(request.length);
        replyError(connection, chosen, request, NBD_EINVAL, `write of ${request.length} bytes exceeds the maximum of ${limits.nbdPayloadBytesMax}`);
        continue;
      }
      payload = reader.takeBufferedPieces(request.length) ?? (await reader.readPieces(request.length));
    }
    const cost = request.type === NBD_CMD_READ || request.type === NBD_CMD_WRITE ? request.length : 0;
    inFlight.add(cost);
    void serve(connection, chosen, request, payload, inFlight, cost);
  }
}

/** Serves one request and replies; it leaves the in-flight count however it ends. */
async function serve(connection: Connection, chosen: ChosenExport, request: Request, payload: Buffer[] | null, inFlight: InFlight, cost: number): Promise<void> {
  try {
    const refusal = validate(connection, chosen, request);
    if (refusal) return replyError(connection, chosen, request, refusal.errno, refusal.message);
    await execute(connection, chosen, request, payload);
  } catch (error) {
    const errno = nbdErrno(error);
    const message = error instanceof Error ? error.message : String(error);
    connection.log(errno === NBD_ESHUTDOWN ? 'info' : 'warn', 'request failed', { command: commandName(request.type), offset: request.offset, length: request.length, reason: message });
    replyError(connection, chosen, request, errno, message);
  } finally {
    inFlight.remove(cost);
  }
}

function validate(connection: Connection, chosen: ChosenExport, request: Request): Refusal | null {
  const allowed = allowedFlags[request.type];
  if (allowed === undefined) return new Refusal(NBD_EINVAL, `unknown command ${request.type}`);
  if ((request.flags & ~allowed) !== 0) return new Refusal(NBD_EINVAL, `flags 0x${request.flags.toString(16)} are not valid for ${commandName(request.type)}`);
  if ((request.flags & NBD_CMD_FLAG_DF) !== 0 && !chosen.structuredReplies) return new Refusal(NBD_EINVAL, 'DF needs structured replies');
  const device = chosen.device;
  const writes = request.type === NBD_CMD_WRITE || request.type === NBD_CMD_TRIM || request.type === NBD_CMD_WRITE_ZEROES;
  if (writes && device.readOnly) return new Refusal(NBD_EPERM, 'the export is read-only');
  if (request.type === NBD_CMD_FLUSH) return null;
  if (request.offset + request.length > device.sizeBytes) {
    return new Refusal(writes ? NBD_ENOSPC : NBD_EINVAL, `range ${request.offset}+${request.length} is past the end (${device.sizeBytes})`);
  }
  if (request.type === NBD_CMD_READ && request.length > connection.limits.nbdPayloadBytesMax) {
    return new Refusal((request.flags & NBD_CMD_FLAG_DF) !== 0 ? NBD_EOVERFLOW : NBD_EINVAL, `read of ${request.length} bytes exceeds the maximum`);
  }
  if (request.type === NBD_CMD_BLOCK_STATUS) {
    if (!chosen.baseAllocation) return new Refusal(NBD_EINVAL, 'no metadata context was selected');
    if (request.length === 0) return new Refusal(NBD_EINVAL, 'block status of zero bytes');
  }
  return null;
}

async function execute(connection: Connection, chosen: ChosenExport, request: Request, payload: Buffer[] | null): Promise<void> {
  const device = chosen.device;
  const fua = (request.flags & NBD_CMD_FLAG_FUA) !== 0;
  switch (request.type) {
    case NBD_CMD_READ: {
      const held = await device.readHeld(request.offset, request.length);
      try {
        return sendRead(connection, chosen, request, held.pieces, held.recycled ? held.release : null);
      } catch (error) {
        held.release();
        throw error;
      }
    }
    case NBD_CMD_WRITE:
      // The payload's pieces are this request's alone: the engine may keep them.
      if (request.length > 0) await device.writePieces(request.offset, payload as Buffer[], { fua, adopt: true });
      else if (fua) await device.flush();
      break;
    case NBD_CMD_FLUSH:
      await device.flush();
      break;
    case NBD_CMD_TRIM:
      if (request.length > 0) await device.trim(request.offset, request.length, { fua });
      break;
    case NBD_CMD_WRITE_ZEROES:
      // Zeroes are always fast here (metadata only), so FAST_ZERO needs no refusal.
      if (request.length > 0) await device.writeZeroes(request.offset, request.length, { fua, allocate: (request.flags & NBD_CMD_FLAG_NO_HOLE) !== 0 });
      break;
    case NBD_CMD_CACHE:
      await prefetch(connection, chosen, request);
      break;
    case NBD_CMD_BLOCK_STATUS:
      return sendBlockStatus(connection, chosen, request, await device.blockStatus(request.offset, request.length));
  }
  connection.send(encodeSimpleReply(request.cookie, 0));
}

/** CACHE: reads the range in pieces so its compressed frames are decompressed and cached. */
async function prefetch(connection: Connection, chosen: ChosenExport, request: Request): Promise<void> {
  const piece = connection.limits.nbdCachePieceBytes;
  for (let at = request.offset; at < request.offset + request.length; at += piece) {
    (await chosen.device.readHeld(at, Math.min(piece, request.offset + request.length - at))).release();
  }
}

function replyError(connection: Connection, chosen: ChosenExport, request: Request, errno: number, message: string): void {
  if (chosen.structuredReplies) connection.send(encodeErrorChunk(request.cookie, errno, message));
  else connection.send(encodeSimpleReply(request.cookie, errno));
}

/**
 * READ reply, sent from the pieces the device returned (views of its memory, no copy),
 * then `done` (if any) once the socket has taken them. Simple: header then the bytes.
 * Structured: runs of zeros the device knows of (holes, zero blocks) go as OFFSET_HOLE
 * chunks and the bytes as OFFSET_DATA, unless DF asks for one chunk.
 */
function sendRead(connection: Connection, chosen: ChosenExport, request: Request, pieces: readonly ReadPiece[], done: (() => void) | null): void {
  if (!chosen.structuredReplies) return connection.sendThen(done, [encodeSimpleReply(request.cookie, 0), ...bytesOf(pieces)]);
  // A zero-length read still needs a final chunk.
  if (request.length === 0) return connection.sendThen(done, [encodeDoneChunk(request.cookie)]);
  if ((request.flags & NBD_CMD_FLAG_DF) !== 0) return connection.sendThen(done, [encodeOffsetDataHead(request.cookie, request.offset, request.length, true), ...bytesOf(pieces)]);
  const out: Buffer[] = [];
  let at = request.offset;
  for (let index = 0; index < pieces.length; ) {
    const piece = pieces[index];
    if (typeof piece === 'number') {
      index += 1;
      out.push(encodeOffsetHole(request.cookie, at, piece, index === pieces.length));
      at += piece;
      continue;
    }
    // Bytes pieces next to each other go in one OFFSET_DATA chunk.
    let end = index;
    let length = 0;
    while (end < pieces.length && typeof pieces[end] !== 'number') length += (pieces[end++] as Buffer).length;
    out.push(encodeOffsetDataHead(request.cookie, at, length, end === pieces.length), ...(pieces.slice(index, end) as Buffer[]));
    at += length;
    index = end;
  }
  connection.sendThen(done, out);
}

/** Zeros sent in simple replies and DF chunks; never written to. */
const zeroes = Buffer.alloc(1 << 20);

/** The pieces as buffers only, zeros as views of a shared zero buffer. */
function bytesOf(pieces: readonly ReadPiece[]): Buffer[] {
  const out: Buffer[] = [];
  for (const piece of pieces) {
    if (typeof piece !== 'number') {
      out.push(piece);
      continue;
    }
    for (let left = piece; left > 0; left -= zeroes.length) out.push(zeroes.subarray(0, Math.min(left, zeroes.length)));
  }
  return out;
}

function sendBlockStatus(connection: Connection, chosen: ChosenExport, request: Request, extents: BlockExtent[]): void {
  const descriptors: { length: number; flags: number }[] = [];
  for (const extent of extents) {
    const flags = extent.type === 'hole' ? NBD_STATE_HOLE | NBD_STATE_ZERO : extent.type === 'zero' ? NBD_STATE_ZERO : 0;
    const last = descriptors[descriptors.length - 1];
    if (last && last.flags === flags) last.length += extent.length;
    else descriptors.push({ length: extent.length, flags });
  }
  const wanted = (request.flags & NBD_CMD_FLAG_REQ_ONE) !== 0 ? 1 : connection.limits.nbdBlockStatusExtentsMax;
  connection.send(encodeBlockStatus(request.cookie, baseAllocationContextId, descriptors.slice(0, wanted), true));
}
