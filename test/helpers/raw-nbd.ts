/*
 * A deliberately literal NBD client for protocol tests: it sends exactly the bytes a
 * test asks for (valid or not) and parses what comes back, so tests can check the
 * server's answers to every option and command, and feed it garbage.
 */
import * as net from 'node:net';
import { SocketReader } from '../../src/nbd/socket-reader.js';
import {
  IHAVEOPT,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_OPT_GO,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
} from '../../src/protocol/nbd/constants.js';

export interface OptionReply {
  readonly option: number;
  readonly type: number;
  readonly payload: Buffer;
}

export interface ReplyChunk {
  readonly structured: boolean;
  readonly flags: number;
  readonly type: number;
  readonly error: number;
  readonly cookie: bigint;
  readonly payload: Buffer;
}

export class RawNbdClient {
  readonly reader: SocketReader;
  private constructor(readonly socket: net.Socket) {
    this.reader = new SocketReader(socket, 64 * 1024 * 1024);
  }

  static connect(port: number): Promise<RawNbdClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawNbdClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Reads the greeting and sends client flags (fixed newstyle, no zeroes by default). */
  async greet(clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<number> {
    const greeting = await this.reader.read(18);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(clientFlags, 0);
    this.socket.write(flags);
    return greeting.readUInt16BE(16);
  }

  sendOption(option: number, payload: Buffer = Buffer.alloc(0), declaredLength = payload.length): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(IHAVEOPT, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(declaredLength, 12);
    this.socket.write(Buffer.concat([header, payload]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const header = await this.reader.read(20);
    const length = header.readUInt32BE(16);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), payload: await this.reader.read(length) };
  }

  /** Option replies up to and including the first ACK or error. */
  async readOptionReplies(): Promise<OptionReply[]> {
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type === NBD_REP_ACK || reply.type >= 2 ** 31) return replies;
    }
  }

  /** Structured replies, base:allocation and GO: returns the export size and flags. */
  async open(name: string, options: { structured?: boolean } = {}): Promise<{ size: number; flags: number }> {
    await this.greet();
    if (options.structured !== false) {
      this.sendOption(NBD_OPT_STRUCTURED_REPLY);
      await this.readOptionReplies();
      this.sendOption(NBD_OPT_SET_META_CONTEXT, metaContextPayload(name, ['base:allocation']));
      await this.readOptionReplies();
    }
    this.sendOption(NBD_OPT_GO, infoPayload(name, []));
    const replies = await this.readOptionReplies();
    const last = replies[replies.length - 1];
    if (last.type !== NBD_REP_ACK) throw new Error(`GO refused: ${last.type} ${last.payload.toString()}`);
    const exportInfo = replies.find((reply) => reply.payload.readUInt16BE(0) === 0)!.payload;
    return { size: Number(exportInfo.readBigUInt64BE(2)), flags: exportInfo.readUInt16BE(10) };
  }

  sendRequest(type: number, offset: number, length: number, options: { flags?: number; cookie?: bigint; payload?: Buffer } = {}): void {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
    header.writeUInt16BE(options.flags ?? 0, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(options.cookie ?? 1n, 8);
    header.writeBigUInt64BE(BigInt(offset), 16);
    header.writeUInt32BE(length, 24);
    this.socket.write(options.payload ? Buffer.concat([header, options.payload]) : header);
  }

  /**
   * One reply message: a simple reply (with `readLength` bytes of data when it answers a
   * successful READ without structured replies) or one structured chunk.
   */
  async readReply(readLength = 0): Promise<ReplyChunk> {
    const head = await this.reader.read(4);
    const magic = head.readUInt32BE(0);
    if (magic === NBD_SIMPLE_REPLY_MAGIC) {
      const rest = await this.reader.read(12);
      const error = rest.readUInt32BE(0);
      const payload = error === 0 && readLength > 0 ? await this.reader.read(readLength) : Buffer.alloc(0);
      return { structured: false, flags: 1, type: 0, error, cookie: rest.readBigUInt64BE(4), payload };
    }
    const rest = await this.reader.read(16);
    const payload = await this.reader.read(rest.readUInt32BE(12));
    const type = rest.readUInt16BE(2);
    return { structured: true, flags: rest.readUInt16BE(0), type, error: type >= 2 ** 15 ? payload.readUInt32BE(0) : 0, cookie: rest.readBigUInt64BE(4), payload };
  }

  /** Chunks of one structured reply, through the one flagged DONE. */
  async readStructuredReply(): Promise<ReplyChunk[]> {
    const chunks: ReplyChunk[] = [];
    for (;;) {
      const chunk = await this.readReply();
      chunks.push(chunk);
      if (!chunk.structured || (chunk.flags & 1) !== 0) return chunks;
    }
  }

  /** Resolves once the server has closed the connection. */
  closed(): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed || this.socket.readableEnded) return resolve();
      this.socket.once('close', () => resolve());
    });
  }

  destroy(): void {
    this.reader.close('test done');
    this.socket.destroy();
  }
}

export function stringField(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length, 0);
  return Buffer.concat([length, bytes]);
}

export function infoPayload(name: string, requests: number[]): Buffer {
  const count = Buffer.alloc(2 + 2 * requests.length);
  count.writeUInt16BE(requests.length, 0);
  requests.forEach((request, index) => count.writeUInt16BE(request, 2 + 2 * index));
  return Buffer.concat([stringField(name), count]);
}

export function metaContextPayload(name: string, queries: string[]): Buffer {
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length, 0);
  return Buffer.concat([stringField(name), count, ...queries.map(stringField)]);
}
