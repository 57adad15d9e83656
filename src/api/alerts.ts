/*
 * Alerts: conditions an operator must hear about, turned into events when they start
 * (not at every check while they last). Pool usage crossing 80 % raises a warning and
 * 90 % an error, again only after usage fell below the level; thin over-commit above the
 * configured ratio raises a warning; checksum errors raise an error whenever their count
 * grew since the last check. Failed tasks are recorded by the task manager itself.
 */
import { limits } from '../common/limits.js';
import type { EventLog } from './events.js';
import type { PoolSummary } from './pool-summary.js';

export interface AlertOptions {
  readonly overcommitRatio?: number;
}

interface PoolAlertState {
  usageLevel: 0 | 1 | 2;
  overcommitted: boolean;
  checksumErrors: number;
}

export class AlertWatcher {
  private readonly state = new Map<string, PoolAlertState>();
  private readonly overcommitRatio: number;

  constructor(
    private readonly events: EventLog,
    options: AlertOptions = {},
  ) {
    this.overcommitRatio = options.overcommitRatio ?? limits.overcommitAlertRatio;
  }

  /** Compares the pools with the last check and records events for new conditions. */
  observe(pools: readonly PoolSummary[]): void {
    for (const pool of pools) {
      const previous = this.state.get(pool.name) ?? { usageLevel: 0, overcommitted: false, checksumErrors: 0 };
      const next: PoolAlertState = {
        usageLevel: pool.usageFraction >= limits.poolUsageCriticalFraction ? 2 : pool.usageFraction >= limits.poolUsageWarnFraction ? 1 : 0,
        overcommitted: pool.overcommitRatio > this.overcommitRatio,
        checksumErrors: pool.checksumErrors,
      };
      this.raise(pool, previous, next);
      this.state.set(pool.name, next);
    }
  }

  private raise(pool: PoolSummary, previous: PoolAlertState, next: PoolAlertState): void {
    const subject = `pool/${pool.name}`;
    const percent = (pool.usageFraction * 100).toFixed(1);
    if (next.usageLevel > previous.usageLevel) {
      const threshold = next.usageLevel === 2 ? limits.poolUsageCriticalFraction : limits.poolUsageWarnFraction;
      this.events.record({
        severity: next.usageLevel === 2 ? 'error' : 'warning',
        kind: 'pool.usage',
        subject,
        message: `pool ${pool.name} is ${percent} % full (above ${threshold * 100} %)`,
      });
    }
    if (next.overcommitted && !previous.overcommitted) {
      this.events.record({
        severity: 'warning',
        kind: 'pool.overcommit',
        subject,
        message: `pool ${pool.name} is over-committed ${pool.overcommitRatio.toFixed(2)}x (volumes may grow past its capacity; above ${this.overcommitRatio}x)`,
      });
    }
    if (next.checksumErrors > previous.checksumErrors) {
      this.events.record({
        severity: 'error',
        kind: 'pool.checksum-errors',
        subject,
        message: `pool ${pool.name}: ${next.checksumErrors - previous.checksumErrors} new checksum errors (${next.checksumErrors} since it opened); run strata check --deep`,
      });
    }
  }
}
