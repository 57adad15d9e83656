/*
 * A QMP client of our own: QEMU's machine protocol over its unix socket. QEMU greets
 * ({"QMP": ...}), the client sends qmp_capabilities, then commands; each command carries
 * an id so its reply is matched even with events interleaved. Every command has a
 * timeout (a late reply is dropped); QMP errors become STRATA_E_QMP with QMP's class and
 * description; a connection that closes fails every pending command.
 *
 * QmpCommands types the commands the VM manager uses.
 */
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { connectUnix, JsonLineSocket } from './json-lines.js';

export interface QmpEvent {
  readonly event: string;
  readonly data: Record<string, unknown>;
  readonly timestamp: { readonly seconds: number; readonly microseconds: number };
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

export class QmpClient {
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private nextId = 1;
  private lines!: JsonLineSocket;
  private greeted!: (error: StrataError | null) => void;
  private closeError: StrataError | null = null;
  readonly closed: Promise<void>;
  private markClosed!: () => void;

  private constructor(private readonly logger: Logger | undefined) {
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  static async connect(socketPath: string, options: { connectTimeoutMs?: number; logger?: Logger } = {}): Promise<QmpClient> {
    const timeoutMs = options.connectTimeoutMs ?? limits.qmpConnectTimeoutMs;
    const socket = await connectUnix(socketPath, timeoutMs, 'STRATA_E_QMP', 'QMP');
    const client = new QmpClient(options.logger);
    const greeting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StrataError('STRATA_E_QMP_TIMEOUT', `QEMU sent no QMP greeting in ${timeoutMs} ms`)), timeoutMs);
      client.greeted = (error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
    });
    client.lines = new JsonLineSocket(socket, { message: (value) => client.message(value), closed: (error) => client.end(error) }, 'QMP');
    try {
      await greeting;
      await client.execute('qmp_capabilities', undefined, { timeoutMs });
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  private message(value: Record<string, unknown>): void {
    if ('QMP' in value) return this.greeted(null);
    if (typeof value.event === 'string') return this.emit(value as unknown as QmpEvent);
    const id = typeof value.id === 'string' ? value.id : null;
    const pending = id === null ? undefined : this.pending.get(id);
    if (!pending) return this.logger?.log('debug', 'QMP reply without a pending command', { id });
    this.pending.delete(id!);
    clearTimeout(pending.timer);
    if ('error' in value) {
      const error = value.error as { class?: string; desc?: string };
      pending.reject(new StrataError('STRATA_E_QMP', `QEMU refused the command: ${error.desc ?? 'unknown error'}`, { class: error.class, desc: error.desc }));
    } else {
      pending.resolve(value.return);
    }
  }

  private emit(event: QmpEvent): void {
    const normalized: QmpEvent = { event: event.event, data: event.data ?? {}, timestamp: event.timestamp ?? { seconds: 0, microseconds: 0 } };
    for (const listener of this.listeners) listener(normalized);
  }

  private end(error: StrataError | null): void {
    this.closeError = error ?? new StrataError('STRATA_E_QMP', 'the QMP connection closed');
    this.greeted?.(this.closeError);
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(this.closeError);
    }
    this.pending.clear();
    this.markClosed();
  }

  get isClosed(): boolean {
    return this.closeError !== null;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closeError) return Promise.reject(this.closeError);
    const id = `strata-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? limits.qmpCommandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new StrataError('STRATA_E_QMP_TIMEOUT', `QEMU did not answer ${command} in ${timeoutMs} ms`, { command }));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.lines.send(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
    });
  }

  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  waitForEvent(name: string, options: { timeoutMs: number; match?: (event: QmpEvent) => boolean }): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const finish = (action: () => void) => {
        clearTimeout(timer);
        stop();
        action();
      };
      const stop = this.onEvent((event) => {
        if (event.event === name && (options.match?.(event) ?? true)) finish(() => resolve(event));
      });
      const timer = setTimeout(() => finish(() => reject(new StrataError('STRATA_E_QMP_TIMEOUT', `no ${name} event in ${options.timeoutMs} ms`))), options.timeoutMs);
      void this.closed.then(() => finish(() => reject(this.closeError!)));
    });
  }

  close(): void {
    this.lines?.close();
  }
}

export type RunState = 'running' | 'paused' | 'prelaunch' | 'shutdown' | 'inmigrate' | 'postmigrate' | 'suspended' | 'internal-error' | 'io-error' | 'guest-panicked' | string;

export interface BlockStats {
  readonly device: string;
  readonly qdev?: string;
  readonly 'node-name'?: string;
  readonly stats: { readonly rd_bytes: number; readonly wr_bytes: number; readonly rd_operations: number; readonly wr_operations: number };
}

/** The QMP commands the VM manager uses, typed. */
export class QmpCommands {
  constructor(readonly client: QmpClient) {}

  queryStatus(): Promise<{ status: RunState; running: boolean }> {
    return this.client.execute('query-status');
  }

  async stop(): Promise<void> {
    await this.client.execute('stop');
  }

  async cont(): Promise<void> {
    await this.client.execute('cont');
  }

  async systemPowerdown(): Promise<void> {
    await this.client.execute('system_powerdown');
  }

  async systemReset(): Promise<void> {
    await this.client.execute('system_reset');
  }

  /** Resolves once QEMU has closed the connection (its reply may never arrive), or after the command timeout. */
  async quit(): Promise<void> {
    void this.client.execute('quit').catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.client.closed, new Promise((resolve) => (timer = setTimeout(resolve, limits.qmpCommandTimeoutMs)))]);
    clearTimeout(timer);
  }

  async blockdevAdd(options: Record<string, unknown>): Promise<void> {
    await this.client.execute('blockdev-add', options);
  }

  async blockdevDel(nodeName: string): Promise<void> {
    await this.client.execute('blockdev-del', { 'node-name': nodeName });
  }

  async deviceAdd(options: { driver: string; id: string } & Record<string, unknown>): Promise<void> {
    await this.client.execute('device_add', options);
  }

  async deviceDel(id: string): Promise<void> {
    await this.client.execute('device_del', { id });
  }

  queryBlockstats(): Promise<BlockStats[]> {
    return this.client.execute('query-blockstats');
  }
}
