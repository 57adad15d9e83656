/*
 * The VMs page: every VM the daemon manages in one table (state, vCPUs, memory, disks in
 * boot order, the accelerator QEMU runs under with the reason it was chosen on hover)
 * with the lifecycle buttons that fit its state: start; stop (an ACPI power-down that
 * turns into a hard stop after a while, or at once with force); pause and resume;
 * reset; delete (stopped only, optionally with its disk volumes). Below it a form to
 * define a VM: name, vCPUs, memory (K/M/G, powers of 1024), disks picked from the
 * volumes no VM uses yet and put in boot order, the network, an optional direct kernel
 * boot (paths on the daemon host) and an optional cloud-init seed. The table and the
 * free volumes refresh on VM and volume events.
 *
 * The lifecycle buttons and the state, accelerator and disk cells are shared with the
 * VM page (vm.js).
 */
import { api, url } from './api.js';
import { formatBytes, parseSize } from './format.js';
import { action, ask, coalesced, figure, h, showError, showNotice } from './ui.js';
import { volumeLink } from './volumes.js';

const MiB = 1024 * 1024;

export function vmLink(name) {
  return h('a', { href: `#/vms/${encodeURIComponent(name)}` }, name);
}

export function stateChip(vm) {
  return h('span', { class: `state vm-${vm.state}`, 'data-test': 'vm-state', 'data-state': vm.state }, vm.state);
}

/** kvm or tcg with the reason QEMU runs under it as a tooltip; a stopped VM has none. */
export function accelCell(vm) {
  if (!vm.accel) return h('span', { class: 'hint', 'data-test': 'vm-accel', 'data-value': '', title: 'chosen when the VM starts' }, '—');
  return h('span', { class: `chip accel-${vm.accel.accel}`, 'data-test': 'vm-accel', 'data-value': vm.accel.accel, title: vm.accel.reason }, vm.accel.accel);
}

export function diskList(vm) {
  const disks = vm.definition.disks;
  if (disks.length === 0) return h('span', { class: 'hint' }, 'none');
  return h('span', { 'data-test': 'vm-disks' }, disks.flatMap((disk, index) => [index > 0 ? ', ' : '', volumeLink(disk.volume)]));
}

async function stopVm(vm, button) {
  const answer = await ask({
    title: `Stop ${vm.name}?`,
    message: 'The guest is asked to shut down (ACPI power button); one that does not is stopped hard after a while. Force stops it at once, like pulling the plug: writes the guest has not flushed are lost.',
    fields: [{ name: 'force', label: 'Force: stop at once', type: 'checkbox' }],
    confirm: 'Stop',
    danger: true,
  });
  if (!answer) return false;
  return Boolean(
    await action(button, `Stopping VM ${vm.name}`, async () => {
      await api.post(url`/api/v1/vms/${vm.name}/stop`, answer.force ? { force: true } : {});
      showNotice(`VM ${vm.name} stopped`);
      return true;
    }),
  );
}

async function resetVm(vm, button) {
  const sure = await ask({ title: `Reset ${vm.name}?`, message: 'Like pressing the reset button: the guest reboots at once, without shutting down.', confirm: 'Reset', danger: true });
  if (!sure) return false;
  return Boolean(
    await action(button, `Resetting VM ${vm.name}`, async () => {
      await api.post(url`/api/v1/vms/${vm.name}/reset`);
      showNotice(`VM ${vm.name} reset`);
      return true;
    }),
  );
}

async function deleteVm(vm, button) {
  const volumes = vm.definition.disks.map((disk) => disk.volume);
  const answer = await ask({
    title: `Delete ${vm.name}?`,
    message: `This deletes the definition of VM ${vm.name} and its snapshot records. It cannot be undone.`,
    fields: volumes.length > 0 ? [{ name: 'withVolumes', label: `Also delete its disk volumes (${volumes.join(', ')}) with their snapshots`, type: 'checkbox' }] : [],
    confirm: 'Delete',
    danger: true,
  });
  if (!answer) return false;
  return Boolean(
    await action(button, `Deleting VM ${vm.name}`, async () => {
      await api.delete(answer.withVolumes ? url`/api/v1/vms/${vm.name}?withVolumes=${'true'}` : url`/api/v1/vms/${vm.name}`);
      showNotice(`VM ${vm.name} deleted${answer.withVolumes ? ` with its volumes ${volumes.join(', ')}` : ''}`);
      return true;
    }),
  );
}

