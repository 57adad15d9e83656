/*
 * Interop with libnbd's tools (Debian packages libnbd-bin, python3-libnbd) and fio's nbd
 * engine (fio): listing, sizes and maps, nbdcopy round trips over several connections,
 * scripted requests through nbdsh, and fio's verified random writes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KiB, MiB } from '../../src/common/units.js';
import { hasTool, runOk, runTool } from '../helpers/tools.js';
import { startNbd, type NbdFixture } from '../helpers/nbd-fixture.js';

const haveLibnbd = hasTool('nbdinfo', 'libnbd-bin') && hasTool('nbdcopy', 'libnbd-bin');
const haveNbdsh = hasTool('nbdsh', 'python3-libnbd');
const haveFio = hasTool('fio', 'fio');

/** nbdsh runs on the python3 its Debian package's bindings were built for. */
function nbdsh(uri: string, script: string): Promise<string> {
  return runOk('nbdsh', ['--base-allocation', '-u', uri, '-c', script], { env: { ...process.env, PATH: `/usr/bin:${process.env.PATH ?? ''}` } });
}

describe('NBD interop: libnbd tools and fio', () => {
  let nbd: NbdFixture;

  beforeEach(async () => {
    nbd = await startNbd();
    await nbd.pool.createVolume('disk', 32 * MiB);
  });

  afterEach(async () => {
    await nbd.stop();
  });

  it.skipIf(!haveLibnbd)('nbdinfo lists exports with descriptions, as volumes and snapshots come and go', async () => {
    await nbd.pool.createSnapshot('disk', 's1');
    const listing = await runOk('nbdinfo', ['--list', '--json', nbd.uri('')]);
    const exports = (JSON.parse(listing) as { exports: { 'export-name': string; description: string; 'is_read_only': boolean }[] }).exports;
    expect(exports.map((entry) => entry['export-name'])).toEqual(['disk', 'disk@s1']);
    expect(exports[0].description).toMatch(/volume disk/);
    expect(exports[1]).toMatchObject({ is_read_only: true });
    await nbd.pool.createVolume('other', MiB);
    await nbd.pool.deleteSnapshot('disk', 's1');
    const after = JSON.parse(await runOk('nbdinfo', ['--list', '--json', nbd.uri('')])) as { exports: { 'export-name': string }[] };
    expect(after.exports.map((entry) => entry['export-name'])).toEqual(['disk', 'other']);
    expect((await runTool('nbdinfo', ['--size', nbd.uri('disk@s1')])).code).not.toBe(0);
  });

  it.skipIf(!haveLibnbd)('nbdinfo --size and --map see writes at once', async () => {
    expect((await runOk('nbdinfo', ['--size', nbd.uri('disk')])).trim()).toBe(String(32 * MiB));
    const device = nbd.pool.openVolume('disk');
    await device.write(MiB, Buffer.alloc(64 * KiB, 7));
    await device.writeZeroes(2 * MiB, 64 * KiB, { allocate: true });
    const map = JSON.parse(await runOk('nbdinfo', ['--map', '--json', nbd.uri('disk')])) as { offset: number; length: number; type: number }[];
    expect(map.map((entry) => [entry.offset, entry.length, entry.type])).toEqual([
      [0, MiB, 3],
      [MiB, 64 * KiB, 0],
      [MiB + 64 * KiB, MiB - 64 * KiB, 3],
      [2 * MiB, 64 * KiB, 2],
      [2 * MiB + 64 * KiB, 30 * MiB - 64 * KiB, 3],
    ]);
  });

  it.skipIf(!haveLibnbd)('nbdcopy copies an image in and out over four connections, unchanged', async () => {
    const source = path.join(nbd.dir, 'in.raw');
    const back = path.join(nbd.dir, 'out.raw');
    const image = Buffer.alloc(32 * MiB);
    for (let at = 0; at < image.length; at += 4 * KiB) {
      if ((at / (4 * KiB)) % 3 !== 0) image.fill((at >> 12) & 0xff, at, at + 4 * KiB);
    }
    fs.writeFileSync(source, image);
    // nbdcopy caps connections at its thread count (the core count by default).
    await runOk('nbdcopy', ['--connections=4', '--threads=4', '--flush', source, nbd.uri('disk')]);
    await runOk('nbdcopy', ['--connections=4', '--threads=4', nbd.uri('disk'), back]);
    expect(fs.readFileSync(back).equals(image)).toBe(true);
    expect((await nbd.pool.openVolume('disk').read(0, 32 * MiB)).equals(image)).toBe(true);
    const connected = nbd.log.lines.filter((line) => line.message === 'client connected');
    expect(connected.length).toBeGreaterThanOrEqual(8);
  });

  it.skipIf(!haveNbdsh)('nbdsh drives reads, writes, zeroes, trims, flushes and block status', async () => {
    const script = `
import errno
h.set_strict_mode(0)
assert h.get_size() == ${32 * MiB}
assert h.can_multi_conn() and h.can_fua() and h.can_trim() and h.can_zero() and h.can_df() and h.can_cache()
h.pwrite(b"hello" * 100, 12345, nbd.CMD_FLAG_FUA)
assert h.pread(500, 12345) == b"hello" * 100
h.zero(65536, 1048576, nbd.CMD_FLAG_NO_HOLE)
h.trim(65536, 2 * 1048576)
h.flush()
h.cache(1048576, 0)
seen = []
def cb(metacontext, offset, entries, err):
    seen.append(list(entries))
h.block_status(1048576, 0, cb)
# The 500 bytes at 12345 live in the block at 12288; zeroed then trimmed space is a hole.
assert seen == [[12288, 3, 4096, 0, 1048576 - 16384, 3]], seen
seen.clear()
h.block_status(1048576, 0, cb, nbd.CMD_FLAG_REQ_ONE)
assert seen == [[12288, 3]], seen
try:
    h.pread(10, ${32 * MiB} - 5)
    raise SystemExit("read past the end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EINVAL, e
try:
    h.pwrite(b"x" * 10, ${32 * MiB} - 5)
    raise SystemExit("write past the end succeeded")
except nbd.Error as e:
    assert e.errnum == errno.ENOSPC, e
print("ok")
`;
    const out = await nbdsh(nbd.uri('disk'), script);
    expect(out.trim()).toBe('ok');
    const readOnly = `
import errno
h.set_strict_mode(0)
assert h.is_read_only()
try:
    h.pwrite(b"x", 0)
    raise SystemExit("write to a snapshot succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EPERM, e
print("ok")
`;
    await nbd.pool.createSnapshot('disk', 'ro');
    expect((await nbdsh(nbd.uri('disk@ro'), readOnly)).trim()).toBe('ok');
  });

  it.skipIf(!haveFio)('fio random writes through its nbd engine verify on read back', async () => {
    const out = await runOk('fio', [
      '--name=verify',
      '--ioengine=nbd',
      `--uri=${nbd.uri('disk')}`,
      '--rw=randwrite',
      '--bs=4k',
      '--size=8m',
      '--iodepth=16',
      '--verify=crc32c',
      '--do_verify=1',
      '--verify_fatal=1',
      // fio would otherwise leave its verify state file in the working directory.
      '--verify_state_save=0',
      '--output-format=json',
    ], { timeoutMs: 120_000 });
    const result = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { error: number; write: { io_bytes: number }; read: { io_bytes: number } }[] };
    expect(result.jobs[0].error).toBe(0);
    expect(result.jobs[0].write.io_bytes).toBe(8 * MiB);
    expect(result.jobs[0].read.io_bytes).toBe(8 * MiB);
  });
});
