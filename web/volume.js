/*
 * One volume: its accounting (written, unique stored, shared chunks), where it is
 * served over NBD, and its snapshot tree. Snapshots are a chain, oldest first, ending
 * in the volume's current state; each shows the space deleting it would free
 * (reclaimableBytes) and has rollback, clone and delete; the clones made from a
 * snapshot hang under it. Rolling back past newer snapshots says which ones it destroys.
 */
import { api, url } from './api.js';
import { formatBytes, formatTime } from './format.js';
import { action, ask, coalesced, facts, figure, h, showError, showNotice } from './ui.js';
import { deleteVolume, resizeVolume, volumeLink } from './volumes.js';

const refreshMs = 5000;

function snapshotItem(volume, snapshot, newer, clones, refresh) {
  const rollback = h('button', { type: 'button', 'data-test': 'snapshot-rollback', 'aria-label': `Roll back to ${snapshot.name}` }, 'Roll back');
  const clone = h('button', { type: 'button', 'data-test': 'snapshot-clone', 'aria-label': `Clone ${snapshot.name}` }, 'Clone');
  const remove = h('button', { type: 'button', class: 'danger', 'data-test': 'snapshot-delete', 'aria-label': `Delete ${snapshot.name}` }, 'Delete');
  const at = `${volume.name}@${snapshot.name}`;

  rollback.addEventListener('click', async () => {
    const lost = newer.length > 0 ? ` The newer snapshots ${newer.join(', ')} are destroyed.` : '';
    const sure = await ask({ title: `Roll back ${volume.name}?`, message: `Everything written to ${volume.name} since ${snapshot.name} (${formatTime(snapshot.createdMs)}) is lost.${lost}`, confirm: 'Roll back', danger: true });
    if (!sure) return;
    await action(rollback, `Rolling back to ${at}`, async () => {
      await api.post(url`/api/v1/volumes/${volume.name}/snapshots/${snapshot.name}/rollback`, newer.length > 0 ? { destroyNewer: true } : {});
      showNotice(`Volume ${volume.name} rolled back to ${snapshot.name}`);
    });
    await refresh();
  });
  clone.addEventListener('click', async () => {
    const answer = await ask({ title: `Clone ${at}`, message: 'A clone is a new writable volume that starts as this snapshot and shares its data.', fields: [{ name: 'name', label: 'Clone name', value: `${volume.name}-${snapshot.name}` }], confirm: 'Clone' });
    if (!answer) return;
    await action(clone, `Cloning ${at}`, async () => {
      await api.post(url`/api/v1/volumes/${volume.name}/snapshots/${snapshot.name}/clones`, { name: answer.name });
      showNotice(`Clone ${answer.name} created from ${at}`);
    });
    await refresh();
  });
  remove.addEventListener('click', async () => {
    const frees = snapshot.reclaimableBytes === undefined ? '' : ` It frees about ${formatBytes(snapshot.reclaimableBytes)}.`;
    const sure = await ask({ title: `Delete snapshot ${at}?`, message: `The volume keeps its current data.${frees}`, confirm: 'Delete', danger: true });
    if (!sure) return;
    await action(remove, `Deleting snapshot ${at}`, async () => {
      await api.delete(url`/api/v1/volumes/${volume.name}/snapshots/${snapshot.name}`);
      showNotice(`Snapshot ${at} deleted`);
    });
    await refresh();
  });

  const reclaimable = snapshot.reclaimableBytes;
  return h(
    'li',
    { 'data-test': 'snapshot', 'data-snapshot': snapshot.name },
    h(
      'div',
      { class: 'node' },
      h('span', { class: 'node-name' }, snapshot.name),
      h('span', { class: 'hint' }, formatTime(snapshot.createdMs), ' · ', formatBytes(snapshot.sizeBytes)),
      h('span', { class: 'reclaim', title: 'stored bytes deleting this snapshot would free' }, 'frees ', figure('snapshot-reclaimable', reclaimable ?? '', reclaimable === undefined ? '—' : formatBytes(reclaimable))),
      h('span', { class: 'buttons' }, rollback, clone, remove),
    ),
    clones.length > 0
      ? h('ul', { class: 'clones' }, clones.map((entry) => h('li', { 'data-test': 'clone', 'data-volume': entry.name }, h('span', { class: 'chip' }, 'clone'), ' ', volumeLink(entry.name))))
      : null,
  );
}

