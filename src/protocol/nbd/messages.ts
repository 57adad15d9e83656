/*
 * NBD wire records: encoders for everything the server sends and decoders for what a
 * client sends, each beside its counterpart, big endian as the spec says. Decoders take
 * untrusted bytes: they check every length against the bytes present and a named
 * maximum, and throw NbdProtocolError (the connection is then closed) or return a
 * typed refusal the session answers with NBD_REP_ERR_INVALID.
 *
 *   server greeting:   u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags
 *   option header:     u64 IHAVEOPT, u32 option, u32 length, then length bytes
 *   option reply:      u64 0x3e889045565a9, u32 option, u32 type, u32 length, payload
 *   request:           u32 0x25609513, u16 flags, u16 type, u64 cookie, u64 offset, u32 length
 *   simple reply:      u32 0x67446698, u32 error, u64 cookie
 *   structured chunk:  u32 0x668e33ef, u16 flags, u16 type, u64 cookie, u32 length, payload
 */
import {
  IHAVEOPT,
  NBDMAGIC,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  OPTION_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  REQUEST_BYTES,
  SIMPLE_REPLY_BYTES,
  STRUCTURED_REPLY_HEADER_BYTES,
} from './constants.js';

/** Longest string (export name, description, context query) the spec allows. */
export const NBD_MAX_STRING_BYTES = 4096;

/** The peer broke the protocol; the connection cannot continue. */
export class NbdProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NbdProtocolError';
  }
}

/** An option payload the server refuses with NBD_REP_ERR_INVALID; the session goes on. */
export class NbdInvalidOption extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NbdInvalidOption';
  }
}

function u64(value: number): Buffer {
  const buffer = Buffer.alloc(8);
  buffer.writeUInt32BE(Math.floor(value / 2 ** 32), 0);
  buffer.writeUInt32BE(value % 2 ** 32, 4);
  return buffer;
}

/** Reads a u64 that must be a safe integer (offsets and sizes). */
export function readU64(buffer: Buffer, at: number): number {
  const high = buffer.readUInt32BE(at);
  const low = buffer.readUInt32BE(at + 4);
  // 2^53 and above cannot be a byte offset here: report it as out of range, not wrapped.
  return high >= 2 ** 21 ? Number.MAX_SAFE_INTEGER : high * 2 ** 32 + low;
}

// ---- Handshake ----

export function encodeServerGreeting(handshakeFlags: number): Buffer {
  const buffer = Buffer.alloc(18);
  buffer.writeBigUInt64BE(NBDMAGIC, 0);
  buffer.writeBigUInt64BE(IHAVEOPT, 8);
  buffer.writeUInt16BE(handshakeFlags, 16);
  return buffer;
}

export interface OptionHeader {
  readonly option: number;
  readonly length: number;
}

export function decodeOptionHeader(bytes: Buffer): OptionHeader {
  if (bytes.length !== OPTION_HEADER_BYTES) throw new NbdProtocolError('short option header');
  if (bytes.readBigUInt64BE(0) !== IHAVEOPT) throw new NbdProtocolError('option without IHAVEOPT magic');
  return { option: bytes.readUInt32BE(8), length: bytes.readUInt32BE(12) };
}

export function encodeOptionReply(option: number, type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(20);
  header.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(type, 12);
  header.writeUInt32BE(payload.length, 16);
  return Buffer.concat([header, payload]);
}

/** Reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zeros unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const flags = Buffer.alloc(2);
  flags.writeUInt16BE(transmissionFlags, 0);
  return Buffer.concat([u64(sizeBytes), flags, Buffer.alloc(noZeroes ? 0 : 124)]);
}

/** NBD_REP_SERVER payload: u32 name length, name, description. */
export function encodeServerEntry(name: string, description: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(nameBytes.length, 0);
  return Buffer.concat([length, nameBytes, Buffer.from(description, 'utf8')]);
}

export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const buffer = Buffer.alloc(12);
  buffer.writeUInt16BE(0, 0); // NBD_INFO_EXPORT
  u64(sizeBytes).copy(buffer, 2);
  buffer.writeUInt16BE(transmissionFlags, 10);
  return buffer;
}

export function encodeInfoString(type: number, text: string): Buffer {
  const head = Buffer.alloc(2);
  head.writeUInt16BE(type, 0);
  return Buffer.concat([head, Buffer.from(text, 'utf8')]);
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const buffer = Buffer.alloc(14);
  buffer.writeUInt16BE(3, 0); // NBD_INFO_BLOCK_SIZE
  buffer.writeUInt32BE(minimum, 2);
  buffer.writeUInt32BE(preferred, 6);
  buffer.writeUInt32BE(maximum, 10);
  return buffer;
}

export function encodeMetaContext(contextId: number, name: string): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(contextId, 0);
  return Buffer.concat([id, Buffer.from(name, 'utf8')]);
}

/** A cursor over an option payload; every read is bounds-checked. */
class PayloadReader {
  private at = 0;
  constructor(private readonly bytes: Buffer) {}

  u16(): number {
    this.need(2);
    const value = this.bytes.readUInt16BE(this.at);
    this.at += 2;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.bytes.readUInt32BE(this.at);
    this.at += 4;
    return value;
  }

