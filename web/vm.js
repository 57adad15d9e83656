/*
 * One VM: its definition and state (with the lifecycle buttons of the VMs page), and
 * three tabs: the serial console (xterm.js; keystrokes go to the guest), the display
 * (noVNC; a stopped VM says so) and the VM snapshots. The tab is part of the URL
 * (#/vms/NAME/console|vnc|snapshots), switched in place so the console keeps its
 * connection and scrollback.
 *
 * A VM snapshot is every disk snapshotted at one instant; the list says how the guest
 * was held still for it (fsfreeze through the guest agent, pause, or offline for a
 * stopped VM). Restoring needs the VM stopped and, when newer snapshots exist, a
 * confirmation that they are destroyed; cloning makes a new VM whose disks are instant
 * clones of the snapshot's. A stopped VM's vCPUs, memory and kernel command line can be
 * changed. The page refreshes on the VM's events.
 */
/* global history */
import { api, url } from './api.js';
import { formatBytes, formatTime, sizeInput } from './format.js';
import { action, ask, coalesced, facts, figure, h, showError, showNotice } from './ui.js';
import { serialPanel, vncPanel } from './vm-screens.js';
import { accelCell, diskList, hardwareFrom, nicsFrom, nicsText, stateChip, vmButtons } from './vms.js';

const tabs = [
  { key: 'console', title: 'Serial console' },
  { key: 'vnc', title: 'Display (VNC)' },
  { key: 'snapshots', title: 'Snapshots' },
];

const methods = {
  fsfreeze: 'file systems frozen through the guest agent',
  pause: 'the guest was paused for the moment',
  offline: 'the VM was stopped',
};

function bootText(boot) {
  if (!boot) return 'from its first disk';
  return h(
    'span',
    { 'data-test': 'vm-boot' },
    'kernel ',
    h('code', {}, boot.kernel),
    boot.initrd ? [', initrd ', h('code', {}, boot.initrd)] : null,
    boot.append ? [', command line ', h('code', {}, boot.append)] : null,
  );
}

function cloudInitText(seed) {
  if (!seed) return 'none';
  const keys = seed.sshKeys?.length ?? 0;
  return `NoCloud seed${keys > 0 ? ` with ${keys} SSH key${keys === 1 ? '' : 's'}` : ''}`;
}

function summaryOf(vm) {
  const nics = vm.definition.nics;
  return facts([
    ['State', stateChip(vm)],
    ['vCPUs', figure('vm-cpus', vm.definition.cpus, String(vm.definition.cpus))],
    ['Memory', figure('vm-memory', vm.definition.memoryBytes, formatBytes(vm.definition.memoryBytes))],
    ['Disks (boot order)', diskList(vm)],
    ['Network', nics.length === 0 ? 'none' : nics.map((nic) => `${nic.mode === 'user' ? 'user-mode NAT' : `${nic.mode} ${nic.bridge ?? nic.tap ?? ''}`}${nic.mac ? ` (${nic.mac})` : ''}`).join(', ')],
    ['Boot', bootText(vm.definition.boot)],
    ['Cloud-init', cloudInitText(vm.definition.cloudInit)],
    ['Accelerator', accelCell(vm)],
    ['Started', vm.startedMs ? formatTime(vm.startedMs) : '—'],
    ['QEMU pid', vm.pid ?? '—'],
    ['Created', formatTime(vm.createdMs)],
  ]);
}

/**
 * "Change" for a stopped VM: vCPUs, memory, disks in boot order, network interfaces and
 * the kernel command line of a direct boot that has one (the guest sees them at its
 * next start; the CLI and API change cloud-init too).
 */
function changeButton(vm, done) {
  const button = h('button', { type: 'button', 'data-test': 'vm-change', 'aria-label': `Change ${vm.name}` }, 'Change');
  button.addEventListener('click', async () => {
    const d = vm.definition;
    const answer = await ask({
      title: `Change ${vm.name}`,
      message: 'The guest sees the change at its next start.',
      fields: [
        { name: 'cpus', label: 'vCPUs', value: String(d.cpus) },
        { name: 'memory', label: 'Memory (e.g. 512M, 2G)', value: sizeInput(d.memoryBytes) },
        { name: 'disks', label: 'Disks: volumes in boot order, or none', value: disksText(d.disks) },
        { name: 'nics', label: 'Network interfaces (user, bridge:NAME, tap:NAME; or none)', value: nicsText(d.nics) },
        ...(d.boot?.append ? [{ name: 'cmdline', label: 'Kernel command line', value: d.boot.append }] : []),
      ],
      confirm: 'Change',
    });
    if (!answer) return;
    await action(button, `Changing VM ${vm.name}`, async () => {
      const body = hardwareFrom(answer.cpus, answer.memory);
      if (answer.disks !== disksText(d.disks)) body.disks = answer.disks === 'none' ? [] : answer.disks.split(/\s+/);
      if (answer.nics !== nicsText(d.nics)) body.nics = nicsFrom(answer.nics);
      if (d.boot?.append) body.boot = { ...d.boot, append: answer.cmdline };
      const changed = await api.patch(url`/api/v1/vms/${vm.name}`, body);
      showNotice(`VM ${vm.name} changed: ${changed.definition.cpus} vCPUs, ${formatBytes(changed.definition.memoryBytes)}`);
      done();
    });
  });
  return button;
}