const doing = { start: 'Starting', pause: 'Pausing', resume: 'Resuming' };

function simple(vm, verb, label, done) {
  const button = h('button', { type: 'button', 'data-test': `vm-${verb}`, 'aria-label': `${label} ${vm.name}` }, label);
  button.addEventListener('click', async () => {
    const ok = await action(button, `${doing[verb]} VM ${vm.name}`, async () => {
      const after = await api.post(url`/api/v1/vms/${vm.name}/${verb}`);
      showNotice(verb === 'start' ? `VM ${vm.name} started (${after.accel?.accel ?? 'running'})` : `VM ${vm.name} ${after.state}`);
      return true;
    });
    if (ok) done('changed');
  });
  return button;
}

function confirmed(vm, verb, label, work, done, danger = false) {
  const button = h('button', { type: 'button', class: danger ? 'danger' : null, 'data-test': `vm-${verb}`, 'aria-label': `${label} ${vm.name}` }, label);
  button.addEventListener('click', async () => {
    if (await work(vm, button)) done(verb === 'delete' ? 'deleted' : 'changed');
  });
  return button;
}

/**
 * The buttons that fit the VM's state. done('changed' | 'deleted') is called after an
 * operation succeeded.
 */
export function vmButtons(vm, done) {
  if (vm.state === 'stopped') return [simple(vm, 'start', 'Start', done), confirmed(vm, 'delete', 'Delete', deleteVm, done, true)];
  return [
    vm.state === 'running' ? simple(vm, 'pause', 'Pause', done) : simple(vm, 'resume', 'Resume', done),
    confirmed(vm, 'reset', 'Reset', resetVm, done),
    confirmed(vm, 'stop', 'Stop', stopVm, done, true),
  ];
}

function vmRow(vm, refresh) {
  return h(
    'tr',
    { 'data-test': 'vm-row', 'data-vm': vm.name },
    h('td', {}, vmLink(vm.name)),
    h('td', {}, stateChip(vm)),
    h('td', {}, figure('vm-cpus', vm.definition.cpus, String(vm.definition.cpus))),
    h('td', {}, figure('vm-memory', vm.definition.memoryBytes, formatBytes(vm.definition.memoryBytes))),
    h('td', {}, diskList(vm)),
    h('td', {}, accelCell(vm)),
    h('td', { class: 'buttons' }, vmButtons(vm, () => refresh())),
  );
}

/** The disk picker: volumes no VM uses, added one by one in boot order, reorderable. */
function diskPicker() {
  let free = [];
  const chosen = [];
  const select = h('select', { 'data-test': 'vm-disk-select', 'aria-label': 'Volume to add as a disk' });
  const add = h('button', { type: 'button', 'data-test': 'vm-disk-add' }, 'Add disk');
  const list = h('ol', { class: 'disk-order', 'data-test': 'vm-disk-order', 'aria-label': 'Disks in boot order' });
  const none = h('p', { class: 'hint', 'data-test': 'vm-no-disks' }, 'No disks yet: a VM without disks boots only the kernel given below.');

  const draw = () => {
    const options = free.filter((name) => !chosen.includes(name));
    const picked = select.value;
    select.replaceChildren(...(options.length > 0 ? options.map((name) => h('option', { value: name }, name)) : [h('option', { value: '' }, 'no free volume')]));
    // A refresh keeps what the operator had picked.
    if (options.includes(picked)) select.value = picked;
    select.disabled = options.length === 0;
    add.disabled = options.length === 0;
    list.replaceChildren(
      ...chosen.map((name, index) => {
        const up = h('button', { type: 'button', 'data-test': 'vm-disk-up', 'aria-label': `Boot ${name} earlier`, disabled: index === 0 }, '↑');
        const remove = h('button', { type: 'button', class: 'danger', 'data-test': 'vm-disk-remove', 'aria-label': `Remove disk ${name}` }, 'Remove');
        up.addEventListener('click', () => {
          chosen.splice(index - 1, 2, chosen[index], chosen[index - 1]);
          draw();
        });
        remove.addEventListener('click', () => {
          chosen.splice(index, 1);
          draw();
        });
        return h('li', { 'data-test': 'vm-disk', 'data-volume': name }, h('span', { class: 'chip' }, index === 0 ? 'boots' : `disk ${index + 1}`), ' ', name, ' ', up, ' ', remove);
      }),
    );
    list.hidden = chosen.length === 0;
    none.hidden = chosen.length > 0;
  };
  add.addEventListener('click', () => {
    if (select.value && !chosen.includes(select.value)) chosen.push(select.value);
    draw();
  });
  draw();
  return {
    element: h('div', { class: 'disk-picker' }, h('div', { class: 'inline-form' }, select, add), list, none),
    /** The volumes that can be disks now (from the latest refresh). */
    setFree(names) {
      free = names;
      for (let index = chosen.length - 1; index >= 0; index -= 1) if (!free.includes(chosen[index])) chosen.splice(index, 1);
      draw();
    },
    get disks() {
      return [...chosen];
    },
    reset() {
      chosen.length = 0;
      draw();
    },
  };
}

