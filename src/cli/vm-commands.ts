/*
 * `strata vm ...`: VM definitions, lifecycle, snapshots, clones and the serial console
 * through the daemon's API. `vm console` connects the terminal to the guest's serial
 * port over the API's WebSocket (raw mode; Ctrl-] leaves).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import WebSocket from 'ws';
import { StrataError } from '../common/errors.js';
import { segment } from './api-client.js';
import { context, print, sizeArgument, snapshotRef } from './context.js';
import { bytes, table } from './format.js';

interface VmAnswer {
  name: string;
  state: string;
  definition: { cpus: number; memoryBytes: number; disks: { volume: string }[]; nics: { mode: string; bridge?: string; tap?: string; mac?: string }[]; boot: { kernel: string } | null };
  pid: number | null;
  accel: { accel: string; reason: string } | null;
  snapshots: { name: string; createdMs: number; method: string; disks: { volume: string }[] }[];
}

const detachKey = 0x1d; // Ctrl-]

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** `user`, `bridge:NAME` or `tap:NAME`, each optionally with `,mac=ADDRESS`. */
function nic(text: string): Record<string, string> {
  const [kind, ...options] = text.split(',');
  const mac: Record<string, string> | null = options.length === 0 ? {} : options.length === 1 && options[0].startsWith('mac=') ? { mac: options[0].slice('mac='.length) } : null;
  const [mode, name] = kind.split(':');
  if (mac !== null && mode === 'user' && name === undefined) return { mode, ...mac };
  if (mac !== null && (mode === 'bridge' || mode === 'tap') && name) return { mode, [mode]: name, ...mac };
  throw new StrataError('STRATA_E_INVALID_ARGUMENT', `--nic takes user, bridge:NAME or tap:NAME, each with an optional ,mac=ADDRESS; not ${JSON.stringify(text)}`);
}

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `cannot read the ${what} ${file}: ${(error as Error).message}`);
  }
}

interface CreateOptions {
  cpus: string;
  memory: string;
  disk: string[];
  nic: string[];
  cloudInit?: string;
  sshKey: string[];
  kernel?: string;
  initrd?: string;
  append?: string;
}

function createBody(name: string, options: CreateOptions): Record<string, unknown> {
  if ((options.initrd || options.append) && !options.kernel) throw new StrataError('STRATA_E_INVALID_ARGUMENT', '--initrd and --append need --kernel');
  return {
    name,
    cpus: Number(options.cpus),
    memoryBytes: sizeArgument(options.memory),
    disks: options.disk,
    nics: options.nic.length > 0 ? options.nic.map(nic) : undefined,
    cloudInit: options.cloudInit
      ? { userData: readText(options.cloudInit, 'cloud-init user-data'), sshKeys: options.sshKey.map((file) => readText(file, 'SSH key').trim()) }
      : undefined,
    boot: options.kernel
      ? { kernel: path.resolve(options.kernel), initrd: options.initrd ? path.resolve(options.initrd) : undefined, append: options.append }
      : undefined,
  };
}

interface SetOptions {
  cpus?: string;
  memory?: string;
  disk: string[];
  nic: string[];
  cloudInit?: string;
  sshKey: string[];
  removeCloudInit?: boolean;
  kernel?: string;
  initrd?: string;
  append?: string;
  bootFromDisk?: boolean;
}

/** The PATCH body for `vm set`: only what was named changes; lists given replace whole lists. */
function setBody(options: SetOptions): Record<string, unknown> {
  const invalid = (message: string) => new StrataError('STRATA_E_INVALID_ARGUMENT', message);
  if ((options.initrd || options.append) && !options.kernel) throw invalid('--initrd and --append need --kernel');
  if (options.kernel && options.bootFromDisk) throw invalid('--kernel and --boot-from-disk contradict each other');
  if (options.cloudInit && options.removeCloudInit) throw invalid('--cloud-init and --remove-cloud-init contradict each other');
  if (options.sshKey.length > 0 && !options.cloudInit) throw invalid('--ssh-key needs --cloud-init');
  const body: Record<string, unknown> = {};
  if (options.cpus !== undefined) body.cpus = Number(options.cpus);
  if (options.memory !== undefined) body.memoryBytes = sizeArgument(options.memory);
  if (options.disk.length > 0) body.disks = options.disk;
  if (options.nic.length > 0) body.nics = options.nic.includes('none') ? [] : options.nic.map(nic);
  if (options.cloudInit) body.cloudInit = { userData: readText(options.cloudInit, 'cloud-init user-data'), sshKeys: options.sshKey.map((file) => readText(file, 'SSH key').trim()) };
  if (options.removeCloudInit) body.cloudInit = null;
  if (options.kernel) body.boot = { kernel: path.resolve(options.kernel), initrd: options.initrd ? path.resolve(options.initrd) : undefined, append: options.append };
  if (options.bootFromDisk) body.boot = null;
  if (Object.keys(body).length === 0) throw invalid('name something to change (see strata vm set --help)');
  return body;
}

