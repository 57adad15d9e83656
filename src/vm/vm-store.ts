/*
 * Where VM definitions, runtime records and VM snapshots live: an SQLite database in the
 * daemon's data directory (DATA/vms.sqlite, better-sqlite3, WAL, synchronous=FULL), with
 * append-only numbered migrations like the pools' metadata. The runtime record (QEMU's
 * pid, its start time and accelerator) is what lets a restarted daemon find and reattach
 * to the VMs that kept running while it was away.
 */
import Database from 'better-sqlite3';
import { hostIoError } from '../common/errors.js';
import type { VmDefinition } from './definition.js';

export interface VmRuntime {
  readonly pid: number;
  readonly startedMs: number;
  readonly accel: 'kvm' | 'tcg';
  readonly accelReason: string;
}

export interface VmRecord {
  readonly definition: VmDefinition;
  readonly createdMs: number;
  readonly runtime: VmRuntime | null;
}

export type SnapshotMethod = 'fsfreeze' | 'pause' | 'offline';

export interface VmSnapshotRecord {
  readonly vm: string;
  readonly name: string;
  readonly createdMs: number;
  /** How the guest was held still: frozen file systems (guest agent), paused, or not running. */
  readonly method: SnapshotMethod;
  /** The volume snapshot taken of each disk, in disk order. */
  readonly disks: readonly { readonly volume: string; readonly snapshot: string }[];
}

const migrations: readonly string[] = [
  `
  CREATE TABLE vm (name TEXT PRIMARY KEY, definition TEXT NOT NULL, created_ms INTEGER NOT NULL, runtime TEXT) WITHOUT ROWID;
  CREATE TABLE vm_snapshot (
    vm TEXT NOT NULL REFERENCES vm(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    method TEXT NOT NULL,
    disks TEXT NOT NULL,
    PRIMARY KEY (vm, name)
  ) WITHOUT ROWID;
  `,
];

interface VmRow {
  name: string;
  definition: string;
  created_ms: number;
  runtime: string | null;
}

interface SnapshotRow {
  vm: string;
  name: string;
  created_ms: number;
  method: SnapshotMethod;
  disks: string;
}

export class VmStore {
  private constructor(private readonly db: Database.Database) {}

  static open(file: string): VmStore {
    try {
      const db = new Database(file);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      const version = db.pragma('user_version', { simple: true }) as number;
      db.transaction(() => {
        for (let index = version; index < migrations.length; index += 1) db.exec(migrations[index]);
        db.pragma(`user_version = ${migrations.length}`);
      })();
      return new VmStore(db);
    } catch (error) {
      throw hostIoError(error, `opening the VM database ${file}`);
    }
  }

  private static record(row: VmRow): VmRecord {
    return { definition: JSON.parse(row.definition) as VmDefinition, createdMs: row.created_ms, runtime: row.runtime ? (JSON.parse(row.runtime) as VmRuntime) : null };
  }

  list(): VmRecord[] {
    return (this.db.prepare('SELECT * FROM vm ORDER BY name').all() as VmRow[]).map(VmStore.record);
  }

  get(name: string): VmRecord | null {
    const row = this.db.prepare('SELECT * FROM vm WHERE name = ?').get(name) as VmRow | undefined;
    return row ? VmStore.record(row) : null;
  }

  insert(definition: VmDefinition, createdMs: number): void {
    this.db.prepare('INSERT INTO vm (name, definition, created_ms, runtime) VALUES (?, ?, ?, NULL)').run(definition.name, JSON.stringify(definition), createdMs);
  }

  setDefinition(definition: VmDefinition): void {
    this.db.prepare('UPDATE vm SET definition = ? WHERE name = ?').run(JSON.stringify(definition), definition.name);
  }

  setRuntime(name: string, runtime: VmRuntime | null): void {
    this.db.prepare('UPDATE vm SET runtime = ? WHERE name = ?').run(runtime ? JSON.stringify(runtime) : null, name);
  }

  delete(name: string): void {
    this.db.prepare('DELETE FROM vm WHERE name = ?').run(name);
  }

  snapshots(vm: string): VmSnapshotRecord[] {
    return (this.db.prepare('SELECT * FROM vm_snapshot WHERE vm = ? ORDER BY created_ms, name').all(vm) as SnapshotRow[]).map((row) => ({
      vm: row.vm,
      name: row.name,
      createdMs: row.created_ms,
      method: row.method,
      disks: JSON.parse(row.disks) as VmSnapshotRecord['disks'],
    }));
  }

  insertSnapshot(snapshot: VmSnapshotRecord): void {
    this.db
      .prepare('INSERT INTO vm_snapshot (vm, name, created_ms, method, disks) VALUES (?, ?, ?, ?, ?)')
      .run(snapshot.vm, snapshot.name, snapshot.createdMs, snapshot.method, JSON.stringify(snapshot.disks));
  }

  deleteSnapshot(vm: string, name: string): void {
    this.db.prepare('DELETE FROM vm_snapshot WHERE vm = ? AND name = ?').run(vm, name);
  }

  close(): void {
    this.db.close();
  }
}
