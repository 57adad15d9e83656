/*
 * A VM's serial console, shared by every viewer (web console, `strata vm console`).
 * QEMU's serial chardev is a unix socket that takes one client, so the daemon is that
 * client and fans the output out; QEMU also writes all output to serial.log, so what the
 * guest printed while no daemon was attached is not lost: a new hub starts its backlog
 * from the tail of that file. Input from any viewer goes to the guest.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { limits } from '../common/limits.js';

export class SerialConsole {
  private socket: net.Socket | null = null;
  private backlog: Buffer;
  private readonly viewers = new Set<(data: Buffer) => void>();
  private readonly endings = new Set<() => void>();

  constructor(
    private readonly socketPath: string,
    logPath: string,
  ) {
    this.backlog = tail(logPath, limits.serialBacklogBytesMax);
  }

  /** Connects to QEMU's serial socket (again, after it was lost). */
  attach(): Promise<void> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(this.socketPath);
      socket.once('connect', () => {
        this.socket = socket;
        resolve();
      });
      socket.once('error', (error) => {
        if (this.socket !== socket) reject(error);
      });
      socket.on('data', (data: Buffer) => this.output(data));
      socket.on('close', () => {
        if (this.socket === socket) this.socket = null;
      });
    });
  }

  private output(data: Buffer): void {
    this.backlog = Buffer.concat([this.backlog, data]);
    if (this.backlog.length > limits.serialBacklogBytesMax) this.backlog = this.backlog.subarray(this.backlog.length - limits.serialBacklogBytesMax);
    for (const viewer of this.viewers) viewer(data);
  }

  /** Recent output (what a new viewer is shown first). */
  recent(): Buffer {
    return this.backlog;
  }

  /**
   * Adds a viewer of new output, told by `ended` when this run of the VM is over (QEMU
   * exited or the daemon let go); returns the function that removes it.
   */
  watch(viewer: (data: Buffer) => void, ended?: () => void): () => void {
    this.viewers.add(viewer);
    if (ended) this.endings.add(ended);
    return () => {
      this.viewers.delete(viewer);
      if (ended) this.endings.delete(ended);
    };
  }

  /** Sends keystrokes to the guest; dropped when QEMU's socket is not connected. */
  input(data: Buffer): void {
    if (this.socket && !this.socket.destroyed) this.socket.write(data);
  }

  /** Resolves when the recent output contains `text` (tests, boot markers). */
  waitFor(text: string, signal?: AbortSignal): Promise<void> {
    if (this.backlog.includes(text)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const stop = this.watch(() => {
        if (!this.backlog.includes(text)) return;
        stop();
        resolve();
      });
      signal?.addEventListener('abort', () => {
        stop();
        reject(signal.reason as Error);
      });
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = null;
    this.viewers.clear();
    const endings = [...this.endings];
    this.endings.clear();
    for (const ended of endings) ended();
  }
}

function tail(file: string, bytes: number): Buffer {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const length = Math.min(size, bytes);
      const buffer = Buffer.alloc(length);
      fs.readSync(fd, buffer, 0, length, size - length);
      return buffer;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return Buffer.alloc(0);
  }
}
