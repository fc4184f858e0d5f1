/** Checks the cases make on FileStorage files an implementation wrote. */
import { checkFile } from '../reference/filestorage/checker.ts';
import { type TransactionContent } from '../reference/filestorage/content.ts';
import { FileStorageReader } from '../reference/filestorage/reader.ts';
import type { DataRecord } from '../reference/filestorage/records.ts';
import { loadPickle } from '../reference/pickle/decoder.ts';
import { type Json, pickleToJson } from '../reference/pickle/json.ts';
import { PyDict, python3Module } from '../reference/pickle/values.ts';
import { hex8 } from '../reference/timestamp.ts';
import { check, type Subject } from './checks.ts';

/**
 * `copyreg._reconstructor(cls, object, None)`, how protocol 1 writes an instance of a plain
 * class, as the `NEWOBJ` of `cls` without arguments that protocols 2 and later write for it
 * (DEV-EXTBYTES-1): both make an instance of `cls` without calling its `__init__`.
 */
function reconstructed(j: { [k: string]: Json }): Json | null {
  const r = j.$reduce;
  if (!Array.isArray(r) || JSON.stringify(r[0]) !== '{"$global":"copyreg._reconstructor"}') return null;
  const args = (r[1] as { $tuple?: Json[] } | null)?.$tuple;
  if (!args || args.length !== 3 || JSON.stringify(args[1]) !== '{"$global":"builtins.object"}' || args[2] !== null) return null;
  return { $new: [args[0]!, []] };
}

/** The decoded value of an extension field, Python 2 module names read as Python 3's. */
export function extensionJson(hexBytes: string): Json {
  const value = hexBytes === '' ? new PyDict() : loadPickle(Buffer.from(hexBytes, 'hex'));
  const rename = (name: string) => {
    const dot = name.indexOf('.');
    return dot < 0 ? name : python3Module(name.slice(0, dot)) + name.slice(dot);
  };
  const walk = (j: Json): Json => {
    if (Array.isArray(j)) return j.map(walk);
    if (j && typeof j === 'object') {
      const w = Object.fromEntries(
        Object.entries(j).map(([k, v]) => [
          k,
          k === '$global' && typeof v === 'string' ? rename(v) : k === '$inst' && Array.isArray(v) ? [rename(v[0] as string), walk(v[1]!)] : walk(v),
        ]),
      );
      return reconstructed(w) ?? w;
    }
    return j;
  };
  return walk(pickleToJson(value));
}

/** A file's content with each extension as its decoded value (DEV-EXTBYTES-1 equality). */
export const byValue = (content: TransactionContent[]) => content.map((t) => ({ ...t, extension: extensionJson(t.extension) }));

/** Calls `visit` on every data record of every whole transaction of a file, in order. */
function eachRecord(fs: string, visit: (rec: DataRecord) => void): void {
  const r = FileStorageReader.open(fs);
  try {
    for (const t of r.transactions()) for (const rec of r.records(t)) visit(rec);
  } finally {
    r.close();
  }
}

/** Every record's `prev` is the offset of the latest earlier record of its oid, or 0; the records that break this. */
export function prevPointers(fs: string): string[] {
  const wrong: string[] = [];
  const latest = new Map<string, number>();
  eachRecord(fs, (rec) => {
    const want = latest.get(hex8(rec.oid)) ?? 0;
    if (rec.prev !== want) wrong.push(`record ${hex8(rec.oid)} at ${rec.offset}: prev ${rec.prev}, expected ${want}`);
    latest.set(hex8(rec.oid), rec.offset);
  });
  return wrong;
}

/** The records of a file written as a backpointer (no data, a non-zero `back`), as `tid:oid` in hex. */
export function backpointersOf(fs: string): Set<string> {
  const out = new Set<string>();
  eachRecord(fs, (rec) => {
    if (rec.data === null && rec.back !== 0) out.add(`${hex8(rec.tid)}:${hex8(rec.oid)}`);
  });
  return out;
}

/**
 * The first record of a file that carries a version (a non-zero `vlen`), if any. The reader does
 * not step over version data, so nothing after such a record is read; nor after a part of the
 * file it cannot read (validity is judged by {@link checkValid}).
 */
export function versionedRecords(fs: string): string[] {
  const out: string[] = [];
  try {
    eachRecord(fs, (rec) => {
      if (rec.vlen === 0) return;
      out.push(`record of oid ${hex8(rec.oid)} in transaction ${hex8(rec.tid)} at ${rec.offset}: version length ${rec.vlen}`);
      throw new Error('stop');
    });
  } catch {
    // the first versioned record, or a part the reader cannot read
  }
  return out;
}

/** Requirements {@link checkContent} blames, per kind of difference (defaults for a secondary's file). */
export interface ContentIds {
  /** A transaction that was sent is not in the file (default WIRE-TXN-10). */
  missing?: string;
  /** The file holds a transaction that was not sent (default WIRE-TXN-13). */
  extra?: string;
  /** A transaction is there under another tid (default FS-TID-4). */
  tid?: string;
  /** The status differs (default WIRE-TXN-9). */
  status?: string;
  /** User or description differ (default WIRE-TXN-9). */
  metadata?: string;
  /** The extension differs by value (default DEV-EXTBYTES-1). */
  extension?: string;
  /** A record is missing, extra, or has another oid or tid (default WIRE-DATA-6). */
  records?: string;
  /** A record's data differ (default WIRE-DATA-6). */
  data?: string;
  /** The requirement a data difference of this record breaks, when it depends on the record (overrides `data`). */
  dataOf?: (record: { tid: string; oid: string }) => string;
  /** A record without data has data, or the reverse (default WIRE-DATA-5). */
  noData?: string;
}

