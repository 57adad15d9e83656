/*
 * Interop with QEMU's own NBD client through qemu-img and qemu-io (Debian package
 * qemu-utils): info, convert into an export, compare, map, and qemu-io's pattern, FUA,
 * unaligned, discard and write-zeroes requests, checked against what the engine holds.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MiB, KiB } from '../../src/common/units.js';
import { hasTool, runOk, runTool } from '../helpers/tools.js';
import { startNbd, type NbdFixture } from '../helpers/nbd-fixture.js';

const haveQemu = hasTool('qemu-img', 'qemu-utils') && hasTool('qemu-io', 'qemu-utils');

function qemuIo(uri: string, commands: string[], readOnly = false): Promise<string> {
  return runOk('qemu-io', [...(readOnly ? ['-r'] : []), '-f', 'raw', ...commands.flatMap((command) => ['-c', command]), uri]);
}

interface MapEntry {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
}

describe.skipIf(!haveQemu)('NBD interop: qemu-img and qemu-io', () => {
  let nbd: NbdFixture;

  beforeEach(async () => {
    nbd = await startNbd();
    await nbd.pool.createVolume('disk', 16 * MiB);
  });

  afterEach(async () => {
    await nbd.stop();
  });

  it('qemu-img info reports the export size over TCP and over the unix socket', async () => {
    for (const uri of [nbd.uri('disk'), nbd.unixUri('disk')]) {
      const info = JSON.parse(await runOk('qemu-img', ['info', '--output=json', uri])) as { 'virtual-size': number; format: string };
      expect(info).toMatchObject({ 'virtual-size': 16 * MiB, format: 'raw' });
    }
  });

  it('qemu-img convert -n copies an image in, compare agrees, and map tells data from holes', async () => {
    const source = path.join(nbd.dir, 'source.raw');
    const image = Buffer.alloc(16 * MiB);
    // Data at 0-1 MiB and 5-6 MiB and a few odd blocks; the rest reads as zeros.
    for (const [start, length] of [[0, MiB], [5 * MiB, MiB], [9 * MiB + 4 * KiB, 8 * KiB]]) {
      for (let at = start; at < start + length; at += 1) image[at] = (at * 7 + 3) & 0xff || 1;
    }
    fs.writeFileSync(source, image);
    await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, nbd.uri('disk')]);
    const compared = await runTool('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, nbd.uri('disk')]);
    expect(compared.code, compared.stdout + compared.stderr).toBe(0);
    const map = JSON.parse(await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', nbd.uri('disk')])) as MapEntry[];
    const dataRanges = map.filter((entry) => entry.data).map((entry) => [entry.start, entry.length]);
    expect(dataRanges).toEqual([
      [0, MiB],
      [5 * MiB, MiB],
      [9 * MiB + 4 * KiB, 8 * KiB],
    ]);
    expect(map.filter((entry) => !entry.data).every((entry) => entry.zero)).toBe(true);
    // The engine agrees, byte for byte.
    const device = nbd.pool.openVolume('disk');
    expect((await device.read(0, 16 * MiB)).equals(image)).toBe(true);
  });

  it('qemu-io pattern, unaligned, FUA, discard and write-zeroes requests land as the engine sees them', async () => {
    await qemuIo(nbd.uri('disk'), [
      'write -P 0xab 1 3',
      'write -f -P 0xcd 64k 64k',
      'write -P 0x11 128k 64k',
      'discard 128k 64k',
      'write -P 0x22 192k 64k',
      'write -z 192k 64k',
      'write -P 0x33 256k 64k',
      'write -z -u 256k 64k',
      'write -P 0x44 320k 64k',
      'write -z -n -u 320k 64k',
      'flush',
    ]);
    const check = await qemuIo(nbd.uri('disk'), [
      'read -P 0 0 1',
      'read -P 0xab 1 3',
      'read -P 0 4 4092',
      'read -P 0xcd 64k 64k',
      'read -P 0 128k 256k',
      'read -P 0 384k 1M',
    ]);
    expect(check).not.toMatch(/Pattern verification failed/);
    const device = nbd.pool.openVolume('disk');
    const status = await device.blockStatus(0, 384 * KiB);
    expect(status).toEqual([
      { offset: 0, length: 4 * KiB, type: 'data' },
      { offset: 4 * KiB, length: 60 * KiB, type: 'hole' },
      { offset: 64 * KiB, length: 64 * KiB, type: 'data' },
      { offset: 128 * KiB, length: 64 * KiB, type: 'hole' },
      { offset: 192 * KiB, length: 64 * KiB, type: 'zero' },
      { offset: 256 * KiB, length: 128 * KiB, type: 'hole' },
    ]);
    const expected = Buffer.alloc(4096);
    expected.fill(0xab, 1, 4);
    expect((await device.read(0, 4096)).equals(expected)).toBe(true);
    const map = await qemuIo(nbd.uri('disk'), ['map'], true);
    expect(map).toContain('allocated at offset 0 bytes');
  });

  it('a snapshot export serves the snapshot read-only while the volume moves on', async () => {
    await qemuIo(nbd.uri('disk'), ['write -P 0x5a 0 1M', 'flush']);
    await nbd.pool.createSnapshot('disk', 'before');
    await qemuIo(nbd.uri('disk'), ['write -P 0xa5 0 1M', 'flush']);
    const snapshot = nbd.uri('disk@before');
    expect(await qemuIo(snapshot, ['read -P 0x5a 0 1M'], true)).not.toMatch(/failed/);
    expect(await qemuIo(nbd.uri('disk'), ['read -P 0xa5 0 1M'], true)).not.toMatch(/failed/);
    const writable = await runTool('qemu-io', ['-f', 'raw', '-c', 'write -P 1 0 4k', snapshot]);
    expect(writable.code).not.toBe(0);
    expect(writable.stderr + writable.stdout).toMatch(/read.only|Permission|not permitted/i);
  });

  it('an unknown export is refused with a clear error and the server keeps serving', async () => {
    const missing = await runTool('qemu-img', ['info', nbd.uri('nope')]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/nope/);
    expect(await runOk('qemu-img', ['info', nbd.uri('disk')])).toContain('16 MiB');
  });
});
