/*
 * A cache of at most `entriesMax` entries with O(1) eviction, for hot paths that see
 * hundreds of thousands of keys. Entries go into a young generation; when it is full it
 * becomes the old one and the previous old one is dropped whole. A hit in the old
 * generation moves the entry back to the young one, so what is used stays (an LRU
 * approximation, as in two-generation caches).
 *
 * Why not a Map used as a FIFO or LRU (delete the first key when full): V8's Map leaves
 * a hole for each deleted entry until it rehashes, and `keys().next()` walks the holes
 * from the start, so with a steady stream of evictions each one costs O(entries).
 */
export class GenerationalCache<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  private readonly generationMax: number;

  constructor(entriesMax: number) {
    this.generationMax = Math.max(1, Math.floor(entriesMax / 2));
  }

  get(key: K): V | undefined {
    const value = this.young.get(key);
    if (value !== undefined) return value;
    const aging = this.old.get(key);
    if (aging !== undefined) {
      this.old.delete(key);
      this.set(key, aging);
    }
    return aging;
  }

  set(key: K, value: V): void {
    if (!this.young.has(key) && this.young.size >= this.generationMax) {
      this.old = this.young;
      this.young = new Map<K, V>();
    }
    this.young.set(key, value);
    this.old.delete(key);
  }

  delete(key: K): void {
    this.young.delete(key);
    this.old.delete(key);
  }

  clear(): void {
    this.young.clear();
    this.old.clear();
  }

  get size(): number {
    return this.young.size + this.old.size;
  }
}
