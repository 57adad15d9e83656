/*
 * External tools for interop tests. A suite whose tool is missing is skipped with a
 * loud message naming the Debian package; with STRATA_REQUIRE_TOOLS=1 (set by .ci/run)
 * a missing tool fails the run instead, so CI always runs every suite.
 */
import { execFile, spawnSync } from 'node:child_process';

export function hasTool(command: string, debianPackage: string): boolean {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
  if (found) return true;
  const message = `${command} is missing (Debian package: ${debianPackage})`;
  if (process.env.STRATA_REQUIRE_TOOLS === '1') throw new Error(`${message}; STRATA_REQUIRE_TOOLS=1 forbids skipping`);
  console.warn(`SKIPPED: ${message}`);
  return false;
}

export interface ToolResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/**
 * Runs a tool to completion (killed by PID after timeoutMs). Never throws on a non-zero
 * exit: the caller asserts on the code.
 */
export function runTool(command: string, args: readonly string[], options: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ToolResult> {
  return new Promise((resolve) => {
    const child = execFile(
      command,
      args,
      { timeout: options.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, env: options.env ?? process.env },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ stdout: String(stdout), stderr: String(stderr), code });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** runTool, expecting success: throws with the tool's stderr otherwise. */
export async function runOk(command: string, args: readonly string[], options: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const result = await runTool(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}:\n${result.stderr}${result.stdout}`);
  return result.stdout;
}