function disksText(disks) {
  return disks.length === 0 ? 'none' : disks.map((disk) => disk.volume).join(' ');
}

/** Snapshots oldest first; "newer" as the daemon counts it (time, then name). */
function ordered(snapshots) {
  return [...snapshots].sort((a, b) => a.createdMs - b.createdMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function snapshotRow(vm, snapshot, newer, refresh) {
  const at = `${vm.name}@${snapshot.name}`;
  const stopped = vm.state === 'stopped';
  const restore = h(
    'button',
    { type: 'button', class: 'danger', 'data-test': 'vm-snapshot-restore', 'aria-label': `Restore ${at}`, disabled: !stopped, title: stopped ? null : 'Stop the VM to restore it' },
    'Restore',
  );
  const clone = h('button', { type: 'button', 'data-test': 'vm-snapshot-clone', 'aria-label': `Clone ${at} to a new VM` }, 'Clone to new VM');
  restore.addEventListener('click', async () => {
    const lost = newer.length > 0 ? ` The newer snapshots ${newer.join(', ')} are destroyed.` : '';
    const sure = await ask({ title: `Restore ${vm.name}?`, message: `Every disk goes back to ${snapshot.name} (${formatTime(snapshot.createdMs)}); what was written since is lost.${lost}`, confirm: 'Restore', danger: true });
    if (!sure) return;
    await action(restore, `Restoring ${at}`, async () => {
      await api.post(url`/api/v1/vms/${vm.name}/snapshots/${snapshot.name}/restore`, newer.length > 0 ? { destroyNewer: true } : {});
      showNotice(`VM ${vm.name} restored to ${snapshot.name}`);
    });
    await refresh();
  });
  clone.addEventListener('click', async () => {
    const answer = await ask({
      title: `Clone ${at}`,
      message: 'A new VM with the same definition whose disks are instant clones of this snapshot’s (they share its data).',
      fields: [{ name: 'name', label: 'New VM name', value: `${vm.name}-${snapshot.name}` }],
      confirm: 'Clone',
    });
    if (!answer) return;
    await action(clone, `Cloning ${at}`, async () => {
      const made = await api.post(url`/api/v1/vms/${vm.name}/clones`, { name: answer.name, snapshot: snapshot.name });
      showNotice(`VM ${made.name} cloned from ${at} (disks ${made.definition.disks.map((disk) => disk.volume).join(', ')})`);
    });
    await refresh();
  });
  return h(
    'tr',
    { 'data-test': 'vm-snapshot', 'data-snapshot': snapshot.name },
    h('td', { class: 'node-name' }, snapshot.name),
    h('td', {}, formatTime(snapshot.createdMs)),
    h('td', {}, h('span', { class: `chip method-${snapshot.method}`, 'data-test': 'vm-snapshot-method', 'data-value': snapshot.method, title: methods[snapshot.method] }, snapshot.method)),
    h('td', {}, snapshot.disks.map((disk, index) => [index > 0 ? ', ' : '', h('code', {}, `${disk.volume}@${disk.snapshot}`)])),
    h('td', { class: 'buttons' }, restore, clone),
  );
}

function snapshotsPanel(name, refresh) {
  const input = h('input', { name: 'name', required: true, autocomplete: 'off', 'data-test': 'vm-snapshot-name' });
  const submit = h('button', { class: 'primary', 'data-test': 'vm-snapshot-create' }, 'Take snapshot');
  const form = h('form', { class: 'inline-form', 'aria-label': 'New VM snapshot' }, h('label', {}, 'Snapshot name', input), submit);
  const cloneNow = h('button', { type: 'button', 'data-test': 'vm-clone', 'aria-label': `Clone ${name} from its current state` }, 'Clone from the current state');
  const list = h('div', { 'data-test': 'vm-snapshots' });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const snapshotName = input.value.trim();
    void action(submit, `Taking snapshot ${name}@${snapshotName}`, async () => {
      const taken = await api.post(url`/api/v1/vms/${name}/snapshots`, { name: snapshotName });
      showNotice(`Snapshot ${name}@${taken.name} taken (${taken.method}: ${methods[taken.method] ?? taken.method})`);
      form.reset();
      await refresh();
    });
  });
  cloneNow.addEventListener('click', async () => {
    const answer = await ask({
      title: `Clone ${name}`,
      message: `A snapshot of ${name} is taken now (it is kept, named clone-NEWNAME) and the new VM’s disks are instant clones of it.`,
      fields: [{ name: 'name', label: 'New VM name', value: `${name}-clone` }],
      confirm: 'Clone',
    });
    if (!answer) return;
    await action(cloneNow, `Cloning ${name}`, async () => {
      const made = await api.post(url`/api/v1/vms/${name}/clones`, { name: answer.name });
      showNotice(`VM ${made.name} cloned from ${name}`);
    });
    await refresh();
  });
  const element = h(
    'div',
    {},
    h('div', { class: 'inline-form' }, form, cloneNow),
    h('p', { class: 'hint' }, 'A VM snapshot holds every disk at one instant. A running guest is frozen through its guest agent when one answers, else paused for that instant.'),
    list,
  );
  return {
    element,
    update(vm) {
      const snapshots = ordered(vm.snapshots);
      list.replaceChildren(
        snapshots.length === 0
          ? h('p', { class: 'hint', 'data-test': 'no-vm-snapshots' }, 'No snapshots yet.')
          : h(
              'table',
              { 'data-test': 'vm-snapshot-table' },
              h('thead', {}, h('tr', {}, ['Name', 'Taken', 'Method', 'Disk snapshots', ''].map((title) => h('th', {}, title)))),
              h(
                'tbody',
                {},
                snapshots.map((snapshot, index) =>
                  snapshotRow(
                    vm,
                    snapshot,
                    snapshots.slice(index + 1).map((later) => later.name),
                    refresh,
                  ),
                ),
              ),
            ),
      );
    },
    shown() {},
    hidden() {},
    dispose() {},
  };
}

