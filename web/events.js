/*
 * The events page: the daemon's event log, newest first, live from the feed (feed.js)
 * with no reload. Filters by severity and by text in kind, subject or message; the
 * header says whether the stream is live or reconnecting.
 */
import { feed } from './feed.js';
import { formatTime } from './format.js';
import { h } from './ui.js';

const shownMax = 500;

function eventRow(event) {
  return h(
    'tr',
    { 'data-test': 'event-row', 'data-kind': event.kind, class: `severity-${event.severity}` },
    h('td', {}, formatTime(event.timeMs)),
    h('td', {}, h('span', { class: `state ${event.severity}` }, event.severity)),
    h('td', {}, event.kind),
    h('td', {}, event.subject),
    h('td', {}, event.message),
  );
}

export function mount(root) {
  const severity = h('select', { 'aria-label': 'Severity', 'data-test': 'event-severity' }, ['all', 'info', 'warning', 'error'].map((s) => h('option', { value: s }, s)));
  const filter = h('input', { type: 'search', placeholder: 'Filter', 'aria-label': 'Filter events', 'data-test': 'event-filter' });
  const status = h('span', { class: 'hint', 'data-test': 'event-stream-status' });
  const table = h('div', { 'data-test': 'events' });
  root.append(h('h1', {}, 'Events'), h('div', { class: 'inline-form' }, severity, filter, status), table);

  const draw = () => {
    const text = filter.value.trim().toLowerCase();
    const shown = feed.events
      .filter((event) => severity.value === 'all' || event.severity === severity.value)
      .filter((event) => !text || `${event.kind} ${event.subject} ${event.message}`.toLowerCase().includes(text))
      .slice(-shownMax)
      .reverse();
    status.textContent = `stream: ${feed.status}`;
    table.replaceChildren(
      shown.length === 0
        ? h('p', { class: 'hint' }, 'No events.')
        : h(
            'table',
            { 'data-test': 'event-table' },
            h('thead', {}, h('tr', {}, ['Time', 'Severity', 'Kind', 'Subject', 'Message'].map((title) => h('th', {}, title)))),
            h('tbody', {}, shown.map(eventRow)),
          ),
    );
  };
  severity.addEventListener('change', draw);
  filter.addEventListener('input', draw);
  const unsubscribe = feed.subscribe(draw);
  draw();
  return { dispose: unsubscribe };
}
