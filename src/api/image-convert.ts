/*
 * Disk images in and out of volumes, with qemu-img as the format converter: it reads and
 * writes the formats people leave VMware and Hyper-V with (VMDK, VHDX, VDI, qcow2).
 * qemu-img talks to Strata's own NBD export of the volume, so the data takes the same
 * path as a hypervisor's. Imports write into a fresh (all-zero) volume with
 * --target-is-zero, so zero areas stay thin. An OVA (a tar of an OVF descriptor and
 * VMDK disks) is read in place: each disk is addressed by its offset inside the tar
 * through qemu-img's raw driver, without unpacking the archive.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';

export type ImageFormat = 'raw' | 'qcow2' | 'vmdk' | 'vhdx' | 'vdi';

export interface ImageSource {
  /** What qemu-img opens: a file name, or a json: pseudo-file for a disk inside an OVA. */
  readonly spec: string;
  /** Format for -f, or null when `spec` names its driver itself. */
  readonly format: ImageFormat | null;
  readonly virtualSizeBytes: number;
  readonly label: string;
}

export interface ConvertOptions {
  readonly signal: AbortSignal;
  readonly onProgress: (percent: number) => void;
}

const qemuImg = 'qemu-img';

function run(args: string[], options: { signal?: AbortSignal; onOutput?: (text: string) => void; timeoutMs?: number }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(qemuImg, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const kill = () => child.kill('SIGKILL');
    const timer = options.timeoutMs ? setTimeout(kill, options.timeoutMs) : null;
    options.signal?.addEventListener('abort', kill, { once: true });
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
      options.onOutput?.(text);
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', (error) => {
      if (timer) clearTimeout(timer);
      reject(new StrataError('STRATA_E_CONVERTER_FAILED', `cannot run ${qemuImg} (Debian package qemu-utils): ${error.message}`, {}, { cause: error }));
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', kill);
      if (options.signal?.aborted) return reject(new StrataError('STRATA_E_CANCELLED', 'the conversion was cancelled'));
      if (code === 0) return resolve(stdout);
      const reason = stderr.trim() || `exit ${code ?? signal}`;
      reject(new StrataError('STRATA_E_CONVERTER_FAILED', `${qemuImg} ${args[0]} failed: ${reason}`));
    });
  });
}

/** Reads a qemu-img progress stream ("    (42.00/100%)\r") and reports each percentage. */
export function progressReader(onProgress: (percent: number) => void): (text: string) => void {
  return (text) => {
    for (const match of text.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)) onProgress(Number(match[1]));
  };
}

async function info(spec: string, format: ImageFormat | null): Promise<{ format: string; virtualSize: number }> {
  const args = ['info', '--output=json', ...(format ? ['-f', format] : []), spec];
  const parsed = JSON.parse(await run(args, { timeoutMs: limits.imageProbeTimeoutMs })) as { format: string; 'virtual-size': number };
  return { format: parsed.format, virtualSize: parsed['virtual-size'] };
}

/** The disks an image file holds: one, or each VMDK of an OVA. */
export async function probeImage(file: string, format?: ImageFormat | 'ova'): Promise<ImageSource[]> {
  if (!fs.existsSync(file)) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `no image file ${file} on the daemon host`, { path: file });
  if (format === 'ova' || (format === undefined && isTar(file))) return ovaDisks(file);
  const probed = await info(file, format ?? null);
  if (!isImageFormat(probed.format)) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${file} is a ${probed.format} image, which Strata does not import`);
  return [{ spec: file, format: probed.format, virtualSizeBytes: probed.virtualSize, label: file }];
}

function isImageFormat(format: string): format is ImageFormat {
  return ['raw', 'qcow2', 'vmdk', 'vhdx', 'vdi'].includes(format);
}

/** Copies an image into a fresh volume through its NBD URI. */
export async function convertIntoVolume(source: ImageSource, targetUri: string, options: ConvertOptions): Promise<void> {
  const args = ['convert', '-p', '-n', '--target-is-zero', ...(source.format ? ['-f', source.format] : []), '-O', 'raw', source.spec, targetUri];
  await run(args, { signal: options.signal, onOutput: progressReader(options.onProgress) });
}

/** Writes a volume (or snapshot) read through its NBD URI to a new image file. */
export async function convertFromVolume(sourceUri: string, file: string, format: ImageFormat, options: ConvertOptions): Promise<void> {
  if (fs.existsSync(file)) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${file} exists; export writes a new file`, { path: file });
  const args = ['convert', '-p', '-f', 'raw', '-O', format, ...(format === 'raw' ? ['-S', '4k'] : []), sourceUri, file];
  try {
    await run(args, { signal: options.signal, onOutput: progressReader(options.onProgress) });
  } catch (error) {
    fs.rmSync(file, { force: true });
    throw error;
  }
}

