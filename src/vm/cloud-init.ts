/*
 * The NoCloud seed of a VM with cloud-init: a folder with user-data, meta-data and
 * (optionally) network-config that QEMU shows the guest as a read-only FAT disk labelled
 * "cidata". When the operator gives no meta-data, it is written with an instance-id
 * unique to this VM (a clone gets its own, so cloud-init runs again in it), the VM's
 * name as hostname, and the SSH keys as public-keys.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CloudInitDefinition } from './definition.js';

function defaultMetaData(vm: string, instanceId: string, sshKeys: readonly string[]): string {
  const keys = sshKeys.length === 0 ? '' : `public-keys:\n${sshKeys.map((key) => `  - ${JSON.stringify(key)}`).join('\n')}\n`;
  return `instance-id: ${instanceId}\nlocal-hostname: ${vm}\n${keys}`;
}

/** Writes the seed folder afresh (the definition is the truth). */
export function writeCloudInitSeed(dir: string, vm: string, instanceId: string, seed: CloudInitDefinition): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'user-data'), seed.userData);
  fs.writeFileSync(path.join(dir, 'meta-data'), seed.metaData ?? defaultMetaData(vm, instanceId, seed.sshKeys ?? []));
  if (seed.networkConfig !== undefined) fs.writeFileSync(path.join(dir, 'network-config'), seed.networkConfig);
}
