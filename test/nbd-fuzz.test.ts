/*
 * Fuzzing the NBD server: the parsers on random bytes (they may only refuse, never
 * crash), then hundreds of whole sessions built from a valid seed transcript and
 * mutated (bit flips, cut short, bytes inserted, lengths blown up, pieces repeated),
 * sent to a live server. Afterwards the server still serves, the data a client wrote
 * and flushed before the storm reads back unchanged, and the pool checks clean.
 * Replay a run with STRATA_FUZZ_SEED.
 */
import * as net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KiB, MiB } from '../src/common/units.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STRUCTURED_REPLY,
  IHAVEOPT,
  NBD_REQUEST_MAGIC,
} from '../src/protocol/nbd/constants.js';
import {
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  decodeRequest,
  NbdInvalidOption,
  NbdProtocolError,
} from '../src/protocol/nbd/messages.js';
import { Rng } from './helpers/data.js';
import { startNbd, type NbdFixture } from './helpers/nbd-fixture.js';
import { infoPayload, metaContextPayload, RawNbdClient } from './helpers/raw-nbd.js';

const seed = Number(process.env.STRATA_FUZZ_SEED ?? Date.now() % 1_000_000);
const sessions = 400;

function option(code: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(IHAVEOPT, 0);
  header.writeUInt32BE(code, 8);
  header.writeUInt32BE(payload.length, 12);
  return Buffer.concat([header, payload]);
}

function request(type: number, offset: number, length: number, flags = 0, payload?: Buffer): Buffer {
  const header = Buffer.alloc(28);
  header.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  header.writeBigUInt64BE(7n, 8);
  header.writeBigUInt64BE(BigInt(offset), 16);
  header.writeUInt32BE(length, 24);
  return payload ? Buffer.concat([header, payload]) : header;
}

/** A valid session against export "victim", as pieces a mutation can cut between. */
function seedTranscript(): Buffer[] {
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES, 0);
  return [
    flags,
    option(NBD_OPT_LIST, Buffer.alloc(0)),
    option(NBD_OPT_STRUCTURED_REPLY, Buffer.alloc(0)),
    option(NBD_OPT_LIST_META_CONTEXT, metaContextPayload('victim', [])),
    option(NBD_OPT_SET_META_CONTEXT, metaContextPayload('victim', ['base:allocation'])),
    option(NBD_OPT_INFO, infoPayload('victim', [1, 2, 3])),
    option(NBD_OPT_GO, infoPayload('victim', [3])),
    request(NBD_CMD_READ, 0, 8 * KiB),
    request(NBD_CMD_BLOCK_STATUS, 0, MiB),
    request(NBD_CMD_WRITE, 2 * MiB, 4 * KiB, NBD_CMD_FLAG_FUA, Buffer.alloc(4 * KiB, 0x66)),
    request(NBD_CMD_WRITE_ZEROES, 3 * MiB, 64 * KiB),
    request(NBD_CMD_TRIM, 3 * MiB, 64 * KiB),
    request(NBD_CMD_CACHE, 0, 64 * KiB),
    request(NBD_CMD_FLUSH, 0, 0),
    request(NBD_CMD_DISC, 0, 0),
  ];
}

function mutate(pieces: Buffer[], rng: Rng): Buffer {
  const parts: Buffer[] = pieces.map((piece) => Buffer.from(piece));
  const mutations = rng.between(1, 4);
  for (let count = 0; count < mutations && parts.length > 0; count += 1) {
    const target = parts[rng.int(parts.length)];
    switch (rng.int(6)) {
      case 0: // bit flips
        for (let flips = rng.between(1, 8); flips > 0 && target.length > 0; flips -= 1) target[rng.int(target.length)] ^= 1 << rng.int(8);
        break;
      case 1: // a length or offset field blown up
        if (target.length >= 16) target.writeUInt32BE(rng.pick([0xffffffff, 0x7fffffff, 0x10000000, 0]), rng.pick([12, target.length - 4]));
        break;
      case 2: // random bytes inserted
        parts.splice(rng.int(parts.length + 1), 0, rng.fill(Buffer.alloc(rng.between(1, 64))));
        break;
      case 3: // a piece repeated
        parts.splice(rng.int(parts.length + 1), 0, Buffer.from(target));
        break;
      case 4: // a piece dropped
        parts.splice(rng.int(parts.length), 1);
        break;
      default: // cut short
        parts.length = rng.int(parts.length + 1);
    }
  }
  const whole = Buffer.concat(parts);
  return rng.chance(0.2) ? whole.subarray(0, rng.int(whole.length + 1)) : whole;
}

/** Sends bytes, half-closes, and waits for the server to close (or gives up after 3 s). */
function runSession(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => socket.destroy(), 3000);
    socket.on('data', () => undefined);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on('connect', () => socket.end(bytes));
  });
}

describe('NBD parsers on random bytes', () => {
  it('only ever refuse, with the protocol error types', () => {
    const refusals = (error: unknown) => error instanceof NbdProtocolError || error instanceof NbdInvalidOption;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const buffer = Buffer.from(bytes);
        for (const decode of [decodeRequest, decodeOptionHeader, decodeInfoRequest, decodeMetaContextRequest]) {
          try {
            decode(buffer);
          } catch (error) {
            if (!refusals(error)) throw error;
          }
        }
      }),
      { numRuns: 5000, seed },
    );
  });
});

describe('NBD server under malformed sessions', () => {
  let nbd: NbdFixture;
  const known = Buffer.alloc(256 * KiB);

  beforeAll(async () => {
    nbd = await startNbd();
    await nbd.pool.createVolume('victim', 8 * MiB);
    // The acknowledged data lives in a volume the sessions never name: a mutated request
    // that is still valid (a flipped type or length bit) may rightly change "victim".
    await nbd.pool.createVolume('keeper', 8 * MiB);
    new Rng(seed ^ 0x5eed).fill(known);
    const writer = await RawNbdClient.connect(nbd.port);
    await writer.open('keeper');
    writer.sendRequest(NBD_CMD_WRITE, MiB, known.length, { payload: known });
    writer.sendRequest(NBD_CMD_FLUSH, 0, 0, { cookie: 2n });
    expect((await writer.readReply()).error).toBe(0);
    expect((await writer.readReply()).error).toBe(0);
    writer.destroy();
  });

  afterAll(async () => {
    await nbd.stop();
  });

  it(`survives ${sessions} mutated sessions (seed ${seed}) and keeps acknowledged data`, async () => {
    const rng = new Rng(seed);
    const transcript = seedTranscript();
    for (let batch = 0; batch < sessions; batch += 20) {
      await Promise.all(Array.from({ length: 20 }, () => runSession(nbd.port, mutate(transcript, rng))));
    }
    // The storm left log lines, not a dead server.
    expect(nbd.log.lines.filter((line) => line.level === 'warn' || line.level === 'info').length).toBeGreaterThan(sessions / 2);
    expect(nbd.log.lines.filter((line) => line.level === 'error')).toEqual([]);
    const reader = await RawNbdClient.connect(nbd.port);
    await reader.open('keeper');
    reader.sendRequest(NBD_CMD_READ, MiB, known.length, { flags: 4 });
    const [chunk] = await reader.readStructuredReply();
    expect(chunk.payload.subarray(8).equals(known)).toBe(true);
    reader.destroy();
    const report = await nbd.pool.check();
    expect(report.issues).toEqual([]);
    expect(nbd.server.clients().length).toBeLessThanOrEqual(1);
  });
});
