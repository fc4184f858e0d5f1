/** Where a command writes, so that tests can capture it. */
export interface Output {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

/** The command line itself was wrong. */
export class UsageError extends Error {}

/** Splits `args` into flags (`--name`) and operands; unknown flags are a usage error. */
export function parseFlags(args: string[], known: string[]): { flags: Set<string>; operands: string[] } {
  const flags = new Set<string>();
  const operands: string[] = [];
  for (const a of args) {
    if (a.startsWith('--') && a.length > 2) {
      if (!known.includes(a)) throw new UsageError(`unknown option ${a}`);
      flags.add(a);
    } else operands.push(a);
  }
  return { flags, operands };
}
