/*
 * The corpus benchmark's in-process ingest: raw disk images copied straight into
 * volumes through the engine's block device, so the figure is the engine's own (the
 * product's import goes through qemu-img and NBD). Import reads the file in large
 * pieces, the next one while the current one is written, and skips all-zero ones, so
 * sparse images stay thin. As `qemu-img convert` does, it asks the file system where
 * the data is first (`qemu-img map`, SEEK_DATA/SEEK_HOLE) and does not read the holes.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { promisify } from 'node:util';
import { MiB } from '../../src/common/units.js';
import type { BlockDevice } from '../../src/engine/index.js';

const pieceBytes = 4 * MiB;

interface MapEntry {
  readonly start: number;
  readonly length: number;
  readonly data: boolean;
}

/**
 * The offsets of the pieces of the file that hold any data, from the file system's
 * allocation map; every piece when qemu-img (Debian package qemu-utils) is missing.
 */
export async function dataPieces(file: string): Promise<number[]> {
  const total = (await fs.promises.stat(file)).size;
  let entries: MapEntry[];
  try {
    const { stdout } = await promisify(execFile)('qemu-img', ['map', '--output=json', '-f', 'raw', file], { maxBuffer: 256 * MiB });
    entries = JSON.parse(stdout) as MapEntry[];
  } catch {
    entries = [{ start: 0, length: total, data: true }];
  }
  const pieces: number[] = [];
  for (const entry of entries) {
    if (!entry.data || entry.length === 0) continue;
    const last = Math.floor((entry.start + entry.length - 1) / pieceBytes) * pieceBytes;
    let at = Math.floor(entry.start / pieceBytes) * pieceBytes;
    if (pieces.length > 0 && pieces[pieces.length - 1] === at) at += pieceBytes;
    for (; at <= last; at += pieceBytes) pieces.push(at);
  }
  return pieces;
}

/** Imports the image; `pieces` (from dataPieces) when the caller asked for them already. */
export async function importImage(
  file: string,
  device: BlockDevice,
  onProgress: (done: number, total: number) => void,
  pieces?: readonly number[],
): Promise<number> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const total = (await handle.stat()).size;
    const zero = Buffer.alloc(pieceBytes);
    // The next piece is read (off this thread) while this one is written. Each piece is
    // a buffer of its own, handed over to the engine (no copy of it there).
    const readPiece = async (offset: number) => {
      const buffer = Buffer.allocUnsafeSlow(Math.min(pieceBytes, total - offset));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      return buffer.subarray(0, bytesRead);
    };
    let written = 0;
    const offsets = pieces ?? (await dataPieces(file));
    let next = offsets.length > 0 ? readPiece(offsets[0]) : null;
    for (let index = 0; next !== null; index += 1) {
      const offset = offsets[index];
      const data = await next;
      next = index + 1 < offsets.length ? readPiece(offsets[index + 1]) : null;
      if (!data.equals(zero.subarray(0, data.length))) {
        await device.write(offset, data, { adopt: true });
        written += data.length;
      }
      onProgress(offset + data.length, total);
    }
    await device.flush();
    return written;
  } finally {
    await handle.close();
  }
}
