/*
 * `strata pool|volume|snapshot|export|check ...`: storage through the daemon's API.
 * Read commands print a table (or --json); long operations (import, export, compact,
 * check, flatten) are tasks in the daemon, followed here with a progress bar.
 */
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import type { CheckReport, PoolStats, ReclaimReport, SnapshotStats, VolumeInfo } from '../engine/index.js';
import { segment, type TaskAnswer } from './api-client.js';
import { context, print, sizeArgument, snapshotRef, waitForTask, type CommandContext } from './context.js';
import { exitCodes } from './exit-codes.js';
import { bytes, isoTime, ratio, table } from './format.js';

type PoolAnswer = PoolStats & { name: string; capacityBytes: number; availableBytes: number; usageFraction: number; overcommitRatio: number };
type VolumeAnswer = VolumeInfo & { pool: string };
type VolumeDetail = VolumeAnswer & {
  mappedBytes: number;
  zeroBytes: number;
  uniqueStoredBytes: number;
  sharedChunks: number;
  snapshotList: SnapshotStats[];
  clones: string[];
};

function poolLines(pool: PoolAnswer): string {
  return [
    `pool ${pool.name}: block ${bytes(pool.policy.blockSize)}, dedup ${pool.policy.dedup ? 'on' : 'off'}, compression ${pool.policy.compression}`,
    `  capacity   ${bytes(pool.capacityBytes)} (${(pool.usageFraction * 100).toFixed(1)} % used, ${bytes(pool.availableBytes)} free on the host)`,
    `  logical    ${bytes(pool.logicalBytes)} in ${pool.volumes} volumes, ${pool.snapshots} snapshots (over-commit ${ratio(pool.overcommitRatio)})`,
    `  mapped     ${bytes(pool.mappedBytes)}; unique data ${bytes(pool.uniqueBytes)}, referenced ${bytes(pool.referencedBytes)}`,
    `  stored     ${bytes(pool.storedBytes)} in packs (${bytes(pool.liveStoredBytes)} live), metadata ${bytes(pool.metadataBytes)}`,
    `  ratios     dedup ${ratio(pool.dedupRatio)}, compression ${ratio(pool.compressionRatio)}`,
    `  checksum errors ${pool.checksumErrors}`,
  ].join('\n');
}

function poolCommands(program: Command): void {
  const pool = program.command('pool').description('pools: policy, capacity, accounting, reclaim');
  pool
    .command('list')
    .description('list pools')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const pools = await ctx.client.get<PoolAnswer[]>('/api/v1/pools');
      print(ctx, pools, () =>
        table(
          pools.map((p) => ({
            name: p.name,
            block: bytes(p.policy.blockSize),
            dedup: p.policy.dedup ? 'on' : 'off',
            compression: p.policy.compression,
            capacity: bytes(p.capacityBytes),
            used: `${(p.usageFraction * 100).toFixed(1)}%`,
            logical: bytes(p.logicalBytes),
            stored: bytes(p.storedBytes),
            volumes: p.volumes,
          })),
          ['name', 'block', 'dedup', 'compression', 'capacity', 'used', 'logical', 'stored', 'volumes'],
        ),
      );
    });
  for (const verb of ['show', 'stats']) {
    pool
      .command(`${verb} ${verb === 'show' ? '<name>' : '[name]'}`)
      .description(verb === 'show' ? 'show a pool' : 'logical, stored and metadata bytes, dedup and compression ratios (every pool when no name)')
      .action(async (name: string | undefined, _options: unknown, command: Command) => {
        const ctx = context(command);
        const pools = name ? [await ctx.client.get<PoolAnswer>(`/api/v1/pools/${segment(name)}`)] : await ctx.client.get<PoolAnswer[]>('/api/v1/pools');
        print(ctx, name ? pools[0] : pools, () => pools.map(poolLines).join('\n'));
      });
  }
  pool
    .command('create <name>')
    .description('create a pool; its policy is fixed from now on')
    .option('--block-size <size>', 'block size: power of two from 4K to 1M', '4K')
    .addOption(new Option('--dedup <on|off>', 'deduplication').choices(['on', 'off']).default('on'))
    .addOption(new Option('--compression <codec>', 'compression codec').choices(['lz4', 'zstd', 'none']).default('zstd'))
    .action(async (name: string, options: { blockSize: string; dedup: string; compression: string }, command: Command) => {
      const ctx = context(command);
      const created = await ctx.client.post<PoolAnswer>('/api/v1/pools', {
        name,
        blockSize: sizeArgument(options.blockSize),
        dedup: options.dedup === 'on',
        compression: options.compression,
      });
      print(ctx, created, () => `created pool ${name}: block ${bytes(created.policy.blockSize)}, dedup ${options.dedup}, ${created.policy.compression}`);
    });
  pool
    .command('compact [name]')
    .description('reclaim space now: compact sparse packs and give space back to the host (every pool when no name)')
    .option('--now', 'delete replaced packs without waiting for the grace period')
    .action(async (name: string | undefined, options: { now?: boolean }, command: Command) => {
      const ctx = context(command);
      const names = name ? [name] : (await ctx.client.get<PoolAnswer[]>('/api/v1/pools')).map((p) => p.name);
      const reports: (ReclaimReport & { pool: string })[] = [];
      for (const poolName of names) {
        const started = await ctx.client.post<TaskAnswer>(`/api/v1/pools/${segment(poolName)}/compact`, { now: options.now });
        const report = (await waitForTask(ctx, started, `compact ${poolName}`)).result as ReclaimReport;
        reports.push({ pool: poolName, ...report });
      }
      print(ctx, reports, () =>
        reports.map((r) => `${r.pool}: compacted ${r.packsCompacted} packs, deleted ${r.packsDeleted}, freed ${bytes(r.bytesFreed)}`).join('\n'),
      );
    });
}

