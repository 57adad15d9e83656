/*
 * KVM or TCG. /dev/kvm can exist and still not work (a software hypervisor underneath,
 * MSRs the host refuses), so KVM is chosen only when a short real boot succeeds under
 * it: a stub VM (no disks) runs its firmware under `-accel kvm -cpu host` until the BIOS
 * reports on its debug port that it found nothing to boot. Anything else — no
 * /dev/kvm, QEMU aborting, the firmware not getting there in time — means TCG, with the
 * reason kept and shown. Probed once per process; STRATA_ACCEL=kvm|tcg forces a choice.
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

let cached: Promise<AccelChoice> | null = null;

function kvmDeviceUsable(): string | null {
  try {
    fs.closeSync(fs.openSync('/dev/kvm', 'r+'));
    return null;
  } catch (error) {
    return `/dev/kvm cannot be opened: ${(error as NodeJS.ErrnoException).code ?? String(error)}`;
  }
}

function probeBoot(qemu: string, timeoutMs: number): Promise<string | null> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-kvm-probe-'));
  const log = path.join(dir, 'firmware.log');
  const args = ['-machine', 'q35', '-accel', 'kvm', '-cpu', 'host', '-m', '64', '-nodefaults', '-no-user-config', '-display', 'none',
    '-chardev', `file,id=dbg,path=${log}`, '-device', 'isa-debugcon,iobase=0x402,chardev=dbg'];
  return new Promise((resolve) => {
    const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    const finish = (reason: string | null) => {
      clearInterval(poll);
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
      resolve(reason);
    };
    const poll = setInterval(() => {
      if (fs.existsSync(log) && fs.readFileSync(log, 'latin1').includes(firmwareDoneMarker)) finish(null);
    }, 25);
    const timer = setTimeout(() => finish(`the KVM probe did not boot its firmware in ${timeoutMs} ms`), timeoutMs);
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
  const failure = await probeBoot(qemu, timeoutMs);
  return failure === null ? { accel: 'kvm', reason: 'a probe VM booted its firmware under KVM' } : { accel: 'tcg', reason: failure };
}

export function chooseAccel(options: { qemu?: string; timeoutMs?: number; logger?: Logger } = {}): Promise<AccelChoice> {
  if (process.env.STRATA_ACCEL === 'kvm' || process.env.STRATA_ACCEL === 'tcg') return probe(options.qemu ?? qemuBinary, 0);
  cached ??= probe(options.qemu ?? qemuBinary, options.timeoutMs ?? limits.kvmProbeTimeoutMs).then((choice) => {
    options.logger?.log('info', 'accelerator chosen', { ...choice });
    return choice;
  });
  return cached;
}
