/*
 * The pools one daemon hosts: every pool lives in ROOT/NAME (its own SQLite metadata and
 * packs, its own lock). Volume names are unique across the set, because NBD export names,
 * the CLI and the API address a volume by its name alone; the set checks that on every
 * operation that names a volume (create, rename, clone) under one mutex, so two pools
 * cannot gain the same name at once.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StrataError } from '../common/errors.js';
import { validateName } from '../common/names.js';
import { Mutex } from './mutex.js';
import { Pool, type PoolOpenOptions, type PoolPolicyOptions, type VolumeInfo } from './pool.js';

export interface PoolEntry {
  readonly name: string;
  readonly pool: Pool;
}

export class PoolSet {
  private readonly pools = new Map<string, Pool>();
  private readonly names = new Mutex();

  private constructor(
    readonly root: string,
    private readonly initialPool: string,
    private readonly openOptions: PoolOpenOptions,
  ) {}

  /**
   * Opens every pool under `root`; when there is none, creates `initialPool` with the
   * default policy (the daemon's first start). Returns whether it was created.
   */
  static async open(root: string, initialPool: string, options: PoolOpenOptions = {}): Promise<{ set: PoolSet; created: boolean }> {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    const set = new PoolSet(root, initialPool, options);
    try {
      for (const name of fs.readdirSync(root).sort()) {
        if (fs.existsSync(path.join(root, name, 'meta.sqlite'))) set.pools.set(name, await Pool.open(path.join(root, name), options));
      }
      if (set.pools.size > 0) return { set, created: false };
      await set.create(initialPool);
      return { set, created: true };
    } catch (error) {
      await set.close();
      throw error;
    }
  }

  /** Pools in name order. */
  list(): PoolEntry[] {
    return [...this.pools]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, pool]) => ({ name, pool }));
  }

  get(name: string): Pool {
    const pool = this.pools.get(validateName('pool', name));
    if (!pool) throw new StrataError('STRATA_E_POOL_NOT_FOUND', `no pool is named ${JSON.stringify(name)}`, { pool: name });
    return pool;
  }

  async create(name: string, policy: PoolPolicyOptions = {}): Promise<Pool> {
    validateName('pool', name);
    return this.names.run(async () => {
      if (this.pools.has(name)) throw new StrataError('STRATA_E_POOL_EXISTS', `a pool named ${JSON.stringify(name)} exists`, { pool: name });
      const pool = await Pool.create(path.join(this.root, name), policy, this.openOptions);
      this.pools.set(name, pool);
      return pool;
    });
  }

  /** The pool holding the volume, or STRATA_E_VOLUME_NOT_FOUND. */
  volumePool(volume: string): PoolEntry {
    validateName('volume', volume);
    for (const [name, pool] of this.pools) {
      if (pool.listVolumes().some((info) => info.name === volume)) return { name, pool };
    }
    throw new StrataError('STRATA_E_VOLUME_NOT_FOUND', `no volume is named ${JSON.stringify(volume)}`, { volume });
  }

  /** The pool a new volume goes to: the named one, else the initial pool, else the first. */
  targetPool(name?: string): PoolEntry {
    if (name !== undefined) return { name, pool: this.get(name) };
    const initial = this.pools.get(this.initialPool);
    if (initial) return { name: this.initialPool, pool: initial };
    const first = this.list()[0];
    if (!first) throw new StrataError('STRATA_E_POOL_NOT_FOUND', 'the daemon has no pool');
    return first;
  }

  async createVolume(volume: string, sizeBytes: number, poolName?: string): Promise<VolumeInfo> {
    const { pool } = this.targetPool(poolName);
    return this.names.run(async () => {
      this.assertVolumeNameFree(volume);
      return pool.createVolume(volume, sizeBytes);
    });
  }

  async renameVolume(volume: string, newName: string): Promise<void> {
    return this.names.run(async () => {
      const { pool } = this.volumePool(volume);
      this.assertVolumeNameFree(newName);
      await pool.renameVolume(volume, newName);
    });
  }

  async clone(volume: string, snapshot: string, cloneName: string): Promise<VolumeInfo> {
    return this.names.run(async () => {
      const { pool } = this.volumePool(volume);
      this.assertVolumeNameFree(cloneName);
      return pool.clone(volume, snapshot, cloneName);
    });
  }

  private assertVolumeNameFree(volume: string): void {
    validateName('volume', volume);
    for (const [name, pool] of this.pools) {
      if (pool.listVolumes().some((info) => info.name === volume)) {
        throw new StrataError('STRATA_E_VOLUME_EXISTS', `a volume named ${JSON.stringify(volume)} exists in pool ${name}`, { volume, pool: name });
      }
    }
  }

  async close(): Promise<void> {
    const errors: unknown[] = [];
    for (const pool of this.pools.values()) await pool.close().catch((error: unknown) => errors.push(error));
    this.pools.clear();
    if (errors.length > 0) throw errors[0];
  }
}
