/*
 * Newline-delimited JSON over a unix socket, the framing QMP and the guest agent share.
 * Every line is checked against limits.qmpLineBytesMax before it is parsed; a line that
 * is too long or not JSON is a protocol error, which closes the connection (the peer is
 * no longer in step). The guest agent puts a 0xFF byte before the reply to a
 * guest-sync-delimited; that byte resets the line buffer.
 */
import * as net from 'node:net';
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';

export interface JsonLineHandlers {
  message(value: Record<string, unknown>): void;
  /** The connection closed; `error` says why when it was not a clean end. */
  closed(error: StrataError | null): void;
}

export class JsonLineSocket {
  private buffered = '';
  private ended = false;

  constructor(
    private readonly socket: net.Socket,
    private readonly handlers: JsonLineHandlers,
    private readonly what: string,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => this.receive(text));
    socket.on('error', (error) => this.end(new StrataError('STRATA_E_QMP', `${what} connection failed: ${error.message}`)));
    socket.on('close', () => this.end(null));
  }

  private receive(text: string): void {
    let input = text;
    const reset = input.lastIndexOf('\xff');
    if (reset >= 0) {
      this.buffered = '';
      input = input.slice(reset + 1);
    }
    this.buffered += input;
    let newline: number;
    while (!this.ended && (newline = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line.length > 0) this.line(line);
    }
    if (this.buffered.length > limits.qmpLineBytesMax) this.fail(`${this.what} sent a line longer than ${limits.qmpLineBytesMax} bytes`);
  }

  private line(line: string): void {
    if (line.length > limits.qmpLineBytesMax) return this.fail(`${this.what} sent a line longer than ${limits.qmpLineBytesMax} bytes`);
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(line, 'latin1').toString('utf8'));
    } catch {
      return this.fail(`${this.what} sent a line that is not JSON: ${line.slice(0, 80)}`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return this.fail(`${this.what} sent a line that is not a JSON object`);
    this.handlers.message(value as Record<string, unknown>);
  }

  private fail(message: string): void {
    this.end(new StrataError('STRATA_E_QMP', message));
    this.socket.destroy();
  }

  private end(error: StrataError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.handlers.closed(error);
  }

  send(value: Record<string, unknown>): void {
    if (!this.ended) this.socket.write(`${JSON.stringify(value)}\n`);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  close(): void {
    this.socket.destroy();
    this.end(null);
  }
}

/** Connects to a unix socket, failing with `code` when it is missing, refused or slow. */
export function connectUnix(path: string, timeoutMs: number, code: 'STRATA_E_QMP' | 'STRATA_E_GUEST_AGENT', what: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new StrataError(code === 'STRATA_E_QMP' ? 'STRATA_E_QMP_TIMEOUT' : code, `${what} at ${path} did not accept the connection in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(new StrataError(code, `cannot connect to ${what} at ${path}: ${error.message}`));
    });
  });
}
