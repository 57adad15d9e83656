/*
 * `strata serve`: runs the daemon in the foreground with JSON logs on stderr until
 * SIGTERM or SIGINT, then drains in-flight requests, flushes and exits 0. Settings come
 * from flags, then from an optional JSON config file (--config, keys named as the long
 * flags in camelCase: {"data": "/var/lib/strata", "http": "0.0.0.0:7480"}); a flag given
 * on the command line wins over the file.
 */
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { StrataError } from '../common/errors.js';
import { jsonLogger } from '../common/log.js';
import { defaultHttpAddress, defaultNbdAddress, parseHostPort, startDaemon } from '../daemon/index.js';
import type { ReadVerify } from '../engine/index.js';
import type { NbdTlsOptions } from '../nbd/index.js';

interface ServeOptions {
  config?: string;
  data?: string;
  http?: string;
  overcommitAlert?: string;
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

const configKeys = ['data', 'http', 'nbd', 'nbdSocket', 'tlsCert', 'tlsKey', 'tlsCa', 'tlsRequired', 'tlsVerifyClients', 'allow', 'logLevel', 'readVerify', 'overcommitAlert'] as const;

/** Flags given on the command line, over the config file, over the flags' defaults. */
function withConfig(options: ServeOptions, command: Command): ServeOptions {
  if (!options.config) return options;
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(fs.readFileSync(options.config, 'utf8')) as Record<string, unknown>;
  } catch (error) {
    throw new StrataError('STRATA_E_INVALID_ARGUMENT', `cannot read the config file ${options.config}: ${(error as Error).message}`);
  }
  const unknown = Object.keys(config).filter((key) => !(configKeys as readonly string[]).includes(key));
  if (unknown.length > 0) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `unknown settings in ${options.config}: ${unknown.join(', ')}`);
  const merged: Record<string, unknown> = { ...options };
  for (const key of configKeys) {
    if (config[key] !== undefined && command.getOptionValueSource(key) !== 'cli') merged[key] = typeof config[key] === 'number' ? String(config[key]) : config[key];
  }
  return merged as unknown as ServeOptions;
}

function overcommit(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ratio = Number(value);
  if (!Number.isFinite(ratio) || ratio <= 0) throw new StrataError('STRATA_E_INVALID_ARGUMENT', `--overcommit-alert takes a positive ratio, not ${JSON.stringify(value)}`);
  return ratio;
}

function address(value: string | undefined): { host: string; port: number } | null {
  return value === undefined || value === 'off' ? null : parseHostPort(value);
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
    .description('run the Strata daemon in the foreground: the pools in --data served over NBD, the API and console over HTTP')
    .option('--config <file>', 'JSON file with settings (flags given here win)')
    .option('--data <dir>', 'data directory (the pool "default" and an admin token are created there on first start)')
    .option('--http <host:port>', `HTTP address of the API and web console ("off" for none)`, `${defaultHttpAddress.host}:${defaultHttpAddress.port}`)
    .option('--overcommit-alert <ratio>', 'raise an event when a pool\'s volumes add up to more than this many times its capacity')
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
    .action(async (given: ServeOptions, command: Command) => {
      const options = withConfig(given, command);
      if (!options.data) throw new StrataError('STRATA_E_INVALID_ARGUMENT', 'give the data directory: --data DIR (or "data" in --config)');
      const logger = jsonLogger(options.logLevel);
      const daemon = await startDaemon({
        dataDir: options.data,
        nbd: address(options.nbd),
        http: address(options.http),
        overcommitAlertRatio: overcommit(options.overcommitAlert),
        nbdSocket: options.nbdSocket ?? null,
        tls: tlsOptions(options),
        allow: allowRules(options.allow),
        logger,
        readVerify: readVerify(options.readVerify),
      });
      logger.log('info', 'ready', { pid: process.pid, http: daemon.httpAddress, nbd: daemon.nbdAddress, nbdSocket: daemon.nbdSocket });
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
