/*
 * The VM manager: VM definitions (vm-store.ts), their QEMU processes, and the operations
 * an operator runs on them. Each VM has one operation at a time (a per-VM mutex); state
 * comes from QEMU itself (QMP status and events), never from a guess. The manager keeps
 * a QMP connection and a serial console hub for every running VM; when QEMU exits (the
 * guest powered off, or it crashed) the connection closes and the VM is marked stopped.
 *
 * Restart: QEMU runs detached, so when the daemon starts again the manager finds each
 * recorded process (pid checked against its command line), reattaches to its QMP socket
 * and reconciles the state; a recorded VM whose QEMU is gone is marked stopped.
 *
 * Operations that touch several stores register undo steps (volume snapshots taken,
 * clone volumes made, a QEMU started) and run them if a later step fails, so a failed
 * operation leaves nothing half-done.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isStrataError, StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import type { Logger } from '../common/log.js';
import { validateName } from '../common/names.js';
import { Mutex, type PoolSet } from '../engine/index.js';
import { chooseAccel, qemuBinary, type AccelChoice } from './accelerator.js';
import { writeCloudInitSeed } from './cloud-init.js';
import { checkDefinition, newMac, type NicDefinition, type VmDefinition, type VmDefinitionChanges } from './definition.js';
import { GuestAgent } from './agent-client.js';
import { QmpClient, QmpCommands, type QmpEvent } from './qmp-client.js';
import { qemuArgs, vmPaths, type VmPaths } from './qemu-command.js';
import { cpuSeconds, isVmProcess, killVmProcess, qemuLogTail, spawnQemu, waitForExit } from './qemu-process.js';
import { SerialConsole } from './serial-console.js';
import { VmStore, type SnapshotMethod, type VmRecord, type VmSnapshotRecord } from './vm-store.js';

export type VmState = 'stopped' | 'running' | 'paused';

export interface EventSink {
  record(event: { severity: 'info' | 'warning' | 'error'; kind: string; subject: string; message: string }): unknown;
}

export interface VmInfo {
  readonly name: string;
  readonly state: VmState;
  readonly definition: VmDefinition;
  readonly createdMs: number;
  readonly pid: number | null;
  readonly startedMs: number | null;
  readonly accel: AccelChoice | null;
  readonly snapshots: readonly VmSnapshotRecord[];
}

export interface VmUsage {
  readonly name: string;
  readonly running: boolean;
  readonly cpuSeconds: number;
  readonly disks: readonly { volume: string; readBytes: number; writeBytes: number; readOps: number; writeOps: number }[];
}

export interface VmManagerOptions {
  readonly dataDir: string;
  readonly pools: PoolSet;
  /** The daemon's private NBD socket the VMs' disks attach to. */
  readonly nbdSocket: string;
  readonly events: EventSink;
  readonly logger: Logger;
  readonly qemu?: string;
}

interface RunningVm {
  readonly pid: number;
  readonly qmp: QmpClient;
  readonly commands: QmpCommands;
  readonly serial: SerialConsole;
  state: 'running' | 'paused';
  /** Set when the manager itself stops QEMU, so its exit is not reported as a crash. */
  stopping: boolean;
  /** Set when the daemon lets go of a still-running VM (shutdown): nothing more is done. */
  detached: boolean;
  shutdownSeen: boolean;
  readonly exited: Promise<void>;
}

type Undo = () => Promise<unknown> | unknown;

async function withUndo<T>(body: (undo: Undo[]) => Promise<T>): Promise<T> {
  const undo: Undo[] = [];
  try {
    return await body(undo);
  } catch (error) {
    for (const step of undo.reverse()) await Promise.resolve().then(step).catch(() => undefined);
    throw error;
  }
}

export class VmManager {
  private readonly running = new Map<string, RunningVm>();
  private readonly locks = new Map<string, Mutex>();
  private readonly vmsDir: string;
  private readonly qemu: string;

  private constructor(
    private readonly options: VmManagerOptions,
    private readonly store: VmStore,
  ) {
    this.vmsDir = path.join(options.dataDir, 'vms');
    this.qemu = options.qemu ?? qemuBinary;
  }

