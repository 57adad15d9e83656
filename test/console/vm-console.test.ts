/*
 * The web console's VM pages in a real browser: Debian's chromium driven by
 * playwright-core against a real daemon started in-process, running a real QEMU guest
 * (the Debian cloud kernel and a busybox initramfs built here, whose init prints a
 * marker on ttyS0 and then runs a shell there). One operator's session: a VM defined
 * through the form (two volumes put in boot order, kernel and initrd paths typed in),
 * started from the list with its accelerator shown, its boot marker seen in the
 * xterm.js serial console, a command typed into that console and its answer seen, the
 * noVNC display connected, a pause and resume, a snapshot taken and listed with its
 * method, the VM force-stopped (the screens say so), its vCPUs, memory and NICs
 * changed (and bad values and a disk change under VM snapshots refused), an offline snapshot, a restore that destroys the
 * newer one after a confirmation, a clone to a new VM seen in the list and deleted with
 * its volumes, the error for a duplicate VM name, a restart that the console follows,
 * and a read-only token refused the console (one alert, no retry loop) and a change. Each step leaves a screenshot
 * test-artifacts/console/vm-NN-STEP.png (a failed step one named -FAILED). Waits are
 * playwright's, for elements, text and states the page shows, never pixels or sleeps.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { consoleArtifacts, openBrowserPage, pageSteps } from '../helpers/browser-page.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/log.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/index.js';
import { buildInitramfs, findCloudKernel, guestInitPreamble, haveGuestTools } from '../helpers/guest-image.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-pool.js';
import { hasTool } from '../helpers/tools.js';

const MiB = 1024 * 1024;
const artifacts = consoleArtifacts;
const haveChromium = hasTool('chromium', 'chromium');
// Says loudly what is missing (QEMU, the cloud kernel, static busybox).
const haveGuest = haveChromium && haveGuestTools();
const kernel = findCloudKernel();
/** A TCG boot of the cloud kernel on a busy host can take a while. */
const bootTimeoutMs = 150_000;

// The marker, then a shell on the serial port for the keystrokes the test types (late
// kernel messages are silenced so they cannot split the shell's lines).
const initScript = `${guestInitPreamble}echo 1 > /proc/sys/kernel/printk
echo "STRATA-BOOT"
setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' &
echo "STRATA-CONSOLE-READY"
while true; do sleep 1; done
`;

