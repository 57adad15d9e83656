/*
 * Running a TypeScript child process (through tsx) and SIGKILLing it at a chosen moment.
 *
 * The child's stdout is read as lines; the caller decides from the lines seen so far
 * (or after a delay once the child printed "ready") when to kill it. Children are killed
 * by PID only, in a finally, and `killLiveChildren` (for afterEach) kills any a failed
 * or timed-out test left behind. The result resolves on 'close', i.e. once the process
 * has been reaped and its output fully read, so its pid is really gone (the pool lock
 * tells live owners from dead ones by pid).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const live = new Set<ChildProcess>();

export interface KillPlan {
  /** Kill as soon as this returns true for the lines read so far. */
  readonly when?: (lines: readonly string[]) => boolean;
  /** Kill this long after the child printed "ready". */
  readonly afterReadyMs?: number;
  /** Kill anyway after this long (a hung child); reported as timedOut. */
  readonly timeoutMs: number;
}

export interface ChildOutcome {
  readonly lines: string[];
  readonly stderr: string;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** We sent SIGKILL (by plan or timeout). */
  readonly killed: boolean;
  readonly timedOut: boolean;
}

function killChild(child: ChildProcess): boolean {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false;
  try {
    process.kill(child.pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/** Kills (by PID) every child this module started that is still running. */
export function killLiveChildren(): void {
  for (const child of live) killChild(child);
}

/** Runs `node --import tsx <script> ...args` from the repository root and kills it per `plan`. */
export async function runTsChild(script: string, args: readonly string[], plan: KillPlan): Promise<ChildOutcome> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.resolve(repoRoot, script), ...args], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  let killed = false;
  let timedOut = false;
  const timers: NodeJS.Timeout[] = [];
  const kill = () => {
    if (killChild(child)) killed = true;
  };
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      lines.push(line);
      if (line === 'ready' && plan.afterReadyMs !== undefined) timers.push(setTimeout(kill, plan.afterReadyMs));
    }
    if (plan.when?.(lines)) kill();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    stderr += chunk;
  });
  timers.push(
    setTimeout(() => {
      timedOut = true;
      kill();
    }, plan.timeoutMs),
  );
  try {
    const { code, signal } = await closed;
    if (partial) lines.push(partial);
    return { lines, stderr, exitCode: code, signal, killed, timedOut };
  } finally {
    for (const timer of timers) clearTimeout(timer);
    killChild(child);
    live.delete(child);
  }
}