function vmText(vm: VmAnswer): string {
  const d = vm.definition;
  return [
    `vm ${vm.name}: ${vm.state}${vm.pid ? ` (pid ${vm.pid}, ${vm.accel?.accel}: ${vm.accel?.reason})` : ''}`,
    `  ${d.cpus} vCPUs, ${bytes(d.memoryBytes)}, disks ${d.disks.map((disk) => disk.volume).join(', ') || 'none'}, nics ${d.nics.map((n) => [n.mode, n.bridge ?? n.tap, n.mac].filter(Boolean).join(' ')).join(', ') || 'none'}${d.boot ? `, kernel ${d.boot.kernel}` : ''}`,
    vm.snapshots.length === 0
      ? '  no snapshots'
      : table(
          vm.snapshots.map((s) => ({ snapshot: s.name, created: new Date(s.createdMs).toISOString(), method: s.method, disks: s.disks.length })),
          ['snapshot', 'created', 'method', 'disks'],
        ),
  ].join('\n');
}

function lifecycleCommands(vm: Command): void {
  for (const verb of ['start', 'reset', 'pause', 'resume'] as const) {
    vm.command(`${verb} <name>`).action(async (name: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const answer = await ctx.client.post<VmAnswer>(`/api/v1/vms/${segment(name)}/${verb}`);
      print(ctx, answer, () => `vm ${name}: ${answer.state}${verb === 'start' && answer.accel ? ` (${answer.accel.accel})` : ''}`);
    });
  }
  vm.command('stop <name>')
    .description('ACPI power-down, then a hard stop after --timeout; --force stops at once')
    .option('--force', 'hard stop now')
    .option('--timeout <seconds>', 'seconds to wait for the guest to power down', '30')
    .action(async (name: string, options: { force?: boolean; timeout: string }, command: Command) => {
      const ctx = context(command);
      const answer = await ctx.client.post<VmAnswer>(`/api/v1/vms/${segment(name)}/stop`, { force: options.force, timeoutMs: Math.round(Number(options.timeout) * 1000) });
      print(ctx, answer, () => `vm ${name}: ${answer.state}`);
    });
  vm.command('delete <name>')
    .option('--with-volumes', 'also delete its disk volumes')
    .action(async (name: string, options: { withVolumes?: boolean }, command: Command) => {
      const ctx = context(command);
      await ctx.client.request('DELETE', `/api/v1/vms/${segment(name)}${options.withVolumes ? '?withVolumes=true' : ''}`);
      print(ctx, { deleted: name }, () => `deleted vm ${name}`);
    });
}

function snapshotCommands(vm: Command): void {
  vm.command('snapshot <target>')
    .description('snapshot every disk of VM@SNAPSHOT at one instant (guest agent freeze, else pause)')
    .action(async (target: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { volume: name, snapshot } = snapshotRef(target);
      const answer = await ctx.client.post<{ method: string }>(`/api/v1/vms/${segment(name)}/snapshots`, { name: snapshot });
      print(ctx, answer, () => `created VM snapshot ${target} (${answer.method})`);
    });
  vm.command('restore <target>')
    .description('roll every disk of a stopped VM back to VM@SNAPSHOT')
    .option('--destroy-newer', 'also delete newer VM snapshots')
    .action(async (target: string, options: { destroyNewer?: boolean }, command: Command) => {
      const ctx = context(command);
      const { volume: name, snapshot } = snapshotRef(target);
      const answer = await ctx.client.post<VmAnswer>(`/api/v1/vms/${segment(name)}/snapshots/${segment(snapshot!)}/restore`, { destroyNewer: options.destroyNewer });
      print(ctx, answer, () => `restored vm ${name} to ${snapshot}`);
    });
  vm.command('clone <source> <new-name>')
    .description('new VM from VM@SNAPSHOT, or from a fresh snapshot of VM (instant volume clones)')
    .action(async (source: string, newName: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { volume: name, snapshot } = snapshotRef(source, true);
      const answer = await ctx.client.post<VmAnswer>(`/api/v1/vms/${segment(name)}/clones`, { name: newName, snapshot });
      print(ctx, answer, () => `created vm ${newName} from ${source} (disks ${answer.definition.disks.map((disk) => disk.volume).join(', ')})`);
    });
}

