/**
 * The `zrs` command line: the primary and secondary roles, and FileStorage tools.
 *
 * Exit status: 0 success, 1 the input is invalid (for example `fsck` found a violation),
 * 2 the command line was wrong or a file could not be read.
 * @module
 */
import { ZrsError } from '../errors.ts';
import { fsck } from './fsck.ts';
import { fsdump } from './fsdump.ts';
import { lag } from './lag.ts';
import { primaryCommand, runCommand, secondaryCommand } from './nodes.ts';
import { type Output, UsageError } from './output.ts';
import { tid } from './tid.ts';

const NODE_OPTIONS = '[--status-listen ADDR] [--control stdio] [--log-format text|json] [--log-level L]';
/** A secondary's receive limits and extension policy (README, "Limits"). */
const RECEIVE_OPTIONS = '[--max-message-size SIZE] [--max-record-size SIZE] [--max-pickle-values N] [--max-pickle-depth N] [--max-pickle-int-bytes N] [--max-pickle-expansion N] [--extension-globals keep|strip|refuse]';

const COMMANDS: Record<string, { run: (args: string[], out: Output) => number | Promise<number>; usage: string }> = {
  primary: {
    run: primaryCommand,
    usage: `zrs primary --fs FILE --listen ADDR [--create] [--blob-dir DIR] [--follow] [--shutdown-timeout S] [--handshake-timeout S] [--max-connections N] [--zookeeper CONN --register PATH] ${NODE_OPTIONS}`,
  },
  secondary: {
    run: secondaryCommand,
    usage: `zrs secondary --fs FILE (--from ADDR | --zookeeper CONN --discover PATH [--discover-zookeeper CONN]) [--blob-dir DIR] [--listen ADDR] [--register PATH] [--keep-alive-delay S] [--reconnect-delay S] [--sync every|group] ${RECEIVE_OPTIONS} ${NODE_OPTIONS}`,
  },
  run: { run: runCommand, usage: `zrs run --config FILE [--register-listen ADDR] [--reconnect-delay S] [--handshake-timeout S] [--max-connections N] ${RECEIVE_OPTIONS} ${NODE_OPTIONS}` },
  lag: { run: lag, usage: 'zrs lag [-w S] [-e S] [-m] PRIMARY SECONDARY   lag of a secondary (status address or file), nagios-style' },
  fsck: { run: fsck, usage: 'zrs fsck [--json] [--blob-dir DIR] FILE...   check FileStorage files against every validity rule' },
  fsdump: { run: fsdump, usage: 'zrs fsdump [--json] [--blob-dir DIR] FILE   one line per transaction and per data record' },
  tid: { run: tid, usage: 'zrs tid HEX|DATE|now...       convert tids between 16 hex digits and dates' },
};

const USAGE = `usage:\n${Object.values(COMMANDS).map((c) => `  ${c.usage}`).join('\n')}`;

/** Runs the command line `args` (without the program name); resolves with the exit status. */
export async function main(args: string[], out: Output = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name ? out.stdout : out.stderr).write(`${USAGE}\n`);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    out.stderr.write(`zrs: unknown command ${JSON.stringify(name)}\n${USAGE}\n`);
    return 2;
  }
  try {
    return await command.run(rest, out);
  } catch (e) {
    if (e instanceof UsageError) {
      out.stderr.write(`zrs ${name}: ${e.message}\nusage: ${command.usage}\n`);
      return 2;
    }
    if (e instanceof ZrsError) {
      out.stderr.write(`zrs ${name}: ${e.message}\n`);
      return 2;
    }
    const err = e as NodeJS.ErrnoException & { address?: string; port?: number };
    if (err.code && err.syscall) {
      const what = err.path ?? (err.address ? `${err.address}${err.port !== undefined ? `:${err.port}` : ''}` : '');
      out.stderr.write(`zrs ${name}: cannot ${err.syscall} ${what}: ${err.code}\n`);
      return 2;
    }
    throw e;
  }
}
