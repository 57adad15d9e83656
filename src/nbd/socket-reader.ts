/*
 * Exact-length reads over a stream socket. The NBD parsers ask for "the next n bytes"
 * (a 16-byte option header, a 28-byte request, a write payload); this buffers what the
 * socket delivers and hands out exactly that much. Flow control: once more than
 * `highWaterBytes` wait unread, the socket is paused, so a client that floods requests
 * cannot grow the server's memory. After end or error every pending and later read
 * rejects with a ConnectionClosed.
 */
import type { Duplex } from 'node:stream';

export class ConnectionClosed extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'ConnectionClosed';
  }
}

interface PendingRead {
  readonly length: number;
  /** Resolve with the pieces as delivered instead of one buffer. */
  readonly pieces: boolean;
  readonly resolve: (bytes: Buffer | Buffer[]) => void;
  readonly reject: (error: Error) => void;
}

export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private pending: PendingRead | null = null;
  private closed: ConnectionClosed | null = null;
  private readonly onData = (chunk: Buffer) => this.push(chunk);
  private readonly onEnd = () => this.close('the client closed the connection');
  private readonly onError = (error: Error) => this.close(`socket error: ${error.message}`);

  constructor(
    private stream: Duplex,
    private readonly highWaterBytes: number,
  ) {
    this.attach(stream);
  }

  /** Bytes received and not yet read. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Resolves with exactly `length` bytes (one read at a time). */
  read(length: number): Promise<Buffer> {
    return this.next(length, false) as Promise<Buffer>;
  }

  /**
   * Resolves with exactly `length` bytes as the pieces the socket delivered them in (a
   * large WRITE payload is not copied into one buffer).
   */
  readPieces(length: number): Promise<Buffer[]> {
    return this.next(length, true) as Promise<Buffer[]>;
  }

  /**
   * `length` bytes at once when that many are buffered, else null (then read or
   * readPieces waits for them): the request loop takes what a socket read delivered
   * without a turn of the microtask queue per request.
   */
  takeBuffered(length: number): Buffer | null {
    return this.pending === null && this.buffered >= length && length > 0 ? this.take(length) : null;
  }

  /** As takeBuffered, as the pieces the socket delivered (see readPieces). */
  takeBufferedPieces(length: number): Buffer[] | null {
    return this.pending === null && this.buffered >= length && length > 0 ? this.takePieces(length) : null;
  }

  private next(length: number, pieces: boolean): Promise<Buffer | Buffer[]> {
    if (this.pending) return Promise.reject(new Error('a read is already pending'));
    if (length === 0) return Promise.resolve(pieces ? [] : Buffer.alloc(0));
    if (this.buffered >= length) return Promise.resolve(this.takeAs(length, pieces));
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.pending = { length, pieces, resolve, reject };
      this.stream.resume();
    });
  }

  /** Reads and drops `length` bytes in bounded pieces (a rejected write's payload). */
  async discard(length: number): Promise<void> {
    let left = length;
    while (left > 0) {
      const piece = Math.min(left, this.highWaterBytes);
      await this.read(piece);
      left -= piece;
    }
  }

  /**
   * Moves to another stream over the same connection (the TLS socket after STARTTLS).
   * Nothing may be buffered: the client waits for the ACK before its TLS handshake.
   */
  switchTo(stream: Duplex): void {
    this.detach();
    this.stream = stream;
    this.attach(stream);
  }

  /** Stops reading from the socket without closing it. */
  detach(): void {
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('error', this.onError);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = new ConnectionClosed(reason);
    const pending = this.pending;
    this.pending = null;
    pending?.reject(this.closed);
  }

  private attach(stream: Duplex): void {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('error', this.onError);
  }

  private push(chunk: Buffer): void {
    if (this.closed) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const pending = this.pending;
    if (pending && this.buffered >= pending.length) {
      this.pending = null;
      pending.resolve(this.takeAs(pending.length, pending.pieces));
    }
    if (this.buffered > this.highWaterBytes && (!this.pending || this.buffered >= this.pending.length)) this.stream.pause();
  }

  private takeAs(length: number, pieces: boolean): Buffer | Buffer[] {
    return pieces ? this.takePieces(length) : this.take(length);
  }

  private take(length: number): Buffer {
    const first = this.chunks[0];
    if (first.length >= length) return this.takePieces(length)[0];
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    for (const piece of this.takePieces(length)) filled += piece.copy(out, filled);
    return out;
  }

  private takePieces(length: number): Buffer[] {
    this.buffered -= length;
    const pieces: Buffer[] = [];
    let left = length;
    while (left > 0) {
      const chunk = this.chunks[0];
      if (chunk.length <= left) {
        pieces.push(chunk);
        this.chunks.shift();
        left -= chunk.length;
      } else {
        pieces.push(chunk.subarray(0, left));
        this.chunks[0] = chunk.subarray(left);
        left = 0;
      }
    }
    this.maybeResume();
    return pieces;
  }

  private maybeResume(): void {
    if (this.buffered <= this.highWaterBytes && !this.closed) this.stream.resume();
  }
}
