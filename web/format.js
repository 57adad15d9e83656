/*
 * Formatting and parsing of the figures the console shows. Sizes are binary: K, M, G, T
 * and P are powers of 1024, as the CLI reads them, so "20G" typed here is the same
 * volume size as `strata volume create --size 20G`. Pure functions, no DOM.
 */

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
const suffixes = ['', 'K', 'M', 'G', 'T', 'P'];

/** 4194304 → "4 MiB", 1610612736 → "1.5 GiB". */
export function formatBytes(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '—';
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 ? 0 : value < 10 ? 2 : value < 100 ? 1 : 0;
  const text = value.toFixed(digits).replace(/\.0+$|(\.\d*?)0+$/, '$1');
  return `${bytes < 0 ? '-' : ''}${text} ${units[unit]}`;
}

export function formatRate(bytesPerSecond) {
  return `${formatBytes(bytesPerSecond)}/s`;
}

export function formatOps(opsPerSecond) {
  if (!Number.isFinite(opsPerSecond)) return '—';
  return opsPerSecond < 10 ? opsPerSecond.toFixed(1) : String(Math.round(opsPerSecond));
}

/** A ratio such as dedup or over-commit: 1.5 → "1.50×". */
export function formatRatio(ratio) {
  return typeof ratio === 'number' && Number.isFinite(ratio) && ratio > 0 ? `${ratio.toFixed(2)}×` : '—';
}

export function formatPercent(fraction) {
  return typeof fraction === 'number' && Number.isFinite(fraction) ? `${(fraction * 100).toFixed(1)} %` : '—';
}

export function formatTime(ms) {
  if (typeof ms !== 'number') return '—';
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

/**
 * "20G", "512 M", "1.5T", "64MiB", "4096" → bytes. Throws an Error whose message says
 * what is accepted when the text is not a size or not a whole number of bytes.
 */
export function parseSize(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([KMGTP])(?:i?B)?|B)?\s*$/i.exec(String(text));
  const help = 'give a number with an optional K, M, G or T (powers of 1024), e.g. 20G';
  if (!match) throw new Error(`"${text}" is not a size: ${help}`);
  const power = match[2] ? suffixes.indexOf(match[2].toUpperCase()) : 0;
  const bytes = Number(match[1]) * 1024 ** power;
  if (!Number.isSafeInteger(bytes)) throw new Error(`"${text}" is not a whole number of bytes: ${help}`);
  if (bytes === 0) throw new Error('a size must be larger than 0');
  return bytes;
}

/** The shortest exact size text for an input field: 67108864 → "64M". */
export function sizeInput(bytes) {
  for (let power = suffixes.length - 1; power > 0; power -= 1) {
    const unit = 1024 ** power;
    if (bytes % unit === 0) return `${bytes / unit}${suffixes[power]}`;
  }
  return String(bytes);
}