function checkCommand(program: Command): void {
  program
    .command('check')
    .description('verify metadata against packs in every pool (or --pool); --deep re-hashes every chunk')
    .option('--deep', 'read and re-hash every stored chunk')
    .option('--repair', 'fix what can be fixed without guessing')
    .option('--pool <name>', 'check only this pool')
    .action(async (options: { deep?: boolean; repair?: boolean; pool?: string }, command: Command) => {
      const ctx = context(command);
      const names = options.pool ? [options.pool] : (await ctx.client.get<PoolAnswer[]>('/api/v1/pools')).map((p) => p.name);
      const reports: (CheckReport & { pool: string })[] = [];
      for (const name of names) {
        const started = await ctx.client.post<TaskAnswer>(`/api/v1/pools/${segment(name)}/check`, { deep: options.deep, repair: options.repair });
        reports.push({ pool: name, ...((await waitForTask(ctx, started, `check ${name}`)).result as CheckReport) });
      }
      print(ctx, reports, () =>
        reports
          .map((report) =>
            [
              ...report.issues.map((issue) => `${report.pool}: ${issue.severity} ${issue.kind}: ${issue.message}${issue.repaired ? ' (repaired)' : ''}`),
              `${report.pool}: ${report.ok ? 'ok' : 'FAILED'}: ${report.packsChecked} packs, ${report.chunksChecked} chunks, ${report.framesVerified} frames verified`,
            ].join('\n'),
          )
          .join('\n'),
      );
      if (reports.some((report) => !report.ok)) process.exitCode = exitCodes.checkFailed;
    });
}

function volumeRow(v: VolumeAnswer) {
  return { name: v.name, pool: v.pool, size: bytes(v.sizeBytes), snapshots: v.snapshots, parent: v.parent ? `${v.parent.volume}@${v.parent.snapshot}` : '', created: isoTime(v.createdMs) };
}

function volumeDetailText(v: VolumeDetail): string {
  return [
    `volume ${v.name} (pool ${v.pool}): ${bytes(v.sizeBytes)}${v.parent ? `, clone of ${v.parent.volume}@${v.parent.snapshot}` : ''}`,
    `  mapped ${bytes(v.mappedBytes)}, zero ${bytes(v.zeroBytes)}, unique stored ${bytes(v.uniqueStoredBytes)}, shared chunks ${v.sharedChunks}`,
    ...(v.clones.length > 0 ? [`  clones: ${v.clones.join(', ')}`] : []),
    v.snapshotList.length === 0
      ? '  no snapshots'
      : table(
          v.snapshotList.map((s) => ({ snapshot: s.name, size: bytes(s.sizeBytes), created: isoTime(s.createdMs), 'frees-if-deleted': bytes(s.reclaimableBytes) })),
          ['snapshot', 'size', 'created', 'frees-if-deleted'],
        ),
  ].join('\n');
}

