/*
 * vm: QEMU/KVM virtual machines with their disks on Strata volumes: definitions in the
 * daemon's VM database, QEMU processes that outlive the daemon, our own QMP and guest
 * agent clients, serial consoles, and VM snapshots as consistency groups. May import
 * engine and common; must not import api, cli or daemon.
 */
export { VmManager } from './vm-manager.js';
export type { EventSink, VmInfo, VmManagerOptions, VmState, VmUsage } from './vm-manager.js';
export type { VmDefinition, VmDefinitionChanges, NicDefinition, CloudInitDefinition, DirectBoot } from './definition.js';
export { vmMemoryMinBytes, vmCpusMax } from './definition.js';
export type { VmSnapshotRecord, SnapshotMethod } from './vm-store.js';
export type { SerialConsole } from './serial-console.js';
export { chooseAccel } from './accelerator.js';
export type { AccelChoice } from './accelerator.js';
export { QmpClient, QmpCommands } from './qmp-client.js';
export type { QmpEvent, RunState } from './qmp-client.js';
export { GuestAgent } from './agent-client.js';
