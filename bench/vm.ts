/*
 * VMs: boot-to-marker time of a tiny guest (a Debian cloud kernel and a busybox
 * initramfs that mounts its ext4 disk, reads every file on it and prints a marker) with
 * its disk on a Strata export, against the same guest with its disk on qemu-nbd over
 * the same raw image, in the same run. Both boots go through the same VM manager and
 * QEMU command line; only the NBD server differs. Then clone-and-boot: ten VMs cloned
 * from one template and booted at once, with the wall time and the stored bytes the
 * clones added. Every process is stopped by its PID, even when a run fails.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../src/common/log.js';
import { startDaemon } from '../src/daemon/index.js';
import { chooseAccel, VmManager, type VmDefinition } from '../src/vm/index.js';
import { buildInitramfs, findCloudKernel, guestInitPreamble, haveStaticBusybox } from '../test/helpers/guest-image.js';
import { fmt, have, median, MiB, printTable, sampleData, withScratch } from './support.js';

const boots = Number(process.env.STRATA_BENCH_VM_BOOTS ?? 3);
const clones = Number(process.env.STRATA_BENCH_VM_CLONES ?? 10);
const marker = 'STRATA-BENCH-BOOTED';

const initScript = `${guestInitPreamble}mount -t ext4 -o ro /dev/vda /mnt
cat /mnt/files/* > /dev/null
echo "${marker} $(ls /mnt/files | wc -l)"
while true; do sleep 1; done
`;

async function bootOnce(manager: VmManager, name: string): Promise<number> {
  const start = performance.now();
  await manager.start(name);
  await manager.console(name).waitFor(marker, AbortSignal.timeout(300_000));
  const ms = performance.now() - start;
  await manager.stop(name, { force: true });
  return ms;
}

function buildDiskImage(dir: string): string {
  const files = path.join(dir, 'root', 'files');
  fs.mkdirSync(files, { recursive: true });
  // 32 files of 1 MiB of executable bytes: what a boot reads from a root file system.
  for (let index = 0; index < 32; index += 1) fs.writeFileSync(path.join(files, `f${index}`), sampleData(index * MiB, MiB));
  const image = path.join(dir, 'root.raw');
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', path.join(dir, 'root'), image, '64M']);
  return image;
}

function waitForFile(file: string, child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (fs.existsSync(file)) {
        clearInterval(poll);
        resolve();
      } else if (child.exitCode !== null) {
        clearInterval(poll);
        reject(new Error(`qemu-nbd exited with ${child.exitCode}`));
      }
    }, 20);
  });
}

export async function benchVm(): Promise<void> {
  const kernel = findCloudKernel();
  if (!kernel || !haveStaticBusybox() || !have('qemu-system-x86_64') || !have('qemu-nbd') || !have('mkfs.ext4')) {
    console.log('\n## VMs\n\n(skipped: needs qemu-system-x86 and qemu-utils, linux-image-cloud-amd64, busybox-static, e2fsprogs)');
    return;
  }
  await withScratch('vm', async (dir) => {
    const initrd = path.join(dir, 'initrd.cpio');
    buildInitramfs(dir, kernel.version, initScript, initrd);
    const image = buildDiskImage(dir);
    const daemon = await startDaemon({ dataDir: path.join(dir, 'data'), nbd: null, http: null, nbdSocket: path.join(dir, 'public.sock'), tls: null, allow: [], logger: silentLogger, compactIntervalMs: 0 });
    let qemuNbd: ChildProcess | null = null;
    let peerManager: VmManager | null = null;
    try {
      const pool = daemon.pools.get('default');
      await pool.createVolume('root', fs.statSync(image).size);
      await pool.openVolume('root').write(0, fs.readFileSync(image), { fua: true });
      const definition = (name: string, volume: string): VmDefinition => ({
        name,
        cpus: 1,
        memoryBytes: 128 * MiB,
        disks: [{ volume }],
        nics: [],
        cloudInit: null,
        boot: { kernel: kernel.kernel, initrd, append: 'console=ttyS0 panic=-1 rdinit=/init quiet' },
      });
      await daemon.vms.create(definition('strata', 'root'));
      const peerSocket = path.join(dir, 'qemu-nbd.sock');
      qemuNbd = spawn('qemu-nbd', ['-t', '-f', 'raw', '-x', 'root', '-k', peerSocket, '--shared=8', '--discard=unmap', '--cache=writeback', image], { stdio: 'ignore' });
      await waitForFile(peerSocket, qemuNbd);
      peerManager = await VmManager.open({ dataDir: path.join(dir, 'peer'), pools: daemon.pools, nbdSocket: peerSocket, events: { record: () => undefined }, logger: silentLogger });
      await peerManager.create(definition('qemu-nbd', 'root'));
      const strataMs: number[] = [];
      const peerMs: number[] = [];
      // The accelerator probe (a few seconds where KVM does not work) runs once, untimed.
      console.log(`accelerator: ${JSON.stringify(await chooseAccel())}`);
      for (let run = 0; run < boots; run += 1) {
        // Alternate which goes first, so neither always follows the other's boot.
        if (run % 2 === 0) {
          strataMs.push(await bootOnce(daemon.vms, 'strata'));
          peerMs.push(await bootOnce(peerManager, 'qemu-nbd'));
        } else {
          peerMs.push(await bootOnce(peerManager, 'qemu-nbd'));
          strataMs.push(await bootOnce(daemon.vms, 'strata'));
        }
      }
      printTable(`VMs: boot to marker (median of ${boots}, TCG unless KVM works)`, [
        { disk: 'strata export', 'boot ms': fmt.ms(median(strataMs)), 'vs qemu-nbd raw': fmt.ratio(median(strataMs) / median(peerMs)) },
        { disk: 'qemu-nbd raw', 'boot ms': fmt.ms(median(peerMs)), 'vs qemu-nbd raw': '1.00x' },
      ]);
      await cloneAndBoot(daemon.vms, pool);
    } finally {
      for (const vm of daemon.vms.list()) if (vm.state !== 'stopped') await daemon.vms.stop(vm.name, { force: true }).catch(() => undefined);
      await peerManager?.close();
      if (qemuNbd?.pid !== undefined && qemuNbd.exitCode === null) process.kill(qemuNbd.pid, 'SIGKILL');
      await daemon.stop();
    }
  });
}

async function cloneAndBoot(vms: VmManager, pool: { flush(): Promise<void>; stats(): Promise<{ storedBytes: number }> }): Promise<void> {
  await pool.flush();
  const before = (await pool.stats()).storedBytes;
  const names = Array.from({ length: clones }, (_, index) => `clone${index}`);
  const cloneStart = performance.now();
  for (const name of names) await vms.clone('strata', undefined, name);
  const cloneMs = performance.now() - cloneStart;
  const bootStart = performance.now();
  await Promise.all(names.map((name) => vms.start(name)));
  await Promise.all(names.map((name) => vms.console(name).waitFor(marker, AbortSignal.timeout(600_000))));
  const bootMs = performance.now() - bootStart;
  await Promise.all(names.map((name) => vms.stop(name, { force: true })));
  await pool.flush();
  const after = (await pool.stats()).storedBytes;
  printTable(`VMs: clone and boot ${clones} from one template`, [
    { step: `clone ${clones} VMs`, 'wall ms': fmt.ms(cloneMs), 'stored bytes added': '-' },
    { step: `boot ${clones} at once to marker`, 'wall ms': fmt.ms(bootMs), 'stored bytes added': `${fmt.mib(after - before)} MiB` },
  ]);
}
