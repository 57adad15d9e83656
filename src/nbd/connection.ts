/*
 * One client connection: handshake, then transmission, then close. Everything a
 * connection does goes through here: the exact-length reader, replies written whole
 * (one reply's pieces are written in one synchronous run, so replies of concurrent
 * requests never interleave), the export catalogue filtered by the access rules, and
 * the STARTTLS upgrade. Any protocol violation or socket failure ends this connection
 * with one log line; the server and other connections carry on.
 */
import type { Socket } from 'node:net';
import * as tls from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Limits } from '../common/limits.js';
import type { LogLevel, Logger } from '../common/log.js';
import type { BlockDevice } from '../engine/index.js';
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_CACHE,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from '../protocol/nbd/constants.js';
import { NbdProtocolError } from '../protocol/nbd/messages.js';
import type { ExportEntry, ExportSource } from './exports.js';
import { negotiate } from './negotiation.js';
import { ConnectionClosed, SocketReader } from './socket-reader.js';
import { transmit } from './transmission.js';

export interface ClientInfo {
  /** 'tcp' or 'unix'. */
  readonly transport: 'tcp' | 'unix';
  /** The peer's IP address (tcp only). */
  readonly address: string | null;
}

/** Decides whether a client may see and open an export. */
export type ExportAccess = (exportName: string, client: ClientInfo) => boolean;

export interface ConnectionContext {
  readonly exports: ExportSource;
  readonly access: ExportAccess;
  readonly limits: Limits;
  readonly logger: Logger;
  readonly tls: { readonly context: tls.SecureContext; readonly required: boolean; readonly requestCert: boolean } | null;
  /** True once the server is stopping: no new requests are read. */
  readonly stopping: () => boolean;
}

