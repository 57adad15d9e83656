/*
 * API tokens: bearer secrets with a name and a role (admin, or read-only). Only the
 * SHA-256 of each secret is kept, in DIR/tokens.json (mode 0600), written to a temporary
 * file, synced and renamed, so a crash leaves the old list or the new one. A secret is
 * shown once, when it is created; the first start of a daemon creates the token "admin"
 * and writes its secret to DIR/admin.token (mode 0600) for the operator to pick up.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StrataError } from '../common/errors.js';
import { limits } from '../common/limits.js';
import { validateName } from '../common/names.js';

export type TokenRole = 'admin' | 'read-only';

export interface TokenInfo {
  readonly name: string;
  readonly role: TokenRole;
  readonly createdMs: number;
}

interface TokenRecord extends TokenInfo {
  readonly sha256: string;
}

const tokenPrefix = 'strata_';

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export class TokenStore {
  private records: TokenRecord[];

  private constructor(
    private readonly file: string,
    records: TokenRecord[],
  ) {
    this.records = records;
  }

  /**
   * Loads DIR/tokens.json; on the first start creates the admin token and writes its
   * secret to DIR/admin.token.
   */
  static open(dir: string): TokenStore {
    const file = path.join(dir, 'tokens.json');
    if (fs.existsSync(file)) return new TokenStore(file, TokenStore.parse(file));
    const store = new TokenStore(file, []);
    const secret = store.create('admin', 'admin').secret;
    writePrivateFile(path.join(dir, 'admin.token'), `${secret}\n`);
    return store;
  }

  private static parse(file: string): TokenRecord[] {
    try {
      const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as { tokens: TokenRecord[] };
      return parsed.tokens.map((record) => ({ name: record.name, role: record.role, createdMs: record.createdMs, sha256: record.sha256 }));
    } catch (error) {
      throw new StrataError('STRATA_E_METADATA_CORRUPT', `the token file ${file} cannot be read: ${(error as Error).message}`, {}, { cause: error });
    }
  }

  list(): TokenInfo[] {
    return this.records.map(({ name, role, createdMs }) => ({ name, role, createdMs }));
  }

  /** Creates a token; the secret is returned only here. */
  create(name: string, role: TokenRole): { token: TokenInfo; secret: string } {
    validateName('token', name);
    if (this.records.some((record) => record.name === name)) {
      throw new StrataError('STRATA_E_TOKEN_EXISTS', `a token named ${JSON.stringify(name)} exists`, { token: name });
    }
    if (this.records.length >= limits.tokensMax) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `a daemon keeps at most ${limits.tokensMax} tokens`);
    const secret = tokenPrefix + randomBytes(32).toString('base64url');
    const token: TokenInfo = { name, role, createdMs: Date.now() };
    this.save([...this.records, { ...token, sha256: digest(secret).toString('hex') }]);
    return { token, secret };
  }

  revoke(name: string): void {
    const record = this.records.find((candidate) => candidate.name === name);
    if (!record) throw new StrataError('STRATA_E_TOKEN_NOT_FOUND', `no token is named ${JSON.stringify(name)}`, { token: name });
    if (record.role === 'admin' && this.records.filter((candidate) => candidate.role === 'admin').length === 1) {
      throw new StrataError('STRATA_E_LAST_ADMIN_TOKEN', `${name} is the last admin token; create another admin token first`, { token: name });
    }
    this.save(this.records.filter((candidate) => candidate !== record));
  }

  /** The token a secret belongs to, or null. */
  verify(secret: string): TokenInfo | null {
    if (!secret.startsWith(tokenPrefix)) return null;
    const hash = digest(secret);
    for (const record of this.records) {
      if (timingSafeEqual(hash, Buffer.from(record.sha256, 'hex'))) return { name: record.name, role: record.role, createdMs: record.createdMs };
    }
    return null;
  }

  private save(records: TokenRecord[]): void {
    writePrivateFile(this.file, `${JSON.stringify({ tokens: records }, null, 2)}\n`);
    this.records = records;
  }
}

/** Writes a file readable by its owner only, atomically (temporary file, fsync, rename). */
export function writePrivateFile(file: string, text: string): void {
  const temporary = `${file}.tmp`;
  const fd = fs.openSync(temporary, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(temporary, 0o600);
  fs.renameSync(temporary, file);
  const dirFd = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dirFd);
  } finally {
    fs.closeSync(dirFd);
  }
}
