/*
 * A tiny Linux guest for VM tests, built from Debian packages on the host: the cloud
 * kernel (linux-image-cloud-amd64) and an initramfs holding busybox (busybox-static),
 * the virtio modules the kernel needs for virtio-blk disks, virtio-net NICs and the
 * guest-agent channel (with their dependencies, from modules.dep), host binaries a test
 * asks for (with their libraries), and an /init script given by the test. The cpio
 * archive is made by busybox itself.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasTool } from './tools.js';

/**
 * The start of every test guest's /init: busybox applets, /proc, /sys and /dev, the
 * virtio modules, then a wait (up to 10 s) for the first disk.
 */
export const guestInitPreamble = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules.order); do insmod /lib/modules/$module; done
tries=0
while [ ! -b /dev/vda ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
`;

/**
 * True when QEMU, the cloud kernel, static busybox and the extra tools are here; says
 * loudly what is missing otherwise (and fails under STRATA_REQUIRE_TOOLS=1).
 */
export function haveGuestTools(extra: readonly (readonly [command: string, debianPackage: string])[] = []): boolean {
  const tools = [['qemu-system-x86_64', 'qemu-system-x86'] as const, ...extra].every(([command, debianPackage]) => hasTool(command, debianPackage));
  const ready =
    tools &&
    (findCloudKernel() !== null || (console.warn('SKIPPED: no cloud kernel in /boot (Debian package: linux-image-cloud-amd64)'), false)) &&
    (haveStaticBusybox() || (console.warn('SKIPPED: /bin/busybox is not static (Debian package: busybox-static)'), false));
  if (!ready && process.env.STRATA_REQUIRE_TOOLS === '1') throw new Error('the VM tests cannot run: see the SKIPPED lines above');
  return ready;
}

export interface GuestKernel {
  readonly kernel: string;
  readonly version: string;
}

/** The newest cloud kernel in /boot, or null. */
export function findCloudKernel(): GuestKernel | null {
  if (!fs.existsSync('/boot')) return null;
  const kernels = fs.readdirSync('/boot').filter((name) => /^vmlinuz-.*-cloud-amd64$/.test(name)).sort();
  const newest = kernels.at(-1);
  if (!newest) return null;
  const version = newest.slice('vmlinuz-'.length);
  if (!fs.existsSync(path.join('/lib/modules', version, 'modules.dep'))) return null;
  return { kernel: path.join('/boot', newest), version };
}

/** True when /bin/busybox is statically linked (busybox-static, not busybox). */
export function haveStaticBusybox(): boolean {
  if (!fs.existsSync('/bin/busybox')) return false;
  const ldd = spawnSync('ldd', ['/bin/busybox'], { encoding: 'utf8' });
  return `${ldd.stdout}${ldd.stderr}`.includes('not a dynamic executable');
}

/** Modules (paths relative to the modules dir) in load order, dependencies first. */
function modulesInOrder(version: string, wanted: readonly string[]): string[] {
  const dep = new Map<string, string[]>();
  for (const line of fs.readFileSync(path.join('/lib/modules', version, 'modules.dep'), 'utf8').split('\n')) {
    const [module, deps] = line.split(':');
    if (module) dep.set(module, deps.trim() === '' ? [] : deps.trim().split(/\s+/));
  }
  const order: string[] = [];
  const visit = (module: string) => {
    if (order.includes(module)) return;
    for (const each of dep.get(module) ?? []) visit(each);
    order.push(module);
  };
  for (const name of wanted) {
    const module = [...dep.keys()].find((key) => path.basename(key) === `${name}.ko`);
    if (!module) throw new Error(`kernel ${version} has no module ${name}`);
    visit(module);
  }
  return order;
}

/** Copies a dynamically linked host binary and the libraries ldd names into the tree at `root`, at their host paths. */
function copyWithLibraries(root: string, binary: string): void {
  const ldd = spawnSync('ldd', [binary], { encoding: 'utf8' });
  if (ldd.status !== 0) throw new Error(`ldd ${binary} failed: ${ldd.stderr}`);
  const libraries = [...ldd.stdout.matchAll(/(\/\S+) \(0x/g)].map((match) => match[1]);
  for (const file of [binary, ...libraries]) {
    const target = path.join(root, file);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.copyFileSync(fs.realpathSync(file), target);
    fs.chmodSync(target, 0o755);
  }
}

/**
 * Builds an initramfs at `output` with busybox, the virtio-blk, virtio-net and
 * virtio-serial modules, `initScript`, and host binaries (with their libraries) as given.
 */
export function buildInitramfs(work: string, version: string, initScript: string, output: string, binaries: readonly string[] = []): void {
  const root = path.join(work, 'initramfs-root');
  for (const dir of ['bin', 'proc', 'sys', 'dev', 'mnt', 'tmp', 'run', 'var/run', 'lib/modules']) fs.mkdirSync(path.join(root, dir), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(root, 'bin', 'busybox'));
  fs.chmodSync(path.join(root, 'bin', 'busybox'), 0o755);
  for (const binary of binaries) copyWithLibraries(root, binary);
  const order = modulesInOrder(version, ['virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console']);
  for (const module of order) fs.copyFileSync(path.join('/lib/modules', version, module), path.join(root, 'lib/modules', path.basename(module)));
  fs.writeFileSync(path.join(root, 'modules.order'), `${order.map((module) => path.basename(module)).join('\n')}\n`);
  fs.writeFileSync(path.join(root, 'init'), initScript, { mode: 0o755 });
  const files = spawnSync('find', ['.', '-mindepth', '1'], { cwd: root, encoding: 'utf8' }).stdout;
  const cpio = spawnSync('/bin/busybox', ['cpio', '-o', '-H', 'newc'], { cwd: root, input: files, maxBuffer: 256 * 1024 * 1024 });
  if (cpio.status !== 0) throw new Error(`busybox cpio failed: ${cpio.stderr.toString()}`);
  fs.writeFileSync(output, cpio.stdout);
}