// --- OVA: tar headers (POSIX ustar, 512-byte blocks) ---------------------------------
//   0 name[100]  124 size[12] (octal, or base-256 when the top bit is set)  156 typeflag
// 257 magic "ustar"  345 prefix[155]. A pax header ('x') may carry the real name and size.

const tarBlockBytes = 512;

function isTar(file: string): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const header = Buffer.alloc(tarBlockBytes);
    const read = fs.readSync(fd, header, 0, tarBlockBytes, 0);
    return read === tarBlockBytes && header.toString('latin1', 257, 262) === 'ustar';
  } finally {
    fs.closeSync(fd);
  }
}

function tarString(header: Buffer, start: number, length: number): string {
  const field = header.subarray(start, start + length);
  const end = field.indexOf(0);
  return field.toString('utf8', 0, end < 0 ? length : end);
}

function tarSize(header: Buffer): number {
  if ((header[124] & 0x80) !== 0) return Number(header.readBigUInt64BE(128));
  return parseInt(tarString(header, 124, 12).trim() || '0', 8);
}

function paxRecords(text: string): Map<string, string> {
  const records = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^\d+ ([^=]+)=(.*)$/.exec(line);
    if (match) records.set(match[1], match[2]);
  }
  return records;
}

interface TarEntry {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

function tarEntries(file: string): TarEntry[] {
  const fd = fs.openSync(file, 'r');
  const fileBytes = fs.fstatSync(fd).size;
  const entries: TarEntry[] = [];
  try {
    const header = Buffer.alloc(tarBlockBytes);
    let position = 0;
    let pax = new Map<string, string>();
    while (position + tarBlockBytes <= fileBytes) {
      fs.readSync(fd, header, 0, tarBlockBytes, position);
      if (header.every((byte) => byte === 0)) break;
      let size = tarSize(header);
      const type = String.fromCharCode(header[156] || 0x30);
      const dataOffset = position + tarBlockBytes;
      if (type === 'x') {
        const data = Buffer.alloc(size);
        fs.readSync(fd, data, 0, size, dataOffset);
        pax = paxRecords(data.toString('utf8'));
      } else {
        const prefix = tarString(header, 345, 155);
        const name = pax.get('path') ?? (prefix ? `${prefix}/${tarString(header, 0, 100)}` : tarString(header, 0, 100));
        if (pax.has('size')) size = Number(pax.get('size'));
        if (type === '0' || type === '\0') entries.push({ name, offset: dataOffset, size });
        pax = new Map();
      }
      if (dataOffset + size > fileBytes) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${file}: the archive is truncated`);
      position = dataOffset + Math.ceil(size / tarBlockBytes) * tarBlockBytes;
    }
  } finally {
    fs.closeSync(fd);
  }
  return entries;
}

async function ovaDisks(file: string): Promise<ImageSource[]> {
  const disks = tarEntries(file).filter((entry) => entry.name.toLowerCase().endsWith('.vmdk'));
  if (disks.length === 0) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${file} holds no VMDK disk`, { path: file });
  const sources: ImageSource[] = [];
  for (const disk of disks) {
    const spec = `json:${JSON.stringify({
      driver: 'vmdk',
      file: { driver: 'raw', offset: disk.offset, size: disk.size, file: { driver: 'file', filename: file } },
    })}`;
    const probed = await info(spec, null);
    sources.push({ spec, format: null, virtualSizeBytes: probed.virtualSize, label: `${file}:${disk.name}` });
  }
  return sources;
}
