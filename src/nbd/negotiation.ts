/*
 * The fixed-newstyle handshake as a loop over options: each option is read whole (its
 * length checked against a limit first), answered, and the loop goes on until GO or
 * EXPORT_NAME picks an export, ABORT ends the session, or the peer breaks the protocol.
 * Unknown options are answered UNSUP and the next one is parsed. In TLS-required mode
 * only STARTTLS and ABORT are served before TLS is up.
 */
import {
  BASE_ALLOCATION,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_NAME,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_LIST_META_CONTEXT,
  NBD_OPT_SET_META_CONTEXT,
  NBD_OPT_STARTTLS,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_POLICY,
  NBD_REP_ERR_TLS_REQD,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
  OPTION_HEADER_BYTES,
  optionName,
} from '../protocol/nbd/constants.js';
import {
  decodeInfoRequest,
  decodeMetaContextRequest,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeInfoBlockSize,
  encodeInfoExport,
  encodeInfoString,
  encodeMetaContext,
  encodeOptionReply,
  encodeServerEntry,
  encodeServerGreeting,
  NbdInvalidOption,
  NbdProtocolError,
} from '../protocol/nbd/messages.js';
import type { BlockDevice } from '../engine/index.js';
import type { Connection } from './connection.js';

/** The id the server gives `base:allocation` when a client selects it. */
export const baseAllocationContextId = 1;

/** Option payloads up to this size are read and dropped when over the limit. */
const oversizedOptionDiscardBytesMax = 16 * 1024 * 1024;

export interface ChosenExport {
  readonly name: string;
  readonly device: BlockDevice;
  readonly structuredReplies: boolean;
  /** Whether the client selected base:allocation for this export. */
  readonly baseAllocation: boolean;
  readonly transmissionFlags: number;
}

interface HaggleState {
  structuredReplies: boolean;
  /** Export name and whether base:allocation was selected by SET_META_CONTEXT. */
  metaContexts: { exportName: string; baseAllocation: boolean } | null;
  noZeroes: boolean;
}

/** Runs the handshake; returns the chosen export, or null when the client aborted. */
export async function negotiate(connection: Connection): Promise<ChosenExport | null> {
  connection.send(encodeServerGreeting(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES));
  const clientFlags = (await connection.reader.read(4)).readUInt32BE(0);
  if ((clientFlags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) !== 0) {
    throw new NbdProtocolError(`unknown client flags 0x${clientFlags.toString(16)}`);
  }
  if ((clientFlags & NBD_FLAG_C_FIXED_NEWSTYLE) === 0) throw new NbdProtocolError('the client does not speak fixed newstyle');
  const state: HaggleState = { structuredReplies: false, metaContexts: null, noZeroes: (clientFlags & NBD_FLAG_C_NO_ZEROES) !== 0 };
  for (let count = 0; count < connection.limits.nbdOptionsMax; count += 1) {
    const header = decodeOptionHeader(await connection.reader.read(OPTION_HEADER_BYTES));
    if (header.length > connection.limits.nbdOptionBytesMax) {
      if (header.length > oversizedOptionDiscardBytesMax) throw new NbdProtocolError(`option of ${header.length} bytes`);
      await connection.reader.discard(header.length);
      connection.send(encodeOptionReply(header.option, NBD_REP_ERR_TOO_BIG, Buffer.from('option too large')));
      continue;
    }
    const payload = await connection.reader.read(header.length);
    const result = await handleOption(connection, state, header.option, payload);
    if (result !== undefined) return result;
  }
  throw new NbdProtocolError(`more than ${connection.limits.nbdOptionsMax} options`);
}

function reply(connection: Connection, option: number, type: number, payload?: Buffer): void {
  connection.send(encodeOptionReply(option, type, payload));
}

function refuse(connection: Connection, option: number, type: number, message: string): void {
  connection.log('debug', 'option refused', { option: optionName(option), reason: message });
  reply(connection, option, type, Buffer.from(message, 'utf8'));
}

/** Answers one option; returns the export (GO, EXPORT_NAME), null (ABORT) or undefined. */
async function handleOption(
  connection: Connection,
  state: HaggleState,
  option: number,
  payload: Buffer,
): Promise<ChosenExport | null | undefined> {
  if (connection.tlsRequired && !connection.tlsActive && option !== NBD_OPT_STARTTLS && option !== NBD_OPT_ABORT) {
    if (option === NBD_OPT_EXPORT_NAME) throw new NbdProtocolError('EXPORT_NAME before STARTTLS on a server that requires TLS');
    refuse(connection, option, NBD_REP_ERR_TLS_REQD, 'TLS is required: send STARTTLS first');
    return undefined;
  }
  try {
    switch (option) {
      case NBD_OPT_EXPORT_NAME:
        return exportName(connection, state, payload.toString('utf8'));
      case NBD_OPT_ABORT:
        reply(connection, option, NBD_REP_ACK);
        return null;
      case NBD_OPT_LIST:
        return list(connection, payload);
      case NBD_OPT_STARTTLS:
        return await startTls(connection, payload);
      case NBD_OPT_INFO:
      case NBD_OPT_GO:
        return info(connection, state, option, payload);
      case NBD_OPT_STRUCTURED_REPLY:
        if (payload.length !== 0) throw new NbdInvalidOption('STRUCTURED_REPLY takes no data');
        state.structuredReplies = true;
        reply(connection, option, NBD_REP_ACK);
        return undefined;
      case NBD_OPT_LIST_META_CONTEXT:
      case NBD_OPT_SET_META_CONTEXT:
        return metaContext(connection, state, option, payload);
      default:
        refuse(connection, option, NBD_REP_ERR_UNSUP, `option ${optionName(option)} is not supported`);
        return undefined;
    }
  } catch (error) {
    if (!(error instanceof NbdInvalidOption)) throw error;
    refuse(connection, option, NBD_REP_ERR_INVALID, error.message);
    return undefined;
  }
}

