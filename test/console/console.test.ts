/*
 * The web console in a real browser: Debian's chromium driven by playwright-core against
 * a real daemon started in-process (pools on disk, NBD and HTTP on free loopback ports).
 * One operator's session, step by step: a wrong token refused with a visible message,
 * the admin token accepted, a volume created, data written to it by a real NBD client
 * (qemu-io) and seen in the dashboard's I/O figures, a snapshot taken, rolled back to,
 * cloned, the clone and the snapshot deleted, an image imported with its progress, the
 * exports, tasks and live events pages, errors for a duplicate name, a bad size and a
 * missing image, sign-out, a read-only token refused a change, and a revoked token
 * ending the session. Each step leaves a screenshot in test-artifacts/console/ (a failed step one
 * named -FAILED). Waits are playwright's: for elements, text, and figures the page shows
 * as numbers (data-value), never pixels or sleeps.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Browser, Locator, Page } from 'playwright-core';
import { consoleArtifacts, openBrowserPage, pageSteps } from '../helpers/browser-page.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/common/log.js';
import { startDaemon, type RunningDaemon } from '../../src/daemon/index.js';
import { makeTempDir, removeTempDir } from '../helpers/temp-pool.js';
import { hasTool, runOk } from '../helpers/tools.js';

const MiB = 1024 * 1024;
const artifacts = consoleArtifacts;
const haveChromium = hasTool('chromium', 'chromium');
// Without these the browser test still runs; the NBD-write and import steps are skipped (loudly).
const haveQemuIo = haveChromium && hasTool('qemu-io', 'qemu-utils');
const haveQemuImg = haveChromium && hasTool('qemu-img', 'qemu-utils');

/** What functions evaluated in the page use of its globals (the check build has no DOM types). */
interface PageGlobals {
  document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null };
  sessionStorage: { getItem(key: string): string | null };
  strataFormat: Record<string, (value: unknown) => unknown>;
}

