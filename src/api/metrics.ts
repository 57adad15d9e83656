/*
 * Metrics, in Prometheus text form at /metrics (prom-client) and as running totals for
 * the web console's live charts. Volume I/O is observed where requests enter a device
 * (`instrumentDevice` wraps every device the NBD server opens): operations, bytes and a
 * latency histogram per volume and operation. Pool gauges (capacity, stored, logical,
 * metadata, ratios, checksum errors, reclaim work) are read from the pools at scrape time.
 */
import { Gauge, Registry, type Metric } from 'prom-client';
import type { BlockDevice } from '../engine/index.js';
import type { PoolSummary } from './pool-summary.js';

export type IoOperation = 'read' | 'write' | 'trim' | 'zero' | 'flush' | 'block_status';

export interface VolumeIoTotals {
  readonly volume: string;
  readonly readOps: number;
  readonly writeOps: number;
  readonly otherOps: number;
  readonly readBytes: number;
  readonly writeBytes: number;
}

/** What the VM manager reports per VM (CPU time of its QEMU, disk I/O QEMU counted). */
export interface VmUsageSample {
  readonly name: string;
  readonly running: boolean;
  readonly cpuSeconds: number;
  readonly disks: readonly { volume: string; readBytes: number; writeBytes: number; readOps: number; writeOps: number }[];
}

interface IoSeries {
  readonly volume: string;
  readonly op: IoOperation;
  operations: number;
  bytes: number;
  seconds: number;
  /** Observations per latency bucket (not cumulative); above the last bound only in the count. */
  readonly buckets: Float64Array;
}

