/**
 * The `zrs` command line: FileStorage tools now, the primary and secondary later.
 *
 * Exit status: 0 success, 1 the input is invalid (for example `fsck` found a violation),
 * 2 the command line was wrong or a file could not be read.
 * @module
 */
import { fsck } from './fsck.ts';
import { fsdump } from './fsdump.ts';
import { tid } from './tid.ts';
import { UsageError, type Output } from './output.ts';

const COMMANDS: Record<string, { run: (args: string[], out: Output) => number; usage: string }> = {
  fsck: { run: fsck, usage: 'zrs fsck [--json] FILE...     check FileStorage files against every validity rule' },
  fsdump: { run: fsdump, usage: 'zrs fsdump [--json] FILE      one line per transaction and per data record' },
  tid: { run: tid, usage: 'zrs tid HEX|DATE|now...       convert tids between 16 hex digits and dates' },
};

const USAGE = `usage:\n${Object.values(COMMANDS).map((c) => `  ${c.usage}`).join('\n')}`;

/** Runs the command line `args` (without the program name); returns the exit status. */
export function main(args: string[], out: Output = { stdout: process.stdout, stderr: process.stderr }): number {
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
    return command.run(rest, out);
  } catch (e) {
    if (e instanceof UsageError) {
      out.stderr.write(`zrs ${name}: ${e.message}\nusage: ${command.usage}\n`);
      return 2;
    }
    const err = e as NodeJS.ErrnoException;
    if (err.code && err.syscall) {
      out.stderr.write(`zrs ${name}: cannot ${err.syscall} ${err.path ?? ''}: ${err.code}\n`);
      return 2;
    }
    throw e;
  }
}
