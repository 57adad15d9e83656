/*
 * The exports page: what the daemon serves over NBD. Each volume is exported read-write
 * under its name and each snapshot read-only as VOLUME@SNAPSHOT; the table gives the
 * URIs a client connects to (qemu, nbd-client, nbdkit) and the clients connected now.
 */
import { api } from './api.js';
import { coalesced, h, showError } from './ui.js';
import { volumeLink } from './volumes.js';

const refreshMs = 5000;

function exportRow(entry) {
  const clients = entry.clients.length > 0 ? entry.clients.map((client) => h('div', {}, client.address, client.tls ? ' (TLS)' : '')) : '—';
  return h(
    'tr',
    { 'data-test': 'export-row', 'data-export': entry.name },
    h('td', {}, entry.name),
    h('td', {}, volumeLink(entry.volume)),
    h('td', {}, entry.snapshot ?? '—'),
    h('td', {}, entry.readOnly ? 'read-only' : 'read-write'),
    h('td', {}, entry.uris.map((uri) => h('div', {}, h('code', { class: 'uri', 'data-test': 'export-uri' }, uri)))),
    h('td', { 'data-test': 'export-clients' }, clients),
  );
}

export function mount(root) {
  let disposed = false;
  const table = h('div', { 'data-test': 'exports' }, h('p', { class: 'hint' }, 'Loading exports…'));
  root.append(h('h1', {}, 'NBD exports'), table, h('p', { class: 'hint' }, 'Snapshots are exported read-only as VOLUME@SNAPSHOT. Example: qemu-img info URI'));

  const refresh = coalesced(async () => {
    try {
      const exports = await api.get('/api/v1/exports');
      if (disposed) return;
      table.replaceChildren(
        exports.length === 0
          ? h('p', { class: 'hint' }, 'Nothing is exported: create a volume first.')
          : h(
              'table',
              { 'data-test': 'export-table' },
              h('thead', {}, h('tr', {}, ['Export', 'Volume', 'Snapshot', 'Access', 'URIs', 'Connected clients'].map((title) => h('th', {}, title)))),
              h('tbody', {}, exports.map(exportRow)),
            ),
      );
    } catch (error) {
      showError(error, 'Loading exports');
    }
  });
  void refresh();
  const timer = setInterval(() => void refresh(), refreshMs);

  return {
    onEvent(event) {
      if (/^(volume|snapshot)\./.test(event.kind)) void refresh();
    },
    dispose() {
      disposed = true;
      clearInterval(timer);
    },
  };
}
