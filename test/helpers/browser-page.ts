/*
 * The web console's browser tests share this: Debian's Chromium through playwright-core
 * (headless, no sandbox, no GPU), a page that collects uncaught errors, and the step
 * helpers — each step leaves a screenshot in test-artifacts/console/ (a "-FAILED" one
 * when it throws), elements found by data-test, alerts and notices waited for by text.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

export const consoleArtifacts = fileURLToPath(new URL('../../test-artifacts/console/', import.meta.url));

export async function openBrowserPage(viewport: { width: number; height: number }, pageErrors: string[]): Promise<{ browser: Browser; page: Page }> {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
  const page = await browser.newPage({ viewport });
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  return { browser, page };
}

/** Step helpers over the page `current()` returns (the page is opened in beforeAll). */
export function pageSteps(current: () => Page, prefix = '') {
  let shots = 0;
  return {
    /** Runs one step and screenshots the page after it (or as it failed). */
    async step(name: string, body: () => Promise<void>): Promise<void> {
      shots += 1;
      const file = path.join(consoleArtifacts, `${prefix}${String(shots).padStart(2, '0')}-${name}`);
      try {
        await body();
      } catch (error) {
        await current().screenshot({ path: `${file}-FAILED.png`, fullPage: true }).catch(() => undefined);
        throw error;
      }
      await current().screenshot({ path: `${file}.png`, fullPage: true });
    },
    byTest: (test: string, extra = '') => current().locator(`[data-test="${test}"]${extra}`),
    async seeAlert(text: string | RegExp): Promise<string> {
      const alert = current().getByRole('alert').filter({ hasText: text });
      await alert.waitFor();
      return (await alert.textContent()) ?? '';
    },
    async seeNotice(text: string | RegExp, timeout?: number): Promise<void> {
      await current().getByRole('status').filter({ hasText: text }).waitFor({ timeout });
    },
    /**
     * Confirms the open dialog: ticks the `check` boxes, then with fields fills them and
     * presses Enter in the last, else clicks confirm; waits until the dialog is gone.
     */
    async confirmDialog(fill: Record<string, string> = {}, check: readonly string[] = []): Promise<void> {
      const byTest = (test: string) => current().locator(`[data-test="${test}"]`);
      const dialog = byTest('dialog');
      await dialog.waitFor();
      for (const box of check) await byTest(`dialog-${box}`).check();
      const fields = Object.entries(fill);
      for (const [field, value] of fields) await byTest(`dialog-${field}`).fill(value);
      if (fields.length > 0) await byTest(`dialog-${fields.at(-1)![0]}`).press('Enter');
      else await byTest('dialog-confirm').click();
      await dialog.waitFor({ state: 'detached' });
    },
  };
}
