/*
 * The volumes page: every volume of every pool in one table (name, pool, size,
 * snapshots, the snapshot a clone came from) with resize and delete; a form to create a
 * thin volume (sizes with K/M/G/T, powers of 1024); and an import of an image file that
 * is on the daemon host, followed through its task's percent as a progress bar. The
 * table refreshes on volume and snapshot events, so changes from the CLI show up too.
 */
import { api, url } from './api.js';
import { formatBytes, parseSize, sizeInput } from './format.js';
import { action, ask, coalesced, h, progressBar, showError, showNotice } from './ui.js';

const taskPollMs = 500;
const imageFormats = ['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'ova'];

export function volumeLink(name) {
  return h('a', { href: `#/volumes/${encodeURIComponent(name)}` }, name);
}

/** Asks for a new size and resizes; shrinking asks again and is sent with force. */
export async function resizeVolume(volume, button) {
  const answer = await ask({ title: `Resize ${volume.name}`, message: `It is ${formatBytes(volume.sizeBytes)} now.`, fields: [{ name: 'size', label: 'New size', value: sizeInput(volume.sizeBytes) }], confirm: 'Resize' });
  if (!answer) return false;
  return Boolean(
    await action(button, `Resizing volume ${volume.name}`, async () => {
      const sizeBytes = parseSize(answer.size);
      let force = false;
      if (sizeBytes < volume.sizeBytes) {
        const sure = await ask({ title: `Shrink ${volume.name}?`, message: `Shrinking to ${formatBytes(sizeBytes)} discards everything written past that point.`, confirm: 'Shrink', danger: true });
        if (!sure) return false;
        force = true;
      }
      await api.patch(url`/api/v1/volumes/${volume.name}`, force ? { sizeBytes, force } : { sizeBytes });
      showNotice(`Volume ${volume.name} resized to ${formatBytes(sizeBytes)}`);
      return true;
    }),
  );
}

/** Asks for confirmation and deletes the volume with its snapshots. */
export async function deleteVolume(volume, button) {
  const snapshots = volume.snapshots > 0 ? ` and its ${volume.snapshots} snapshot${volume.snapshots === 1 ? '' : 's'}` : '';
  const sure = await ask({ title: `Delete ${volume.name}?`, message: `This deletes volume ${volume.name}${snapshots}. It cannot be undone.`, confirm: 'Delete', danger: true });
  if (!sure) return false;
  return Boolean(
    await action(button, `Deleting volume ${volume.name}`, async () => {
      await api.delete(url`/api/v1/volumes/${volume.name}`);
      showNotice(`Volume ${volume.name} deleted`);
      return true;
    }),
  );
}

function volumeRow(volume, refresh) {
  const resize = h('button', { type: 'button', 'data-test': 'volume-resize', 'aria-label': `Resize ${volume.name}` }, 'Resize');
  const remove = h('button', { type: 'button', class: 'danger', 'data-test': 'volume-delete', 'aria-label': `Delete ${volume.name}` }, 'Delete');
  resize.addEventListener('click', async () => (await resizeVolume(volume, resize)) && refresh());
  remove.addEventListener('click', async () => (await deleteVolume(volume, remove)) && refresh());
  const parent = volume.parent ? [volumeLink(volume.parent.volume), `@${volume.parent.snapshot}`] : '—';
  return h(
    'tr',
    { 'data-test': 'volume-row', 'data-volume': volume.name },
    h('td', {}, volumeLink(volume.name)),
    h('td', {}, volume.pool),
    h('td', { 'data-test': 'volume-size', 'data-value': volume.sizeBytes }, formatBytes(volume.sizeBytes)),
    h('td', { 'data-test': 'volume-snapshots' }, String(volume.snapshots)),
    h('td', { 'data-test': 'volume-parent' }, parent),
    h('td', { class: 'buttons' }, resize, remove),
  );
}

function poolSelect(pools, test) {
  return h('select', { name: 'pool', 'data-test': test }, pools.map((pool) => h('option', { value: pool.name }, pool.name)));
}

function createForm(pools, refresh) {
  const name = h('input', { name: 'name', required: true, autocomplete: 'off', 'data-test': 'create-name' });
  const size = h('input', { name: 'size', required: true, autocomplete: 'off', placeholder: 'e.g. 20G', 'data-test': 'create-size' });
  const pool = poolSelect(pools, 'create-pool');
  const submit = h('button', { class: 'primary', 'data-test': 'create-submit' }, 'Create volume');
  const form = h('form', { class: 'inline-form', 'aria-label': 'New volume' }, h('label', {}, 'Name', name), h('label', {}, 'Size', size), h('label', {}, 'Pool', pool), submit);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const volumeName = name.value.trim();
    void action(submit, `Creating volume ${volumeName}`, async () => {
      const created = await api.post('/api/v1/volumes', { name: volumeName, sizeBytes: parseSize(size.value), pool: pool.value || undefined });
      showNotice(`Volume ${created.name} created (${formatBytes(created.sizeBytes)}, thin)`);
      form.reset();
      await refresh();
    });
  });
  return h('section', { 'aria-label': 'Create a volume' }, h('h2', {}, 'New volume'), form, h('p', { class: 'hint' }, 'Volumes are thin: space is used only as data is written. K, M, G and T are powers of 1024.'));
}

