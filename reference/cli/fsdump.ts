import { existsSync, statSync } from 'node:fs';
import { ZrsError } from '../errors.ts';
import { BlobDirectory, isBlobRecord } from '../filestorage/blobs.ts';
import { FileStorageReader } from '../filestorage/reader.ts';
import { loadPickle, readPickle } from '../pickle/decoder.ts';
import { pickleToJson } from '../pickle/json.ts';
import { PyGlobal, PyTuple } from '../pickle/values.ts';
import { hex8, tidToString } from '../timestamp.ts';
import { type Output, parseFlags, UsageError } from './output.ts';

/** The class a record's data names: its first pickle is the class, or a (class, args) tuple. */
function className(data: Buffer | null): string | null {
  if (!data) return null;
  try {
    let v = readPickle(data).value;
    if (v instanceof PyTuple) v = v.items[0] ?? null;
    return v instanceof PyGlobal ? `${v.module}.${v.name}` : null;
  } catch {
    return null;
  }
}

function extensionJson(bytes: Buffer): unknown {
  if (bytes.length === 0) return {};
  try {
    return pickleToJson(loadPickle(bytes));
  } catch (e) {
    return { $undecodable: bytes.toString('hex'), error: (e as Error).message };
  }
}

const text = (b: Buffer) => JSON.stringify(b.toString('utf8'));

/** Size of a blob revision's file, `'missing'`, or null when no blob directory was given. */
function blobSize(blobs: BlobDirectory | null, oid: Buffer, tid: Buffer): number | 'missing' | null {
  if (!blobs) return null;
  const file = blobs.blobPath(oid, tid);
  return existsSync(file) ? statSync(file).size : 'missing';
}

/** `zrs fsdump [--json] [--blob-dir DIR] FILE`: one line per transaction and per data record. */
export function fsdump(args: string[], out: Output): number {
  const { flags, values, operands } = parseFlags(args, ['--json'], ['--blob-dir']);
  const blobs = values['--blob-dir'] ? new BlobDirectory(values['--blob-dir']) : null;
  if (operands.length !== 1) throw new UsageError('give exactly one file');
  const json = flags.has('--json');
  const line = (o: Record<string, unknown>, human: string) => out.stdout.write(`${json ? JSON.stringify(o) : human}\n`);
  let r: FileStorageReader;
  try {
    r = FileStorageReader.open(operands[0]!);
  } catch (e) {
    if (!(e instanceof ZrsError)) throw e;
    out.stderr.write(`zrs fsdump: ${operands[0]}: ${e.message}\n`);
    return 1;
  }
  try {
    let offset = 4;
    for (;;) {
      const s = r.scan(offset);
      if (s.kind === 'end') return 0;
      if (s.kind === 'partial') {
        line({ kind: 'tail', offset, state: 'partial', bytes: s.have }, `tail ${offset}: ${s.have} bytes of an incomplete transaction`);
        return 1;
      }
      const t = s.txn;
      const tid = hex8(t.tid);
      const time = tidToString(t.tid);
      const ext = extensionJson(t.extension);
      line(
        { kind: 'transaction', offset, tid, time, status: t.status, user: t.user.toString('utf8'), description: t.description.toString('utf8'), extension: ext, length: t.tlen },
        `transaction ${offset} tid=${tid} ${time} status=${JSON.stringify(t.status)} user=${text(t.user)} description=${text(t.description)} extension=${JSON.stringify(ext)}`,
      );
      if (s.kind === 'checkpoint') {
        line({ kind: 'tail', offset, state: 'checkpoint' }, `tail ${offset}: status c, not committed`);
        return 1;
      }
      if (t.status !== 'u') {
        for (const rec of r.records(t)) {
          const { data, dataTxn } = r.resolve(rec);
          const o = {
            kind: 'record',
            offset: rec.offset,
            oid: hex8(rec.oid),
            tid: hex8(rec.tid),
            prev: rec.prev,
            size: data ? data.length : null,
            back: rec.data ? null : rec.back,
            data_txn: dataTxn ? hex8(dataTxn) : null,
            class: className(data),
            blob: isBlobRecord(data) ? blobSize(blobs, rec.oid, rec.tid) : undefined,
          };
          const backText = rec.data ? '' : ` back=${rec.back}${dataTxn ? ` data_txn=${hex8(dataTxn)}` : ''}`;
          const blobText = o.blob === undefined ? '' : ` blob=${o.blob ?? 'unknown'}`;
          line(o, `  record ${rec.offset} oid=${o.oid} size=${o.size ?? 'none'} prev=${rec.prev}${backText}${o.class ? ` class=${o.class}` : ''}${blobText}`);
        }
      }
      offset = t.next;
    }
  } catch (e) {
    if (!(e instanceof ZrsError)) throw e;
    out.stderr.write(`zrs fsdump: ${operands[0]}: ${e.message}\n`);
    return 1;
  } finally {
    r.close();
  }
}
