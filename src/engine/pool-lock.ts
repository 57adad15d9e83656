/*
 * One process opens a pool at a time. The lock is a file holding the owner's pid,
 * created exclusively; a lock left by a process that no longer exists (killed) is
 * taken over, which is what crash recovery needs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StrataError, hostIoError } from '../common/errors.js';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class PoolLock {
  private constructor(private readonly file: string) {}

  static acquire(dir: string): PoolLock {
    const file = path.join(dir, 'strata.lock');
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
        return new PoolLock(file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw hostIoError(error, `locking pool ${dir}`);
      }
      const owner = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(owner) && owner > 0 && processAlive(owner)) {
        throw new StrataError('STRATA_E_POOL_LOCKED', `pool ${dir} is open in process ${owner}`, { pid: owner });
      }
      fs.rmSync(file, { force: true });
    }
    throw new StrataError('STRATA_E_POOL_LOCKED', `pool ${dir} could not be locked`);
  }

  release(): void {
    fs.rmSync(this.file, { force: true });
  }
}
