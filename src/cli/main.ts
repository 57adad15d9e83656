/*
 * The `strata` command line: `strata <noun> <verb>`, `--json` on every read command,
 * exit codes from exit-codes.ts. Until the daemon exists, commands open the pool
 * directory themselves (one process at a time may hold a pool).
 */
import { Command, Option } from 'commander';
import { StrataError } from '../common/errors.js';
import { parseSize } from '../common/units.js';
import { isCodec } from '../common/codec-names.js';
import { Pool } from '../engine/index.js';
import { exitCodeFor, exitCodes } from './exit-codes.js';
import { bytes, ratio, table } from './format.js';
import { exportImage, importImage } from './image-transfer.js';
import { progressBar } from './progress.js';
import { serveCommand } from './serve-command.js';

interface GlobalOptions {
  pool: string;
  json?: boolean;
}

function sizeArgument(text: string): number {
  const value = parseSize(text);
  if (value === undefined) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${JSON.stringify(text)} is not a size (try 10G, 512M, 4096)`);
  return value;
}

function print(json: boolean | undefined, value: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(value, null, 2) : text());
}

async function withPool<T>(options: GlobalOptions, body: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = await Pool.open(options.pool, { tuning: { compactIntervalMs: 0 } });
  try {
    return await body(pool);
  } finally {
    await pool.close();
  }
}

function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals() as GlobalOptions;
}

function poolCommands(program: Command): void {
  const pool = program.command('pool').description('create, inspect, check and reclaim a pool');
  pool
    .command('create')
    .description('create a pool in the --pool directory')
    .option('--block-size <size>', 'block size: power of two from 4K to 1M', '4K')
    .option('--no-dedup', 'turn deduplication off')
    .addOption(new Option('--compression <codec>', 'compression codec').choices(['lz4', 'zstd', 'none']).default('zstd'))
    .action(async (options: { blockSize: string; dedup: boolean; compression: string }, command: Command) => {
      const opts = globals(command);
      if (!isCodec(options.compression)) throw new StrataError('STRATA_E_INVALID_ARGUMENT', 'unknown codec');
      const created = await Pool.create(opts.pool, { blockSize: sizeArgument(options.blockSize), dedup: options.dedup, compression: options.compression });
      const policy = created.policy;
      await created.close();
      print(opts.json, policy, () => `created pool ${opts.pool}: block ${bytes(policy.blockSize)}, dedup ${policy.dedup ? 'on' : 'off'}, ${policy.compression}`);
    });
  pool
    .command('status')
    .description('show pool policy and space accounting')
    .action(async (_options: unknown, command: Command) => {
      const opts = globals(command);
      const stats = await withPool(opts, (p) => p.stats());
      print(opts.json, stats, () =>
        [
          `policy:        block ${bytes(stats.policy.blockSize)}, dedup ${stats.policy.dedup ? 'on' : 'off'}, compression ${stats.policy.compression}`,
          `volumes:       ${stats.volumes} (${stats.snapshots} snapshots), logical ${bytes(stats.logicalBytes)}, mapped ${bytes(stats.mappedBytes)}`,
          `data:          unique ${bytes(stats.uniqueBytes)}, referenced ${bytes(stats.referencedBytes)}`,
          `stored:        ${bytes(stats.storedBytes)} in packs (${bytes(stats.liveStoredBytes)} live), metadata ${bytes(stats.metadataBytes)}`,
          `ratios:        dedup ${ratio(stats.dedupRatio)}, compression ${ratio(stats.compressionRatio)}`,
          `checksum errors: ${stats.checksumErrors}`,
        ].join('\n'),
      );
    });
  pool
    .command('check')
    .description('verify metadata against packs; --deep re-hashes every chunk')
    .option('--deep', 'read and re-hash every stored chunk')
    .option('--repair', 'fix what can be fixed without guessing')
    .action(async (options: { deep?: boolean; repair?: boolean }, command: Command) => {
      const opts = globals(command);
      const bar = progressBar(!opts.json, 'check');
      const report = await withPool(opts, (p) =>
        p.check({ deep: options.deep, repair: options.repair, onProgress: (step) => bar.update(step.done, step.total, step.phase) }),
      );
      bar.stop();
      print(opts.json, report, () =>
        [
          ...report.issues.map((issue) => `${issue.severity} ${issue.kind}: ${issue.message}${issue.repaired ? ' (repaired)' : ''}`),
          `${report.ok ? 'ok' : 'FAILED'}: ${report.packsChecked} packs, ${report.chunksChecked} chunks, ${report.framesVerified} frames verified`,
        ].join('\n'),
      );
      if (!report.ok) process.exitCode = exitCodes.checkFailed;
    });
  pool
    .command('reclaim')
    .description('compact sparse packs and give space back to the file system')
    .option('--now', 'delete replaced packs without waiting for the grace period')
    .action(async (options: { now?: boolean }, command: Command) => {
      const opts = globals(command);
      const bar = progressBar(!opts.json, 'reclaim');
      const report = await withPool(opts, (p) =>
        p.reclaim({ skipGrace: options.now, onProgress: (step) => bar.update(step.doneBytes, step.totalBytes, step.phase) }),
      );
      bar.stop();
      print(opts.json, report, () => `compacted ${report.packsCompacted} packs, deleted ${report.packsDeleted}, freed ${bytes(report.bytesFreed)}`);
    });
}

function volumeCommands(program: Command): void {
  const volume = program.command('volume').description('manage volumes (virtual disks)');
  volume
    .command('create <name> <size>')
    .description('create a thin volume')
    .action(async (name: string, size: string, _options: unknown, command: Command) => {
      const opts = globals(command);
      const info = await withPool(opts, (p) => p.createVolume(name, sizeArgument(size)));
      print(opts.json, info, () => `created volume ${info.name} (${bytes(info.sizeBytes)})`);
    });
  volume
    .command('list')
    .description('list volumes')
    .action(async (_options: unknown, command: Command) => {
      const opts = globals(command);
      const volumes = await withPool(opts, async (p) => p.listVolumes());
      print(opts.json, volumes, () =>
        table(
          volumes.map((v) => ({ name: v.name, size: bytes(v.sizeBytes), snapshots: v.snapshots, parent: v.parent ? `${v.parent.volume}@${v.parent.snapshot}` : '' })),
          ['name', 'size', 'snapshots', 'parent'],
        ),
      );
    });
  volume
    .command('info <name>')
    .description('show a volume with its space accounting and snapshots')
    .action(async (name: string, _options: unknown, command: Command) => {
      const opts = globals(command);
      const stats = await withPool(opts, (p) => p.volumeStats(name));
      print(opts.json, stats, () =>
        [
          `${stats.name}: logical ${bytes(stats.logicalBytes)}, mapped ${bytes(stats.mappedBytes)}, unique stored ${bytes(stats.uniqueStoredBytes)}, shared chunks ${stats.sharedChunks}`,
          table(
            stats.snapshots.map((s) => ({ snapshot: s.name, size: bytes(s.sizeBytes), created: new Date(s.createdMs).toISOString(), reclaimable: bytes(s.reclaimableBytes) })),
            ['snapshot', 'size', 'created', 'reclaimable'],
          ),
        ].join('\n'),
      );
    });
  volume
    .command('resize <name> <size>')
    .description('grow a volume; shrinking needs --force')
    .option('--force', 'allow shrinking (discards data past the new end)')
    .action(async (name: string, size: string, options: { force?: boolean }, command: Command) => {
      await withPool(globals(command), (p) => p.resizeVolume(name, sizeArgument(size), { force: options.force }));
    });
  volume
    .command('rename <name> <new-name>')
    .action(async (name: string, newName: string, _options: unknown, command: Command) => {
      await withPool(globals(command), (p) => p.renameVolume(name, newName));
    });
  volume
    .command('delete <name>')
    .action(async (name: string, _options: unknown, command: Command) => {
      await withPool(globals(command), (p) => p.deleteVolume(name));
    });
  volume
    .command('clone <volume> <snapshot> <new-name>')
    .description('create a writable clone of a snapshot (instant)')
    .action(async (name: string, snapshot: string, newName: string, _options: unknown, command: Command) => {
      await withPool(globals(command), (p) => p.clone(name, snapshot, newName));
    });
  volume
    .command('flatten <name>')
    .description('make a clone independent of its parent snapshot')
    .action(async (name: string, _options: unknown, command: Command) => {
      const bar = progressBar(true, 'flatten');
      await withPool(globals(command), (p) => p.flatten(name, { onProgress: (done, total) => bar.update(done, total) }));
      bar.stop();
    });
  volume
    .command('import <name> <file>')
    .description('create a volume from a raw disk image (all-zero areas stay thin)')
    .action(async (name: string, file: string, _options: unknown, command: Command) => {
      const opts = globals(command);
      const { statSync } = await import('node:fs');
      const bar = progressBar(!opts.json, 'import');
      const written = await withPool(opts, async (p) => {
        await p.createVolume(name, statSync(file).size);
        return importImage(file, p.openVolume(name), (done, total) => bar.update(done, total));
      });
      bar.stop();
      print(opts.json, { volume: name, writtenBytes: written }, () => `imported ${file} into ${name} (${bytes(written)} of data)`);
    });
  volume
    .command('export <name> <file>')
    .description('write a volume (or VOLUME@SNAPSHOT) to a sparse raw image')
    .action(async (name: string, file: string, _options: unknown, command: Command) => {
      const bar = progressBar(true, 'export');
      await withPool(globals(command), async (p) => {
        const [volumeName, snapshot] = name.split('@');
        const device = snapshot === undefined ? p.openVolume(volumeName) : p.openSnapshot(volumeName, snapshot);
        await exportImage(device, file, (done, total) => bar.update(done, total));
      });
      bar.stop();
    });
}

function snapshotCommands(program: Command): void {
  const snapshot = program.command('snapshot').description('manage snapshots of a volume');
  snapshot
    .command('create <volume> <name>')
    .action(async (volume: string, name: string, _options: unknown, command: Command) => {
      const opts = globals(command);
      const info = await withPool(opts, (p) => p.createSnapshot(volume, name));
      print(opts.json, info, () => `created snapshot ${volume}@${name}`);
    });
  snapshot
    .command('list <volume>')
    .action(async (volume: string, _options: unknown, command: Command) => {
      const opts = globals(command);
      const list = await withPool(opts, async (p) => p.listSnapshots(volume));
      print(opts.json, list, () =>
        table(list.map((s) => ({ name: s.name, size: bytes(s.sizeBytes), created: new Date(s.createdMs).toISOString() })), ['name', 'size', 'created']),
      );
    });
  snapshot
    .command('delete <volume> <name>')
    .action(async (volume: string, name: string, _options: unknown, command: Command) => {
      await withPool(globals(command), (p) => p.deleteSnapshot(volume, name));
    });
  snapshot
    .command('rollback <volume> <name>')
    .option('--destroy-newer', 'also delete snapshots newer than the target')
    .action(async (volume: string, name: string, options: { destroyNewer?: boolean }, command: Command) => {
      await withPool(globals(command), (p) => p.rollback(volume, name, { destroyNewer: options.destroyNewer }));
    });
}

export function buildProgram(): Command {
  const program = new Command('strata')
    .description('Strata: thin volumes with snapshots, clones, dedup and compression on a plain Linux host')
    .option('--pool <dir>', 'pool directory', process.env.STRATA_POOL ?? './strata-pool')
    .option('--json', 'print machine-readable JSON')
    .showHelpAfterError();
  poolCommands(program);
  volumeCommands(program);
  snapshotCommands(program);
  serveCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : exitCodes.ok;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      return code === 'commander.helpDisplayed' || code === 'commander.version' ? exitCodes.ok : exitCodes.usage;
    }
    const message = error instanceof StrataError ? `${error.code}: ${error.message}` : String((error as Error)?.stack ?? error);
    console.error(`strata: ${message}`);
    return exitCodeFor(error);
  }
}