/** vCPUs and memory as typed (create form, change dialog); throws on what is not valid here. */
export function hardwareFrom(cpusText, memoryText) {
  const cpus = Number(cpusText);
  if (!Number.isInteger(cpus) || cpus < 1) throw new Error(`"${cpusText}" is not a number of vCPUs: give a whole number from 1`);
  const memoryBytes = parseSize(memoryText);
  if (memoryBytes % MiB !== 0) throw new Error(`VM memory is a whole number of MiB: "${memoryText}" is not`);
  return { cpus, memoryBytes };
}

/** NICs as the change dialog writes them: `none`, or `user`, `bridge:NAME`, `tap:NAME` separated by spaces. */
export function nicsText(nics) {
  return nics.length === 0 ? 'none' : nics.map((nic) => (nic.mode === 'user' ? 'user' : `${nic.mode}:${nic.bridge ?? nic.tap}`)).join(' ');
}

/** The NIC list of nicsText's form (the daemon keeps each place's MAC address). */
export function nicsFrom(text) {
  const words = text.trim().split(/\s+/).filter((word) => word.length > 0);
  if (words.length === 1 && words[0] === 'none') return [];
  if (words.length === 0) throw new Error('name the network interfaces, or none');
  return words.map((word) => {
    if (word === 'user') return { mode: 'user' };
    const [mode, name] = word.split(':');
    if ((mode === 'bridge' || mode === 'tap') && name) return { mode, [mode]: name };
    throw new Error(`"${word}" is not user, bridge:NAME or tap:NAME`);
  });
}

/** The POST /api/v1/vms body from the form's fields; throws on what is not valid here. */
function definitionFrom(fields, disks) {
  const { cpus, memoryBytes } = hardwareFrom(fields.cpus.value, fields.memory.value);
  const body = { name: fields.name.value.trim(), cpus, memoryBytes, disks, nics: fields.network.value === 'none' ? [] : [{ mode: 'user' }] };
  const kernel = fields.kernel.value.trim();
  const initrd = fields.initrd.value.trim();
  const append = fields.append.value.trim();
  if (kernel) body.boot = { kernel, ...(initrd ? { initrd } : {}), ...(append ? { append } : {}) };
  else if (initrd || append) throw new Error('an initrd or a kernel command line needs a kernel path');
  const userData = fields.userData.value;
  const sshKeys = fields.sshKeys.value
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith('#'));
  if (userData.trim() || sshKeys.length > 0) body.cloudInit = { userData: userData.trim() ? userData : '#cloud-config\n', ...(sshKeys.length > 0 ? { sshKeys } : {}) };
  return body;
}

