/*
 * `strata serve`: runs the daemon in the foreground with JSON logs on stderr until
 * SIGTERM or SIGINT, then drains in-flight requests, flushes and exits 0.
 */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { StrataError } from '../common/errors.js';
import { jsonLogger } from '../common/log.js';
import { defaultNbdAddress, parseHostPort, startDaemon } from '../daemon/index.js';
import type { ReadVerify } from '../engine/index.js';
import type { NbdTlsOptions } from '../nbd/index.js';

interface ServeOptions {
  data: string;
  nbd?: string;
  nbdSocket?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsRequired?: boolean;
  tlsVerifyClients?: boolean;
  allow: string[];
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  readVerify: string;
}

function readVerify(value: string): ReadVerify {
  if (value === 'crc' || value === 'sha256') return value;
  throw new StrataError('STRATA_E_INVALID_ARGUMENT', `--read-verify takes crc or sha256, not ${JSON.stringify(value)}`);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function readPem(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `cannot read the ${what} ${file}: ${(error as Error).message}`);
  }
}

function tlsOptions(options: ServeOptions): NbdTlsOptions | null {
  if (!options.tlsCert && !options.tlsKey) {
    if (options.tlsRequired || options.tlsCa) throw new StrataError('STRATA_E_INVALID_ARGUMENT', 'TLS options need --tls-cert and --tls-key');
    return null;
  }
  if (!options.tlsCert || !options.tlsKey) throw new StrataError('STRATA_E_INVALID_ARGUMENT', '--tls-cert and --tls-key go together');
  return {
    cert: readPem(options.tlsCert, 'TLS certificate'),
    key: readPem(options.tlsKey, 'TLS key'),
    ca: options.tlsCa ? readPem(options.tlsCa, 'TLS CA bundle') : undefined,
    required: options.tlsRequired ?? false,
    verifyClients: options.tlsVerifyClients ?? false,
  };
}

function allowRules(entries: string[]): { export: string; allow: string[] }[] {
  return entries.map((entry) => {
    const at = entry.indexOf('=');
    if (at <= 0) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `--allow ${JSON.stringify(entry)}: expected EXPORT=ADDRESS[,ADDRESS...]`);
    return { export: entry.slice(0, at), allow: entry.slice(at + 1).split(',').filter((address) => address.length > 0) };
  });
}

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('run the Strata daemon in the foreground: the pool in --data served over NBD')
    .requiredOption('--data <dir>', 'data directory (the pool "default" is created there on first start)')
    .option('--nbd <host:port>', `NBD TCP address ("off" for none)`, `${defaultNbdAddress.host}:${defaultNbdAddress.port}`)
    .option('--nbd-socket <path>', 'also serve NBD on this unix socket')
    .option('--tls-cert <file>', 'PEM certificate: offer STARTTLS')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--tls-ca <file>', 'PEM CA bundle for client certificates')
    .option('--tls-required', 'refuse clients that do not start TLS')
    .option('--tls-verify-clients', 'require client certificates signed by --tls-ca')
    .option('--allow <export=addresses>', 'allow only these client addresses/CIDRs for an export (or * for all); repeatable', collect, [])
    .option('--log-level <level>', 'debug, info, warn or error', 'info')
    .option('--read-verify <crc|sha256>', "what reads from packs check: CRC-32s and a lone block's SHA-256, or every chunk's SHA-256", 'crc')
    .action(async (options: ServeOptions) => {
      const logger = jsonLogger(options.logLevel);
      const daemon = await startDaemon({
        dataDir: options.data,
        nbd: options.nbd === 'off' ? null : parseHostPort(options.nbd ?? ''),
        nbdSocket: options.nbdSocket ?? null,
        tls: tlsOptions(options),
        allow: allowRules(options.allow),
        logger,
        readVerify: readVerify(options.readVerify),
      });
      logger.log('info', 'ready', { pid: process.pid, nbd: daemon.nbdAddress, nbdSocket: daemon.nbdSocket });
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.log('info', 'stopping', { signal });
          resolve();
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
      await daemon.stop();
    });
}
