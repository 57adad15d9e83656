/* Plain-text tables and figures for CLI output; --json prints the objects instead. */
import { formatBytes } from '../common/units.js';

export function table(rows: Record<string, string | number>[], columns: string[]): string {
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => String(row[column] ?? '').length)));
  const line = (values: string[]) => values.map((value, index) => value.padEnd(widths[index])).join('  ').trimEnd();
  return [line(columns.map((column) => column.toUpperCase())), ...rows.map((row) => line(columns.map((column) => String(row[column] ?? ''))))].join('\n');
}

export function bytes(value: number): string {
  return formatBytes(value);
}

export function ratio(value: number): string {
  return `${value.toFixed(2)}x`;
}

/** A time as ISO 8601 to the second ('' for none). */
export function isoTime(ms: number | null): string {
  return ms === null ? '' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}