function transmissionFlags(connection: Connection, device: BlockDevice, structuredReplies: boolean): number {
  return connection.transmissionFlags(device.readOnly, structuredReplies);
}

function exportName(connection: Connection, state: HaggleState, name: string): ChosenExport {
  const opened = connection.openExport(name);
  // EXPORT_NAME cannot carry an error: the session ends instead.
  if (typeof opened === 'string') throw new NbdProtocolError(`EXPORT_NAME ${JSON.stringify(name)}: ${opened}`);
  const flags = transmissionFlags(connection, opened.device, state.structuredReplies);
  connection.send(encodeExportNameReply(opened.device.sizeBytes, flags, state.noZeroes));
  return chosen(state, name, opened.device, flags);
}

function chosen(state: HaggleState, name: string, device: BlockDevice, flags: number): ChosenExport {
  return {
    name,
    device,
    structuredReplies: state.structuredReplies,
    baseAllocation: state.metaContexts !== null && state.metaContexts.exportName === name && state.metaContexts.baseAllocation,
    transmissionFlags: flags,
  };
}

function list(connection: Connection, payload: Buffer): undefined {
  if (payload.length !== 0) throw new NbdInvalidOption('LIST takes no data');
  for (const entry of connection.listExports()) reply(connection, NBD_OPT_LIST, NBD_REP_SERVER, encodeServerEntry(entry.name, entry.description));
  reply(connection, NBD_OPT_LIST, NBD_REP_ACK);
  return undefined;
}

async function startTls(connection: Connection, payload: Buffer): Promise<undefined> {
  if (payload.length !== 0) throw new NbdInvalidOption('STARTTLS takes no data');
  if (!connection.tlsAvailable) {
    refuse(connection, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, 'this server has no TLS certificate');
    return undefined;
  }
  if (connection.tlsActive) throw new NbdInvalidOption('TLS is already active');
  reply(connection, NBD_OPT_STARTTLS, NBD_REP_ACK);
  await connection.upgradeToTls();
  return undefined;
}

function info(connection: Connection, state: HaggleState, option: number, payload: Buffer): ChosenExport | undefined {
  const request = decodeInfoRequest(payload);
  const opened = connection.openExport(request.name);
  if (typeof opened === 'string') {
    refuse(connection, option, opened === 'denied' ? NBD_REP_ERR_POLICY : NBD_REP_ERR_UNKNOWN, `export ${JSON.stringify(request.name)}: ${opened}`);
    return undefined;
  }
  const { device, description } = opened;
  const flags = transmissionFlags(connection, device, state.structuredReplies);
  reply(connection, option, NBD_REP_INFO, encodeInfoExport(device.sizeBytes, flags));
  if (request.requests.includes(NBD_INFO_NAME)) reply(connection, option, NBD_REP_INFO, encodeInfoString(NBD_INFO_NAME, request.name));
  if (request.requests.includes(NBD_INFO_DESCRIPTION)) reply(connection, option, NBD_REP_INFO, encodeInfoString(NBD_INFO_DESCRIPTION, description));
  // Any byte alignment works (the engine does read-modify-write), so the minimum is 1.
  reply(connection, option, NBD_REP_INFO, encodeInfoBlockSize(1, device.blockSize, connection.limits.nbdPayloadBytesMax));
  reply(connection, option, NBD_REP_ACK);
  return option === NBD_OPT_GO ? chosen(state, request.name, device, flags) : undefined;
}

/** Which of our contexts a query names: `base:` or `base:allocation` select base:allocation. */
function matches(query: string): boolean {
  return query === 'base:' || query === BASE_ALLOCATION;
}

function metaContext(connection: Connection, state: HaggleState, option: number, payload: Buffer): undefined {
  if (!state.structuredReplies) throw new NbdInvalidOption('negotiate STRUCTURED_REPLY first');
  const request = decodeMetaContextRequest(payload);
  for (const query of request.queries) {
    if (!query.includes(':')) throw new NbdInvalidOption(`meta context query ${JSON.stringify(query.slice(0, 64))} has no namespace`);
  }
  const opened = connection.openExport(request.name);
  if (typeof opened === 'string') {
    refuse(connection, option, opened === 'denied' ? NBD_REP_ERR_POLICY : NBD_REP_ERR_UNKNOWN, `export ${JSON.stringify(request.name)}: ${opened}`);
    return undefined;
  }
  const listing = option === NBD_OPT_LIST_META_CONTEXT;
  const selected = listing && request.queries.length === 0 ? true : request.queries.some(matches);
  if (selected) reply(connection, option, NBD_REP_META_CONTEXT, encodeMetaContext(listing ? 0 : baseAllocationContextId, BASE_ALLOCATION));
  if (!listing) state.metaContexts = { exportName: request.name, baseAllocation: selected };
  reply(connection, option, NBD_REP_ACK);
  return undefined;
}