describe.runIf(haveGuest)('web console VM pages in chromium, with a real QEMU guest', () => {
  let dir = '';
  let initrd = '';
  let daemon: RunningDaemon | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let base = '';
  let admin = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    fs.mkdirSync(artifacts, { recursive: true });
    for (const file of fs.readdirSync(artifacts)) if (file.startsWith('vm-')) fs.rmSync(path.join(artifacts, file), { force: true });
    dir = makeTempDir();
    initrd = path.join(dir, 'initrd.cpio');
    buildInitramfs(dir, kernel!.version, initScript, initrd);
    daemon = await startDaemon({ dataDir: path.join(dir, 'data'), nbd: null, http: { host: '127.0.0.1', port: 0 }, nbdSocket: null, tls: null, allow: [], logger: silentLogger, compactIntervalMs: 0 });
    base = `http://127.0.0.1:${daemon.httpAddress!.port}`;
    admin = fs.readFileSync(path.join(dir, 'data', 'admin.token'), 'utf8').trim();
    ({ browser, page } = await openBrowserPage({ width: 1366, height: 1000 }, pageErrors));
  });

  afterAll(async () => {
    try {
      if (daemon) {
        for (const vm of daemon.vms.list()) if (vm.state !== 'stopped') await daemon.vms.stop(vm.name, { force: true }).catch(() => undefined);
      }
    } finally {
      try {
        await daemon?.stop();
      } finally {
        try {
          await browser?.close();
        } finally {
          if (dir) removeTempDir(dir);
        }
      }
    }
  });

  const { step, byTest, seeAlert, seeNotice, confirmDialog } = pageSteps(() => page, 'vm-');
  const vmRow = (name: string) => byTest('vm-row', `[data-vm="${name}"]`);
  const snapshotRow = (name: string) => byTest('vm-snapshot', `[data-snapshot="${name}"]`);
  const terminalText = (text: string) => byTest('serial-terminal').locator('.xterm-rows').filter({ hasText: text });

  async function api(method: string, route: string, body?: unknown): Promise<Response> {
    return fetch(`${base}${route}`, { method, headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
  }

  it('defines, starts and uses a VM: serial console, VNC, snapshots, stop, restore, clone, errors', { timeout: 600_000 }, async () => {
    await step('signed-in', async () => {
      await page.goto(base);
      await byTest('login-token').fill(admin);
      await byTest('login-submit').click();
      await byTest('pool-card').first().waitFor();
      for (const name of ['guest0', 'data0']) expect((await api('POST', '/api/v1/volumes', { name, sizeBytes: 8 * MiB })).status).toBe(201);
      await byTest('nav-vms').click();
      await byTest('no-vms').waitFor();
    });

    await step('created-through-the-form', async () => {
      await byTest('vm-create-name').fill('tiny');
      await byTest('vm-create-cpus').fill('1');
      await byTest('vm-create-memory').fill('128M');
      await byTest('vm-create-network').selectOption('none');
      // Added in the wrong order, then put right: guest0 boots, data0 is the second disk.
      await byTest('vm-disk-select').selectOption('data0');
      await byTest('vm-disk-add').click();
      await byTest('vm-disk-select').selectOption('guest0');
      await byTest('vm-disk-add').click();
      await byTest('vm-disk', '[data-volume="guest0"]').locator('[data-test="vm-disk-up"]').click();
      expect(await byTest('vm-disk').evaluateAll((items) => items.map((item) => item.getAttribute('data-volume')))).toEqual(['guest0', 'data0']);
      await byTest('vm-create-kernel').fill(kernel!.kernel);
      await byTest('vm-create-initrd').fill(initrd);
      await byTest('vm-create-append').fill('console=ttyS0 panic=-1 rdinit=/init');
      await byTest('vm-create-submit').click();
      await seeNotice('VM tiny created');
      await vmRow('tiny').locator('[data-test="vm-state"][data-state="stopped"]').waitFor();
      expect(Number(await vmRow('tiny').locator('[data-test="vm-cpus"]').getAttribute('data-value'))).toBe(1);
      expect(Number(await vmRow('tiny').locator('[data-test="vm-memory"]').getAttribute('data-value'))).toBe(128 * MiB);
      expect(await vmRow('tiny').locator('[data-test="vm-disks"]').textContent()).toBe('guest0, data0');
      // The form is empty again, and the volumes, now disks of tiny, are no longer offered.
      expect(await byTest('vm-create-name').inputValue()).toBe('');
      await byTest('vm-no-disks').waitFor();
      expect(await byTest('vm-disk-select').locator('option[value="guest0"], option[value="data0"]').count()).toBe(0);
      const definition = daemon!.vms.get('tiny').definition;
      expect(definition.disks).toEqual([{ volume: 'guest0' }, { volume: 'data0' }]);
      expect(definition.boot).toEqual({ kernel: kernel!.kernel, initrd, append: 'console=ttyS0 panic=-1 rdinit=/init' });
      expect(definition.nics).toEqual([]);
      expect(definition.cloudInit).toBeNull();
    });

    await step('started-from-the-list', async () => {
      await vmRow('tiny').locator('[data-test="vm-start"]').click();
      await vmRow('tiny').locator('[data-test="vm-state"][data-state="running"]').waitFor({ timeout: 60_000 });
      const accel = vmRow('tiny').locator('[data-test="vm-accel"]');
      expect(['kvm', 'tcg']).toContain(await accel.getAttribute('data-value'));
      expect(await accel.getAttribute('title')).toBe(daemon!.vms.get('tiny').accel!.reason);
      expect(await vmRow('tiny').locator('[data-test="vm-stop"]').count()).toBe(1);
      expect(await vmRow('tiny').locator('[data-test="vm-delete"]').count()).toBe(0);
    });

    await step('serial-console-shows-the-boot', async () => {
      await vmRow('tiny').getByRole('link', { name: 'tiny' }).click();
      await byTest('vm-tab-console', '[aria-selected="true"]').waitFor();
      await byTest('serial-status', '[data-state="connected"]').waitFor();
      await terminalText('STRATA-CONSOLE-READY').waitFor({ timeout: bootTimeoutMs });
      expect(page.url()).toBe(`${base}/#/vms/tiny/console`);
    });

    await step('keystrokes-reach-the-guest', async () => {
      await byTest('serial-terminal').click();
      await page.keyboard.type('echo STRATA-TYPED-$((6*7))');
      await page.keyboard.press('Enter');
      // Only the shell's answer has 42: the echoed command line has $((6*7)).
      await terminalText('STRATA-TYPED-42').waitFor();
      expect(daemon!.vms.console('tiny').recent().toString('utf8')).toContain('STRATA-TYPED-42');
    });

    await step('vnc-connected', async () => {
      await byTest('vm-tab-vnc').click();
      await byTest('vnc-status', '[data-state="connected"]').waitFor();
      await byTest('vnc-screen').locator('canvas').waitFor();
      expect(await byTest('vnc-ctrl-alt-del').isEnabled()).toBe(true);
      expect(page.url()).toBe(`${base}/#/vms/tiny/vnc`);
    });

    await step('paused-and-resumed', async () => {
      await byTest('vm-buttons').locator('[data-test="vm-pause"]').click();
      await byTest('vm-detail').locator('[data-test="vm-state"][data-state="paused"]').waitFor();
      expect(daemon!.vms.get('tiny').state).toBe('paused');
      await byTest('vm-buttons').locator('[data-test="vm-resume"]').click();
      await byTest('vm-detail').locator('[data-test="vm-state"][data-state="running"]').waitFor();
      expect(await byTest('vnc-status').getAttribute('data-state')).toBe('connected');
    });

    await step('snapshot-taken-while-running', async () => {
      await byTest('vm-tab-snapshots').click();
      await byTest('no-vm-snapshots').waitFor();
      await byTest('vm-snapshot-name').fill('snap1');
      await byTest('vm-snapshot-create').click();
      await seeNotice('Snapshot tiny@snap1 taken', 60_000);
      // No guest agent in this guest: it was paused for the instant.
      expect(await snapshotRow('snap1').locator('[data-test="vm-snapshot-method"]').getAttribute('data-value')).toBe('pause');
      expect(await snapshotRow('snap1').textContent()).toContain('guest0@snap1, data0@snap1');
      // Restoring a running VM is not offered.
      expect(await snapshotRow('snap1').locator('[data-test="vm-snapshot-restore"]').isDisabled()).toBe(true);
      await byTest('vm-detail').locator('[data-test="vm-state"][data-state="running"]').waitFor();
    });

    await step('force-stopped', async () => {
      await byTest('vm-buttons').locator('[data-test="vm-stop"]').click();
      await confirmDialog({}, ['force']);
      await seeNotice('VM tiny stopped', 60_000);
      await byTest('vm-detail').locator('[data-test="vm-state"][data-state="stopped"]').waitFor();
      expect(daemon!.vms.get('tiny').state).toBe('stopped');
      await byTest('vm-tab-vnc').click();
      await byTest('vnc-status', '[data-state="stopped"]').filter({ hasText: 'VM tiny is stopped' }).waitFor();
      await byTest('vm-tab-console').click();
      await byTest('serial-status', '[data-state="stopped"]').waitFor();
      // The last run's output stays in the terminal.
      await terminalText('STRATA-TYPED-42').waitFor();
    });

    await step('changed-while-stopped', async () => {
      await byTest('vm-buttons').locator('[data-test="vm-change"]').click();
      const append = `${daemon!.vms.get('tiny').definition.boot!.append} quiet`;
      await confirmDialog({ cpus: '2', memory: '192M', nics: 'user', cmdline: append });
      await seeNotice('VM tiny changed: 2 vCPUs, 192 MiB');
      await byTest('vm-detail').locator('[data-test="vm-cpus"][data-value="2"]').waitFor();
      expect(daemon!.vms.get('tiny').definition).toMatchObject({ cpus: 2, memoryBytes: 192 * MiB, boot: { append } });
      // The new NIC got an address of its own, shown on the page.
      const mac = daemon!.vms.get('tiny').definition.nics[0]?.mac;
      expect(mac).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
      await byTest('vm-detail').getByText(`user-mode NAT (${mac})`).waitFor();
      await byTest('vm-buttons').locator('[data-test="vm-change"]').click();
      await confirmDialog({ nics: 'user wifi' });
      expect(await seeAlert('"wifi" is not user, bridge:NAME or tap:NAME')).toContain('Changing VM tiny failed');
      expect(daemon!.vms.get('tiny').definition.nics).toEqual([{ mode: 'user', mac }]);
      // Its disks are fixed while it has VM snapshots: the daemon's reason is shown.
      const disks = daemon!.vms.get('tiny').definition.disks;
      await byTest('vm-buttons').locator('[data-test="vm-change"]').click();
      await confirmDialog({ disks: [...disks].reverse().map((disk) => disk.volume).join(' ') });
      expect(await seeAlert('its disks can change only once they are deleted')).toContain('Changing VM tiny failed');
      expect(daemon!.vms.get('tiny').definition.disks).toEqual(disks);
      // A bad value is refused with the reason, and nothing changes.
      await byTest('vm-buttons').locator('[data-test="vm-change"]').click();
      await confirmDialog({ cpus: 'many' });
      expect(await seeAlert('is not a number of vCPUs')).toContain('Changing VM tiny failed');
      expect(daemon!.vms.get('tiny').definition.cpus).toBe(2);
    });

    await step('restored-destroying-a-newer-snapshot', async () => {
      await byTest('vm-tab-snapshots').click();
      await byTest('vm-snapshot-name').fill('snap2');
      await byTest('vm-snapshot-create').click();
      await snapshotRow('snap2').waitFor();
      expect(await snapshotRow('snap2').locator('[data-test="vm-snapshot-method"]').getAttribute('data-value')).toBe('offline');
      await snapshotRow('snap1').locator('[data-test="vm-snapshot-restore"]').click();
      await byTest('dialog').filter({ hasText: 'The newer snapshots snap2 are destroyed' }).waitFor();
      await confirmDialog();
      await seeNotice('VM tiny restored to snap1');
      await snapshotRow('snap2').waitFor({ state: 'detached' });
      expect(daemon!.vms.get('tiny').snapshots.map((snapshot) => snapshot.name)).toEqual(['snap1']);
    });

    await step('cloned-to-a-new-vm', async () => {
      await snapshotRow('snap1').locator('[data-test="vm-snapshot-clone"]').click();
      await confirmDialog({ name: 'tiny-copy' });
      await seeNotice('VM tiny-copy cloned from tiny@snap1');
      await byTest('nav-vms').click();
      await vmRow('tiny-copy').waitFor();
      expect(await vmRow('tiny-copy').locator('[data-test="vm-disks"]').textContent()).toBe('tiny-copy-disk0, tiny-copy-disk1');
      expect(await vmRow('tiny-copy').locator('[data-test="vm-state"]').getAttribute('data-state')).toBe('stopped');
      expect(await vmRow('tiny').locator('[data-test="vm-state"]').getAttribute('data-state')).toBe('stopped');
    });

    await step('duplicate-vm-name-error', async () => {
      await byTest('vm-create-name').fill('tiny');
      await byTest('vm-create-memory').fill('128M');
      await byTest('vm-create-kernel').fill(kernel!.kernel);
      await byTest('vm-create-submit').click();
      const text = await seeAlert('STRATA_E_VM_EXISTS');
      expect(text).toContain('Creating VM tiny failed');
      expect(await byTest('vm-row').count()).toBe(2);
    });

    await step('clone-deleted-with-its-volume', async () => {
      await vmRow('tiny-copy').locator('[data-test="vm-delete"]').click();
      await confirmDialog({}, ['withVolumes']);
      await vmRow('tiny-copy').waitFor({ state: 'detached' });
      await seeNotice('VM tiny-copy deleted with its volumes tiny-copy-disk0, tiny-copy-disk1');
      for (const volume of ['tiny-copy-disk0', 'tiny-copy-disk1']) expect((await api('GET', `/api/v1/volumes/${volume}`)).status).toBe(404);
      expect((await api('GET', '/api/v1/volumes/guest0')).status).toBe(200);
    });

    await step('restarted-console-follows-the-new-run', async () => {
      await vmRow('tiny').getByRole('link', { name: 'tiny' }).click();
      await byTest('serial-status', '[data-state="stopped"]').waitFor();
      await byTest('vm-buttons').locator('[data-test="vm-start"]').click();
      await seeNotice('VM tiny started', 60_000);
      // The new run's recent output replaces the last run's, then its boot shows.
      await terminalText('STRATA-TYPED-42').waitFor({ state: 'detached', timeout: 60_000 });
      await terminalText('STRATA-CONSOLE-READY').waitFor({ timeout: bootTimeoutMs });
      await byTest('serial-status', '[data-state="connected"]').waitFor();
      // Left running: the cleanup stops it.
    });

    await step('read-only-token-refused-the-console', async () => {
      const created = await api('POST', '/api/v1/tokens', { name: 'viewer', readOnly: true });
      const viewer = ((await created.json()) as { secret: string }).secret;
      // Signed in again on the VMs page, where the previous session left off.
      await byTest('nav-vms').click();
      await vmRow('tiny').waitFor();
      await byTest('logout').click();
      await byTest('login-token').fill(viewer);
      await byTest('login-submit').click();
      await vmRow('tiny').waitFor();
      const sockets: string[] = [];
      page.on('websocket', (socket) => sockets.push(socket.url()));
      await vmRow('tiny').getByRole('link', { name: 'tiny' }).click();
      await byTest('vm-detail').locator('[data-test="vm-state"][data-state="running"]').waitFor();
      const text = await seeAlert('The serial console of tiny failed');
      expect(text).toContain('STRATA_E_FORBIDDEN');
      await byTest('serial-status', '[data-state="closed"]').waitFor();
      await byTest('serial-reconnect').waitFor();
      // A refused console is not retried on its own, not even when its tab is shown again.
      await byTest('vm-tab-snapshots').click();
      await byTest('vm-tab-console').click();
      expect(await byTest('serial-status').getAttribute('data-state')).toBe('closed');
      expect(sockets.filter((socket) => socket.includes('/api/v1/vms/tiny/console'))).toHaveLength(1);
      // The viewer may look but not change.
      await byTest('vm-buttons').locator('[data-test="vm-pause"]').click();
      await seeAlert('STRATA_E_FORBIDDEN');
      expect(daemon!.vms.get('tiny').state).toBe('running');
    });

    expect(pageErrors).toEqual([]);
  });
});
