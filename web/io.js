/*
 * The I/O sampler: reads /api/v1/io (running totals per volume) once a second while
 * signed in, and turns each two readings into rates: operations and bytes per second,
 * per volume and summed. It keeps the last minute of samples for the dashboard's charts
 * and peaks, so the charts have history when the dashboard is opened. A volume missing
 * from the earlier reading counts from zero (totals start with its first request); a
 * total that went down (a volume deleted and made again) counts as no I/O.
 */
import { api } from './api.js';

const intervalMs = 1000;
const windowSamples = 60;

const samples = [];
const listeners = new Set();
let previous = null;
let latest = null;
let lastError = null;
let timer = null;
let running = false;

function rate(now, before, key, seconds) {
  return Math.max(0, now[key] - (before?.[key] ?? 0)) / seconds;
}

function sampleOf(reading, earlier) {
  const seconds = Math.max(0.001, (reading.timeMs - earlier.timeMs) / 1000);
  const before = new Map(earlier.volumes.map((entry) => [entry.volume, entry]));
  const volumes = reading.volumes.map((entry) => {
    const old = before.get(entry.volume);
    return {
      volume: entry.volume,
      readOps: rate(entry, old, 'readOps', seconds),
      writeOps: rate(entry, old, 'writeOps', seconds),
      readBytes: rate(entry, old, 'readBytes', seconds),
      writeBytes: rate(entry, old, 'writeBytes', seconds),
    };
  });
  const sum = (key) => volumes.reduce((total, entry) => total + entry[key], 0);
  return { timeMs: reading.timeMs, volumes, readOps: sum('readOps'), writeOps: sum('writeOps'), readBytes: sum('readBytes'), writeBytes: sum('writeBytes') };
}

function notify() {
  for (const listener of listeners) listener();
}

async function poll() {
  try {
    const reading = await api.get('/api/v1/io');
    if (!running) return;
    if (previous) {
      samples.push(sampleOf(reading, previous));
      if (samples.length > windowSamples) samples.shift();
    }
    previous = reading;
    latest = reading;
    lastError = null;
  } catch (error) {
    lastError = error;
  }
  if (!running) return;
  notify();
  timer = setTimeout(poll, intervalMs);
}

export const io = {
  start() {
    if (running) return;
    running = true;
    void poll();
  },
  stop() {
    running = false;
    clearTimeout(timer);
    samples.length = 0;
    previous = null;
    latest = null;
    lastError = null;
  },
  /** Rate samples of the last minute, oldest first. */
  get samples() {
    return samples;
  },
  /** The newest reading of running totals ({timeMs, volumes}), or null. */
  get latest() {
    return latest;
  },
  /** The last poll's failure, or null. */
  get error() {
    return lastError;
  },
  /** The largest value of `key` over the kept samples. */
  peak(key) {
    return samples.reduce((max, sample) => Math.max(max, sample[key]), 0);
  },
  subscribe(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