  /** Opens the VM database and reattaches to every VM whose QEMU is still running. */
  static async open(options: VmManagerOptions): Promise<VmManager> {
    fs.mkdirSync(path.join(options.dataDir, 'vms'), { recursive: true, mode: 0o700 });
    const manager = new VmManager(options, VmStore.open(path.join(options.dataDir, 'vms.sqlite')));
    for (const record of manager.store.list()) {
      if (record.runtime) await manager.reattach(record);
    }
    return manager;
  }

  private lock(name: string): Mutex {
    let mutex = this.locks.get(name);
    if (!mutex) {
      mutex = new Mutex();
      this.locks.set(name, mutex);
    }
    return mutex;
  }

  private event(severity: 'info' | 'warning' | 'error', kind: string, vm: string, message: string): void {
    this.options.events.record({ severity, kind, subject: `vm/${vm}`, message });
  }

  private record(name: string): VmRecord {
    const record = this.store.get(validateName('vm', name));
    if (!record) throw new StrataError('STRATA_E_VM_NOT_FOUND', `no VM is named ${JSON.stringify(name)}`, { vm: name });
    return record;
  }

  private paths(name: string): VmPaths {
    return vmPaths(this.vmsDir, name);
  }

  private info(record: VmRecord): VmInfo {
    const name = record.definition.name;
    const running = this.running.get(name);
    return {
      name,
      state: running ? running.state : 'stopped',
      definition: record.definition,
      createdMs: record.createdMs,
      pid: running ? running.pid : null,
      startedMs: running ? (record.runtime?.startedMs ?? null) : null,
      accel: running && record.runtime ? { accel: record.runtime.accel, reason: record.runtime.accelReason } : null,
      snapshots: this.store.snapshots(name),
    };
  }

  list(): VmInfo[] {
    return this.store.list().map((record) => this.info(record));
  }

  get(name: string): VmInfo {
    return this.info(this.record(name));
  }

  /** The VM that has the volume as a disk, or null. */
  diskOwner(volume: string): string | null {
    return this.store.list().find((record) => record.definition.disks.some((disk) => disk.volume === volume))?.definition.name ?? null;
  }

  private checkDisks(definition: VmDefinition, except?: string): void {
    for (const disk of definition.disks) {
      this.options.pools.volumePool(disk.volume);
      const owner = this.diskOwner(disk.volume);
      if (owner !== null && owner !== except) {
        throw new StrataError('STRATA_E_VOLUME_IN_USE', `volume ${disk.volume} is already a disk of VM ${owner}`, { volume: disk.volume, vm: owner });
      }
    }
  }

