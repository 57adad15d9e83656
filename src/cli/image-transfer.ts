/*
 * Copying raw disk images into and out of volumes. Import reads the file in large
 * pieces and skips all-zero ones, so sparse images stay thin (as `qemu-img convert`
 * does); export writes holes as holes by only writing extents that hold data.
 */
import * as fs from 'node:fs';
import { MiB } from '../common/units.js';
import type { BlockDevice } from '../engine/index.js';

const pieceBytes = 4 * MiB;

export async function importImage(file: string, device: BlockDevice, onProgress: (done: number, total: number) => void): Promise<number> {
  const fd = fs.openSync(file, 'r');
  try {
    const total = fs.fstatSync(fd).size;
    const piece = Buffer.alloc(pieceBytes);
    const zero = Buffer.alloc(pieceBytes);
    let written = 0;
    for (let offset = 0; offset < total; offset += pieceBytes) {
      const length = fs.readSync(fd, piece, 0, Math.min(pieceBytes, total - offset), offset);
      const data = piece.subarray(0, length);
      if (!data.equals(zero.subarray(0, length))) {
        await device.write(offset, data);
        written += length;
      }
      onProgress(offset + length, total);
    }
    await device.flush();
    return written;
  } finally {
    fs.closeSync(fd);
  }
}

export async function exportImage(device: BlockDevice, file: string, onProgress: (done: number, total: number) => void): Promise<void> {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, device.sizeBytes);
    let offset = 0;
    while (offset < device.sizeBytes) {
      const extents = await device.blockStatus(offset, device.sizeBytes - offset);
      for (const extent of extents) {
        if (extent.type === 'data') await copyExtent(device, fd, extent.offset, extent.length);
        offset = extent.offset + extent.length;
        onProgress(offset, device.sizeBytes);
      }
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function copyExtent(device: BlockDevice, fd: number, start: number, length: number): Promise<void> {
  for (let offset = start; offset < start + length; offset += pieceBytes) {
    const data = await device.read(offset, Math.min(pieceBytes, start + length - offset));
    fs.writeSync(fd, data, 0, data.length, offset);
  }
}
