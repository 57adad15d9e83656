/*
 * Events, alerts, tasks and tokens on their own: events survive a restart, alerts fire
 * once per condition, tasks report progress and failures, tokens persist only hashes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../common/log.js';
import { makeTempDir, removeTempDir } from '../../test/helpers/temp-pool.js';
import { AlertWatcher } from './alerts.js';
import { EventLog } from './events.js';
import type { PoolSummary } from './pool-summary.js';
import { TaskManager } from './tasks.js';
import { TokenStore } from './tokens.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach(removeTempDir));

function tempDir(): string {
  const dir = makeTempDir();
  dirs.push(dir);
  return dir;
}

function summary(changes: Partial<PoolSummary>): PoolSummary {
  return { name: 'default', usageFraction: 0.1, overcommitRatio: 1, checksumErrors: 0, ...changes } as PoolSummary;
}

describe('events', () => {
  it('keeps events across a restart with increasing ids, and skips a torn last line', () => {
    const file = path.join(tempDir(), 'events.jsonl');
    const first = new EventLog(file, silentLogger);
    first.record({ severity: 'info', kind: 'volume.created', subject: 'volume/a', message: 'a' });
    first.record({ severity: 'error', kind: 'task.failed', subject: 'task/1', message: 'b' });
    fs.appendFileSync(file, '{"id": 3, "torn');
    const second = new EventLog(file, silentLogger);
    expect(second.list().map((event) => event.kind)).toEqual(['volume.created', 'task.failed']);
    expect(second.record({ severity: 'info', kind: 'x', subject: 's', message: 'c' }).id).toBe(3);
    expect(second.list(2).map((event) => event.id)).toEqual([3]);
  });
});

describe('alerts', () => {
  it('raises pool usage at 80 % and 90 % once each, again only after usage fell back', () => {
    const events = new EventLog(null, silentLogger);
    const alerts = new AlertWatcher(events, { overcommitRatio: 2 });
    alerts.observe([summary({ usageFraction: 0.5 })]);
    alerts.observe([summary({ usageFraction: 0.85 })]);
    alerts.observe([summary({ usageFraction: 0.86 })]);
    alerts.observe([summary({ usageFraction: 0.95 })]);
    alerts.observe([summary({ usageFraction: 0.5 })]);
    alerts.observe([summary({ usageFraction: 0.81 })]);
    expect(events.list().map((event) => `${event.kind}:${event.severity}`)).toEqual(['pool.usage:warning', 'pool.usage:error', 'pool.usage:warning']);
  });

  it('raises thin over-commit above the configured ratio and every growth of checksum errors', () => {
    const events = new EventLog(null, silentLogger);
    const alerts = new AlertWatcher(events, { overcommitRatio: 2 });
    alerts.observe([summary({ overcommitRatio: 2.5 })]);
    alerts.observe([summary({ overcommitRatio: 3 })]);
    alerts.observe([summary({ checksumErrors: 1 })]);
    alerts.observe([summary({ checksumErrors: 1 })]);
    alerts.observe([summary({ checksumErrors: 4 })]);
    const kinds = events.list().map((event) => event.kind);
    expect(kinds).toEqual(['pool.overcommit', 'pool.checksum-errors', 'pool.checksum-errors']);
    expect(events.list().at(-1)!.message).toContain('3 new checksum errors');
  });
});

describe('tasks', () => {
  it('reports percent and phase, keeps results, and records failures as events', async () => {
    const events = new EventLog(null, silentLogger);
    const tasks = new TaskManager(events);
    let seen = 0;
    const task = tasks.start('copy', 'volume/a', async (context) => {
      context.progress(1, 4, 'first');
      seen = tasks.get(task.id).percent;
      return { copied: 4 };
    });
    expect((await tasks.wait(task.id)).result).toEqual({ copied: 4 });
    expect(seen).toBe(25);
    const failing = tasks.start('copy', 'volume/b', async () => {
      throw new Error('disk gone');
    });
    const failed = await tasks.wait(failing.id);
    expect(failed.state).toBe('failed');
    expect(failed.error!.message).toBe('disk gone');
    expect(events.list().at(-1)!.kind).toBe('task.failed');
  });

  it('stops a cancelled task at its next progress report', async () => {
    const tasks = new TaskManager(new EventLog(null, silentLogger));
    let steps = 0;
    const task = tasks.start('loop', 'pool/p', async (context) => {
      for (;;) {
        context.progress(steps++, 1000);
        await new Promise((resolve) => setImmediate(resolve));
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 5));
    tasks.cancel(task.id);
    const done = await tasks.wait(task.id);
    expect(done.state).toBe('cancelled');
    expect(done.error!.code).toBe('STRATA_E_CANCELLED');
  });
});

describe('tokens', () => {
  it('persists names, roles and hashes only, and verifies secrets after a reopen', () => {
    const dir = tempDir();
    const store = TokenStore.open(dir);
    const admin = fs.readFileSync(path.join(dir, 'admin.token'), 'utf8').trim();
    const { secret } = store.create('ci', 'read-only');
    const reopened = TokenStore.open(dir);
    expect(reopened.verify(admin)?.role).toBe('admin');
    expect(reopened.verify(secret)?.name).toBe('ci');
    expect(reopened.verify(`${secret}x`)).toBeNull();
    const file = fs.readFileSync(path.join(dir, 'tokens.json'), 'utf8');
    expect(file).not.toContain(secret);
    expect(file).not.toContain(admin);
    expect(() => reopened.create('bad/name', 'admin')).toThrow(/token name/);
  });
});