async function attachConsole(url: string, token: string | undefined, name: string): Promise<void> {
  const address = new URL(`/api/v1/vms/${segment(name)}/console`, url);
  address.protocol = address.protocol === 'https:' ? 'wss:' : 'ws:';
  if (token) address.searchParams.set('access_token', token);
  const socket = new WebSocket(address);
  // Listening from the start: the backlog may arrive with the upgrade answer, and a
  // message emitted before a listener exists is lost.
  socket.on('message', (data: Buffer) => process.stdout.write(data));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('unexpected-response', (_request, response) => reject(new StrataError('STRATA_E_IO', `the console answered HTTP ${response.statusCode}`)));
    socket.once('error', (error) => reject(new StrataError('STRATA_E_DAEMON_UNREACHABLE', `cannot open the console at ${url}: ${error.message}`)));
  });
  process.stderr.write(`connected to the serial console of ${name}; Ctrl-] leaves\n`);
  const raw = process.stdin.isTTY;
  if (raw) process.stdin.setRawMode(true);
  const onInput = (data: Buffer) => {
    if (data.includes(detachKey)) socket.close();
    else socket.send(data);
  };
  process.stdin.on('data', onInput);
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  process.stdin.off('data', onInput);
  if (raw) process.stdin.setRawMode(false);
  process.stdin.pause();
}

export function vmCommands(program: Command): void {
  const vm = program.command('vm').description('virtual machines on QEMU/KVM with disks on Strata volumes');
  vm.command('create <name>')
    .description('define a VM; disks are existing volumes, the first boots')
    .option('--cpus <n>', 'vCPUs', '1')
    .option('--memory <size>', 'memory (512M, 2G)', '512M')
    .option('--disk <volume>', 'a disk (repeat, in boot order)', collect, [])
    .option('--nic <user|bridge:NAME|tap:NAME>', 'a network interface, ,mac=ADDRESS to set its address (repeat; default one user-mode NAT)', collect, [])
    .option('--cloud-init <file>', 'cloud-init user-data (a NoCloud seed is attached)')
    .option('--ssh-key <file>', 'a public key for cloud-init (repeat)', collect, [])
    .option('--kernel <file>', 'boot this kernel directly')
    .option('--initrd <file>', 'initrd for --kernel')
    .option('--append <cmdline>', 'kernel command line for --kernel')
    .action(async (name: string, options: CreateOptions, command: Command) => {
      const ctx = context(command);
      const answer = await ctx.client.post<VmAnswer>('/api/v1/vms', createBody(name, options));
      print(ctx, answer, () => `created vm ${name}`);
    });
  vm.command('set <name>')
    .description('change a stopped VM; the guest sees it at the next start (lists given replace the whole list)')
    .option('--cpus <n>', 'vCPUs')
    .option('--memory <size>', 'memory (512M, 2G)')
    .option('--disk <volume>', 'the disks (repeat, in boot order; fixed while the VM has snapshots)', collect, [])
    .option('--nic <none|user|bridge:NAME|tap:NAME>', 'the network interfaces, ,mac=ADDRESS to set an address (repeat; none for no interface; each keeps the address of the NIC it replaces)', collect, [])
    .option('--cloud-init <file>', 'new cloud-init user-data')
    .option('--ssh-key <file>', 'a public key for that cloud-init (repeat)', collect, [])
    .option('--remove-cloud-init', 'detach the cloud-init seed')
    .option('--kernel <file>', 'boot this kernel directly')
    .option('--initrd <file>', 'initrd for --kernel')
    .option('--append <cmdline>', 'kernel command line for --kernel')
    .option('--boot-from-disk', 'boot from the first disk again instead of a kernel')
    .action(async (name: string, options: SetOptions, command: Command) => {
      const ctx = context(command);
      const answer = await ctx.client.request<VmAnswer>('PATCH', `/api/v1/vms/${segment(name)}`, setBody(options));
      print(ctx, answer, () => vmText(answer));
    });
  vm.command('list').action(async (_options: unknown, command: Command) => {
    const ctx = context(command);
    const list = await ctx.client.get<VmAnswer[]>('/api/v1/vms');
    print(ctx, list, () =>
      table(
        list.map((v) => ({
          name: v.name,
          state: v.state,
          cpus: v.definition.cpus,
          memory: bytes(v.definition.memoryBytes),
          disks: v.definition.disks.map((disk) => disk.volume).join(','),
          accel: v.accel?.accel ?? '',
          snapshots: v.snapshots.length,
        })),
        ['name', 'state', 'cpus', 'memory', 'disks', 'accel', 'snapshots'],
      ),
    );
  });
  vm.command('show <name>').action(async (name: string, _options: unknown, command: Command) => {
    const ctx = context(command);
    const answer = await ctx.client.get<VmAnswer>(`/api/v1/vms/${segment(name)}`);
    print(ctx, answer, () => vmText(answer));
  });
  vm.command('console <name>')
    .description('attach the terminal to the serial console (Ctrl-] leaves)')
    .action(async (name: string, _options: unknown, command: Command) => {
      const globals = command.optsWithGlobals() as { url: string; token?: string };
      await attachConsole(globals.url, globals.token, name);
    });
  lifecycleCommands(vm);
  snapshotCommands(vm);
}
