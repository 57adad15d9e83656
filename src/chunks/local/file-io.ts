/*
 * The file operations the local pack store uses, behind an interface so tests can
 * inject faults (a full disk, a failing fsync) without a special file system.
 */
import * as fs from 'node:fs';

export interface FileIo {
  openSync(path: string, flags: string): number;
  closeSync(fd: number): void;
  /** Writes the buffers back to back at `position` with one system call (on libuv's thread pool); may write less. */
  writev(fd: number, buffers: readonly Buffer[], position: number): Promise<number>;
  readSync(fd: number, buffer: Buffer, offset: number, length: number, position: number): number;
  /** As readSync, on libuv's thread pool. */
  read(fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  fsync(fd: number): Promise<void>;
  ftruncateSync(fd: number, length: number): void;
  fstatSize(fd: number): number;
  unlinkSync(path: string): void;
  readdirSync(path: string): string[];
  mkdirSync(path: string): void;
}

export const nodeFileIo: FileIo = {
  openSync: (path, flags) => fs.openSync(path, flags),
  closeSync: (fd) => fs.closeSync(fd),
  writev: (fd, buffers, position) =>
    new Promise((resolve, reject) => {
      fs.writev(fd, buffers as Buffer[], position, (error, written) => (error ? reject(error) : resolve(written)));
    }),
  readSync: (fd, buffer, offset, length, position) => fs.readSync(fd, buffer, offset, length, position),
  read: (fd, buffer, offset, length, position) =>
    new Promise((resolve, reject) => {
      fs.read(fd, buffer, offset, length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead)));
    }),
  fsync: (fd) =>
    new Promise((resolve, reject) => {
      fs.fdatasync(fd, (error) => (error ? reject(error) : resolve()));
    }),
  ftruncateSync: (fd, length) => fs.ftruncateSync(fd, length),
  fstatSize: (fd) => fs.fstatSync(fd).size,
  unlinkSync: (path) => fs.unlinkSync(path),
  readdirSync: (path) => fs.readdirSync(path),
  mkdirSync: (path) => fs.mkdirSync(path, { recursive: true }),
};

/** fdatasyncs a directory (after files in it were created or deleted). */
export async function fsyncDirectory(io: FileIo, dir: string): Promise<void> {
  const fd = io.openSync(dir, 'r');
  try {
    await io.fsync(fd);
  } finally {
    io.closeSync(fd);
  }
}