/** Follows a task until it ends, drawing its progress into `into`; resolves to the final task. */
export async function followTask(task, into, stopped) {
  for (;;) {
    const error = task.error ? h('span', { class: 'bad' }, ` ${task.error.message} (${task.error.code})`) : null;
    const phase = task.phase ? h('span', { class: 'hint' }, task.phase) : null;
    into.replaceChildren(...[progressBar(task.percent, 'task-progress'), h('span', { 'data-test': 'task-state', class: `state ${task.state}` }, task.state), phase, error].filter(Boolean));
    if (task.state !== 'running' || stopped()) return task;
    await new Promise((resolve) => setTimeout(resolve, taskPollMs));
    task = await api.get(url`/api/v1/tasks/${task.id}`);
  }
}

function importForm(pools, refresh, stopped) {
  const name = h('input', { name: 'name', required: true, autocomplete: 'off', 'data-test': 'import-name' });
  const path = h('input', { name: 'path', required: true, autocomplete: 'off', placeholder: '/srv/images/disk.vmdk', 'data-test': 'import-path', class: 'wide' });
  const format = h('select', { name: 'format', 'data-test': 'import-format' }, h('option', { value: '' }, 'detect'), imageFormats.map((f) => h('option', { value: f }, f)));
  const pool = poolSelect(pools, 'import-pool');
  const submit = h('button', { class: 'primary', 'data-test': 'import-submit' }, 'Import');
  const status = h('div', { class: 'task-status', 'data-test': 'import-status', 'aria-live': 'polite' });
  const form = h('form', { class: 'inline-form', 'aria-label': 'Import an image' }, h('label', {}, 'Name', name), h('label', {}, 'Image path on the daemon host', path), h('label', {}, 'Format', format), h('label', {}, 'Pool', pool), submit);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const volumeName = name.value.trim();
    void action(submit, `Importing ${volumeName}`, async () => {
      const body = { name: volumeName, path: path.value.trim(), pool: pool.value || undefined };
      if (format.value) body.format = format.value;
      const task = await api.post('/api/v1/volumes/import', body);
      const done = await followTask(task, status, stopped);
      if (done.state === 'succeeded') {
        showNotice(`Imported ${body.path} as ${(done.result?.volumes ?? [volumeName]).join(', ')}`);
        form.reset();
      } else if (done.state === 'failed') {
        showError(done.error, `Importing ${volumeName}`);
      }
      await refresh();
    });
  });
  return h(
    'section',
    { 'aria-label': 'Import an image' },
    h('h2', {}, 'Import an image'),
    form,
    status,
    h('p', { class: 'hint' }, 'raw, qcow2, vmdk, vhdx, vdi or an OVA (each disk of an OVA becomes a volume). The file must be readable by the daemon.'),
  );
}

export function mount(root) {
  let disposed = false;
  const table = h('div', { 'data-test': 'volumes' }, h('p', { class: 'hint' }, 'Loading volumes…'));
  const forms = h('div');
  root.append(h('h1', {}, 'Volumes'), table, forms);

  const refresh = coalesced(async () => {
    try {
      const volumes = await api.get('/api/v1/volumes');
      if (disposed) return;
      if (volumes.length === 0) {
        table.replaceChildren(h('p', { class: 'hint', 'data-test': 'no-volumes' }, 'No volumes yet: create one below.'));
        return;
      }
      table.replaceChildren(
        h(
          'table',
          { 'data-test': 'volume-table' },
          h('thead', {}, h('tr', {}, ['Name', 'Pool', 'Size', 'Snapshots', 'Clone of', ''].map((title) => h('th', {}, title)))),
          h('tbody', {}, volumes.map((volume) => volumeRow(volume, refresh))),
        ),
      );
    } catch (error) {
      showError(error, 'Loading volumes');
    }
  });

  void (async () => {
    try {
      const pools = await api.get('/api/v1/pools');
      if (!disposed) forms.replaceChildren(createForm(pools, refresh), importForm(pools, refresh, () => disposed));
    } catch (error) {
      showError(error, 'Loading pools');
    }
  })();
  void refresh();

  return {
    onEvent(event) {
      if (/^(volume|snapshot)\./.test(event.kind)) void refresh();
    },
    dispose() {
      disposed = true;
    },
  };
}
