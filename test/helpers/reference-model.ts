/*
 * The reference model for model-based tests of the engine: what every volume head and
 * snapshot must read back, and which admin operations the engine must refuse.
 *
 * Deliberately trivial: a volume is a byte array (its length is the volume size), a
 * snapshot is a frozen copy, a clone is a copy of its parent snapshot plus a parent
 * link. No blocks, generations or extent rows: the engine's map is checked against the
 * plainest possible statement of the semantics.
 */
import type { ErrorCode } from '../../src/common/errors.js';

export interface ModelSnapshot {
  readonly name: string;
  readonly data: Uint8Array;
}

export interface ModelVolume {
  /** Stable identity: names change on rename, clone links do not. */
  readonly id: number;
  name: string;
  data: Uint8Array;
  /** Oldest first (the engine's gen order). */
  snapshots: ModelSnapshot[];
  parent: { readonly volumeId: number; readonly snapshot: string } | null;
}

export class ReferenceModel {
  readonly volumes: ModelVolume[] = [];
  private nextId = 1;

  volume(name: string): ModelVolume {
    const volume = this.volumes.find((candidate) => candidate.name === name);
    if (!volume) throw new Error(`model has no volume ${name}`);
    return volume;
  }

  volumeById(id: number): ModelVolume {
    const volume = this.volumes.find((candidate) => candidate.id === id);
    if (!volume) throw new Error(`model has no volume #${id}`);
    return volume;
  }

  snapshot(volume: ModelVolume, name: string): ModelSnapshot {
    const snapshot = volume.snapshots.find((candidate) => candidate.name === name);
    if (!snapshot) throw new Error(`model volume ${volume.name} has no snapshot ${name}`);
    return snapshot;
  }

  createVolume(name: string, sizeBytes: number): ModelVolume {
    const volume: ModelVolume = { id: this.nextId++, name, data: new Uint8Array(sizeBytes), snapshots: [], parent: null };
    this.volumes.push(volume);
    return volume;
  }

  write(volume: ModelVolume, offset: number, bytes: Uint8Array): void {
    volume.data.set(bytes, offset);
  }

  /** trim and writeZeroes: the range reads back as zeros, whatever the alignment. */
  zero(volume: ModelVolume, offset: number, length: number): void {
    volume.data.fill(0, offset, offset + length);
  }

  /** Grow pads with zeros; shrink cuts (and a later grow must not bring the bytes back). */
  resize(volume: ModelVolume, sizeBytes: number): void {
    const data = new Uint8Array(sizeBytes);
    data.set(volume.data.subarray(0, Math.min(sizeBytes, volume.data.length)));
    volume.data = data;
  }

  clonesOf(volume: ModelVolume, snapshot?: string): ModelVolume[] {
    return this.volumes.filter(
      (candidate) => candidate.parent?.volumeId === volume.id && (snapshot === undefined || candidate.parent.snapshot === snapshot),
    );
  }

  takeSnapshot(volume: ModelVolume, name: string): void {
    volume.snapshots.push({ name, data: volume.data.slice() });
  }

  newerSnapshots(volume: ModelVolume, name: string): ModelSnapshot[] {
    const index = volume.snapshots.findIndex((candidate) => candidate.name === name);
    return volume.snapshots.slice(index + 1);
  }

  /** The error the engine must give for deleting this snapshot, or null when it must succeed. */
  deleteSnapshotRefusal(volume: ModelVolume, name: string): ErrorCode | null {
    return this.clonesOf(volume, name).length > 0 ? 'STRATA_E_SNAPSHOT_HAS_CLONES' : null;
  }

  deleteSnapshot(volume: ModelVolume, name: string): void {
    volume.snapshots = volume.snapshots.filter((candidate) => candidate.name !== name);
  }

  /** The error the engine must give for this rollback, or null when it must succeed. */
  rollbackRefusal(volume: ModelVolume, name: string, destroyNewer: boolean): ErrorCode | null {
    const newer = this.newerSnapshots(volume, name);
    if (newer.length > 0 && !destroyNewer) return 'STRATA_E_ROLLBACK_NEEDS_DESTROY';
    if (newer.some((snapshot) => this.clonesOf(volume, snapshot.name).length > 0)) return 'STRATA_E_SNAPSHOT_HAS_CLONES';
    return null;
  }

  /** The head becomes the snapshot, size included; newer snapshots are destroyed. */
  rollback(volume: ModelVolume, name: string): void {
    const snapshot = this.snapshot(volume, name);
    volume.snapshots = volume.snapshots.slice(0, volume.snapshots.indexOf(snapshot) + 1);
    volume.data = snapshot.data.slice();
  }

  clone(volume: ModelVolume, snapshotName: string, cloneName: string): ModelVolume {
    const clone = this.createVolume(cloneName, 0);
    clone.data = this.snapshot(volume, snapshotName).data.slice();
    clone.parent = { volumeId: volume.id, snapshot: snapshotName };
    return clone;
  }

  flattenRefusal(volume: ModelVolume): ErrorCode | null {
    return volume.parent === null ? 'STRATA_E_NOT_A_CLONE' : null;
  }

  /** Content is unchanged, the head and every snapshot of the clone included. */
  flatten(volume: ModelVolume): void {
    volume.parent = null;
  }

  deleteVolumeRefusal(volume: ModelVolume): ErrorCode | null {
    return this.clonesOf(volume).length > 0 ? 'STRATA_E_VOLUME_HAS_CLONES' : null;
  }

  deleteVolume(volume: ModelVolume): void {
    this.volumes.splice(this.volumes.indexOf(volume), 1);
  }

  /** The parent as the engine's VolumeInfo names it. */
  parentInfo(volume: ModelVolume): { volume: string; snapshot: string } | null {
    if (volume.parent === null) return null;
    return { volume: this.volumeById(volume.parent.volumeId).name, snapshot: volume.parent.snapshot };
  }
}
