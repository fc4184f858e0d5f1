/**
 * The blob directory beside a FileStorage file (spec/file-format.md §8): its layout, where
 * the file of a blob revision lives, and how a blob record is recognised.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ZrsError } from '../errors.ts';
import { readPickle } from '../pickle/decoder.ts';
import { PyGlobal } from '../pickle/values.ts';

/** Prefix of the files a secondary receives blob chunks into. */
const INCOMING = 'secondary-';

/** The two layouts ZODB knows. */
export type BlobLayout = 'bushy' | 'lawn';

/** `0x` + hex digits without leading zeros, an even number of them (FS-BLOB-6). */
export function blobRepr(id: Uint8Array): string {
  let digits = Buffer.from(id).toString('hex').replace(/^0+/, '');
  if (digits.length % 2) digits = `0${digits}`;
  return `0x${digits || '00'}`;
}

/** The folder names, under a blob directory of `layout`, of the folder holding an object's revisions. */
export function objectDirNames(layout: BlobLayout, oid: Uint8Array): string[] {
  return layout === 'lawn' ? [blobRepr(oid)] : [...oid].map((b) => `0x${b.toString(16).padStart(2, '0')}`);
}

/** The path names, under a blob directory of `layout`, of the file of revision (oid, tid) (FS-BLOB-4, FS-BLOB-5). */
export function blobFileNames(layout: BlobLayout, oid: Uint8Array, tid: Uint8Array): string[] {
  return [...objectDirNames(layout, oid), `${blobRepr(tid)}.blob`];
}

/** A blob directory. A writer opens it with `create`: made with the `bushy` layout when missing. */
export class BlobDirectory {
  readonly layout: BlobLayout;

  constructor(
    readonly dir: string,
    options: { create?: boolean } = {},
  ) {
    this.layout = BlobDirectory.selectLayout(dir);
    if (!options.create) return;
    mkdirSync(path.join(dir, 'tmp'), { recursive: true });
    const file = path.join(dir, '.layout');
    if (!existsSync(file)) writeFileSync(file, this.layout); // FS-BLOB-1
  }

  /** The layout a directory has, or would get (FS-BLOB-2). */
  static selectLayout(dir: string): BlobLayout {
    const file = path.join(dir, '.layout');
    if (existsSync(file)) {
      const word = readFileSync(file, 'latin1').trim();
      if (word !== 'bushy' && word !== 'lawn') {
        throw new ZrsError('ERR_BLOB_LAYOUT', `${file}: unknown blob layout ${JSON.stringify(word)}`, 'FS-BLOB-2');
      }
      return word;
    }
    if (!existsSync(dir)) return 'bushy';
    return readdirSync(dir).every((name) => name.startsWith('.')) ? 'bushy' : 'lawn';
  }

  /** The folder holding the revisions of an object. */
  objectDir(oid: Uint8Array): string {
    return path.join(this.dir, ...objectDirNames(this.layout, oid));
  }

  /** The file of the revision (oid, tid) (FS-BLOB-4, FS-BLOB-5). */
  blobPath(oid: Uint8Array, tid: Uint8Array): string {
    return path.join(this.dir, ...blobFileNames(this.layout, oid, tid));
  }

  /** Where incoming and temporary blob files are made (FS-BLOB-3). */
  get tmp(): string {
    return path.join(this.dir, 'tmp');
  }

  /** A new name for an incoming blob file in `tmp`. */
  incomingPath(): string {
    return path.join(this.tmp, `${INCOMING}${randomBytes(6).toString('hex')}.blob`);
  }

  /** Removes incoming blob files left in `tmp` by a transaction that never committed; returns how many. */
  removeIncoming(): number {
    let n = 0;
    if (!existsSync(this.tmp)) return 0;
    for (const name of readdirSync(this.tmp)) {
      if (!name.startsWith(INCOMING)) continue;
      rmSync(path.join(this.tmp, name), { force: true });
      n++;
    }
    return n;
  }
}

/**
 * True when record data is a blob record: its first pickle is the class `ZODB.blob.Blob`
 * itself (FS-BLOB-7). Decided by the safe decoder; nothing is imported.
 */
export function isBlobRecord(data: Uint8Array | null): boolean {
  if (!data || data.length === 0) return false;
  try {
    const first = readPickle(data).value;
    return first instanceof PyGlobal && first.module === 'ZODB.blob' && first.name === 'Blob';
  } catch {
    return false;
  }
}
