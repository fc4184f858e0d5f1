/** Checks the cases make on FileStorage files an implementation wrote. */
import { type TransactionContent } from '../reference/filestorage/content.ts';
import { FileStorageReader } from '../reference/filestorage/reader.ts';
import { loadPickle } from '../reference/pickle/decoder.ts';
import { type Json, pickleToJson } from '../reference/pickle/json.ts';
import { PyDict } from '../reference/pickle/values.ts';
import { hex8 } from '../reference/timestamp.ts';

/** The decoded value of an extension field, Python 2 module names read as Python 3's. */
export function extensionJson(hexBytes: string): Json {
  const value = hexBytes === '' ? new PyDict() : loadPickle(Buffer.from(hexBytes, 'hex'));
  const rename = (name: string) => name.replace(/^__builtin__\./, 'builtins.').replace(/^copy_reg\./, 'copyreg.');
  const walk = (j: Json): Json => {
    if (Array.isArray(j)) return j.map(walk);
    if (j && typeof j === 'object') {
      return Object.fromEntries(
        Object.entries(j).map(([k, v]) => [
          k,
          k === '$global' && typeof v === 'string' ? rename(v) : k === '$inst' && Array.isArray(v) ? [rename(v[0] as string), walk(v[1]!)] : walk(v),
        ]),
      );
    }
    return j;
  };
  return walk(pickleToJson(value));
}

/** A file's content with each extension as its decoded value (DEV-EXTBYTES-1 equality). */
export const byValue = (content: TransactionContent[]) => content.map((t) => ({ ...t, extension: extensionJson(t.extension) }));

/** Every record's `prev` is the offset of the latest earlier record of its oid, or 0; the records that break this. */
export function prevPointers(fs: string): string[] {
  const wrong: string[] = [];
  const r = FileStorageReader.open(fs);
  try {
    const latest = new Map<string, number>();
    for (const t of r.transactions()) {
      for (const rec of r.records(t)) {
        const want = latest.get(hex8(rec.oid)) ?? 0;
        if (rec.prev !== want) wrong.push(`record ${hex8(rec.oid)} at ${rec.offset}: prev ${rec.prev}, expected ${want}`);
        latest.set(hex8(rec.oid), rec.offset);
      }
    }
  } finally {
    r.close();
  }
  return wrong;
}
