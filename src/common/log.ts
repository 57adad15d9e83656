/*
 * Structured logs: one JSON object per line (time, level, message, fields) on stderr, so
 * a daemon's output can be read by people and parsed by journald or a collector alike.
 * Components take a Logger; tests pass `silentLogger` or collect lines.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, message: string, fields?: Record<string, unknown>): void;
}

const levelRank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function jsonLogger(minimum: LogLevel = 'info', write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  return {
    log(level, message, fields = {}) {
      if (levelRank[level] < levelRank[minimum]) return;
      write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...fields })}\n`);
    },
  };
}

export const silentLogger: Logger = { log() {} };

/** A logger that keeps lines in memory, for tests that assert what was logged. */
export function memoryLogger(): Logger & { readonly lines: { level: LogLevel; message: string; fields: Record<string, unknown> }[] } {
  const lines: { level: LogLevel; message: string; fields: Record<string, unknown> }[] = [];
  return {
    lines,
    log(level, message, fields = {}) {
      lines.push({ level, message, fields });
    },
  };
}