export class Connection {
  readonly reader: SocketReader;
  private stream: Duplex;
  tlsActive = false;
  private batching = false;
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  /** Called once the socket has taken the queued pieces (or is gone). */
  private queuedDone: (() => void)[] = [];
  private flushScheduled = false;
  /** Settles when the connection has closed. */
  readonly done: Promise<void>;
  /** Export chosen by the handshake, for listings of connected clients. */
  exportName: string | null = null;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    readonly client: ClientInfo,
    private readonly context: ConnectionContext,
  ) {
    this.stream = socket;
    socket.setNoDelay(true);
    this.reader = new SocketReader(socket, context.limits.nbdPayloadBytesMax + 64 * 1024);
    this.done = this.run();
  }

  get limits(): Limits {
    return this.context.limits;
  }

  get tlsAvailable(): boolean {
    return this.context.tls !== null;
  }

  get tlsRequired(): boolean {
    return this.context.tls?.required ?? false;
  }

  get stopping(): boolean {
    return this.context.stopping();
  }

  /** Reply bytes not yet sent (gathered or handed to the socket). */
  get backlogBytes(): number {
    return this.stream.writableLength + this.queuedBytes;
  }

  get closed(): boolean {
    return this.stream.destroyed || this.socket.destroyed;
  }

  log(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    this.context.logger.log(level, message, { connection: this.id, client: this.client.address ?? this.client.transport, ...fields });
  }

  /**
   * Writes one reply's pieces back to back. Dropped silently once the socket is gone.
   * In transmission, replies finished in the same turn of the event loop are gathered
   * and written together (one writev instead of one per reply).
   */
  send(...pieces: Buffer[]): void {
    this.sendThen(null, pieces);
  }

  /**
   * As send, then `done` once the socket has taken the pieces' bytes (written, or the
   * connection gone): until then the pieces must stay as they are.
   */
  sendThen(done: (() => void) | null, pieces: readonly Buffer[]): void {
    if (this.closed) return void done?.();
    if (!this.batching) return this.writeNow(pieces, done === null ? [] : [done]);
    for (const piece of pieces) {
      this.queued.push(piece);
      this.queuedBytes += piece.length;
    }
    if (done !== null) this.queuedDone.push(done);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushQueued());
    }
  }

  /** From here on replies are gathered per event-loop turn (see send). */
  startBatching(): void {
    this.batching = true;
  }

  private flushQueued(): void {
    this.flushScheduled = false;
    const pieces = this.queued;
    const done = this.queuedDone;
    this.queued = [];
    this.queuedDone = [];
    this.queuedBytes = 0;
    if (!this.closed && pieces.length > 0) this.writeNow(pieces, done);
    else for (const callback of done) callback();
  }

  private writeNow(pieces: readonly Buffer[], done: readonly (() => void)[]): void {
    // The stream calls back once the last piece is written, or with an error once it is destroyed.
    const written = done.length === 0 ? undefined : () => done.forEach((callback) => callback());
    if (pieces.length === 1) {
      this.stream.write(pieces[0], written);
      return;
    }
    this.stream.cork();
    pieces.forEach((piece, index) => this.stream.write(piece, index === pieces.length - 1 ? written : undefined));
    this.stream.uncork();
  }

  /** Resolves once the reply backlog has drained below the limit (or the socket died). */
  waitForDrain(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.stream.off('drain', done);
        this.stream.off('close', done);
        resolve();
      };
      this.stream.on('drain', done);
      this.stream.on('close', done);
    });
  }

  /** The exports this client may see. */
  listExports(): ExportEntry[] {
    return this.context.exports.list().filter((entry) => this.context.access(entry.name, this.client));
  }

  /** Opens an export for this client, or says why not ('not found', 'denied'). */
  openExport(name: string): { device: BlockDevice; description: string } | 'not found' | 'denied' {
    if (!this.context.access(name, this.client)) return 'denied';
    return this.context.exports.open(name) ?? 'not found';
  }

  transmissionFlags(readOnly: boolean, structuredReplies: boolean): number {
    let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN;
    flags |= readOnly ? NBD_FLAG_READ_ONLY : NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
    if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
    return flags;
  }

  /** After the STARTTLS ACK: the rest of the session runs over TLS, or ends. */
  async upgradeToTls(): Promise<void> {
    const settings = this.context.tls;
    if (!settings) throw new NbdProtocolError('no TLS configured');
    this.reader.detach();
    const secure = new tls.TLSSocket(this.socket, {
      isServer: true,
      secureContext: settings.context,
      requestCert: settings.requestCert,
      rejectUnauthorized: settings.requestCert,
    });
    this.stream = secure;
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error) => reject(new ConnectionClosed(`TLS handshake failed: ${error.message}`));
      secure.once('secure', () => {
        secure.off('error', fail);
        resolve();
      });
      secure.once('error', fail);
      secure.once('close', () => fail(new Error('closed during the handshake')));
    });
    this.reader.switchTo(secure);
    this.tlsActive = true;
    this.log('debug', 'TLS established', { protocol: secure.getProtocol() });
  }

  /** Ends the connection now; in-flight work finishes but its replies are dropped. */
  destroy(reason: string): void {
    this.reader.close(reason);
    this.stream.destroy();
    this.socket.destroy();
  }

  private async run(): Promise<void> {
    const timer = setTimeout(() => this.destroy('handshake timed out'), this.context.limits.nbdHandshakeTimeoutMs);
    try {
      const chosen = await negotiate(this);
      clearTimeout(timer);
      if (chosen === null) {
        this.log('debug', 'client aborted the handshake');
        return;
      }
      this.exportName = chosen.name;
      this.log('info', 'client connected', { export: chosen.name, structuredReplies: chosen.structuredReplies, tls: this.tlsActive });
      this.startBatching();
      await transmit(this, chosen);
      this.log('info', 'client disconnected', { export: chosen.name });
    } catch (error) {
      this.logFailure(error);
    } finally {
      clearTimeout(timer);
      this.reader.close('connection finished');
      this.flushQueued();
      this.stream.end();
      setTimeout(() => this.socket.destroy(), 1000).unref();
    }
  }

  private logFailure(error: unknown): void {
    if (error instanceof ConnectionClosed) {
      this.log('info', 'connection closed', { reason: error.message });
    } else if (error instanceof NbdProtocolError) {
      this.log('warn', 'protocol violation, connection closed', { reason: error.message });
    } else {
      this.log('error', 'connection failed', { reason: error instanceof Error ? error.message : String(error) });
    }
  }
}