const latencyBucketsSeconds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class Metrics {
  readonly registry = new Registry();
  /** Volume I/O counted on the I/O path in plain numbers; prom-client formats it at scrape time. */
  private readonly io = new Map<string, IoSeries>();
  private readonly totals = new Map<string, { readOps: number; writeOps: number; otherOps: number; readBytes: number; writeBytes: number }>();

  constructor(pools: () => Promise<PoolSummary[]>, vms?: () => Promise<VmUsageSample[]>) {
    const registers = [this.registry];
    this.volumeIoMetrics();
    const poolGauges: [string, string, (pool: PoolSummary) => number][] = [
      ['strata_pool_capacity_bytes', 'Bytes the pool can hold (stored plus free on the host file system)', (p) => p.capacityBytes],
      ['strata_pool_available_bytes', 'Bytes still free for the pool on the host file system', (p) => p.availableBytes],
      ['strata_pool_stored_bytes', 'Bytes of pack files', (p) => p.storedBytes],
      ['strata_pool_logical_bytes', 'Sum of volume sizes', (p) => p.logicalBytes],
      ['strata_pool_mapped_bytes', 'Bytes of volume heads that hold data', (p) => p.mappedBytes],
      ['strata_pool_metadata_bytes', 'Bytes of metadata', (p) => p.metadataBytes],
      ['strata_pool_usage_ratio', 'Stored bytes over capacity', (p) => p.usageFraction],
      ['strata_pool_overcommit_ratio', 'Logical bytes over capacity (thin over-commit)', (p) => p.overcommitRatio],
      ['strata_pool_dedup_ratio', 'Referenced over unique chunk bytes', (p) => p.dedupRatio],
      ['strata_pool_compression_ratio', 'Raw over stored bytes of live chunks', (p) => p.compressionRatio],
      ['strata_pool_volumes', 'Volumes in the pool', (p) => p.volumes],
      ['strata_pool_snapshots', 'Snapshots in the pool', (p) => p.snapshots],
      ['strata_pool_checksum_errors_total', 'Stored bytes that failed verification since the pool opened', (p) => p.checksumErrors],
      ['strata_pool_gc_runs_total', 'Reclaim passes since the pool opened', (p) => p.reclaim.runs],
      ['strata_pool_gc_packs_compacted_total', 'Packs compacted since the pool opened', (p) => p.reclaim.packsCompacted],
      ['strata_pool_gc_freed_bytes_total', 'Bytes given back to the host since the pool opened', (p) => p.reclaim.bytesFreed],
    ];
    // One read of the pools per scrape, shared by every gauge (prom-client collects
    // all metrics of a scrape at once, so the first collect starts the read).
    let pending: Promise<PoolSummary[]> | null = null;
    const shared = () =>
      (pending ??= pools().finally(() => {
        setImmediate(() => (pending = null));
      }));
    new Gauge({
      name: 'strata_pools',
      help: 'Pools the daemon hosts',
      registers,
      async collect() {
        this.set((await shared()).length);
      },
    });
    for (const [name, help, value] of poolGauges) {
      new Gauge({
        name,
        help,
        labelNames: ['pool'],
        registers,
        async collect() {
          const summaries = await shared();
          this.reset();
          for (const summary of summaries) this.set({ pool: summary.name }, value(summary));
        },
      });
    }
    if (vms) this.vmGauges(vms);
  }

  private vmGauges(vms: () => Promise<VmUsageSample[]>): void {
    const registers = [this.registry];
    let pending: Promise<VmUsageSample[]> | null = null;
    const shared = () =>
      (pending ??= vms().finally(() => {
        setImmediate(() => (pending = null));
      }));
    const perVm: [string, string, (vm: VmUsageSample) => number][] = [
      ['strata_vm_running', '1 while the VM runs', (vm) => (vm.running ? 1 : 0)],
      ['strata_vm_cpu_seconds_total', 'CPU seconds used by the VM since its QEMU started', (vm) => vm.cpuSeconds],
    ];
    for (const [name, help, value] of perVm) {
      new Gauge({
        name,
        help,
        labelNames: ['vm'],
        registers,
        async collect() {
          this.reset();
          for (const vm of await shared()) this.set({ vm: vm.name }, value(vm));
        },
      });
    }
    const perDisk: [string, string, (disk: VmUsageSample['disks'][number]) => number][] = [
      ['strata_vm_disk_read_bytes_total', 'Bytes the VM read from a disk', (disk) => disk.readBytes],
      ['strata_vm_disk_written_bytes_total', 'Bytes the VM wrote to a disk', (disk) => disk.writeBytes],
      ['strata_vm_disk_read_operations_total', 'Read operations of the VM on a disk', (disk) => disk.readOps],
      ['strata_vm_disk_write_operations_total', 'Write operations of the VM on a disk', (disk) => disk.writeOps],
    ];
    for (const [name, help, value] of perDisk) {
      new Gauge({
        name,
        help,
        labelNames: ['vm', 'volume'],
        registers,
        async collect() {
          this.reset();
          for (const vm of await shared()) for (const disk of vm.disks) this.set({ vm: vm.name, volume: disk.volume }, value(disk));
        },
      });
    }
  }

  /**
   * The volume I/O families. observe() runs for every NBD request, and a prom-client
   * histogram observation costs over a microsecond (it hashes the labels each time), so
   * the counts live in plain series here and these metric objects hand them to the
   * registry (in prom-client's metric form) when it is scraped.
   */
  private volumeIoMetrics(): void {
    const io = this.io;
    const labels = (series: IoSeries) => ({ volume: series.volume, op: series.op });
    const family = (name: string, help: string, type: 'counter' | 'histogram', values: () => { value: number; labels: Record<string, string | number>; metricName?: string }[]) =>
      this.registry.registerMetric({ name, help, reset: () => undefined, get: async () => ({ name, help, type, values: values(), aggregator: 'sum' }) } as unknown as Metric);
    family('strata_volume_operations_total', 'Volume operations served', 'counter', () => [...io.values()].map((series) => ({ value: series.operations, labels: labels(series) })));
    family('strata_volume_bytes_total', 'Bytes read or written by volume operations', 'counter', () =>
      [...io.values()].filter((series) => series.bytes > 0).map((series) => ({ value: series.bytes, labels: labels(series) })),
    );
    const name = 'strata_volume_operation_seconds';
    family(name, 'Latency of volume operations', 'histogram', () =>
      [...io.values()].flatMap((series) => {
        let cumulative = 0;
        const buckets = latencyBucketsSeconds.map((le, index) => {
          cumulative += series.buckets[index];
          return { value: cumulative, labels: { le, ...labels(series) }, metricName: `${name}_bucket` };
        });
        return [
          ...buckets,
          { value: series.operations, labels: { le: '+Inf', ...labels(series) }, metricName: `${name}_bucket` },
          { value: series.seconds, labels: labels(series), metricName: `${name}_sum` },
          { value: series.operations, labels: labels(series), metricName: `${name}_count` },
        ];
      }),
    );
  }

  observe(volume: string, op: IoOperation, bytes: number, seconds: number): void {
    const key = `${op}\0${volume}`;
    let series = this.io.get(key);
    if (series === undefined) {
      series = { volume, op, operations: 0, bytes: 0, seconds: 0, buckets: new Float64Array(latencyBucketsSeconds.length) };
      this.io.set(key, series);
    }
    series.operations += 1;
    series.bytes += bytes;
    series.seconds += seconds;
    const bucket = latencyBucketsSeconds.findIndex((le) => seconds <= le);
    if (bucket >= 0) series.buckets[bucket] += 1;
    let totals = this.totals.get(volume);
    if (!totals) {
      totals = { readOps: 0, writeOps: 0, otherOps: 0, readBytes: 0, writeBytes: 0 };
      this.totals.set(volume, totals);
    }
    if (op === 'read') {
      totals.readOps += 1;
      totals.readBytes += bytes;
    } else if (op === 'write') {
      totals.writeOps += 1;
      totals.writeBytes += bytes;
    } else {
      totals.otherOps += 1;
    }
  }

  /** Running totals per volume, for rates computed by the reader. */
  ioTotals(): VolumeIoTotals[] {
    return [...this.totals].map(([volume, totals]) => ({ volume, ...totals }));
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A device that reports each operation to `metrics` under the volume's name. */
export function instrumentDevice(device: BlockDevice, volume: string, metrics: Metrics): BlockDevice {
  // Called as timed(op, bytes, performance.now(), device.call(...)): the clock is read
  // before the call starts (arguments are evaluated in order), with no closure per call.
  const timed = async <T>(op: IoOperation, bytes: number, start: number, pending: Promise<T>): Promise<T> => {
    const result = await pending;
    metrics.observe(volume, op, bytes, (performance.now() - start) / 1000);
    return result;
  };
  return {
    get name() {
      return device.name;
    },
    get sizeBytes() {
      return device.sizeBytes;
    },
    get blockSize() {
      return device.blockSize;
    },
    get readOnly() {
      return device.readOnly;
    },
    read: (offset, length) => timed('read', length, performance.now(), device.read(offset, length)),
    readPieces: (offset, length) => timed('read', length, performance.now(), device.readPieces(offset, length)),
    readHeld: (offset, length) => timed('read', length, performance.now(), device.readHeld(offset, length)),
    write: (offset, data, options) => timed('write', data.length, performance.now(), device.write(offset, data, options)),
    writePieces: (offset, pieces, options) =>
      timed('write', pieces.reduce((sum, piece) => sum + piece.length, 0), performance.now(), device.writePieces(offset, pieces, options)),
    trim: (offset, length, options) => timed('trim', 0, performance.now(), device.trim(offset, length, options)),
    writeZeroes: (offset, length, options) => timed('zero', 0, performance.now(), device.writeZeroes(offset, length, options)),
    flush: () => timed('flush', 0, performance.now(), device.flush()),
    blockStatus: (offset, length) => timed('block_status', 0, performance.now(), device.blockStatus(offset, length)),
  };
}
