/*
 * The `strata` command line: `strata <noun> <verb>`, talking to the daemon's REST API
 * at --url / STRATA_URL with --token / STRATA_TOKEN; `strata serve` runs the daemon
 * itself. Human tables by default, `--json` on every read command, exit codes from
 * exit-codes.ts (documented in docs/cli.md).
 */
import { Command } from 'commander';
import { StrataError } from '../common/errors.js';
import { adminCommands } from './admin-commands.js';
import { defaultUrl } from './context.js';
import { exitCodeFor, exitCodes } from './exit-codes.js';
import { serveCommand } from './serve-command.js';
import { storageCommands } from './storage-commands.js';
import { vmCommands } from './vm-commands.js';

export function buildProgram(): Command {
  const program = new Command('strata')
    .description('Strata: thin volumes with snapshots, clones, dedup and compression on a plain Linux host')
    .option('--url <url>', 'the daemon\'s HTTP address (STRATA_URL)', process.env.STRATA_URL ?? defaultUrl)
    .option('--token <token>', 'API token (STRATA_TOKEN); the first one is in DATA/admin.token', process.env.STRATA_TOKEN)
    .option('--json', 'print machine-readable JSON')
    .showHelpAfterError();
  storageCommands(program);
  vmCommands(program);
  adminCommands(program);
  serveCommand(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : exitCodes.ok;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      return code === 'commander.helpDisplayed' || code === 'commander.version' ? exitCodes.ok : exitCodes.usage;
    }
    const message = error instanceof StrataError ? `${error.code}: ${error.message}` : String((error as Error)?.stack ?? error);
    console.error(`strata: ${message}`);
    return exitCodeFor(error);
  }
}
