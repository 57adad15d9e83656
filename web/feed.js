/*
 * The live event feed: one stream of /api/v1/events/stream per signed-in tab, kept open
 * and reopened after a drop (from the last event id seen, so nothing is missed or shown
 * twice). It keeps the most recent events for the events page and tells listeners of
 * each new one, which is how the other pages refresh when something changes.
 */
import { streamEvents } from './api.js';

const keptMax = 1000;
const retryMs = [1000, 2000, 5000, 10000];

const events = [];
const listeners = new Set();
let lastId = 0;
let controller = null;
let status = 'stopped';

function setStatus(next, detail = '') {
  status = next;
  for (const listener of listeners) listener({ status, detail });
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function run(signal) {
  let failures = 0;
  while (!signal.aborted) {
    setStatus('connecting');
    try {
      await streamEvents(lastId, {
        signal,
        onOpen: () => {
          failures = 0;
          setStatus('live');
        },
        onEvent: (event) => {
          if (event.id <= lastId) return;
          lastId = event.id;
          events.push(event);
          if (events.length > keptMax) events.shift();
          for (const listener of listeners) listener({ status, event });
        },
      });
    } catch (error) {
      if (signal.aborted || error.status === 401) return;
      setStatus('reconnecting', error.message);
    }
    if (signal.aborted) return;
    await sleep(retryMs[Math.min(failures, retryMs.length - 1)], signal);
    failures += 1;
  }
}

export const feed = {
  start() {
    if (controller) return;
    controller = new AbortController();
    void run(controller.signal);
  },
  stop() {
    controller?.abort();
    controller = null;
    events.length = 0;
    lastId = 0;
    setStatus('stopped');
  },
  /** The kept events, oldest first. */
  get events() {
    return events;
  },
  get status() {
    return status;
  },
  /** listener({status, detail?, event?}); returns the unsubscribe function. */
  subscribe(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