function volumeReadCommands(volume: Command): void {
  volume
    .command('list')
    .description('list volumes of every pool')
    .action(async (_options: unknown, command: Command) => {
      const ctx = context(command);
      const volumes = await ctx.client.get<VolumeAnswer[]>('/api/v1/volumes');
      print(ctx, volumes, () => table(volumes.map(volumeRow), ['name', 'pool', 'size', 'snapshots', 'parent', 'created']));
    });
  volume
    .command('show <name>')
    .description('show a volume: accounting, snapshots (with what deleting each frees), clones')
    .action(async (name: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const detail = await ctx.client.get<VolumeDetail>(`/api/v1/volumes/${segment(name)}`);
      print(ctx, detail, () => volumeDetailText(detail));
    });
}

function volumeChangeCommands(volume: Command): void {
  volume
    .command('create <name>')
    .description('create a thin volume')
    .requiredOption('--size <size>', 'logical size: 20G, 512M (powers of 1024)')
    .option('--pool <pool>', 'pool to create it in (default: the first pool)')
    .action(async (name: string, options: { size: string; pool?: string }, command: Command) => {
      const ctx = context(command);
      const created = await ctx.client.post<VolumeAnswer>('/api/v1/volumes', { name, sizeBytes: sizeArgument(options.size), pool: options.pool });
      print(ctx, created, () => `created volume ${created.name} (${bytes(created.sizeBytes)}) in pool ${created.pool}`);
    });
  volume
    .command('resize <name>')
    .description('grow a volume; shrinking needs --force')
    .requiredOption('--size <size>', 'new logical size')
    .option('--force', 'allow shrinking (discards data past the new end)')
    .action(async (name: string, options: { size: string; force?: boolean }, command: Command) => {
      const ctx = context(command);
      const answer = await ctx.client.request<VolumeAnswer>('PATCH', `/api/v1/volumes/${segment(name)}`, { sizeBytes: sizeArgument(options.size), force: options.force });
      print(ctx, answer, () => `volume ${name} is now ${bytes(answer.sizeBytes)}`);
    });
  volume
    .command('rename <name> <new-name>')
    .action(async (name: string, newName: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const answer = await ctx.client.request<VolumeAnswer>('PATCH', `/api/v1/volumes/${segment(name)}`, { name: newName });
      print(ctx, answer, () => `renamed volume ${name} to ${answer.name}`);
    });
  volume
    .command('delete <name>')
    .description('delete a volume and its snapshots')
    .action(async (name: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      await ctx.client.request('DELETE', `/api/v1/volumes/${segment(name)}`);
      print(ctx, { deleted: name }, () => `deleted volume ${name}`);
    });
  volume
    .command('clone <source> <new-name>')
    .description('create a writable clone of VOLUME@SNAPSHOT (instant)')
    .action(async (source: string, newName: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { volume: name, snapshot } = snapshotRef(source);
      const created = await ctx.client.post<VolumeAnswer>(`/api/v1/volumes/${segment(name)}/snapshots/${segment(snapshot!)}/clones`, { name: newName });
      print(ctx, created, () => `created clone ${created.name} of ${source}`);
    });
  volume
    .command('flatten <name>')
    .description('make a clone independent of its parent snapshot')
    .action(async (name: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      await waitForTask(ctx, await ctx.client.post<TaskAnswer>(`/api/v1/volumes/${segment(name)}/flatten`), 'flatten');
      print(ctx, { flattened: name }, () => `flattened ${name}`);
    });
  volume
    .command('rollback <target>')
    .description('roll VOLUME back to VOLUME@SNAPSHOT; past newer snapshots only with --destroy-newer')
    .option('--destroy-newer', 'also delete snapshots newer than the target')
    .action(async (target: string, options: { destroyNewer?: boolean }, command: Command) => {
      const ctx = context(command);
      const { volume: name, snapshot } = snapshotRef(target);
      const answer = await ctx.client.post<VolumeAnswer>(`/api/v1/volumes/${segment(name)}/snapshots/${segment(snapshot!)}/rollback`, { destroyNewer: options.destroyNewer });
      print(ctx, answer, () => `rolled ${name} back to ${target}`);
    });
}

