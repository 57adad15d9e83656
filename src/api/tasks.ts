/*
 * Tasks: long operations (import, export, compaction, check, flatten) run in the
 * background and are watched through the API: state, percent done, the phase, and the
 * result or error at the end. Cancelling aborts the task's signal; each operation stops
 * at its next safe point (a killed converter, a progress callback that throws
 * STRATA_E_CANCELLED between steps) and undoes what it had started. A failed task is
 * also recorded as an event.
 */
import { isStrataError, StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { EventLog } from './events.js';

export type TaskState = 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface TaskInfo {
  readonly id: number;
  readonly kind: string;
  /** What the task works on: "volume/disk0", "pool/default". */
  readonly subject: string;
  readonly state: TaskState;
  readonly percent: number;
  readonly phase: string;
  readonly createdMs: number;
  readonly finishedMs: number | null;
  readonly result: unknown;
  readonly error: { readonly code: string; readonly message: string } | null;
}

export interface TaskContext {
  readonly signal: AbortSignal;
  /** Reports progress; throws STRATA_E_CANCELLED once the task was cancelled. */
  progress(done: number, total: number, phase?: string): void;
}

interface TaskEntry {
  info: TaskInfo;
  readonly controller: AbortController;
  readonly finished: Promise<void>;
}

export class TaskManager {
  private readonly tasks = new Map<number, TaskEntry>();
  private nextId = 1;

  constructor(private readonly events: EventLog) {}

  start(kind: string, subject: string, body: (context: TaskContext) => Promise<unknown>): TaskInfo {
    const id = this.nextId++;
    const controller = new AbortController();
    const info: TaskInfo = { id, kind, subject, state: 'running', percent: 0, phase: '', createdMs: Date.now(), finishedMs: null, result: null, error: null };
    const update = (changes: Partial<TaskInfo>) => {
      const entry = this.tasks.get(id);
      if (entry) entry.info = { ...entry.info, ...changes };
    };
    const context: TaskContext = {
      signal: controller.signal,
      progress(done, total, phase) {
        if (controller.signal.aborted) throw new StrataError('STRATA_E_CANCELLED', `task ${id} was cancelled`);
        const percent = total > 0 ? Math.min(100, Math.floor((done / total) * 1000) / 10) : 0;
        update(phase === undefined ? { percent } : { percent, phase });
      },
    };
    const finished = (async () => {
      await Promise.resolve();
      try {
        const result = await body(context);
        update({ state: 'succeeded', percent: 100, result: result ?? null, finishedMs: Date.now() });
      } catch (error) {
        this.fail(id, kind, subject, error, controller.signal.aborted, update);
      }
      this.prune();
    })();
    this.tasks.set(id, { info, controller, finished });
    return info;
  }

  private fail(id: number, kind: string, subject: string, error: unknown, aborted: boolean, update: (changes: Partial<TaskInfo>) => void): void {
    const cancelled = aborted || isStrataError(error, 'STRATA_E_CANCELLED');
    const code = isStrataError(error) ? error.code : 'STRATA_E_IO';
    const message = error instanceof Error ? error.message : String(error);
    update({ state: cancelled ? 'cancelled' : 'failed', finishedMs: Date.now(), error: { code: cancelled ? 'STRATA_E_CANCELLED' : code, message } });
    this.events.record(
      cancelled
        ? { severity: 'info', kind: 'task.cancelled', subject: `task/${id}`, message: `${kind} of ${subject} was cancelled` }
        : { severity: 'error', kind: 'task.failed', subject: `task/${id}`, message: `${kind} of ${subject} failed: ${code}: ${message}` },
    );
  }

  private prune(): void {
    const finished = [...this.tasks.values()].filter((entry) => entry.info.state !== 'running');
    for (const entry of finished.slice(0, Math.max(0, finished.length - limits.tasksKeptMax))) this.tasks.delete(entry.info.id);
  }

  list(): TaskInfo[] {
    return [...this.tasks.values()].map((entry) => entry.info).reverse();
  }

  get(id: number): TaskInfo {
    return this.entry(id).info;
  }

  private entry(id: number): TaskEntry {
    const entry = this.tasks.get(id);
    if (!entry) throw new StrataError('STRATA_E_TASK_NOT_FOUND', `no task has id ${id}`, { task: id });
    return entry;
  }

  /** Asks a running task to stop; a finished task is left as it is. */
  cancel(id: number): TaskInfo {
    const entry = this.entry(id);
    if (entry.info.state === 'running') entry.controller.abort();
    return entry.info;
  }

  /** Resolves when the task has finished (tests, and the daemon's shutdown). */
  async wait(id: number): Promise<TaskInfo> {
    await this.entry(id).finished;
    return this.get(id);
  }

  /** Cancels every running task and waits for all of them. */
  async stopAll(): Promise<void> {
    const running = [...this.tasks.values()].filter((entry) => entry.info.state === 'running');
    for (const entry of running) entry.controller.abort();
    await Promise.all(running.map((entry) => entry.finished));
  }
}
