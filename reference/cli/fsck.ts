import { checkFile } from '../filestorage/checker.ts';
import { tidToString } from '../timestamp.ts';
import { type Output, parseFlags, UsageError } from './output.ts';
import { ProgressLine } from './progress.ts';

/** `zrs fsck [--json] [--blob-dir DIR] FILE...`: 0 when every file is valid, 1 when one is not. */
export function fsck(args: string[], out: Output): number {
  const { flags, values, operands } = parseFlags(args, ['--json'], ['--blob-dir']);
  if (operands.length === 0) throw new UsageError('no file given');
  if (values['--blob-dir'] && operands.length > 1) throw new UsageError('--blob-dir goes with one file');
  let status = 0;
  for (const file of operands) {
    // on a terminal, long checks show how far they got
    const line = flags.has('--json') ? null : ProgressLine.of();
    const progress = line ? (at: number, size: number) => line.show(() => `${file}: ${Math.floor((100 * at) / size)}%`) : undefined;
    const r = checkFile(file, { blobDir: values['--blob-dir'], progress });
    line?.clear();
    if (!r.ok) status = 1;
    if (flags.has('--json')) {
      out.stdout.write(`${JSON.stringify({ file, ...r })}\n`);
    } else if (r.ok) {
      const last = r.transactions ? `, last tid ${r.lastTid} (${tidToString(Buffer.from(r.lastTid, 'hex'))})` : '';
      const blobs = values['--blob-dir'] ? `, ${r.blobs} blob records with their files` : '';
      out.stdout.write(`${file}: ok, ${r.magic}, ${r.transactions} transactions, ${r.records} data records${blobs}${last}\n`);
      for (const w of r.warnings) out.stdout.write(`${file}: warning: ${w}\n`);
    } else {
      const v = r.violation!;
      out.stdout.write(`${file}: INVALID [${v.rule}] at offset ${v.offset}: ${v.message}\n`);
    }
  }
  return status;
}