function volumeImageCommands(volume: Command): void {
  volume
    .command('import <name> <file>')
    .description('create a volume from a disk image (size from the image; an OVA imports each of its disks)')
    .addOption(new Option('--format <format>', 'image format (detected when omitted)').choices(['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi', 'ova']))
    .option('--pool <pool>', 'pool to create it in')
    .action(async (name: string, file: string, options: { format?: string; pool?: string }, command: Command) => {
      const ctx = context(command);
      const started = await ctx.client.post<TaskAnswer>('/api/v1/volumes/import', { name, path: path.resolve(file), format: options.format, pool: options.pool });
      const result = (await waitForTask(ctx, started, 'import')).result as { volumes: string[] };
      print(ctx, result, () => `imported ${file} into ${result.volumes.join(', ')}`);
    });
  volume
    .command('export <name> <file>')
    .description('write a volume or VOLUME@SNAPSHOT to a new image file')
    .addOption(new Option('--format <format>', 'image format').choices(['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi']).makeOptionMandatory())
    .action(async (source: string, file: string, options: { format: string }, command: Command) => {
      const ctx = context(command);
      const { volume: name, snapshot } = snapshotRef(source, true);
      const started = await ctx.client.post<TaskAnswer>(`/api/v1/volumes/${segment(name)}/export`, { path: path.resolve(file), format: options.format, snapshot });
      const result = (await waitForTask(ctx, started, 'export')).result;
      print(ctx, result, () => `exported ${source} to ${file} (${options.format})`);
    });
}

function snapshotCommands(program: Command): void {
  const snapshot = program.command('snapshot').description('snapshots of a volume: VOLUME@SNAPSHOT');
  snapshot
    .command('create <target>')
    .description('create VOLUME@SNAPSHOT (instant)')
    .action(async (target: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { volume, snapshot: name } = snapshotRef(target);
      const created = await ctx.client.post<SnapshotStats>(`/api/v1/volumes/${segment(volume)}/snapshots`, { name });
      print(ctx, created, () => `created snapshot ${target}`);
    });
  snapshot
    .command('list <volume>')
    .description("list a volume's snapshots with what deleting each would free")
    .action(async (volume: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const list = await ctx.client.get<SnapshotStats[]>(`/api/v1/volumes/${segment(volume)}/snapshots`);
      print(ctx, list, () =>
        table(
          list.map((s) => ({ name: s.name, size: bytes(s.sizeBytes), created: isoTime(s.createdMs), 'frees-if-deleted': bytes(s.reclaimableBytes) })),
          ['name', 'size', 'created', 'frees-if-deleted'],
        ),
      );
    });
  snapshot
    .command('delete <target>')
    .description('delete VOLUME@SNAPSHOT (refused while it has clones)')
    .action(async (target: string, _options: unknown, command: Command) => {
      const ctx = context(command);
      const { volume, snapshot: name } = snapshotRef(target);
      await ctx.client.request('DELETE', `/api/v1/volumes/${segment(volume)}/snapshots/${segment(name!)}`);
      print(ctx, { deleted: target }, () => `deleted snapshot ${target}`);
    });
}

interface ExportAnswer {
  name: string;
  readOnly: boolean;
  uris: string[];
  clients: { address: string; tls: boolean }[];
}

function exportCommands(program: Command): void {
  program
    .command('export')
    .description('NBD exports')
    .command('list')
    .description('NBD URIs of every volume (read-write) and snapshot (read-only), with connected clients')
    .action(async (_options: unknown, command: Command) => {
      const ctx: CommandContext = context(command);
      const list = await ctx.client.get<ExportAnswer[]>('/api/v1/exports');
      print(ctx, list, () =>
        table(
          list.map((e) => ({ export: e.name, mode: e.readOnly ? 'ro' : 'rw', uri: e.uris.join(' '), clients: e.clients.map((c) => c.address).join(',') })),
          ['export', 'mode', 'uri', 'clients'],
        ),
      );
    });
}

export function storageCommands(program: Command): void {
  poolCommands(program);
  const volume = program.command('volume').description('volumes (virtual disks)');
  volumeReadCommands(volume);
  volumeChangeCommands(volume);
  volumeImageCommands(volume);
  snapshotCommands(program);
  exportCommands(program);
  checkCommand(program);
}
