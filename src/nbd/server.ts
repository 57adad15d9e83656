/*
 * The NBD server: listeners (TCP and unix sockets), the set of live connections, the
 * connection limit, TLS settings and access rules. Each connection runs on its own (see
 * connection.ts); a failing or slow connection never holds up another. close() stops
 * accepting, lets every connection finish the requests it has in flight, then ends them.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { StrataError } from '../common/errors.js';
import { limits as defaultLimits, type Limits } from '../common/limits.js';
import { silentLogger, type Logger } from '../common/log.js';
import { Connection, type ClientInfo, type ExportAccess } from './connection.js';
import type { ExportSource } from './exports.js';

export interface NbdTlsOptions {
  /** PEM server certificate (chain) and private key. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** PEM CA bundle to verify client certificates with (verifyClients). */
  readonly ca?: string | Buffer;
  /** Refuse every option but STARTTLS until TLS is up. */
  readonly required?: boolean;
  /** Ask for and verify a client certificate. */
  readonly verifyClients?: boolean;
}

export interface NbdServerOptions {
  readonly exports: ExportSource;
  readonly logger?: Logger;
  readonly access?: ExportAccess;
  readonly tls?: NbdTlsOptions | null;
  readonly limits?: Partial<Limits>;
}

export interface ConnectedClient {
  readonly id: number;
  readonly export: string | null;
  readonly client: ClientInfo;
  readonly tls: boolean;
}

export class NbdServer {
  private readonly listeners: net.Server[] = [];
  private readonly connections = new Set<Connection>();
  private readonly limits: Limits;
  private readonly logger: Logger;
  private readonly tlsSettings: { context: tls.SecureContext; required: boolean; requestCert: boolean } | null;
  private nextId = 1;
  private stopping = false;

  constructor(private readonly options: NbdServerOptions) {
    this.limits = { ...defaultLimits, ...options.limits };
    this.logger = options.logger ?? silentLogger;
    const settings = options.tls;
    if (settings) {
      if (settings.verifyClients && !settings.ca) throw new StrataError('STRATA_E_INVALID_ARGUMENT', 'verifying client certificates needs a CA');
      this.tlsSettings = {
        context: tls.createSecureContext({ cert: settings.cert, key: settings.key, ca: settings.ca, minVersion: 'TLSv1.2' }),
        required: settings.required ?? false,
        requestCert: settings.verifyClients ?? false,
      };
    } else {
      this.tlsSettings = null;
    }
  }

  /** Listens on TCP; port 0 picks a free port. Resolves with the bound address. */
  listenTcp(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = this.newListener('tcp');
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const address = server.address() as net.AddressInfo;
        this.logger.log('info', 'NBD listening', { host: address.address, port: address.port });
        resolve({ host: address.address, port: address.port });
      });
    });
  }

  /** Listens on a unix socket; a stale socket file left by a dead server is replaced. */
  listenUnix(path: string): Promise<string> {
    if (fs.existsSync(path)) {
      if (!fs.statSync(path).isSocket()) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${path} exists and is not a socket`);
      fs.unlinkSync(path);
    }
    const server = this.newListener('unix');
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        this.logger.log('info', 'NBD listening', { socket: path });
        resolve(path);
      });
    });
  }

  clients(): ConnectedClient[] {
    return [...this.connections].map((connection) => ({
      id: connection.id,
      export: connection.exportName,
      client: connection.client,
      tls: connection.tlsActive,
    }));
  }

  /** Stops accepting, waits for in-flight requests, closes every connection. */
  async close(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const connection of this.connections) {
      if (connection.exportName === null) connection.destroy('server stopping');
      else connection.reader.close('server stopping');
    }
    await Promise.all([...this.connections].map((connection) => connection.done));
  }

  private newListener(transport: 'tcp' | 'unix'): net.Server {
    const server = net.createServer((socket) => this.accept(socket, transport));
    server.on('error', (error) => this.logger.log('error', 'NBD listener failed', { reason: error.message }));
    this.listeners.push(server);
    return server;
  }

  private accept(socket: net.Socket, transport: 'tcp' | 'unix'): void {
    const client: ClientInfo = { transport, address: transport === 'tcp' ? (socket.remoteAddress ?? null) : null };
    if (this.stopping || this.connections.size >= this.limits.nbdConnectionsMax) {
      this.logger.log('warn', 'connection refused', { client: client.address ?? transport, reason: this.stopping ? 'stopping' : 'too many connections' });
      socket.destroy();
      return;
    }
    socket.on('error', () => {
      // Reported through the connection's reader; this listener keeps it from throwing.
    });
    const connection = new Connection(this.nextId, socket, client, {
      exports: this.options.exports,
      access: this.options.access ?? (() => true),
      limits: this.limits,
      logger: this.logger,
      tls: this.tlsSettings,
      stopping: () => this.stopping,
    });
    this.nextId += 1;
    this.connections.add(connection);
    void connection.done.finally(() => this.connections.delete(connection));
  }
}

/**
 * Per-export allow-lists of client addresses. A rule names an export (or `*` for every
 * export without a rule of its own) and the addresses or CIDR ranges that may use it.
 * Exports without any applicable rule are open. Unix-socket clients have no address:
 * the socket file's permissions guard them, and they are always allowed.
 */
export function allowList(rules: readonly { readonly export: string; readonly allow: readonly string[] }[]): ExportAccess {
  const lists = new Map<string, net.BlockList>();
  for (const rule of rules) {
    const list = lists.get(rule.export) ?? new net.BlockList();
    for (const entry of rule.allow) addAddress(list, entry);
    lists.set(rule.export, list);
  }
  return (exportName, client) => {
    if (client.transport === 'unix') return true;
    const list = lists.get(exportName) ?? lists.get('*');
    if (!list) return true;
    if (client.address === null) return false;
    const address = client.address.startsWith('::ffff:') ? client.address.slice(7) : client.address;
    return list.check(address, net.isIPv6(address) ? 'ipv6' : 'ipv4');
  };
}

function addAddress(list: net.BlockList, entry: string): void {
  const [address, prefix] = entry.split('/');
  const family = net.isIPv6(address) ? 'ipv6' : net.isIPv4(address) ? 'ipv4' : null;
  if (family === null) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${entry} is not an IP address or CIDR range`);
  if (prefix === undefined) return list.addAddress(address, family);
  const bits = Number(prefix);
  if (!Number.isInteger(bits) || bits < 0 || bits > (family === 'ipv4' ? 32 : 128)) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `${entry} has an invalid prefix length`);
  }
  list.addSubnet(address, bits, family);
}
