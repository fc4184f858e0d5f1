/** Where a command writes, so that tests can capture it. */
export interface Output {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** The command line itself was wrong. */
export class UsageError extends Error {}

/**
 * Splits `args` into flags (`--name`), options with a value (`--name VALUE`) and operands;
 * anything unknown is a usage error.
 */
export function parseFlags(
  args: string[],
  known: string[],
  withValue: string[] = [],
): { flags: Set<string>; values: Record<string, string>; operands: string[] } {
  const flags = new Set<string>();
  const values: Record<string, string> = {};
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.startsWith('--') && a.length > 2) {
      if (withValue.includes(a)) {
        const v = args[++i];
        if (v === undefined) throw new UsageError(`${a} needs a value`);
        values[a] = v;
      } else if (known.includes(a)) flags.add(a);
      else throw new UsageError(`unknown option ${a}`);
    } else operands.push(a);
  }
  return { flags, values, operands };
}
