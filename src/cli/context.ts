/*
 * What every CLI command shares: the daemon client built from --url/--token (or
 * STRATA_URL/STRATA_TOKEN), output as a table or --json, size and VOLUME@SNAPSHOT
 * arguments, and waiting for a task with a progress bar (Ctrl-C cancels the task).
 */
import type { Command } from 'commander';
import { StrataError } from '../common/errors.js';
import { parseSize } from '../common/units.js';
import { ApiClient, taskError, type TaskAnswer } from './api-client.js';
import { progressBar } from './progress.js';

export const defaultUrl = 'http://127.0.0.1:7480';

interface GlobalOptions {
  url: string;
  token?: string;
  json?: boolean;
}

export interface CommandContext {
  readonly client: ApiClient;
  readonly json: boolean;
}

export function context(command: Command): CommandContext {
  const options = command.optsWithGlobals() as GlobalOptions;
  return { client: new ApiClient(options.url, options.token), json: options.json === true };
}

export function print(ctx: CommandContext, value: unknown, text: () => string): void {
  console.log(ctx.json ? JSON.stringify(value, null, 2) : text());
}

export function sizeArgument(text: string): number {
  const value = parseSize(text);
  if (value === undefined) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${JSON.stringify(text)} is not a size (try 10G, 512M, 4096)`);
  return value;
}

/** Splits VOLUME@SNAPSHOT; the snapshot part is required unless `optional`. */
export function snapshotRef(text: string, optional = false): { volume: string; snapshot: string | undefined } {
  const at = text.indexOf('@');
  if (at < 0) {
    if (optional) return { volume: text, snapshot: undefined };
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${JSON.stringify(text)} is not VOLUME@SNAPSHOT`);
  }
  return { volume: text.slice(0, at), snapshot: text.slice(at + 1) };
}

const pollMs = 200;

/** Waits for a task, showing its percent; throws the task's error if it did not succeed. */
export async function waitForTask(ctx: CommandContext, started: TaskAnswer, label: string): Promise<TaskAnswer> {
  const bar = progressBar(!ctx.json, label);
  const cancel = () => void ctx.client.post(`/api/v1/tasks/${started.id}/cancel`).catch(() => undefined);
  process.once('SIGINT', cancel);
  try {
    let task = started;
    while (task.state === 'running') {
      bar.update(task.percent, 100, task.phase);
      await new Promise((resolve) => setTimeout(resolve, pollMs));
      task = await ctx.client.get<TaskAnswer>(`/api/v1/tasks/${started.id}`);
    }
    if (task.state === 'succeeded') bar.update(100, 100, task.phase);
    bar.stop();
    if (task.state !== 'succeeded') throw taskError(task);
    return task;
  } finally {
    process.removeListener('SIGINT', cancel);
    bar.stop();
  }
}
