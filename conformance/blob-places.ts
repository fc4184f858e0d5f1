/**
 * Where ZODB puts the blob file of a revision, written from the specification (FS-BLOB-4,
 * FS-BLOB-5, FS-BLOB-6) for the harness alone: an oracle that does not come from the reference
 * implementation, so that the reference's own placement is judged as any other. The one copy
 * every case uses.
 * @module
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';

/** The two layouts of a blob directory. */
export type BlobLayout = 'bushy' | 'lawn';

const bytesOf = (id: Uint8Array | string): Buffer => (typeof id === 'string' ? Buffer.from(id, 'hex') : Buffer.from(id));

/**
 * The repr of an 8-byte oid or tid (FS-BLOB-6): `0x` and its value in lower-case hex without
 * leading zeros, padded to an even number of digits (`0x00` for zero).
 */
export function idRepr(id: Uint8Array | string): string {
  const digits = bytesOf(id).readBigUInt64BE(0).toString(16);
  return `0x${digits.length % 2 ? `0${digits}` : digits}`;
}

/**
 * The path, relative to the blob directory, of the blob file of (oid, tid) in `layout`: one
 * folder per oid byte (`0xNN`) in the bushy layout (FS-BLOB-4), one folder named after the
 * oid's repr in the lawn layout (FS-BLOB-5); the file is named after the tid's repr.
 */
export function blobPlace(layout: BlobLayout, oid: Uint8Array | string, tid: Uint8Array | string): string {
  const folders = layout === 'bushy' ? [...bytesOf(oid)].map((b) => `0x${(b >> 4).toString(16)}${(b & 15).toString(16)}`) : [idRepr(oid)];
  return path.join(...folders, `${idRepr(tid)}.blob`);
}

/** Every file under a blob directory, as sorted paths relative to it (those in `tmp` included), except `.layout`. */
export function blobDirFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.filter((f) => f !== '.layout').sort();
}