  /**
   * The definition with a MAC address on every NIC: given ones kept (in lower case), a NIC
   * without one takes the address of the NIC at its place in `previous` (a definition
   * change keeps the addresses), else a new one. An address another VM has is refused.
   */
  private withMacs(definition: VmDefinition, previous: readonly NicDefinition[]): VmDefinition {
    const others = new Map<string, string>();
    for (const record of this.store.list()) {
      if (record.definition.name === definition.name) continue;
      for (const nic of record.definition.nics) if (nic.mac !== undefined) others.set(nic.mac, record.definition.name);
    }
    const nics = definition.nics.map((nic, index) => ({ ...nic, mac: nic.mac?.toLowerCase() ?? previous[index]?.mac }));
    for (const nic of nics) {
      const owner = nic.mac === undefined ? undefined : others.get(nic.mac);
      if (owner !== undefined) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `MAC address ${nic.mac} belongs to a NIC of VM ${owner}`, { mac: nic.mac, vm: owner });
    }
    const taken = new Set([...others.keys(), ...nics.flatMap((nic) => (nic.mac === undefined ? [] : [nic.mac]))]);
    return {
      ...definition,
      nics: nics.map((nic) => {
        if (nic.mac !== undefined) return nic;
        const mac = newMac(taken);
        taken.add(mac);
        return { ...nic, mac };
      }),
    };
  }

  async create(given: VmDefinition): Promise<VmInfo> {
    checkDefinition(given);
    return this.lock(given.name).run(async () => {
      const definition = checkDefinition(this.withMacs(given, []));
      if (this.store.get(definition.name)) throw new StrataError('STRATA_E_VM_EXISTS', `a VM named ${JSON.stringify(definition.name)} exists`, { vm: definition.name });
      if (this.store.list().length >= limits.vmsMax) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `a daemon keeps at most ${limits.vmsMax} VMs`);
      this.checkDisks(definition);
      this.store.insert(definition, Date.now());
      this.event('info', 'vm.created', definition.name, `VM ${definition.name} created (${definition.cpus} vCPUs, ${definition.memoryBytes / 1048576} MiB, ${definition.disks.length} disks)`);
      return this.get(definition.name);
    });
  }

  /**
   * Changes a stopped VM's definition (what the next start gives the guest): any of
   * vCPUs, memory, disks, NICs, cloud-init, direct boot. Checked as a new definition is;
   * disks are fixed while the VM has snapshots (a restore rolls back the disks each
   * snapshot recorded). Nothing changes when a check fails.
   */
  update(name: string, changes: VmDefinitionChanges): Promise<VmInfo> {
    return this.lock(name).run(async () => {
      const record = this.record(name);
      if (this.running.has(name)) throw new StrataError('STRATA_E_VM_STATE', `VM ${name} is running; stop it before changing its definition`, { vm: name });
      // Fields left out (or given as undefined) keep their value.
      const given = Object.fromEntries(Object.entries(changes).filter(([, value]) => value !== undefined)) as VmDefinitionChanges;
      const definition = checkDefinition(this.withMacs({ ...record.definition, ...given, name }, record.definition.nics));
      const disks = (vm: VmDefinition) => vm.disks.map((disk) => disk.volume).join('\0');
      if (disks(definition) !== disks(record.definition)) {
        const snapshots = this.store.snapshots(name);
        if (snapshots.length > 0) {
          throw new StrataError('STRATA_E_VM_STATE', `VM ${name} has snapshots (${snapshots.map((snapshot) => snapshot.name).join(', ')}); its disks can change only once they are deleted`, { vm: name });
        }
      }
      this.checkDisks(definition, name);
      this.store.setDefinition(definition);
      const changed = Object.keys(given).filter((key) => JSON.stringify(definition[key as keyof VmDefinition]) !== JSON.stringify(record.definition[key as keyof VmDefinition]));
      this.event('info', 'vm.updated', name, `VM ${name} changed${changed.length > 0 ? ` (${changed.join(', ')})` : ' (nothing)'}`);
      return this.get(name);
    });
  }

  start(name: string): Promise<VmInfo> {
    return this.lock(name).run(async () => {
      const record = this.record(name);
      if (this.running.has(name)) throw new StrataError('STRATA_E_VM_STATE', `VM ${name} is already running`, { vm: name });
      this.checkDisks(record.definition, name);
      // Defined before NICs had addresses: they get theirs now, kept from then on.
      if (record.definition.nics.some((nic) => nic.mac === undefined)) this.store.setDefinition(this.withMacs(record.definition, []));
      await this.launch(this.record(name));
      this.event('info', 'vm.started', name, `VM ${name} started (${this.info(this.record(name)).accel?.accel})`);
      return this.get(name);
    });
  }

  private async launch(record: VmRecord): Promise<void> {
    const { definition } = record;
    const paths = this.paths(definition.name);
    fs.mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
    for (const socket of [paths.qmp, paths.serial, paths.agent, paths.vnc]) fs.rmSync(socket, { force: true });
    if (definition.cloudInit) writeCloudInitSeed(paths.cloudInit, definition.name, `${definition.name}-${record.createdMs}`, definition.cloudInit);
    const accel = await chooseAccel({ qemu: this.qemu, logger: this.options.logger });
    const args = qemuArgs({ definition, paths, accel: accel.accel, nbdSocket: this.options.nbdSocket, hasCloudInit: definition.cloudInit !== null });
    await withUndo(async (undo) => {
      const started = spawnQemu(this.qemu, args, paths.log);
      undo.push(() => killVmProcess(started.pid, definition.name));
      const qmp = await this.connectQmp(paths, started.pid, definition.name);
      undo.push(() => qmp.close());
      this.store.setRuntime(definition.name, { pid: started.pid, startedMs: Date.now(), accel: accel.accel, accelReason: accel.reason });
      undo.push(() => this.store.setRuntime(definition.name, null));
      const vm = await this.track(definition.name, started.pid, qmp, 'paused');
      await vm.commands.cont();
      vm.state = 'running';
    });
  }

  /** Waits for QEMU's QMP socket; fails with QEMU's own message if it exits first. */
  private async connectQmp(paths: VmPaths, pid: number, name: string): Promise<QmpClient> {
    const deadline = Date.now() + limits.qmpConnectTimeoutMs;
    for (;;) {
      if (fs.existsSync(paths.qmp)) {
        try {
          return await QmpClient.connect(paths.qmp, { logger: this.options.logger });
        } catch (error) {
          if (Date.now() >= deadline) throw error;
        }
      }
      if (!isVmProcess(pid, name)) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        throw new StrataError('STRATA_E_HYPERVISOR', `QEMU for VM ${name} exited at start: ${qemuLogTail(paths.log)}`, { vm: name });
      }
      if (Date.now() >= deadline) throw new StrataError('STRATA_E_HYPERVISOR', `QEMU for VM ${name} did not open its QMP socket`, { vm: name });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Starts following a QEMU: its events, its exit, its serial console. */
  private async track(name: string, pid: number, qmp: QmpClient, state: 'running' | 'paused'): Promise<RunningVm> {
    const paths = this.paths(name);
    const serial = new SerialConsole(paths.serial, paths.serialLog);
    await serial.attach().catch((error: unknown) => this.options.logger.log('warn', 'serial console not attached', { vm: name, error: String(error) }));
    const vm: RunningVm = {
      pid,
      qmp,
      commands: new QmpCommands(qmp),
      serial,
      state,
      stopping: false,
      detached: false,
      shutdownSeen: false,
      exited: qmp.closed.then(() => this.exited(name, vm)),
    };
    qmp.onEvent((event) => this.onQmpEvent(name, vm, event));
    this.running.set(name, vm);
    return vm;
  }

  private onQmpEvent(name: string, vm: RunningVm, event: QmpEvent): void {
    if (event.event === 'STOP') vm.state = 'paused';
    if (event.event === 'RESUME') vm.state = 'running';
    if (event.event === 'SHUTDOWN') vm.shutdownSeen = true;
    if (event.event === 'RESET' && !vm.stopping) this.event('info', 'vm.reset', name, `VM ${name} was reset`);
    if (event.event === 'GUEST_PANICKED') this.event('error', 'vm.panicked', name, `the guest of VM ${name} panicked`);
  }

  private async exited(name: string, vm: RunningVm): Promise<void> {
    if (vm.detached) return;
    await waitForExit(vm.pid, name, limits.vmPowerdownTimeoutMs);
    killVmProcess(vm.pid, name);
    vm.serial.close();
    if (this.running.get(name) === vm) this.running.delete(name);
    if (this.store.get(name)) this.store.setRuntime(name, null);
    if (vm.stopping) return;
    if (vm.shutdownSeen) this.event('info', 'vm.stopped', name, `VM ${name} powered off`);
    else this.event('error', 'vm.crashed', name, `QEMU of VM ${name} exited unexpectedly: ${qemuLogTail(this.paths(name).log)}`);
  }

  private async reattach(record: VmRecord): Promise<void> {
    const name = record.definition.name;
    const pid = record.runtime!.pid;
    if (!isVmProcess(pid, name)) {
      this.store.setRuntime(name, null);
      this.event('warning', 'vm.stopped', name, `VM ${name} stopped while the daemon was away`);
      return;
    }
    try {
      const qmp = await QmpClient.connect(this.paths(name).qmp, { logger: this.options.logger });
      const status = await new QmpCommands(qmp).queryStatus();
      await this.track(name, pid, qmp, status.running ? 'running' : 'paused');
      this.event('info', 'vm.reattached', name, `reattached to VM ${name} (${status.status})`);
    } catch (error) {
      killVmProcess(pid, name);
      this.store.setRuntime(name, null);
      this.event('error', 'vm.crashed', name, `QEMU of VM ${name} (pid ${pid}) did not answer QMP and was stopped: ${(error as Error).message}`);
    }
  }

  private runningVm(name: string): RunningVm {
    this.record(name);
    const vm = this.running.get(name);
    if (!vm) throw new StrataError('STRATA_E_VM_STATE', `VM ${name} is not running`, { vm: name });
    return vm;
  }

  /** ACPI power-down, then a hard stop after `timeoutMs`; `force` stops at once. */
  stop(name: string, options: { force?: boolean; timeoutMs?: number } = {}): Promise<VmInfo> {
    return this.lock(name).run(async () => {
      const vm = this.runningVm(name);
      const method = await this.halt(name, vm, options);
      this.event('info', 'vm.stopped', name, `VM ${name} stopped (${method})`);
      return this.get(name);
    });
  }

  private async halt(name: string, vm: RunningVm, options: { force?: boolean; timeoutMs?: number }): Promise<'powerdown' | 'hard stop'> {
    vm.stopping = true;
    let method: 'powerdown' | 'hard stop' = 'hard stop';
    if (!options.force) {
      await vm.commands.systemPowerdown().catch(() => undefined);
      if (await waitForExit(vm.pid, name, options.timeoutMs ?? limits.vmPowerdownTimeoutMs)) method = 'powerdown';
    }
    if (method === 'hard stop') {
      await vm.commands.quit().catch(() => undefined);
      if (!(await waitForExit(vm.pid, name, limits.qmpCommandTimeoutMs))) killVmProcess(vm.pid, name);
    }
    await vm.exited;
    return method;
  }

  reset(name: string): Promise<VmInfo> {
    return this.lock(name).run(async () => {
      await this.runningVm(name).commands.systemReset();
      return this.get(name);
    });
  }

  pause(name: string): Promise<VmInfo> {
    return this.lock(name).run(async () => {
      const vm = this.runningVm(name);
      if (vm.state === 'paused') throw new StrataError('STRATA_E_VM_STATE', `VM ${name} is already paused`, { vm: name });
      await vm.commands.stop();
      vm.state = 'paused';
      this.event('info', 'vm.paused', name, `VM ${name} paused`);
      return this.get(name);
    });
  }

  resume(name: string): Promise<VmInfo> {
    return this.lock(name).run(async () => {
      const vm = this.runningVm(name);
      if (vm.state !== 'paused') throw new StrataError('STRATA_E_VM_STATE', `VM ${name} is not paused`, { vm: name });
      await vm.commands.cont();
      vm.state = 'running';
      this.event('info', 'vm.resumed', name, `VM ${name} resumed`);
      return this.get(name);
    });
  }

  /** Deletes a stopped VM; with `withVolumes` its disk volumes too (checked first, so nothing is half-deleted). */
  delete(name: string, options: { withVolumes?: boolean } = {}): Promise<void> {
    return this.lock(name).run(async () => {
      const record = this.record(name);
      if (this.running.has(name)) throw new StrataError('STRATA_E_VM_STATE', `VM ${name} is running; stop it first`, { vm: name });
      const volumes = options.withVolumes ? record.definition.disks.map((disk) => disk.volume) : [];
      for (const volume of volumes) {
        const { pool } = this.options.pools.volumePool(volume);
        const clones = pool.listVolumes().filter((info) => info.parent?.volume === volume);
        if (clones.length > 0) {
          throw new StrataError('STRATA_E_VOLUME_HAS_CLONES', `disk ${volume} of VM ${name} has clones: ${clones.map((c) => c.name).join(', ')}`, { volume });
        }
      }
      this.store.delete(name);
      for (const volume of volumes) await this.options.pools.volumePool(volume).pool.deleteVolume(volume);
      fs.rmSync(this.paths(name).dir, { recursive: true, force: true });
      this.event('info', 'vm.deleted', name, `VM ${name} deleted${volumes.length > 0 ? ` with its volumes ${volumes.join(', ')}` : ''}`);
    });
  }

  /**
   * A VM snapshot: every disk snapshotted at one instant. A running guest is held still
   * by freezing its file systems through the guest agent when it answers, otherwise by
   * pausing it; the method is recorded.
   */
  snapshot(name: string, snapshot: string): Promise<VmSnapshotRecord> {
    validateName('snapshot', snapshot);
    return this.lock(name).run(() => this.takeSnapshot(name, snapshot));
  }

  private async takeSnapshot(name: string, snapshot: string): Promise<VmSnapshotRecord> {
    const record = this.record(name);
    if (this.store.snapshots(name).some((existing) => existing.name === snapshot)) {
      throw new StrataError('STRATA_E_VM_SNAPSHOT_EXISTS', `VM ${name} already has a snapshot ${snapshot}`, { vm: name, snapshot });
    }
    for (const disk of record.definition.disks) {
      if (this.options.pools.volumePool(disk.volume).pool.listSnapshots(disk.volume).some((s) => s.name === snapshot)) {
        throw new StrataError('STRATA_E_SNAPSHOT_EXISTS', `disk ${disk.volume} already has a snapshot ${snapshot}`, { volume: disk.volume, snapshot });
      }
    }
    const { method, release } = await this.quiesce(name);
    try {
      return await withUndo(async (undo) => {
        const disks: { volume: string; snapshot: string }[] = [];
        for (const disk of record.definition.disks) {
          const { pool } = this.options.pools.volumePool(disk.volume);
          await pool.createSnapshot(disk.volume, snapshot);
          undo.push(() => pool.deleteSnapshot(disk.volume, snapshot));
          disks.push({ volume: disk.volume, snapshot });
        }
        const taken: VmSnapshotRecord = { vm: name, name: snapshot, createdMs: Date.now(), method, disks };
        this.store.insertSnapshot(taken);
        this.event('info', 'vm.snapshot-created', name, `VM snapshot ${name}@${snapshot} taken (${method})`);
        return taken;
      });
    } finally {
      await release();
    }
  }

  private async quiesce(name: string): Promise<{ method: SnapshotMethod; release: () => Promise<void> }> {
    const vm = this.running.get(name);
    if (!vm) return { method: 'offline', release: async () => undefined };
    try {
      const agent = await GuestAgent.connect(this.paths(name).agent, { timeoutMs: limits.guestAgentTimeoutMs });
      try {
        await agent.fsfreezeFreeze();
      } catch (error) {
        agent.close();
        throw error;
      }
      return {
        method: 'fsfreeze',
        release: async () => {
          await agent.fsfreezeThaw().catch((error: unknown) => this.event('error', 'vm.thaw-failed', name, `thawing VM ${name} failed: ${String(error)}`));
          agent.close();
        },
      };
    } catch (error) {
      if (!isStrataError(error, 'STRATA_E_GUEST_AGENT')) this.options.logger.log('warn', 'guest agent failed; pausing instead', { vm: name, error: String(error) });
    }
    if (vm.state === 'paused') return { method: 'pause', release: async () => undefined };
    await vm.commands.stop();
    vm.state = 'paused';
    return {
      method: 'pause',
      release: async () => {
        await vm.commands.cont();
        vm.state = 'running';
      },
    };
  }

  /** Rolls every disk of a stopped VM back to a VM snapshot (newer ones only with destroyNewer). */
  restore(name: string, snapshot: string, options: { destroyNewer?: boolean } = {}): Promise<VmInfo> {
    return this.lock(name).run(async () => {
      this.record(name);
      if (this.running.has(name)) throw new StrataError('STRATA_E_VM_STATE', `VM ${name} is running; stop it before restoring`, { vm: name });
      const all = this.store.snapshots(name);
      const target = all.find((candidate) => candidate.name === snapshot);
      if (!target) throw new StrataError('STRATA_E_VM_SNAPSHOT_NOT_FOUND', `VM ${name} has no snapshot ${snapshot}`, { vm: name, snapshot });
      const newer = all.filter((candidate) => candidate.createdMs > target.createdMs || (candidate.createdMs === target.createdMs && candidate.name > target.name));
      if (newer.length > 0 && !options.destroyNewer) {
        throw new StrataError('STRATA_E_ROLLBACK_NEEDS_DESTROY', `VM ${name} has newer snapshots (${newer.map((s) => s.name).join(', ')}); restoring needs destroyNewer`, { vm: name });
      }
      for (const disk of target.disks) await this.options.pools.volumePool(disk.volume).pool.rollback(disk.volume, disk.snapshot, { destroyNewer: options.destroyNewer });
      for (const gone of newer) this.store.deleteSnapshot(name, gone.name);
      this.event('info', 'vm.restored', name, `VM ${name} restored to ${snapshot}`);
      return this.get(name);
    });
  }

  /**
   * A new VM from a VM snapshot (or, without one, from a fresh snapshot of the source,
   * e.g. a stopped template): every disk becomes an instant volume clone.
   */
  async clone(source: string, snapshot: string | undefined, newName: string): Promise<VmInfo> {
    validateName('vm', newName);
    if (this.store.get(newName)) throw new StrataError('STRATA_E_VM_EXISTS', `a VM named ${JSON.stringify(newName)} exists`, { vm: newName });
    const record = this.record(source);
    const snapshotName = snapshot ?? (await this.snapshot(source, `clone-${newName}`)).name;
    const taken = this.store.snapshots(source).find((candidate) => candidate.name === snapshotName);
    if (!taken) throw new StrataError('STRATA_E_VM_SNAPSHOT_NOT_FOUND', `VM ${source} has no snapshot ${snapshotName}`, { vm: source, snapshot: snapshotName });
    return withUndo(async (undo) => {
      const disks: { volume: string }[] = [];
      for (const [index, disk] of taken.disks.entries()) {
        const volume = `${newName}-disk${index}`;
        await this.options.pools.clone(disk.volume, disk.snapshot, volume);
        undo.push(() => this.options.pools.volumePool(volume).pool.deleteVolume(volume));
        disks.push({ volume });
      }
      // New NICs: a clone on the same network must not answer to its source's addresses.
      const nics = record.definition.nics.map(({ mac: _mac, ...nic }) => nic);
      const info = await this.create({ ...record.definition, name: newName, disks, nics });
      this.event('info', 'vm.cloned', newName, `VM ${newName} cloned from ${source}@${snapshotName}`);
      return info;
    });
  }

  /** The serial console of a running VM. */
  console(name: string): SerialConsole {
    return this.runningVm(name).serial;
  }

  /** The VNC unix socket of a running VM. */
  vncSocket(name: string): string {
    this.runningVm(name);
    return this.paths(name).vnc;
  }

  /** CPU time and disk I/O per VM, for metrics. */
  async usage(): Promise<VmUsage[]> {
    const result: VmUsage[] = [];
    for (const record of this.store.list()) {
      const name = record.definition.name;
      const vm = this.running.get(name);
      if (!vm) {
        result.push({ name, running: false, cpuSeconds: 0, disks: [] });
        continue;
      }
      const stats = await vm.commands.queryBlockstats().catch(() => []);
      const disks = record.definition.disks.map((disk, index) => {
        const entry = stats.find((candidate) => candidate['node-name'] === `disk${index}` || candidate.qdev?.includes(`vd${index}`));
        return {
          volume: disk.volume,
          readBytes: entry?.stats.rd_bytes ?? 0,
          writeBytes: entry?.stats.wr_bytes ?? 0,
          readOps: entry?.stats.rd_operations ?? 0,
          writeOps: entry?.stats.wr_operations ?? 0,
        };
      });
      result.push({ name, running: true, cpuSeconds: cpuSeconds(vm.pid), disks });
    }
    return result;
  }

  /** Detaches from every VM (they keep running) and closes the database. */
  async close(): Promise<void> {
    for (const vm of this.running.values()) {
      vm.detached = true;
      vm.qmp.close();
      vm.serial.close();
    }
    this.running.clear();
    this.store.close();
  }
}
