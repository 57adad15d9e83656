/*
 * A virtual machine's definition: what an operator sets (name, vCPUs, memory, disks in
 * boot order, network interfaces, optional cloud-init seed and direct kernel boot). It
 * is checked here as a whole before anything is created, so a bad definition (a missing
 * volume, more memory than the host has, a duplicate name) fails with a clear error and
 * leaves nothing behind.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { StrataError } from '../common/errors.js';
import { validateName } from '../common/names.js';
import { MiB } from '../common/units.js';

/**
 * A NIC, with its MAC address: given by the operator or assigned by the VM manager when
 * the VM is created (a clone gets new ones), kept across definition changes.
 */
export type NicDefinition = (
  | { readonly mode: 'user' }
  | { readonly mode: 'bridge'; readonly bridge: string }
  | { readonly mode: 'tap'; readonly tap: string }
) & { readonly mac?: string };

export interface CloudInitDefinition {
  readonly userData: string;
  readonly metaData?: string;
  readonly networkConfig?: string;
  readonly sshKeys?: readonly string[];
}

export interface DirectBoot {
  readonly kernel: string;
  readonly initrd?: string;
  readonly append?: string;
}

export interface VmDefinition {
  readonly name: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  /** Disks in boot order: the first boots. */
  readonly disks: readonly { readonly volume: string }[];
  readonly nics: readonly NicDefinition[];
  readonly cloudInit: CloudInitDefinition | null;
  readonly boot: DirectBoot | null;
}

/** What a definition update may change: everything but the name. */
export type VmDefinitionChanges = Partial<Omit<VmDefinition, 'name'>>;

export const vmMemoryMinBytes = 16 * MiB;
export const vmCpusMax = 256;
const interfaceName = /^[A-Za-z0-9_.-]{1,15}$/;
const macAddress = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function invalid(message: string, details: Record<string, unknown> = {}): StrataError {
  return new StrataError('STRATA_E_INVALID_ARGUMENT', message, details);
}

function checkFile(what: string, file: string): void {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw invalid(`the ${what} ${file} is not a file on the daemon host`, { path: file });
}

/** A unicast MAC address in lower case, colon-separated: what QEMU is given. */
function checkMac(mac: string): void {
  if (!macAddress.test(mac)) throw invalid(`${JSON.stringify(mac)} is not a MAC address (six lower-case hex pairs joined by colons)`, { mac });
  if (parseInt(mac.slice(0, 2), 16) & 1) throw invalid(`${mac} is a multicast address; a NIC needs a unicast one`, { mac });
  if (mac === '00:00:00:00:00:00') throw invalid('00:00:00:00:00:00 is not a NIC address', { mac });
}

/** A random address under QEMU's 52:54:00 prefix (locally administered, unicast), not in `taken`. */
export function newMac(taken: ReadonlySet<string>): string {
  for (;;) {
    const tail = [...randomBytes(3)].map((byte) => byte.toString(16).padStart(2, '0'));
    const mac = `52:54:00:${tail.join(':')}`;
    if (!taken.has(mac)) return mac;
  }
}

/**
 * Checks a definition on its own (name rules, ranges, files, host memory); the caller
 * checks what needs the rest of the system (volumes exist and are free, name unused).
 */
export function checkDefinition(definition: VmDefinition): VmDefinition {
  validateName('vm', definition.name);
  if (!Number.isInteger(definition.cpus) || definition.cpus < 1 || definition.cpus > vmCpusMax) {
    throw invalid(`a VM has from 1 to ${vmCpusMax} vCPUs, not ${definition.cpus}`);
  }
  if (!Number.isSafeInteger(definition.memoryBytes) || definition.memoryBytes < vmMemoryMinBytes || definition.memoryBytes % MiB !== 0) {
    throw invalid(`VM memory is a whole number of MiB, at least ${vmMemoryMinBytes / MiB} MiB`, { memoryBytes: definition.memoryBytes });
  }
  if (definition.memoryBytes > os.totalmem()) {
    throw invalid(`VM memory ${definition.memoryBytes / MiB} MiB is more than the host has (${Math.floor(os.totalmem() / MiB)} MiB)`, {
      memoryBytes: definition.memoryBytes,
      hostBytes: os.totalmem(),
    });
  }
  if (definition.disks.length === 0 && !definition.boot) throw invalid('a VM needs a disk or a kernel to boot');
  const volumes = definition.disks.map((disk) => validateName('volume', disk.volume));
  if (new Set(volumes).size !== volumes.length) throw invalid('a volume can be only one disk of a VM');
  for (const nic of definition.nics) {
    if (nic.mode === 'bridge' && !interfaceName.test(nic.bridge)) throw invalid(`${JSON.stringify(nic.bridge)} is not a bridge name`);
    if (nic.mode === 'tap' && !interfaceName.test(nic.tap)) throw invalid(`${JSON.stringify(nic.tap)} is not a tap interface name`);
    if (nic.mac !== undefined) checkMac(nic.mac);
  }
  const macs = definition.nics.flatMap((nic) => (nic.mac === undefined ? [] : [nic.mac]));
  if (new Set(macs).size !== macs.length) throw invalid('two NICs of a VM cannot share a MAC address');
  if (definition.boot) {
    checkFile('kernel', definition.boot.kernel);
    if (definition.boot.initrd) checkFile('initrd', definition.boot.initrd);
  }
  return definition;
}