function snapshotTree(volume, all, refresh) {
  const snapshots = [...volume.snapshotList].sort((a, b) => a.createdMs - b.createdMs);
  const head = h('li', { class: 'head', 'data-test': 'snapshot-head' }, h('div', { class: 'node' }, h('span', { class: 'node-name' }, 'Current state'), h('span', { class: 'hint' }, `${formatBytes(volume.mappedBytes)} written`)));
  const items = snapshots.map((snapshot, index) =>
    snapshotItem(
      volume,
      snapshot,
      snapshots.slice(index + 1).map((later) => later.name),
      all.filter((entry) => entry.parent?.volume === volume.name && entry.parent.snapshot === snapshot.name),
      refresh,
    ),
  );
  return h('ol', { class: 'tree', 'data-test': 'snapshot-tree', 'aria-label': `Snapshots of ${volume.name}` }, items, head);
}

function snapshotForm(volume, refresh) {
  const name = h('input', { name: 'name', required: true, autocomplete: 'off', 'data-test': 'snapshot-name' });
  const submit = h('button', { class: 'primary', 'data-test': 'snapshot-create' }, 'Take snapshot');
  const form = h('form', { class: 'inline-form', 'aria-label': 'New snapshot' }, h('label', {}, 'Snapshot name', name), submit);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const snapshotName = name.value.trim();
    void action(submit, `Taking snapshot ${volume}@${snapshotName}`, async () => {
      await api.post(url`/api/v1/volumes/${volume}/snapshots`, { name: snapshotName });
      showNotice(`Snapshot ${volume}@${snapshotName} taken`);
      form.reset();
      await refresh();
    });
  });
  return form;
}

export function mount(root, name) {
  let disposed = false;
  const summary = h('div', { 'data-test': 'volume-detail' }, h('p', { class: 'hint' }, 'Loading…'));
  const tree = h('div');
  root.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/volumes' }, 'Volumes'), ' / ', name),
    h('h1', {}, name),
    summary,
    h('section', { 'aria-label': 'Snapshots' }, h('h2', {}, 'Snapshots'), snapshotForm(name, () => refresh()), tree),
  );

  const refresh = coalesced(async () => {
    try {
      const [volume, all, exports] = await Promise.all([api.get(url`/api/v1/volumes/${name}`), api.get('/api/v1/volumes'), api.get('/api/v1/exports')]);
      if (disposed) return;
      const resize = h('button', { type: 'button', 'data-test': 'volume-resize' }, 'Resize');
      const remove = h('button', { type: 'button', class: 'danger', 'data-test': 'volume-delete' }, 'Delete volume');
      resize.addEventListener('click', async () => (await resizeVolume(volume, resize)) && refresh());
      remove.addEventListener('click', async () => {
        if (await deleteVolume(volume, remove)) location.hash = '#/volumes';
      });
      const uris = exports.filter((entry) => entry.volume === name && entry.snapshot === null).flatMap((entry) => entry.uris);
      summary.replaceChildren(
        facts([
          ['Pool', volume.pool],
          ['Size', figure('volume-size', volume.sizeBytes, formatBytes(volume.sizeBytes))],
          ['Written', figure('volume-mapped', volume.mappedBytes, formatBytes(volume.mappedBytes))],
          ['Stored only by this volume', figure('volume-unique', volume.uniqueStoredBytes, formatBytes(volume.uniqueStoredBytes))],
          ['Chunks unique / shared', `${volume.uniqueChunks} / ${volume.sharedChunks}`],
          ['Created', formatTime(volume.createdMs)],
          ['Clone of', volume.parent ? [volumeLink(volume.parent.volume), `@${volume.parent.snapshot}`] : '—'],
          ['Clones', volume.clones.length > 0 ? volume.clones.flatMap((clone, index) => [index > 0 ? ', ' : '', volumeLink(clone)]) : '—'],
          ['NBD', uris.length > 0 ? uris.map((uri) => h('code', { class: 'uri', 'data-test': 'volume-uri' }, uri)) : '—'],
        ]),
        h('div', { class: 'buttons' }, resize, remove),
      );
      tree.replaceChildren(volume.snapshotList.length > 0 ? snapshotTree(volume, all, refresh) : h('p', { class: 'hint', 'data-test': 'no-snapshots' }, 'No snapshots yet.'));
    } catch (error) {
      if (disposed) return;
      showError(error, `Loading volume ${name}`);
      if (error.code === 'STRATA_E_VOLUME_NOT_FOUND') summary.replaceChildren(h('p', {}, `There is no volume ${name}. `, h('a', { href: '#/volumes' }, 'All volumes')));
    }
  });
  void refresh();
  // Data written over NBD changes the accounting without an event.
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
