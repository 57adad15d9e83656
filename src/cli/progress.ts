/*
 * Progress for long operations: a bar on a terminal, nothing when stderr is not a TTY
 * or output is JSON (scripts read the final result instead).
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, phase?: string): void;
  stop(): void;
}

export function progressBar(enabled: boolean, label: string): Progress {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% {phase}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, phase = '') {
      if (!started) {
        bar.start(Math.max(total, 1), 0, { phase });
        started = true;
      }
      bar.setTotal(Math.max(total, 1));
      bar.update(Math.min(done, Math.max(total, 1)), { phase });
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
