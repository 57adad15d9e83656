/*
 * The corpus benchmark's in-process ingest: raw disk images copied straight into
 * volumes through the engine's block device, so the figure is the engine's own (the
 * product's import goes through qemu-img and NBD). Import reads the file in large
 * pieces, the next one while the current one is written, and skips all-zero ones, so
 * sparse images stay thin (as `qemu-img convert` does).
 */
import * as fs from 'node:fs';
import { MiB } from '../../src/common/units.js';
import type { BlockDevice } from '../../src/engine/index.js';

const pieceBytes = 4 * MiB;

export async function importImage(file: string, device: BlockDevice, onProgress: (done: number, total: number) => void): Promise<number> {
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
    let next = total > 0 ? readPiece(0) : null;
    for (let offset = 0; next !== null; offset += pieceBytes) {
      const data = await next;
      next = offset + pieceBytes < total ? readPiece(offset + pieceBytes) : null;
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
