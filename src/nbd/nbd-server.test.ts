/*
 * The NBD server at the byte level, through a literal client: every option's answer,
 * every command's validation, structured replies, and the limits that keep one client
 * from hurting the others.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KiB, MiB } from '../common/units.js';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXTENDED_HEADERS,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from '../protocol/nbd/constants.js';
import { startNbd, type NbdFixture } from '../../test/helpers/nbd-fixture.js';
import { allowList } from './server.js';
import { infoPayload, metaContextPayload, RawNbdClient } from '../../test/helpers/raw-nbd.js';

let nbd: NbdFixture;
const clients: RawNbdClient[] = [];

async function client(): Promise<RawNbdClient> {
  const connected = await RawNbdClient.connect(nbd.port);
  clients.push(connected);
  return connected;
}

beforeEach(async () => {
  nbd = await startNbd({ limits: { nbdReplyBacklogBytesMax: MiB, nbdConnectionsMax: 8 } });
  await nbd.pool.createVolume('disk', 8 * MiB);
});

afterEach(async () => {
  for (const each of clients.splice(0)) each.destroy();
  await nbd.stop();
});

describe('NBD handshake', () => {
  it('answers an unknown option UNSUP and parses the next one', async () => {
    const c = await client();
    await c.greet();
    c.sendOption(99, Buffer.from('whatever'));
    c.sendOption(NBD_OPT_EXTENDED_HEADERS);
    c.sendOption(NBD_OPT_LIST);
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ERR_UNSUP);
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ERR_UNSUP);
    const listing = await c.readOptionReplies();
    expect(listing.map((reply) => reply.type)).toEqual([NBD_REP_SERVER, NBD_REP_ACK]);
    expect(listing[0].payload.subarray(4, 8).toString()).toBe('disk');
  });

  it('makes INFO and GO agree on size, flags and block sizes', async () => {
    const c = await client();
    await c.greet();
    c.sendOption(NBD_OPT_STRUCTURED_REPLY);
    await c.readOptionReplies();
    const asked = [NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE];
    c.sendOption(NBD_OPT_INFO, infoPayload('disk', asked));
    const info = await c.readOptionReplies();
    c.sendOption(NBD_OPT_GO, infoPayload('disk', asked));
    const go = await c.readOptionReplies();
    expect(go.map((reply) => [reply.type, reply.payload.toString('hex')])).toEqual(info.map((reply) => [reply.type, reply.payload.toString('hex')]));
    const byType = new Map(info.filter((reply) => reply.type === NBD_REP_INFO).map((reply) => [reply.payload.readUInt16BE(0), reply.payload]));
    expect(Number(byType.get(0)!.readBigUInt64BE(2))).toBe(8 * MiB);
    expect(byType.get(0)!.readUInt16BE(10) & (NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_DF)).toBe(NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_DF);
    expect(byType.get(NBD_INFO_NAME)!.subarray(2).toString()).toBe('disk');
    expect(byType.get(NBD_INFO_DESCRIPTION)!.subarray(2).toString()).toMatch(/volume disk/);
    const sizes = byType.get(NBD_INFO_BLOCK_SIZE)!;
    expect([sizes.readUInt32BE(2), sizes.readUInt32BE(6), sizes.readUInt32BE(10)]).toEqual([1, 4096, 32 * MiB]);
  });

  it('refuses malformed or out-of-order options with clear replies and carries on', async () => {
    const c = await client();
    await c.greet();
    c.sendOption(NBD_OPT_LIST, Buffer.from('x'));
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ERR_INVALID);
    c.sendOption(NBD_OPT_SET_META_CONTEXT, metaContextPayload('disk', ['base:allocation']));
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ERR_INVALID);
    c.sendOption(NBD_OPT_INFO, infoPayload('missing', []));
    const unknown = await c.readOptionReply();
    expect(unknown.type).toBe(NBD_REP_ERR_UNKNOWN);
    expect(unknown.payload.toString()).toMatch(/missing/);
    c.sendOption(NBD_OPT_GO, Buffer.from([0, 0, 0, 200, 1]));
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ERR_INVALID);
    c.sendOption(NBD_OPT_STARTTLS);
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ERR_UNSUP);
    c.sendOption(NBD_OPT_LIST, Buffer.alloc(128 * KiB));
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ERR_TOO_BIG);
    c.sendOption(NBD_OPT_STRUCTURED_REPLY);
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ACK);
    c.sendOption(NBD_OPT_LIST_META_CONTEXT, metaContextPayload('disk', []));
    const contexts = await c.readOptionReplies();
    expect(contexts.map((reply) => reply.type)).toEqual([NBD_REP_META_CONTEXT, NBD_REP_ACK]);
    expect(contexts[0].payload.subarray(4).toString()).toBe('base:allocation');
    c.sendOption(NBD_OPT_SET_META_CONTEXT, metaContextPayload('disk', ['other:thing']));
    expect((await c.readOptionReplies()).map((reply) => reply.type)).toEqual([NBD_REP_ACK]);
    c.sendOption(NBD_OPT_ABORT);
    expect((await c.readOptionReply()).type).toBe(NBD_REP_ACK);
    await c.closed();
  });

  it('drops a client that sets unknown flags', async () => {
    const c = await client();
    await c.greet(0x7);
    await c.closed();
    expect(nbd.log.lines.some((line) => line.message.startsWith('protocol violation'))).toBe(true);
  });

  it('refuses connections beyond the limit without disturbing the others', async () => {
    const open = await Promise.all(Array.from({ length: 8 }, () => client()));
    await Promise.all(open.map((each) => each.greet()));
    const extra = await client();
    await extra.closed();
    const first = open[0];
    first.sendOption(NBD_OPT_LIST);
    expect((await first.readOptionReplies()).length).toBe(2);
  });
});

describe('NBD transmission', () => {
  it('sends holes as OFFSET_HOLE, honours DF, and reports block status with REQ_ONE', async () => {
    const c = await client();
    await c.open('disk');
    c.sendRequest(NBD_CMD_WRITE, 8 * KiB, 4 * KiB, { payload: Buffer.alloc(4 * KiB, 9), cookie: 1n });
    expect((await c.readReply()).error).toBe(0);
    c.sendRequest(NBD_CMD_READ, 0, 16 * KiB, { cookie: 2n });
    const chunks = await c.readStructuredReply();
    expect(chunks.map((chunk) => [chunk.type, Number(chunk.payload.readBigUInt64BE(0)), chunk.cookie])).toEqual([
      [NBD_REPLY_TYPE_OFFSET_HOLE, 0, 2n],
      [NBD_REPLY_TYPE_OFFSET_DATA, 8 * KiB, 2n],
      [NBD_REPLY_TYPE_OFFSET_HOLE, 12 * KiB, 2n],
    ]);
    expect(chunks[1].payload.subarray(8).equals(Buffer.alloc(4 * KiB, 9))).toBe(true);
    c.sendRequest(NBD_CMD_READ, 0, 16 * KiB, { flags: NBD_CMD_FLAG_DF, cookie: 3n });
    const whole = await c.readStructuredReply();
    expect(whole.map((chunk) => [chunk.type, chunk.payload.length])).toEqual([[NBD_REPLY_TYPE_OFFSET_DATA, 8 + 16 * KiB]]);
    c.sendRequest(NBD_CMD_BLOCK_STATUS, 0, 16 * KiB, { cookie: 4n });
    const status = (await c.readStructuredReply())[0];
    expect(status.type).toBe(NBD_REPLY_TYPE_BLOCK_STATUS);
    expect([...Array((status.payload.length - 4) / 4).keys()].map((index) => status.payload.readUInt32BE(4 + index * 4))).toEqual([
      8 * KiB, 3, 4 * KiB, 0, 4 * KiB, 3,
    ]);
    c.sendRequest(NBD_CMD_BLOCK_STATUS, 0, 16 * KiB, { flags: NBD_CMD_FLAG_REQ_ONE, cookie: 5n });
    expect((await c.readStructuredReply())[0].payload.length).toBe(12);
  });

  it('answers simple replies when structured replies were not negotiated', async () => {
    const c = await client();
    await c.open('disk', { structured: false });
    c.sendRequest(NBD_CMD_WRITE, 1, 3, { payload: Buffer.from([1, 2, 3]), flags: NBD_CMD_FLAG_FUA });
    expect((await c.readReply()).error).toBe(0);
    c.sendRequest(NBD_CMD_READ, 0, 5);
    expect([...(await c.readReply(5)).payload]).toEqual([0, 1, 2, 3, 0]);
    c.sendRequest(NBD_CMD_BLOCK_STATUS, 0, 5);
    expect((await c.readReply()).error).toBe(NBD_EINVAL);
    c.sendRequest(NBD_CMD_READ, 0, 5, { flags: NBD_CMD_FLAG_DF });
    expect((await c.readReply()).error).toBe(NBD_EINVAL);
  });

  it('validates every request and keeps the stream in step after refused writes', async () => {
    const c = await client();
    await c.open('disk');
    const expectError = async (errno: number) => {
      const reply = await c.readReply();
      expect(reply.error).toBe(errno);
    };
    c.sendRequest(NBD_CMD_READ, 8 * MiB - 1, 2);
    await expectError(NBD_EINVAL);
    c.sendRequest(NBD_CMD_WRITE, 8 * MiB - 1, 2, { payload: Buffer.from([1, 2]) });
    await expectError(NBD_ENOSPC);
    c.sendRequest(NBD_CMD_WRITE, 0, 33 * MiB, { payload: Buffer.alloc(33 * MiB, 1) });
    await expectError(NBD_EINVAL);
    c.sendRequest(42, 0, 0);
    await expectError(NBD_EINVAL);
    c.sendRequest(NBD_CMD_TRIM, 0, 4096, { flags: NBD_CMD_FLAG_NO_HOLE });
    await expectError(NBD_EINVAL);
    c.sendRequest(NBD_CMD_READ, 0, 4096, { flags: 0x100 });
    await expectError(NBD_EINVAL);
    c.sendRequest(NBD_CMD_WRITE_ZEROES, 0, 8 * MiB, { flags: NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FUA });
    await expectError(0);
    c.sendRequest(NBD_CMD_FLUSH, 0, 0);
    await expectError(0);
    c.sendRequest(NBD_CMD_READ, 0, 4);
    const chunks = await c.readStructuredReply();
    // The allocated zeros are known to be zeros: they go as a hole chunk, no bytes.
    expect(chunks[0].type).toBe(NBD_REPLY_TYPE_OFFSET_HOLE);
    expect((await nbd.pool.openVolume('disk').blockStatus(0, 8 * MiB))[0]).toMatchObject({ type: 'zero', length: 8 * MiB });
  });

  it('refuses writes to a snapshot export with EPERM and consumes their payload', async () => {
    await nbd.pool.createSnapshot('disk', 'snap');
    const c = await client();
    const { flags } = await c.open('disk@snap');
    expect(flags & NBD_FLAG_READ_ONLY).toBe(NBD_FLAG_READ_ONLY);
    c.sendRequest(NBD_CMD_WRITE, 0, 64 * KiB, { payload: Buffer.alloc(64 * KiB, 5) });
    expect((await c.readReply()).error).toBe(NBD_EPERM);
    c.sendRequest(NBD_CMD_TRIM, 0, 4096);
    expect((await c.readReply()).error).toBe(NBD_EPERM);
    c.sendRequest(NBD_CMD_READ, 0, 4096, { cookie: 77n });
    const reply = await c.readStructuredReply();
    expect(reply[0]).toMatchObject({ type: NBD_REPLY_TYPE_OFFSET_HOLE, cookie: 77n });
  });

  it('serves requests in flight concurrently and closes on DISC after answering them', async () => {
    const c = await client();
    await c.open('disk');
    for (let index = 0; index < 32; index += 1) {
      c.sendRequest(NBD_CMD_WRITE, index * 64 * KiB, 64 * KiB, { payload: Buffer.alloc(64 * KiB, index + 1), cookie: BigInt(index) });
    }
    c.sendRequest(NBD_CMD_DISC, 0, 0);
    const cookies = new Set<bigint>();
    for (let index = 0; index < 32; index += 1) {
      const reply = await c.readReply();
      expect(reply.error).toBe(0);
      cookies.add(reply.cookie);
    }
    expect(cookies.size).toBe(32);
    await c.closed();
    const data = await nbd.pool.openVolume('disk').read(31 * 64 * KiB, 64 * KiB);
    expect(data.equals(Buffer.alloc(64 * KiB, 32))).toBe(true);
  });

  it('a client that never reads its replies does not stall another client', async () => {
    const slow = await client();
    await slow.open('disk');
    slow.reader.detach();
    slow.socket.pause();
    for (let index = 0; index < 200; index += 1) slow.sendRequest(NBD_CMD_READ, 0, MiB, { flags: NBD_CMD_FLAG_DF, cookie: BigInt(index) });
    const fast = await client();
    await fast.open('disk');
    for (let index = 0; index < 50; index += 1) {
      fast.sendRequest(NBD_CMD_WRITE, index * 4096, 4096, { payload: Buffer.alloc(4096, 3) });
      expect((await fast.readReply()).error).toBe(0);
    }
    fast.sendRequest(NBD_CMD_READ, 0, 4096);
    expect((await fast.readStructuredReply())[0].payload.subarray(8).equals(Buffer.alloc(4096, 3))).toBe(true);
  });

  it('answers ESHUTDOWN once the volume behind an export is deleted', async () => {
    const c = await client();
    await c.open('disk');
    await nbd.pool.deleteVolume('disk');
    c.sendRequest(NBD_CMD_READ, 0, 4096);
    expect((await c.readStructuredReply())[0].error).toBe(NBD_ESHUTDOWN);
  });
});

describe('NBD access lists', () => {
  it('hides and refuses an export to clients outside its allow-list', async () => {
    await nbd.stop();
    nbd = await startNbd({ access: allowList([{ export: 'secret', allow: ['10.0.0.0/8', '192.168.1.7'] }, { export: '*', allow: ['127.0.0.0/8'] }]) });
    await nbd.pool.createVolume('secret', MiB);
    await nbd.pool.createVolume('open', MiB);
    const c = await client();
    await c.greet();
    c.sendOption(NBD_OPT_LIST);
    const listing = await c.readOptionReplies();
    expect(listing.filter((reply) => reply.type === NBD_REP_SERVER).map((reply) => reply.payload.subarray(4, 4 + reply.payload.readUInt32BE(0)).toString())).toEqual(['open']);
    c.sendOption(NBD_OPT_GO, infoPayload('secret', []));
    const refused = await c.readOptionReply();
    expect(refused.type).toBe(NBD_REP_ERR_POLICY);
    c.sendOption(NBD_OPT_GO, infoPayload('open', []));
    expect((await c.readOptionReplies()).at(-1)!.type).toBe(NBD_REP_ACK);
  });

  it('matches addresses, ranges and IPv4-mapped IPv6, and trusts unix-socket clients', () => {
    const access = allowList([{ export: 'a', allow: ['192.168.0.0/16', '::1'] }]);
    expect(access('a', { transport: 'tcp', address: '192.168.4.5' })).toBe(true);
    expect(access('a', { transport: 'tcp', address: '::ffff:192.168.4.5' })).toBe(true);
    expect(access('a', { transport: 'tcp', address: '::1' })).toBe(true);
    expect(access('a', { transport: 'tcp', address: '10.1.1.1' })).toBe(false);
    expect(access('a', { transport: 'unix', address: null })).toBe(true);
    expect(access('b', { transport: 'tcp', address: '10.1.1.1' })).toBe(true);
    expect(() => allowList([{ export: 'a', allow: ['nonsense'] }])).toThrow(/not an IP address/);
    expect(() => allowList([{ export: 'a', allow: ['10.0.0.0/40'] }])).toThrow(/prefix/);
  });
});
