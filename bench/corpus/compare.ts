/*
 * The realistic dedup corpus, side by side: the ext4 VM-disk images built by
 * build-images.sh go into Strata (several policies) and into borg (three chunkers)
 * and restic, in the same run. Figures: bytes stored on the host (repository or pool
 * directory, allocated) and ingest wall time, with ratios against Strata's default
 * policy. Images are built on first use and cached outside the repository.
 *
 * One run of each tool moves by up to a quarter from run to run on a shared 2-vCPU
 * machine, so Strata's default and the fastest borg variant then also run head to head
 * in alternating order (STRATA_BENCH_CORPUS_ROUNDS rounds, default 3) and the median of
 * the per-round ratios is printed.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { limits } from '../../src/common/limits.js';
import { cacheDir, fmt, median, printTable, warmPageCache } from '../support.js';
import { measureBorgVariant, measurePeers, readThrough, type PeerResult } from './peers.js';
import { ingestStrata, type StrataIngestResult } from './strata-ingest.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function corpusImages(): string[] | null {
  if (spawnSync('which', ['debootstrap']).status !== 0 && !fs.existsSync(path.join(cacheDir(), 'images'))) {
    console.log('\nSKIPPED corpus benchmark: debootstrap is missing (Debian package: debootstrap)');
    return null;
  }
  const built = spawnSync('bash', [path.join(here, 'build-images.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (built.status !== 0) {
    console.log(`\nSKIPPED corpus benchmark: building the images failed (exit ${built.status})`);
    return null;
  }
  return built.stdout.split('\n').filter((line) => line.endsWith('.img'));
}

const policies = [
  { blockSize: limits.blockSizeDefaultBytes, dedup: true, compression: 'zstd' },
  { blockSize: 4096, dedup: true, compression: 'lz4' },
  { blockSize: 8192, dedup: true, compression: 'zstd' },
  { blockSize: 16384, dedup: true, compression: 'zstd' },
  { blockSize: 65536, dedup: true, compression: 'zstd' },
  { blockSize: 4096, dedup: false, compression: 'zstd' },
] as const;

function strataRow(result: StrataIngestResult, base: StrataIngestResult): Record<string, string> {
  const p = result.policy;
  return {
    tool: 'strata',
    variant: `${p.blockSize / 1024} KiB, ${p.compression}, dedup ${p.dedup ? 'on' : 'off'}`,
    'stored MiB': fmt.mib(result.storedBytes),
    'vs strata': fmt.ratio(result.storedBytes / base.storedBytes),
    'metadata': `${fmt.mib(result.metadataBytes)} MiB (${((100 * result.metadataBytes) / result.storedBytes).toFixed(1)} %)`,
    'ingest s': (result.ingestMs / 1000).toFixed(1),
    'time vs strata': fmt.ratio(result.ingestMs / base.ingestMs),
  };
}

export async function benchCorpus(): Promise<void> {
  const images = corpusImages();
  if (!images) return;
  const work = path.join(cacheDir(), 'work');
  fs.mkdirSync(work, { recursive: true });
  const sizes = images.map((image) => `${path.basename(image)} ${fmt.mib(fs.statSync(image).blocks * 512)} MiB used`);
  console.log(`\ncorpus: ${sizes.join(', ')}`);
  // Every tool starts from the same warm page cache (the peers' runner does the same).
  for (const image of images) await readThrough(image);
  const strata: StrataIngestResult[] = [];
  // Each run writes into page-cache memory used before (see warmPageCache).
  const warmBytes = 2 * images.reduce((sum, image) => sum + fs.statSync(image).blocks * 512, 0);
  // One untimed ingest of the smallest image first: the engine runs in a long-lived
  // daemon, and the first measurement of this process otherwise also pays for compiling
  // its code and growing its heap (it came out 20-30 % slower than the same work later).
  const smallest = [...images].sort((a, b) => fs.statSync(a).blocks - fs.statSync(b).blocks)[0];
  await ingestStrata([smallest], work, { ...policies[0] });
  for (const policy of policies) {
    warmPageCache(work, warmBytes);
    strata.push(await ingestStrata(images, work, { ...policy }));
  }
  const base = strata[0];
  const rows = strata.map((result) => strataRow(result, base));
  const peers = await measurePeers(images, work, { beforeEach: () => warmPageCache(work, warmBytes) });
  for (const peer of peers) {
    rows.push({
      tool: peer.tool,
      variant: peer.variant,
      'stored MiB': peer.available ? fmt.mib(peer.storedBytes) : `n/a (${peer.reason})`,
      'vs strata': peer.available ? fmt.ratio(peer.storedBytes / base.storedBytes) : '',
      metadata: '',
      'ingest s': peer.available ? (peer.ingestMs / 1000).toFixed(1) : '',
      'time vs strata': peer.available ? fmt.ratio(peer.ingestMs / base.ingestMs) : '',
    });
  }
  printTable(`Dedup corpus: ${images.length} ext4 images, stored bytes on the host and ingest time (ratios against Strata's default policy)`, rows);
  const fastestBorg = peers.filter((peer) => peer.available && peer.tool === 'borg').sort((a, b) => a.ingestMs - b.ingestMs)[0];
  if (fastestBorg !== undefined) await headToHead(images, work, warmBytes, fastestBorg);
}

async function headToHead(images: string[], work: string, warmBytes: number, peer: PeerResult): Promise<void> {
  const rounds = Number(process.env.STRATA_BENCH_CORPUS_ROUNDS ?? 3);
  const chunker = peer.variant.replace(/ lz4$/, '');
  const rows: Record<string, string>[] = [];
  const ratios: number[] = [];
  for (let round = 1; round <= rounds; round += 1) {
    const measureStrata = async () => {
      warmPageCache(work, warmBytes);
      return (await ingestStrata(images, work, { ...policies[0] })).ingestMs;
    };
    const measurePeer = async () => {
      warmPageCache(work, warmBytes);
      return (await measureBorgVariant(images, work, chunker)).ingestMs;
    };
    // Alternating which goes first, so neither always meets the machine's slower phase.
    const strataFirst = round % 2 === 1;
    const first = strataFirst ? await measureStrata() : await measurePeer();
    const second = strataFirst ? await measurePeer() : await measureStrata();
    const [strataMs, peerMs] = strataFirst ? [first, second] : [second, first];
    ratios.push(strataMs / peerMs);
    rows.push({ round: String(round), first: strataFirst ? 'strata' : 'borg', 'strata s': (strataMs / 1000).toFixed(1), [`borg ${chunker} s`]: (peerMs / 1000).toFixed(1), 'strata / borg': fmt.ratio(strataMs / peerMs) });
  }
  rows.push({ round: 'median', first: '', 'strata s': '', [`borg ${chunker} s`]: '', 'strata / borg': fmt.ratio(median(ratios)) });
  printTable(`Dedup corpus ingest head to head: Strata's default against borg ${chunker}, ${rounds} alternating rounds`, rows);
}
