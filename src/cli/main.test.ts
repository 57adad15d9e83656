/*
 * The CLI end to end in-process: commands, JSON output, exit codes for bad input.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from './main.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

async function strata(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((line: unknown) => void out.push(String(line)));
  vi.spyOn(console, 'error').mockImplementation((line: unknown) => void err.push(String(line)));
  process.exitCode = undefined;
  const code = await main(['node', 'strata', ...args]);
  vi.restoreAllMocks();
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('strata CLI', () => {
  it('creates a pool, volumes and snapshots, and reports them as JSON', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-'));
    dirs.push(dir);
    const pool = path.join(dir, 'pool');
    expect((await strata('--pool', pool, 'pool', 'create', '--compression', 'zstd')).code).toBe(0);
    expect((await strata('--pool', pool, 'volume', 'create', 'disk0', '64M')).code).toBe(0);
    const image = path.join(dir, 'image.raw');
    const content = Buffer.alloc(8 << 20);
    content.write('strata image', 3 << 20);
    fs.writeFileSync(image, content);
    expect((await strata('--pool', pool, 'volume', 'import', 'img', image)).code).toBe(0);
    expect((await strata('--pool', pool, 'snapshot', 'create', 'img', 'base')).code).toBe(0);
    expect((await strata('--pool', pool, 'volume', 'clone', 'img', 'base', 'vm1')).code).toBe(0);
    const list = await strata('--pool', pool, '--json', 'volume', 'list');
    expect(JSON.parse(list.out).map((v: { name: string }) => v.name)).toEqual(['disk0', 'img', 'vm1']);
    const status = JSON.parse((await strata('--pool', pool, '--json', 'pool', 'status')).out);
    expect(status.policy.compression).toBe('zstd');
    expect(status.uniqueBytes).toBe(4096);
    const exported = path.join(dir, 'out.raw');
    expect((await strata('--pool', pool, 'volume', 'export', 'vm1', exported)).code).toBe(0);
    expect(fs.readFileSync(exported).equals(content)).toBe(true);
    const check = await strata('--pool', pool, '--json', 'pool', 'check', '--deep');
    expect(check.code).toBe(0);
    expect(JSON.parse(check.out).ok).toBe(true);
  });

  it('maps errors to documented exit codes with the error code in the message', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-'));
    dirs.push(dir);
    const pool = path.join(dir, 'pool');
    expect((await strata('--pool', pool, 'volume', 'list')).code).toBe(3);
    await strata('--pool', pool, 'pool', 'create');
    const bad = await strata('--pool', pool, 'volume', 'create', '../etc', '1G');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('STRATA_E_INVALID_NAME');
    expect((await strata('--pool', pool, 'volume', 'create', 'v', 'lots')).code).toBe(2);
    await strata('--pool', pool, 'volume', 'create', 'v', '1M');
    expect((await strata('--pool', pool, 'volume', 'create', 'v', '1M')).code).toBe(4);
    expect((await strata('--pool', pool, 'volume', 'resize', 'v', '4K')).code).toBe(4);
    expect((await strata('--pool', pool, 'snapshot', 'delete', 'v', 'none')).code).toBe(3);
    expect((await strata('--pool', pool, 'no-such-noun')).code).toBe(2);
    const verify = await strata('serve', '--data', path.join(dir, 'data'), '--read-verify', 'md5');
    expect(verify.code).toBe(2);
    expect(verify.err).toContain('--read-verify takes crc or sha256');
  });
});
