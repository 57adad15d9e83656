/*
 * `strata token|task|event ...`: tokens (admin or read-only; a secret is printed once),
 * long-running tasks, and the event log (with --follow reading the server-sent stream).
 */
import type { Command } from 'commander';
import { StrataError } from '../common/errors.js';
import type { TaskAnswer } from './api-client.js';
import { context, print, waitForTask } from './context.js';
import { isoTime, table } from './format.js';

interface TokenAnswer {
  name: string;
  role: string;
  createdMs: number;
}

interface EventAnswer {
  id: number;
  timeMs: number;
  severity: string;
  kind: string;
  subject: string;
  message: string;
}

function tokenCommands(program: Command): void {
  const token = program.command('token').description('API tokens (admin or read-only)');
  token
    .command('create <name>')
    .description('create a token and print its secret (shown only this once)')
    .option('--read-only', 'the token may read but not change anything')
    .action(async (name: string, options: { readOnly?: boolean }, command: Command) => {
      const ctx = context(command);
      const created = await ctx.client.post<{ token: TokenAnswer; secret: string }>('/api/v1/tokens', { name, readOnly: options.readOnly });
      print(ctx, created, () => created.secret);
    });
  token
    .command('list')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const list = await ctx.client.get<TokenAnswer[]>('/api/v1/tokens');
      print(ctx, list, () => table(list.map((t) => ({ name: t.name, role: t.role, created: isoTime(t.createdMs) })), ['name', 'role', 'created']));
    });
  token
    .command('revoke <name>')
    .action(async (name: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      await ctx.client.request('DELETE', `/api/v1/tokens/${encodeURIComponent(name)}`);
      print(ctx, { revoked: name }, () => `revoked token ${name}`);
    });
}

function taskId(text: string): number {
  const id = Number(text);
  if (!Number.isSafeInteger(id) || id <= 0) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${JSON.stringify(text)} is not a task id`);
  return id;
}

function taskCommands(program: Command): void {
  const task = program.command('task').description('long operations running in the daemon');
  task
    .command('list')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const list = await ctx.client.get<(TaskAnswer & { createdMs: number })[]>('/api/v1/tasks');
      print(ctx, list, () =>
        table(
          list.map((t) => ({ id: t.id, kind: t.kind, subject: t.subject, state: t.state, percent: `${t.percent}%`, started: isoTime(t.createdMs), error: t.error?.code ?? '' })),
          ['id', 'kind', 'subject', 'state', 'percent', 'started', 'error'],
        ),
      );
    });
  task
    .command('show <id>')
    .option('--wait', 'follow the task to its end with a progress bar')
    .action(async (id: string, options: { wait?: boolean }, command: Command) => {
      const ctx = context(command);
      let answer = await ctx.client.get<TaskAnswer>(`/api/v1/tasks/${taskId(id)}`);
      if (options.wait) answer = await waitForTask(ctx, answer, answer.kind);
      print(ctx, answer, () => `task ${answer.id} ${answer.kind} ${answer.subject}: ${answer.state} ${answer.percent}% ${answer.phase}${answer.error ? ` ${answer.error.code}: ${answer.error.message}` : ''}`);
    });
  task
    .command('cancel <id>')
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const answer = await ctx.client.post<TaskAnswer>(`/api/v1/tasks/${taskId(id)}/cancel`);
      print(ctx, answer, () => `cancelling task ${answer.id} (${answer.kind} ${answer.subject})`);
    });
}

function eventLine(event: EventAnswer): string {
  return `${isoTime(event.timeMs)} ${event.severity.padEnd(7)} ${event.kind} ${event.subject}: ${event.message}`;
}

async function followEvents(url: string, token: string | undefined, after: number, json: boolean): Promise<void> {
  const response = await fetch(new URL(`/api/v1/events/stream?after=${after}`, url), { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (!response.ok || !response.body) throw new StrataError('STRATA_E_IO', `the event stream answered HTTP ${response.status}`);
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const piece of response.body) {
    buffered += decoder.decode(piece as Uint8Array, { stream: true });
    let end: number;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const data = buffered
        .slice(0, end)
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6))
        .join('\n');
      buffered = buffered.slice(end + 2);
      if (data) console.log(json ? data : eventLine(JSON.parse(data) as EventAnswer));
    }
  }
}

function eventCommands(program: Command): void {
  program
    .command('event')
    .description('the event log: changes, failed tasks, alerts')
    .command('list')
    .option('--after <id>', 'only events after this id', '0')
    .option('--follow', 'keep printing new events as they happen')
    .action(async (options: { after: string; follow?: boolean }, command: Command) => {
      const ctx = context(command);
      const after = Number(options.after);
      if (options.follow) {
        const globals = command.optsWithGlobals() as { url: string; token?: string };
        return followEvents(globals.url, globals.token, after, ctx.json);
      }
      const list = await ctx.client.get<EventAnswer[]>(`/api/v1/events?after=${after}`);
      print(ctx, list, () => list.map(eventLine).join('\n'));
    });
}

export function adminCommands(program: Command): void {
  tokenCommands(program);
  taskCommands(program);
  eventCommands(program);
}