/**
 * Compares the content of a file a secondary wrote with what it was sent (both from
 * `fileContent`, extensions by value): the first difference, with the requirement it breaks,
 * and the requirements the comparison exercised.
 */
export function contentDifference(got: TransactionContent[], want: TransactionContent[], o: ContentIds = {}): { difference: { id: string; message: string } | null; exercised: Set<string> } {
  const ids = { missing: 'WIRE-TXN-10', extra: 'WIRE-TXN-13', tid: 'FS-TID-4', status: 'WIRE-TXN-9', metadata: 'WIRE-TXN-9', extension: 'DEV-EXTBYTES-1', records: 'WIRE-DATA-6', data: 'WIRE-DATA-6', noData: 'WIRE-DATA-5', ...o };
  const exercised = new Set<string>([ids.missing, ids.extra, ids.tid]);
  const differ = (id: string, message: string) => ({ difference: { id, message }, exercised });
  const wantTids = new Set(want.map((t) => t.tid));
  const gotTids = new Set(got.map((t) => t.tid));
  const lost = want.filter((t) => !gotTids.has(t.tid));
  const foreign = got.filter((t) => !wantTids.has(t.tid));
  if (lost.length && foreign.length) return differ(ids.tid, `the file has ${foreign[0]!.tid} where ${lost[0]!.tid} was sent`);
  if (lost.length) return differ(ids.missing, `transaction ${lost[0]!.tid} was sent and is not in the file (${lost.length} missing)`);
  if (foreign.length) return differ(ids.extra, `the file holds transaction ${foreign[0]!.tid}, which was not sent (${foreign.length} such)`);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g.tid !== w.tid) return differ(ids.missing, `transaction #${i} is ${g.tid}, expected ${w.tid} (order, or a duplicate)`);
    exercised.add(ids.status).add(ids.metadata).add(ids.extension).add(ids.records);
    if (g.status !== w.status) return differ(ids.status, `transaction ${w.tid}: status is ${JSON.stringify(g.status)}, expected ${JSON.stringify(w.status)}`);
    for (const f of ['user', 'description'] as const) if (g[f] !== w[f]) return differ(ids.metadata, `transaction ${w.tid}: ${f} is ${JSON.stringify(g[f])}, expected ${JSON.stringify(w[f])}`);
    if (JSON.stringify(extensionJson(g.extension)) !== JSON.stringify(extensionJson(w.extension))) return differ(ids.extension, `transaction ${w.tid}: extension ${g.extension}, expected ${w.extension} (by value)`);
    if (g.records.length !== w.records.length) return differ(ids.records, `transaction ${w.tid}: ${g.records.length} records, expected ${w.records.length}`);
    for (let j = 0; j < w.records.length; j++) {
      const a = g.records[j]!;
      const b = w.records[j]!;
      if (a.oid !== b.oid || a.tid !== b.tid) return differ(ids.records, `transaction ${w.tid}, record #${j}: oid ${a.oid} tid ${a.tid}, expected oid ${b.oid} tid ${b.tid}`);
      const none = (x: string | null) => x === null || x === '';
      const dataId = o.dataOf?.({ tid: w.tid, oid: b.oid }) ?? ids.data;
      exercised.add(none(b.data) ? ids.noData : dataId);
      if (none(a.data) !== none(b.data)) return differ(ids.noData, `transaction ${w.tid}, record of ${b.oid}: data ${none(a.data) ? 'none' : 'present'}, expected ${none(b.data) ? 'none' : 'present'}`);
      if (a.data !== b.data && !(none(a.data) && none(b.data))) return differ(dataId, `transaction ${w.tid}, record of ${b.oid}: data differ (${(a.data ?? '').length / 2} bytes, expected ${(b.data ?? '').length / 2})`);
    }
  }
  return { difference: null, exercised };
}

/**
 * Checks a secondary's file content against what it was sent: the first difference blames the
 * requirement it breaks; without one, each requirement the comparison exercised passes.
 */
export function checkContent(got: TransactionContent[], want: TransactionContent[], o: ContentIds = {}, subject?: Subject): void {
  const { difference, exercised } = contentDifference(got, want, o);
  if (difference) {
    check(
      difference.id,
      () => {
        throw new Error(difference.message);
      },
      subject,
    );
  }
  for (const id of exercised) check(id, () => undefined, subject);
}

/**
 * Checks that a file passes every validity rule (FS-CHECK-2 to FS-CHECK-19): the first rule it
 * breaks is blamed; when it breaks none, each of `proves` (rules that validity establishes)
 * passes.
 */
export function checkValid(fs: string, proves: string[] = [], subject?: Subject): void {
  const v = checkFile(fs).violation;
  if (v) {
    check(
      v.rule,
      () => {
        throw new Error(`${fs} is not valid: ${v.message}`);
      },
      subject,
    );
  }
  for (const id of proves) check(id, () => undefined, subject);
}
