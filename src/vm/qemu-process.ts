/*
 * QEMU processes outlive the daemon: each is started detached (its own session, output to
 * the VM's qemu.log, not waited for), so a daemon that restarts or dies leaves its VMs
 * running. A VM's process is found again by its recorded pid, checked against
 * /proc/PID/cmdline (`guest=NAME`), so a pid reused by another program is never taken
 * for the VM. Killing is always by that checked pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { StrataError } from '../common/errors.js';

export interface StartedQemu {
  readonly pid: number;
  /** Set while this daemon is QEMU's parent (it reaps it); null for a reattached VM. */
  readonly child: ChildProcess | null;
}

export function spawnQemu(binary: string, args: readonly string[], logFile: string): StartedQemu {
  const log = fs.openSync(logFile, 'w', 0o600);
  try {
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', log, log] });
    if (child.pid === undefined) throw new StrataError('STRATA_E_HYPERVISOR', `cannot start ${binary} (Debian package qemu-system-x86)`);
    child.on('error', () => undefined);
    child.unref();
    return { pid: child.pid, child };
  } finally {
    fs.closeSync(log);
  }
}

/** True when `pid` is alive (not a zombie) and is QEMU running the VM `name`. */
export function isVmProcess(pid: number, name: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return false;
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((arg) => arg === `guest=${name},debug-threads=on`);
  } catch {
    return false;
  }
}

export function killVmProcess(pid: number, name: string): void {
  if (!isVmProcess(pid, name)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

/** Resolves once the VM's process is gone, polling (a reattached QEMU is not our child). */
export async function waitForExit(pid: number, name: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isVmProcess(pid, name)) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/** CPU seconds (user + system) the process has used, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after the command: state is [0]; utime and stime are the 14th and 15th of the whole line.
    const clockTicksPerSecond = 100;
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
  } catch {
    return 0;
  }
}

/** The last lines QEMU wrote to its log (for error messages). */
export function qemuLogTail(logFile: string): string {
  try {
    return fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '';
  }
}
