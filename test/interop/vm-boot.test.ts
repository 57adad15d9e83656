/*
 * A real VM on a Strata export: qemu-system-x86_64 (TCG, the one accelerator that works
 * everywhere this runs) boots a Debian cloud kernel with a busybox initramfs; its only
 * disk is an NBD export of a Strata volume holding an ext4 file system the host made.
 * The guest mounts it, prints the file the host wrote, writes one back and shuts down;
 * the host then reads the guest's file through a snapshot export.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MiB } from '../../src/common/units.js';
import { runOk } from '../helpers/tools.js';
import { startNbd, type NbdFixture } from '../helpers/nbd-fixture.js';
import { buildInitramfs, findCloudKernel, guestInitPreamble, haveGuestTools } from '../helpers/guest-image.js';

const kernel = findCloudKernel();
const haveVmTools = haveGuestTools([['qemu-img', 'qemu-utils'], ['mkfs.ext4', 'e2fsprogs'], ['debugfs', 'e2fsprogs']]);

const initScript = `${guestInitPreamble}if mount -t ext4 /dev/vda /mnt; then
  echo "STRATA-GUEST mounted"
  echo "STRATA-GUEST host says: $(cat /mnt/host.txt)"
  echo "written by the guest on $(uname -r)" > /mnt/guest.txt
  sync
  umount /mnt && echo "STRATA-GUEST unmounted"
else
  echo "STRATA-GUEST mount failed"
fi
reboot -f
`;

describe.skipIf(!haveVmTools)('a VM whose disk is a Strata export', () => {
  let nbd: NbdFixture | null = null;

  afterEach(async () => {
    await nbd?.stop();
    nbd = null;
  });

  it('boots, mounts ext4, reads the host file, writes its own; the host reads it through a snapshot', async () => {
    nbd = await startNbd();
    const work = path.join(nbd.dir, 'vm');
    fs.mkdirSync(path.join(work, 'fs'), { recursive: true });
    fs.writeFileSync(path.join(work, 'fs', 'host.txt'), 'hello from the host\n');
    const image = path.join(work, 'disk.raw');
    await runOk('mkfs.ext4', ['-q', '-F', '-d', path.join(work, 'fs'), image, '32M']);
    await nbd.pool.createVolume('vmdisk', 32 * MiB);
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', image, nbd.uri('vmdisk')]);
    const initrd = path.join(work, 'initrd.cpio');
    buildInitramfs(work, kernel!.version, initScript, initrd);

    const blockdev = JSON.stringify({ driver: 'nbd', 'node-name': 'd0', server: { type: 'unix', path: nbd.socket }, export: 'vmdisk', discard: 'unmap' });
    const serial = await runOk('qemu-system-x86_64', [
      '-machine', 'q35', '-accel', 'tcg', '-m', '256', '-smp', '1',
      '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot', '-serial', 'stdio',
      '-kernel', kernel!.kernel, '-initrd', initrd, '-append', 'console=ttyS0 panic=-1 rdinit=/init',
      '-blockdev', blockdev, '-device', 'virtio-blk-pci,drive=d0',
    ], { timeoutMs: 180_000 });
    expect(serial).toContain('STRATA-GUEST mounted');
    expect(serial).toContain('STRATA-GUEST host says: hello from the host');
    expect(serial).toContain('STRATA-GUEST unmounted');

    await nbd.pool.createSnapshot('vmdisk', 'after-boot');
    const copy = path.join(work, 'after-boot.raw');
    await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', nbd.uri('vmdisk@after-boot'), copy]);
    const guestFile = await runOk('debugfs', ['-R', 'cat /guest.txt', copy]);
    expect(guestFile).toContain(`written by the guest on ${kernel!.version}`);
  });
});