export function mount(root, name, initialTab) {
  let disposed = false;
  const heading = h('h1', {}, name);
  const summary = h('div', { 'data-test': 'vm-detail' }, h('p', { class: 'hint' }, 'Loading…'));
  const buttons = h('div', { class: 'buttons', 'data-test': 'vm-buttons' });

  const recheck = async () => {
    try {
      const vm = await api.get(url`/api/v1/vms/${name}`);
      void refresh();
      return vm;
    } catch {
      return null;
    }
  };
  const panels = {
    console: serialPanel(name, recheck),
    vnc: vncPanel(name, recheck),
    snapshots: snapshotsPanel(name, () => refresh()),
  };
  let current = tabs.some((tab) => tab.key === initialTab) ? initialTab : 'console';
  const tabButtons = tabs.map((tab) =>
    h('button', { type: 'button', role: 'tab', id: `vm-tab-${tab.key}`, 'aria-controls': `vm-panel-${tab.key}`, 'data-test': `vm-tab-${tab.key}`, onclick: () => select(tab.key) }, tab.title),
  );
  const tabPanels = tabs.map((tab) => h('div', { role: 'tabpanel', id: `vm-panel-${tab.key}`, 'aria-labelledby': `vm-tab-${tab.key}`, 'data-test': `vm-panel-${tab.key}` }, panels[tab.key].element));
  const body = h('div', { hidden: true }, h('div', { class: 'tabs', role: 'tablist', 'aria-label': `Views of ${name}` }, tabButtons), tabPanels);

  function select(key) {
    tabs.forEach((tab, index) => {
      const selected = tab.key === key;
      tabButtons[index].setAttribute('aria-selected', String(selected));
      tabButtons[index].tabIndex = selected ? 0 : -1;
      tabPanels[index].hidden = !selected;
    });
    if (key !== current) panels[current].hidden();
    current = key;
    history.replaceState(null, '', `#/vms/${encodeURIComponent(name)}/${key}`);
    void Promise.resolve(panels[key].shown()).catch((error) => showError(error, `Showing ${key}`));
  }

  root.append(h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/vms' }, 'VMs'), ' / ', name), heading, summary, buttons, body);

  let shownOnce = false;
  const refresh = coalesced(async () => {
    try {
      const vm = await api.get(url`/api/v1/vms/${name}`);
      if (disposed) return;
      summary.replaceChildren(summaryOf(vm));
      buttons.replaceChildren(
        ...vmButtons(vm, (what) => {
          if (what === 'deleted') location.hash = '#/vms';
          else void refresh();
        }),
        ...(vm.state === 'stopped' ? [changeButton(vm, () => void refresh())] : []),
      );
      for (const panel of Object.values(panels)) panel.update(vm);
      body.hidden = false;
      if (!shownOnce) {
        shownOnce = true;
        select(current);
      }
    } catch (error) {
      if (disposed) return;
      showError(error, `Loading VM ${name}`);
      if (error.code === 'STRATA_E_VM_NOT_FOUND') {
        summary.replaceChildren(h('p', {}, `There is no VM ${name}. `, h('a', { href: '#/vms' }, 'All VMs')));
        buttons.replaceChildren();
        body.hidden = true;
      }
    }
  });
  void refresh();

  return {
    onEvent(event) {
      if (event.kind.startsWith('vm.') && event.subject === `vm/${name}`) void refresh();
    },
    dispose() {
      disposed = true;
      for (const panel of Object.values(panels)) panel.dispose();
    },
  };
}
