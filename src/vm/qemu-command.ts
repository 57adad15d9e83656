/*
 * The QEMU command line of a VM. Every disk is a Strata volume reached through the
 * daemon's private NBD unix socket (`-blockdev driver=nbd`), with discard passed through
 * so guest TRIM reclaims pool space, and a reconnect delay so a restarting daemon stalls
 * the guest's I/O instead of failing it. QEMU starts paused (-S) with its QMP, serial
 * console (also logged to a file, afresh at each start), guest-agent channel and VNC display on unix sockets in
 * the VM's run folder; the manager attaches over QMP and then lets it run.
 */
import * as path from 'node:path';
import type { VmDefinition } from './definition.js';

export interface VmPaths {
  readonly dir: string;
  readonly qmp: string;
  readonly serial: string;
  readonly serialLog: string;
  readonly agent: string;
  readonly vnc: string;
  readonly log: string;
  readonly cloudInit: string;
}

export function vmPaths(vmsDir: string, name: string): VmPaths {
  const dir = path.join(vmsDir, name);
  return {
    dir,
    qmp: path.join(dir, 'qmp.sock'),
    serial: path.join(dir, 'serial.sock'),
    serialLog: path.join(dir, 'serial.log'),
    agent: path.join(dir, 'agent.sock'),
    vnc: path.join(dir, 'vnc.sock'),
    log: path.join(dir, 'qemu.log'),
    cloudInit: path.join(dir, 'cidata'),
  };
}

/** Seconds QEMU's NBD client keeps retrying a lost connection before failing I/O. */
export const nbdReconnectDelaySeconds = 60;

export interface QemuCommandInput {
  readonly definition: VmDefinition;
  readonly paths: VmPaths;
  readonly accel: 'kvm' | 'tcg';
  /** The daemon's private NBD socket. */
  readonly nbdSocket: string;
  readonly hasCloudInit: boolean;
}

function diskArgs(input: QemuCommandInput): string[] {
  return input.definition.disks.flatMap((disk, index) => [
    '-blockdev',
    JSON.stringify({
      driver: 'nbd',
      'node-name': `disk${index}`,
      server: { type: 'unix', path: input.nbdSocket },
      export: disk.volume,
      'reconnect-delay': nbdReconnectDelaySeconds,
      discard: 'unmap',
    }),
    '-device',
    `virtio-blk-pci,drive=disk${index},id=vd${index},bootindex=${index + 1}`,
  ]);
}

function nicArgs(definition: VmDefinition): string[] {
  return definition.nics.flatMap((nic, index) => {
    const netdev =
      nic.mode === 'user' ? `user,id=net${index}` : nic.mode === 'bridge' ? `bridge,id=net${index},br=${nic.bridge}` : `tap,id=net${index},ifname=${nic.tap},script=no,downscript=no`;
    // romfile= (empty): no option ROM, so the NIC works without the iPXE ROM package.
    return ['-netdev', netdev, '-device', `virtio-net-pci,netdev=net${index},id=nic${index},romfile=${nic.mac === undefined ? '' : `,mac=${nic.mac}`}`];
  });
}

function bootArgs(definition: VmDefinition): string[] {
  if (!definition.boot) return [];
  const args = ['-kernel', definition.boot.kernel];
  if (definition.boot.initrd) args.push('-initrd', definition.boot.initrd);
  if (definition.boot.append) args.push('-append', definition.boot.append);
  return args;
}

function cloudInitArgs(input: QemuCommandInput): string[] {
  if (!input.hasCloudInit) return [];
  // A read-only FAT view of the seed folder, labelled cidata: cloud-init's NoCloud source.
  const node = JSON.stringify({ driver: 'vvfat', 'node-name': 'cidata', dir: input.paths.cloudInit, label: 'cidata', 'read-only': true });
  return ['-blockdev', node, '-device', 'virtio-blk-pci,drive=cidata,id=cidata'];
}

export function qemuArgs(input: QemuCommandInput): string[] {
  const { definition, paths } = input;
  return [
    '-name', `guest=${definition.name},debug-threads=on`,
    '-machine', 'q35',
    '-accel', input.accel,
    ...(input.accel === 'kvm' ? ['-cpu', 'host'] : []),
    '-smp', String(definition.cpus),
    '-m', `${definition.memoryBytes / (1024 * 1024)}M`,
    '-nodefaults', '-no-user-config',
    '-S',
    '-qmp', `unix:${paths.qmp},server=on,wait=off`,
    '-chardev', `socket,id=serial0,path=${paths.serial},server=on,wait=off,logfile=${paths.serialLog},logappend=off`,
    '-serial', 'chardev:serial0',
    '-chardev', `socket,id=agent0,path=${paths.agent},server=on,wait=off`,
    '-device', 'virtio-serial-pci,id=vser0',
    '-device', 'virtserialport,bus=vser0.0,chardev=agent0,name=org.qemu.guest_agent.0',
    '-vga', 'std',
    '-display', 'none',
    '-vnc', `unix:${paths.vnc}`,
    ...diskArgs(input),
    ...cloudInitArgs(input),
    ...nicArgs(definition),
    ...bootArgs(definition),
  ];
}