describe.runIf(haveChromium)('web console in chromium', () => {
  let dir = '';
  let daemon: RunningDaemon | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let base = '';
  let admin = '';
  let nbd = '';
  const pageErrors: string[] = [];

  beforeAll(async () => {
    // Only this file's screenshots: vm-console.test.ts (vm-*.png) may be running beside it.
    fs.mkdirSync(artifacts, { recursive: true });
    for (const file of fs.readdirSync(artifacts)) if (!file.startsWith('vm-')) fs.rmSync(path.join(artifacts, file), { recursive: true, force: true });
    dir = makeTempDir();
    daemon = await startDaemon({ dataDir: dir, nbd: { host: '127.0.0.1', port: 0 }, http: { host: '127.0.0.1', port: 0 }, nbdSocket: null, tls: null, allow: [], logger: silentLogger, compactIntervalMs: 0 });
    base = `http://127.0.0.1:${daemon.httpAddress!.port}`;
    nbd = `nbd://127.0.0.1:${daemon.nbdAddress!.port}`;
    admin = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
    ({ browser, page } = await openBrowserPage({ width: 1366, height: 900 }, pageErrors));
  });

  afterAll(async () => {
    try {
      await browser?.close();
    } finally {
      try {
        await daemon?.stop();
      } finally {
        if (dir) removeTempDir(dir);
      }
    }
  });

  const { step, byTest, seeAlert, seeNotice, confirmDialog } = pageSteps(() => page, '');
  const volumeRow = (name: string) => byTest('volume-row', `[data-volume="${name}"]`);
  const snapshotItem = (name: string) => byTest('snapshot', `[data-snapshot="${name}"]`);

  /** Waits until the figure's data-value is at least `min`; returns it. */
  async function figureAtLeast(test: string, min: number): Promise<number> {
    await page.waitForFunction(
      ([selector, least]) => Number((globalThis as unknown as PageGlobals).document.querySelector(selector)?.getAttribute('data-value')) >= least,
      [`[data-test="${test}"]`, min] as const,
    );
    return Number(await byTest(test).getAttribute('data-value'));
  }

  async function open(section: 'dashboard' | 'volumes' | 'exports' | 'tasks' | 'events', ready: Locator): Promise<void> {
    await byTest(`nav-${section}`).click();
    await ready.first().waitFor();
  }

  it('reads sizes with K/M/G/T as powers of 1024, in the browser', async () => {
    await page.goto(base);
    // The module is loaded by the page itself (a dynamic import in an evaluated function
    // would be rewritten by the test's own module loader).
    await page.addScriptTag({ type: 'module', content: "import * as format from '/format.js'; window.strataFormat = format;" });
    await page.waitForFunction(() => 'strataFormat' in globalThis);
    const sizes = await page.evaluate(() => {
      const format = (globalThis as unknown as PageGlobals).strataFormat;
      const bad = (text: string) => {
        try {
          format.parseSize(text);
          return 'accepted';
        } catch (error) {
          return (error as Error).message;
        }
      };
      return {
        parsed: ['4096', '64M', '1.5G', '2 T', '20GiB', '512k'].map((text) => format.parseSize(text)),
        bad: ['abc', '0', '1.3K', '-1G'].map(bad),
        shown: [format.formatBytes(4 * 1024 * 1024), format.formatBytes(1536 * 1024 * 1024), format.sizeInput(64 * 1024 * 1024)],
      };
    });
    expect(sizes.parsed).toEqual([4096, 64 * MiB, 1.5 * 1024 * MiB, 2 * 1024 * 1024 * MiB, 20 * 1024 * MiB, 512 * 1024]);
    for (const message of sizes.bad) expect(message).not.toBe('accepted');
    expect(sizes.shown).toEqual(['4 MiB', '1.5 GiB', '64M']);
  });

  it('runs an operator session: sign-in, volumes, live I/O, snapshots, clones, import, exports, tasks, events, errors', async () => {
    await step('login-wrong-token', async () => {
      await page.goto(base);
      await byTest('login-token').fill('strata_not_a_token');
      await byTest('login-submit').click();
      const text = await seeAlert('not valid');
      expect(text).toContain('STRATA_E_UNAUTHORIZED');
      await byTest('login').waitFor();
      expect(await byTest('nav-volumes').isVisible()).toBe(false);
    });

    await step('dashboard', async () => {
      await byTest('login-token').fill(admin);
      await byTest('login-submit').click();
      await byTest('pool-card', '[data-pool="default"]').waitFor();
      await byTest('alert').waitFor({ state: 'hidden' });
      expect(await figureAtLeast('pool-capacity', 1)).toBeGreaterThan(0);
      await byTest('live-status').filter({ hasText: 'live' }).waitFor();
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('strata.token'))).toBe(admin);
    });

    await step('volume-created', async () => {
      await open('volumes', byTest('no-volumes'));
      await byTest('create-name').fill('disk0');
      await byTest('create-size').fill('64M');
      await byTest('create-submit').click();
      await seeNotice('Volume disk0 created');
      expect(Number(await volumeRow('disk0').locator('[data-test="volume-size"]').getAttribute('data-value'))).toBe(64 * MiB);
      expect(await volumeRow('disk0').locator('[data-test="volume-parent"]').textContent()).toBe('—');
    });

    await step('io-after-nbd-write', async () => {
      await open('dashboard', byTest('io-figures'));
      if (!haveQemuIo) return;
      await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 0 4M', `${nbd}/disk0`]);
      expect(await figureAtLeast('io-write-total', 4 * MiB)).toBe(4 * MiB);
      expect(await figureAtLeast('io-write-rate-peak', 1)).toBeGreaterThan(0);
      expect(await figureAtLeast('io-write-iops-peak', 0.001)).toBeGreaterThan(0);
      expect(await byTest('io-write-rate-peak').textContent()).toMatch(/\d.*\/s$/);
    });

    await step('snapshot-created', async () => {
      await open('volumes', volumeRow('disk0'));
      await volumeRow('disk0').getByRole('link', { name: 'disk0' }).click();
      await byTest('no-snapshots').waitFor();
      if (haveQemuIo) expect(await figureAtLeast('volume-mapped', 4 * MiB)).toBe(4 * MiB);
      await byTest('snapshot-name').fill('base');
      await byTest('snapshot-create').click();
      await snapshotItem('base').waitFor();
      await snapshotItem('base').locator('[data-test="snapshot-reclaimable"]').waitFor();
    });

    if (haveQemuIo) {
      await step('snapshot-frees-space-after-overwrite', async () => {
        await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xcd 0 4M', `${nbd}/disk0`]);
        await page.reload();
        await snapshotItem('base').waitFor();
        expect(await figureAtLeast('snapshot-reclaimable', 1)).toBeGreaterThan(0);
      });
    }

    await step('rolled-back', async () => {
      await snapshotItem('base').locator('[data-test="snapshot-rollback"]').click();
      await confirmDialog();
      await seeNotice('rolled back to base');
      if (haveQemuIo) await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 4M', `${nbd}/disk0`]);
    });

    await step('clone-created', async () => {
      await snapshotItem('base').locator('[data-test="snapshot-clone"]').click();
      await confirmDialog({ name: 'disk0-clone' });
      await snapshotItem('base').locator('[data-test="clone"][data-volume="disk0-clone"]').waitFor();
      await open('volumes', volumeRow('disk0-clone'));
      expect(await volumeRow('disk0-clone').locator('[data-test="volume-parent"]').textContent()).toBe('disk0@base');
      expect(await volumeRow('disk0').locator('[data-test="volume-snapshots"]').textContent()).toBe('1');
    });

    await step('resized', async () => {
      await volumeRow('disk0').locator('[data-test="volume-resize"]').click();
      await confirmDialog({ size: '128M' });
      await seeNotice('resized to 128 MiB');
      await volumeRow('disk0').locator('[data-test="volume-size"][data-value="134217728"]').waitFor();
    });

    await step('clone-deleted', async () => {
      await volumeRow('disk0-clone').locator('[data-test="volume-delete"]').click();
      await byTest('dialog-cancel').click();
      await byTest('dialog').waitFor({ state: 'detached' });
      expect(await volumeRow('disk0-clone').count()).toBe(1);
      await volumeRow('disk0-clone').locator('[data-test="volume-delete"]').click();
      await confirmDialog();
      await volumeRow('disk0-clone').waitFor({ state: 'detached' });
      await seeNotice('Volume disk0-clone deleted');
    });

    await step('snapshot-deleted', async () => {
      await volumeRow('disk0').getByRole('link', { name: 'disk0' }).click();
      await snapshotItem('base').locator('[data-test="snapshot-delete"]').click();
      await confirmDialog();
      await byTest('no-snapshots').waitFor();
      expect(await snapshotItem('base').count()).toBe(0);
    });

    await step('duplicate-volume-error', async () => {
      await open('volumes', volumeRow('disk0'));
      await byTest('create-name').fill('disk0');
      await byTest('create-size').fill('1G');
      await byTest('create-submit').click();
      const text = await seeAlert('STRATA_E_VOLUME_EXISTS');
      expect(text).toContain('Creating volume disk0 failed');
      expect(await volumeRow('disk0').isVisible()).toBe(true);
    });

    await step('bad-size-error', async () => {
      await byTest('create-name').fill('disk1');
      await byTest('create-size').fill('12Q');
      await byTest('create-submit').click();
      await seeAlert('is not a size');
      expect(await volumeRow('disk1').count()).toBe(0);
    });

    await step('import-missing-file-error', async () => {
      await byTest('import-name').fill('nothing');
      await byTest('import-path').fill(path.join(dir, 'no-such-image.qcow2'));
      await byTest('import-submit').click();
      await seeAlert('Importing nothing failed');
    });

    if (haveQemuImg) {
      await step('imported-with-progress', async () => {
        const image = path.join(dir, 'appliance.raw');
        fs.writeFileSync(image, Buffer.alloc(8 * MiB, 0x5a));
        await byTest('import-name').fill('imported');
        await byTest('import-path').fill(image);
        await byTest('import-submit').click();
        await byTest('import-status').locator('[data-test="task-state"]').filter({ hasText: 'succeeded' }).waitFor();
        expect(await byTest('import-status').locator('[data-test="task-progress"]').getAttribute('value')).toBe('100');
        await volumeRow('imported').waitFor();
        expect(Number(await volumeRow('imported').locator('[data-test="volume-size"]').getAttribute('data-value'))).toBe(8 * MiB);
      });

      await step('tasks', async () => {
        await open('tasks', byTest('task-row', '[data-kind="import"]'));
        const task = byTest('task-row', '[data-kind="import"]').filter({ hasText: 'volume/imported' });
        expect(await task.locator('[data-test="task-state"]').textContent()).toBe('succeeded');
      });
    }

    await step('exports', async () => {
      await open('exports', byTest('export-row', '[data-export="disk0"]'));
      expect(await byTest('export-row', '[data-export="disk0"]').locator('[data-test="export-uri"]').first().textContent()).toBe(`${nbd}/disk0`);
    });

    await step('events-live', async () => {
      await open('events', byTest('event-row', '[data-kind="volume.created"]'));
      expect(await byTest('event-row', '[data-kind="snapshot.deleted"]').count()).toBeGreaterThan(0);
      // A change made elsewhere (another client of the API) appears without a reload.
      const made = await fetch(`${base}/api/v1/volumes`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'made-elsewhere', sizeBytes: MiB }) });
      expect(made.status).toBe(201);
      await byTest('event-row').filter({ hasText: 'volume made-elsewhere created' }).waitFor();
    });

    await step('signed-out', async () => {
      await byTest('logout').click();
      await byTest('login').waitFor();
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('strata.token'))).toBeNull();
      expect(await byTest('nav-volumes').isVisible()).toBe(false);
    });

    await step('read-only-token-refused-a-change', async () => {
      const created = await fetch(`${base}/api/v1/tokens`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'viewer', readOnly: true }) });
      const viewer = ((await created.json()) as { secret: string }).secret;
      await byTest('login-token').fill(viewer);
      await byTest('login-submit').click();
      await open('volumes', volumeRow('disk0'));
      await byTest('create-name').fill('not-allowed');
      await byTest('create-size').fill('1G');
      await byTest('create-submit').click();
      await seeAlert('STRATA_E_FORBIDDEN');
    });

    await step('revoked-token-ends-the-session', async () => {
      expect((await fetch(`${base}/api/v1/tokens/viewer`, { method: 'DELETE', headers: { authorization: `Bearer ${admin}` } })).status).toBe(204);
      await byTest('nav-exports').click();
      await byTest('login').waitFor();
      await seeAlert('session ended');
    });

    expect(pageErrors).toEqual([]);
  });
});