  string(what: string): string {
    const length = this.u32();
    if (length > NBD_MAX_STRING_BYTES) throw new NbdInvalidOption(`${what} is longer than ${NBD_MAX_STRING_BYTES} bytes`);
    this.need(length);
    const text = this.bytes.toString('utf8', this.at, this.at + length);
    this.at += length;
    return text;
  }

  end(): void {
    if (this.at !== this.bytes.length) throw new NbdInvalidOption('option payload has trailing bytes');
  }

  private need(count: number): void {
    if (this.at + count > this.bytes.length) throw new NbdInvalidOption('option payload is truncated');
  }
}

/** NBD_OPT_INFO / NBD_OPT_GO: export name and the information types asked for. */
export function decodeInfoRequest(payload: Buffer): { name: string; requests: number[] } {
  const reader = new PayloadReader(payload);
  const name = reader.string('export name');
  const count = reader.u16();
  const requests: number[] = [];
  for (let index = 0; index < count; index += 1) requests.push(reader.u16());
  reader.end();
  return { name, requests };
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: export name and queries. */
export function decodeMetaContextRequest(payload: Buffer): { name: string; queries: string[] } {
  const reader = new PayloadReader(payload);
  const name = reader.string('export name');
  const count = reader.u32();
  // Each query takes at least its 4-byte length: a count beyond that is a lie.
  if (count > payload.length / 4) throw new NbdInvalidOption('meta context query count exceeds the payload');
  const queries: string[] = [];
  for (let index = 0; index < count; index += 1) queries.push(reader.string('meta context query'));
  reader.end();
  return { name, queries };
}

// ---- Transmission ----

export interface Request {
  readonly flags: number;
  readonly type: number;
  /** Opaque 8 bytes echoed in the reply. */
  readonly cookie: Buffer;
  readonly offset: number;
  readonly length: number;
}

export function decodeRequest(bytes: Buffer): Request {
  if (bytes.length !== REQUEST_BYTES) throw new NbdProtocolError('short request header');
  const magic = bytes.readUInt32BE(0);
  if (magic !== NBD_REQUEST_MAGIC) throw new NbdProtocolError(`bad request magic 0x${magic.toString(16)}`);
  return {
    flags: bytes.readUInt16BE(4),
    type: bytes.readUInt16BE(6),
    cookie: Buffer.from(bytes.subarray(8, 16)),
    offset: readU64(bytes, 16),
    length: bytes.readUInt32BE(24),
  };
}

export function encodeSimpleReply(cookie: Buffer, error: number): Buffer {
  const buffer = Buffer.alloc(SIMPLE_REPLY_BYTES);
  buffer.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  buffer.writeUInt32BE(error, 4);
  cookie.copy(buffer, 8);
  return buffer;
}

export function encodeChunkHeader(cookie: Buffer, type: number, length: number, done: boolean): Buffer {
  const buffer = Buffer.alloc(STRUCTURED_REPLY_HEADER_BYTES);
  buffer.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  buffer.writeUInt16BE(done ? NBD_REPLY_FLAG_DONE : 0, 4);
  buffer.writeUInt16BE(type, 6);
  cookie.copy(buffer, 8);
  buffer.writeUInt32BE(length, 16);
  return buffer;
}

/** OFFSET_DATA chunk: header and offset; the data follows as its own buffer. */
export function encodeOffsetDataHead(cookie: Buffer, offset: number, dataLength: number, done: boolean): Buffer {
  return Buffer.concat([encodeChunkHeader(cookie, NBD_REPLY_TYPE_OFFSET_DATA, 8 + dataLength, done), u64(offset)]);
}

export function encodeOffsetHole(cookie: Buffer, offset: number, length: number, done: boolean): Buffer {
  const body = Buffer.alloc(12);
  u64(offset).copy(body, 0);
  body.writeUInt32BE(length, 8);
  return Buffer.concat([encodeChunkHeader(cookie, NBD_REPLY_TYPE_OFFSET_HOLE, 12, done), body]);
}

export function encodeBlockStatus(cookie: Buffer, contextId: number, extents: readonly { length: number; flags: number }[], done: boolean): Buffer {
  const body = Buffer.alloc(4 + 8 * extents.length);
  body.writeUInt32BE(contextId, 0);
  extents.forEach((extent, index) => {
    body.writeUInt32BE(extent.length, 4 + index * 8);
    body.writeUInt32BE(extent.flags, 8 + index * 8);
  });
  return Buffer.concat([encodeChunkHeader(cookie, NBD_REPLY_TYPE_BLOCK_STATUS, body.length, done), body]);
}

/** Error chunk; the message is short (clients reject long non-data chunks). */
export function encodeErrorChunk(cookie: Buffer, error: number, message: string): Buffer {
  const text = Buffer.from(message.slice(0, 200), 'utf8');
  const body = Buffer.alloc(6 + text.length);
  body.writeUInt32BE(error, 0);
  body.writeUInt16BE(text.length, 4);
  text.copy(body, 6);
  return Buffer.concat([encodeChunkHeader(cookie, NBD_REPLY_TYPE_ERROR, body.length, true), body]);
}

export function encodeDoneChunk(cookie: Buffer): Buffer {
  return encodeChunkHeader(cookie, NBD_REPLY_TYPE_NONE, 0, true);
}
