/*
 * What the NBD server serves: a live catalogue of exports. Over a pool, every volume is
 * the read-write export `VOLUME` and every snapshot the read-only export
 * `VOLUME@SNAPSHOT`; the catalogue is asked at each LIST and each GO, so exports appear
 * and disappear as volumes and snapshots do. A connection keeps the device it opened;
 * once its volume is deleted, requests fail with ESHUTDOWN.
 */
import { isStrataError } from '../common/errors.js';
import { formatBytes } from '../common/units.js';
import type { BlockDevice, Pool } from '../engine/index.js';

export interface ExportEntry {
  readonly name: string;
  readonly description: string;
}

export interface ExportSource {
  /** Every export, in a stable order. */
  list(): ExportEntry[];
  /** Opens the named export, or returns null when it does not exist. */
  open(name: string): { device: BlockDevice; description: string } | null;
}

/** Separates a volume from a snapshot in an export name; names never contain it. */
export const snapshotSeparator = '@';

/** Exports of one pool, or of every pool a function returns (volume names are unique across them). */
export function poolExports(pools: Pool | (() => Iterable<Pool>)): ExportSource {
  const all = typeof pools === 'function' ? pools : () => [pools];
  const holding = (volume: string): Pool | undefined => [...all()].find((pool) => pool.listVolumes().some((info) => info.name === volume));
  return {
    list() {
      const entries: ExportEntry[] = [];
      for (const pool of all()) entries.push(...exportsOf(pool));
      return entries;
    },
    open(name) {
      const at = name.indexOf(snapshotSeparator);
      const pool = holding(at < 0 ? name : name.slice(0, at));
      if (!pool) return null;
      try {
        if (at < 0) {
          const device = pool.openVolume(name);
          return { device, description: volumeDescription(name, device.sizeBytes) };
        }
        const volume = name.slice(0, at);
        const snapshot = name.slice(at + 1);
        const device = pool.openSnapshot(volume, snapshot);
        return { device, description: snapshotDescription(volume, snapshot, device.sizeBytes) };
      } catch (error) {
        if (isStrataError(error) && error.kind === 'not-found') return null;
        if (isStrataError(error, 'STRATA_E_INVALID_NAME')) return null;
        throw error;
      }
    },
  };
}

function exportsOf(pool: Pool): ExportEntry[] {
  const entries: ExportEntry[] = [];
  for (const volume of pool.listVolumes()) {
    entries.push({ name: volume.name, description: volumeDescription(volume.name, volume.sizeBytes) });
    for (const snapshot of pool.listSnapshots(volume.name)) {
      entries.push({
        name: `${volume.name}${snapshotSeparator}${snapshot.name}`,
        description: snapshotDescription(volume.name, snapshot.name, snapshot.sizeBytes),
      });
    }
  }
  return entries;
}

function volumeDescription(volume: string, sizeBytes: number): string {
  return `volume ${volume}, ${formatBytes(sizeBytes)}, read-write`;
}

function snapshotDescription(volume: string, snapshot: string, sizeBytes: number): string {
  return `snapshot ${snapshot} of volume ${volume}, ${formatBytes(sizeBytes)}, read-only`;
}
