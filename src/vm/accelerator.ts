/*
 * KVM or TCG. /dev/kvm can exist and still not work (a software hypervisor underneath,
 * MSRs the host refuses, nested virtualisation that runs real-mode firmware but hangs a
 * guest kernel as it enters long mode), so KVM is chosen only when a short real boot
 * succeeds under it: a stub VM (no disks) under `-accel kvm -cpu host` boots the host's
 * own Linux kernel (the newest /boot/vmlinuz-*) until it prints its banner on the serial
 * port; with no kernel to try, until the BIOS reports on its debug port that it found
 * nothing to boot (a weaker test, said so in the reason). Anything else — no /dev/kvm,
 * QEMU aborting, the boot not getting there in time — means TCG, with the reason kept
 * and shown. Probed once per process; STRATA_ACCEL=kvm|tcg forces a choice.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/log.js';

export interface AccelChoice {
  readonly accel: 'kvm' | 'tcg';
  readonly reason: string;
}

export const qemuBinary = 'qemu-system-x86_64';

/** What the firmware prints on its debug port once it has run through to booting. */
const firmwareDoneMarker = 'No bootable device';
/** What a Linux kernel prints first on its console, already in long mode. */
const kernelBannerMarker = 'Linux version';

/** The newest kernel image in /boot that can be read, or null. */
export function probeKernel(bootDir = '/boot'): string | null {
  let names: string[];
  try {
    names = fs.readdirSync(bootDir).filter((name) => /^vmlinuz-/.test(name));
  } catch {
    return null;
  }
  names.sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
  for (const name of names) {
    const file = path.join(bootDir, name);
    try {
      fs.accessSync(file, fs.constants.R_OK);
      return file;
    } catch {
      // Not readable by this user: try the next.
    }
  }
  return null;
}

let cached: Promise<AccelChoice> | null = null;

function kvmDeviceUsable(): string | null {
  try {
    fs.closeSync(fs.openSync('/dev/kvm', 'r+'));
    return null;
  } catch (error) {
    return `/dev/kvm cannot be opened: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
}

function probeBoot(qemu: string, kernel: string | null, timeoutMs: number): Promise<string | null> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-kvm-probe-'));
  const log = path.join(dir, 'console.log');
  const args = ['-machine', 'q35', '-accel', 'kvm', '-cpu', 'host', '-m', '128', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'];
  if (kernel !== null) args.push('-kernel', kernel, '-append', 'console=ttyS0 earlyprintk=serial,ttyS0 panic=-1', '-serial', `file:${log}`);
  else args.push('-chardev', `file,id=dbg,path=${log}`, '-device', 'isa-debugcon,iobase=0x402,chardev=dbg');
  const marker = kernel !== null ? kernelBannerMarker : firmwareDoneMarker;
  const what = kernel !== null ? `boot ${path.basename(kernel)} to its banner` : 'boot its firmware';
  return new Promise((resolve) => {
    const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let done = false;
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const finish = (reason: string | null) => {
      if (done) return;
      done = true;
      clearInterval(poll);
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      resolve(reason);
    };
    const poll = setInterval(() => {
      if (fs.existsSync(log) && fs.readFileSync(log, 'latin1').includes(marker)) finish(null);
    }, 25);
    const timer = setTimeout(() => finish(`the KVM probe did not ${what} in ${timeoutMs} ms`), timeoutMs);
    child.once('error', (error) => finish(`cannot run ${qemu}: ${error.message}`));
    child.once('exit', (code, signal) => finish(`QEMU exited under KVM (${code ?? signal}): ${stderr.trim().split('\n').slice(-2).join(' ')}`));
  });
}

async function probe(qemu: string, timeoutMs: number): Promise<AccelChoice> {
  const forced = process.env.STRATA_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return { accel: forced, reason: 'forced by STRATA_ACCEL' };
  if (!fs.existsSync('/dev/kvm')) return { accel: 'tcg', reason: '/dev/kvm is missing' };
  const unusable = kvmDeviceUsable();
  if (unusable) return { accel: 'tcg', reason: unusable };
  const kernel = probeKernel();
  const failure = await probeBoot(qemu, kernel, timeoutMs);
  if (failure !== null) return { accel: 'tcg', reason: failure };
  return {
    accel: 'kvm',
    reason: kernel !== null ? `a probe VM booted ${path.basename(kernel)} under KVM` : 'a probe VM booted its firmware under KVM (no kernel in /boot to try further)',
  };
}

export function chooseAccel(options: { qemu?: string; timeoutMs?: number; logger?: Logger } = {}): Promise<AccelChoice> {
  if (process.env.STRATA_ACCEL === 'kvm' || process.env.STRATA_ACCEL === 'tcg') return probe(options.qemu ?? qemuBinary, 0);
  cached ??= probe(options.qemu ?? qemuBinary, options.timeoutMs ?? limits.kvmProbeTimeoutMs).then((choice) => {
    options.logger?.log('info', 'accelerator chosen', { ...choice });
    return choice;
  });
  return cached;
}
