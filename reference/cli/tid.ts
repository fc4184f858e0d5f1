import { ZrsError } from '../errors.ts';
import { hex8, tidFromString, tidFromUnixMillis, tidToString } from '../timestamp.ts';
import { type Output, UsageError } from './output.ts';

/** `zrs tid HEX|DATE|now...`: prints each tid as `HEX  DATE`. */
export function tid(args: string[], out: Output): number {
  if (args.length === 0) throw new UsageError('no tid or date given');
  let status = 0;
  for (const a of args) {
    try {
      const t = /^(0x)?[0-9a-fA-F]{16}$/.test(a)
        ? Buffer.from(a.replace(/^0x/, ''), 'hex')
        : a === 'now'
          ? tidFromUnixMillis(Date.now())
          : tidFromString(a);
      out.stdout.write(`${hex8(t)}  ${tidToString(t)}\n`);
    } catch (e) {
      if (!(e instanceof ZrsError)) throw e;
      out.stderr.write(`zrs tid: ${JSON.stringify(a)} is neither 16 hex digits nor a date YYYY-MM-DD[ HH:MM[:SS.ffffff]]\n`);
      status = 2;
    }
  }
  return status;
}