function createForm(refresh) {
  const input = (name, props = {}) => h('input', { name, autocomplete: 'off', 'data-test': `vm-create-${name}`, ...props });
  const fields = {
    name: input('name', { required: true }),
    cpus: input('cpus', { type: 'number', min: 1, max: 256, step: 1, value: 1, required: true, class: 'narrow' }),
    memory: input('memory', { value: '512M', placeholder: 'e.g. 2G', required: true, class: 'narrow' }),
    network: h('select', { name: 'network', 'data-test': 'vm-create-network' }, h('option', { value: 'user' }, 'user-mode NAT'), h('option', { value: 'none' }, 'none')),
    kernel: input('kernel', { placeholder: '/boot/vmlinuz', class: 'wide' }),
    initrd: input('initrd', { placeholder: '/boot/initrd.img', class: 'wide' }),
    // Not named "append": a form's named controls shadow its methods (form.append).
    append: input('append', { name: 'cmdline', placeholder: 'console=ttyS0 root=/dev/vda1', class: 'wide' }),
    userData: h('textarea', { name: 'userData', rows: 6, 'data-test': 'vm-create-user-data', placeholder: '#cloud-config\npackages: [qemu-guest-agent]', spellcheck: 'false' }),
    sshKeys: h('textarea', { name: 'sshKeys', rows: 6, 'data-test': 'vm-create-ssh-keys', placeholder: 'ssh-ed25519 AAAA… user@host (one key a line)', spellcheck: 'false' }),
  };
  const disks = diskPicker();
  const submit = h('button', { class: 'primary', 'data-test': 'vm-create-submit' }, 'Create VM');
  const form = h(
    'form',
    { class: 'vm-form', 'aria-label': 'New VM' },
    h('div', { class: 'inline-form' }, h('label', {}, 'Name', fields.name), h('label', {}, 'vCPUs', fields.cpus), h('label', {}, 'Memory', fields.memory), h('label', {}, 'Network', fields.network)),
    h('fieldset', {}, h('legend', {}, 'Disks, in boot order'), disks.element),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Direct kernel boot (optional)'),
      h('div', { class: 'inline-form' }, h('label', {}, 'Kernel path on the daemon host', fields.kernel), h('label', {}, 'Initrd path', fields.initrd), h('label', {}, 'Kernel command line', fields.append)),
    ),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Cloud-init (optional)'),
      h('div', { class: 'inline-form' }, h('label', { class: 'grow' }, 'User-data', fields.userData), h('label', { class: 'grow' }, 'SSH public keys', fields.sshKeys)),
      h('p', { class: 'hint' }, 'Given to the guest as a NoCloud seed disk (label cidata); the keys become its public-keys meta-data.'),
    ),
    submit,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const vmName = fields.name.value.trim();
    void action(submit, `Creating VM ${vmName}`, async () => {
      const created = await api.post('/api/v1/vms', definitionFrom(fields, disks.disks));
      const disksText = created.definition.disks.length > 0 ? `, disks ${created.definition.disks.map((disk) => disk.volume).join(', ')}` : '';
      showNotice(`VM ${created.name} created (${created.definition.cpus} vCPUs, ${formatBytes(created.definition.memoryBytes)}${disksText})`);
      form.reset();
      disks.reset();
      await refresh();
    });
  });
  return {
    element: h(
      'section',
      { 'aria-label': 'Create a VM' },
      h('h2', {}, 'New VM'),
      form,
      h('p', { class: 'hint' }, 'Memory is a whole number of MiB; K, M and G are powers of 1024. A volume can be a disk of one VM only.'),
    ),
    setFree: disks.setFree,
  };
}

export function mount(root) {
  let disposed = false;
  const table = h('div', { 'data-test': 'vms' }, h('p', { class: 'hint' }, 'Loading VMs…'));
  const form = createForm(() => refresh());
  root.append(h('h1', {}, 'VMs'), table, form.element);

  const refresh = coalesced(async () => {
    try {
      const [vms, volumes] = await Promise.all([api.get('/api/v1/vms'), api.get('/api/v1/volumes')]);
      if (disposed) return;
      const used = new Set(vms.flatMap((vm) => vm.definition.disks.map((disk) => disk.volume)));
      form.setFree(volumes.map((volume) => volume.name).filter((name) => !used.has(name)));
      if (vms.length === 0) {
        table.replaceChildren(h('p', { class: 'hint', 'data-test': 'no-vms' }, 'No VMs yet: define one below.'));
        return;
      }
      table.replaceChildren(
        h(
          'table',
          { 'data-test': 'vm-table' },
          h('thead', {}, h('tr', {}, ['Name', 'State', 'vCPUs', 'Memory', 'Disks', 'Accelerator', ''].map((title) => h('th', {}, title)))),
          h('tbody', {}, vms.map((vm) => vmRow(vm, refresh))),
        ),
      );
    } catch (error) {
      showError(error, 'Loading VMs');
    }
  });
  void refresh();

  return {
    onEvent(event) {
      if (/^(vm|volume)\./.test(event.kind)) void refresh();
    },
    dispose() {
      disposed = true;
    },
  };
}
