/**
 * Packing a FileStorage file to a time, as ZODB's `FileStorage.pack(t, referencesf)` does
 * with garbage collection (`pack-gc`, on by default).
 *
 * Pack writes a new file, `FILE.pack`, and then puts it in the old one's place:
 *
 * 1. *Reachability.* The transactions up to the pack time (tid ≤ pack time) are read and,
 *    for each object, the position of its current revision at that time is noted (a revision
 *    without data, an undone creation, leaves the object without one). From the root object
 *    (oid 0), every object referred to by the current revision of a reachable object is
 *    reachable ({@link referencedOids}). Then the transactions after the pack time are
 *    read: a backpointer from one of them to a record before the pack position keeps that
 *    record too, and, when its object was already reachable, the objects its data refers to.
 * 2. *Copy up to the pack time.* Each transaction before the pack position that holds a kept
 *    record is written with status `p`, with only its kept records, each with its data (a
 *    backpointer is resolved; a record without data gets `back` = 0) and `prev` = 0. A
 *    transaction without kept records disappears.
 * 3. *Copy the rest.* Every transaction after the pack time is copied with its header as it
 *    was; each record's `prev` becomes the offset of the object's latest record in the new
 *    file and a backpointer is pointed at the new offset of the record it named.
 * 4. *Replace.* `FILE.pack` is synced, `FILE` renamed to `FILE.old` and `FILE.pack` to
 *    `FILE`; a stale `FILE.index` is removed (FS-INDEX-3).
 *
 * Readers that have the old file open keep reading it (the rename leaves their inode
 * alone); {@link FileStorageReader.replaced} tells them, and `FileFollower` (follower.ts) reopens
 * the file and goes on after the last tid it returned.
 *
 * Nothing may append to the file while it is packed: pack takes no lock. A writer in the
 * same process calls {@link packFile} between transactions (it is synchronous), then closes
 * itself and opens the file again (`FileStorageWriter.open`, writer.ts): its descriptor and its
 * indexes describe the old file.
 * @module
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { FileFormatError, ZrsError } from '../errors.ts';
import { compareTids, hex8, Z64 } from '../timestamp.ts';
import { readAt } from './io.ts';
import { FileStorageReader, type TxnInfo } from './reader.ts';
import {
  DATA_HEADER_SIZE,
  type DataRecord,
  encodeDataRecord,
  encodeTxnHeader,
  MAGIC_SIZE,
  Status,
  TRAILER_SIZE,
  TXN_HEADER_SIZE,
} from './records.ts';
import { referencedOids } from './references.ts';

/** Options of {@link packFile}. */
export interface PackOptions {
  /**
   * Collect garbage (ZODB's `pack-gc`, default true): keep only the revisions of objects
   * reachable from the root. When false, every object's current revision at the pack time
   * is kept.
   */
  gc?: boolean;
  /** Keep the file as it was before the pack as `FILE.old` (ZODB's `pack-keep-old`, default true). */
  keepOld?: boolean;
}

/** What {@link packFile} did. */
export interface PackResult {
  /** True when the file was replaced by a packed one. */
  packed: boolean;
  /**
   * Why nothing was done, when `packed` is false: the storage holds no data record
   * (`empty`), it was already packed to a later time with nothing committed since
   * (`redundant`, ZODB's RedundantPackWarning), or packing would not free a byte (`nothing
   * freed`).
   */
  skipped: null | 'empty' | 'redundant' | 'nothing freed';
  /** The pack time given. */
  packTime: Buffer;
  /** Where the old file now is (`FILE.old`), or null when it was not kept or not packed. */
  oldPath: string | null;
  /** Offset, in the old file, of the first transaction after the pack time. */
  packPosition: number;
  /** Size of the file before and after (equal when nothing was done). */
  bytesBefore: number;
  bytesAfter: number;
  /** Committed transactions before and after. */
  transactionsBefore: number;
  transactionsAfter: number;
  /** Transactions up to the pack time rewritten with status `p`. */
  transactionsPacked: number;
  /** Transactions up to the pack time that kept no record and disappeared. */
  transactionsRemoved: number;
  /** Transactions after the pack time, copied. */
  transactionsCopied: number;
  /** Data records before and after, and how many were dropped. */
  recordsBefore: number;
  recordsAfter: number;
  recordsRemoved: number;
  /** Objects found reachable (with `gc`), or objects with a current revision (without). */
  objectsKept: number;
  /** Tid of the last transaction of the file (unchanged by pack). */
  lastTid: Buffer;
}

/** A pack refused or failed; the file is left as it was. */
export class PackError extends ZrsError {}

const key = (oid: Uint8Array) => hex8(oid);
const ROOT = key(Z64);

/** The reachability pass (ZODB's `GC`). */
class Reachability {
  /** oid → position of its current revision at the pack time. */
  readonly current = new Map<string, number>();
  /** oid → the position of a revision to keep. */
  reachable = new Map<string, number>();
  /** oid → more positions to keep (backpointers from after the pack time). */
  readonly extra = new Map<string, number[]>();
  /** Offset of the first transaction after the pack time. */
  packPosition = MAGIC_SIZE;
  /** False when every transaction up to the pack time was already packed. */
  unpacked = false;
  lastTid: Buffer = Z64;
  records = 0;

  /** Backpointers from after the pack time into the packed part: (oid, position). */
  private readonly fromFuture: [string, number][] = [];

  constructor(
    private readonly reader: FileStorageReader,
    private readonly txns: TxnInfo[],
    private readonly packTime: Uint8Array,
  ) {}

  keeps(oid: string, pos: number): boolean {
    const at = this.reachable.get(oid);
    if (at === undefined) return false;
    return at === pos || (this.extra.get(oid)?.includes(pos) ?? false);
  }

  /** The records of a transaction, checked as ZODB's packer checks them. */
  private check(t: TxnInfo): DataRecord[] {
    if (compareTids(t.tid, this.lastTid) <= 0) {
      throw new FileFormatError('ERR_FS_TID_ORDER', `time-stamp reduction: ${hex8(t.tid)} <= ${hex8(this.lastTid)}`, t.offset, 'FS-CHECK-5');
    }
    this.lastTid = t.tid;
    if (t.status !== Status.COMMITTED && t.status !== Status.PACKED && t.status !== Status.UNDONE) {
      throw new FileFormatError('ERR_FS_STATUS', `invalid transaction status ${JSON.stringify(t.status)}`, t.offset, 'FS-CHECK-8');
    }
    const out = [...this.reader.records(t)];
    for (const r of out) {
      if (r.tloc !== t.offset) {
        throw new FileFormatError('ERR_FS_TLOC', `data record does not point to its transaction: ${r.tloc} != ${t.offset}`, r.offset, 'FS-CHECK-10');
      }
      if (r.prev >= r.offset) throw new FileFormatError('ERR_FS_PREV', `invalid previous pointer ${r.prev}`, r.offset, 'FS-CHECK-16');
      if (r.back >= r.offset) throw new FileFormatError('ERR_FS_BACK_POINTER', `invalid back pointer ${r.back}`, r.offset, 'FS-CHECK-18');
    }
    this.records += out.length;
    return out;
  }

  /** Current revisions at the pack time, and where the transactions after it start. */
  index(): number {
    let i = 0;
    for (; i < this.txns.length; i++) {
      const t = this.txns[i]!;
      if (compareTids(t.tid, this.packTime) > 0) break;
      if (t.status !== Status.PACKED) this.unpacked = true;
      for (const r of this.check(t)) {
        if (r.data !== null || r.back !== 0) this.current.set(key(r.oid), r.offset);
        else this.current.delete(key(r.oid));
      }
    }
    this.packPosition = i < this.txns.length ? this.txns[i]!.offset : this.txns.length ? this.txns[this.txns.length - 1]!.next : MAGIC_SIZE;
    return i;
  }

  /** Marks as reachable everything reachable from `roots` through current revisions. */
  reach(roots: string[]): void {
    const todo = [...roots];
    while (todo.length) {
      const oid = todo.pop()!;
      if (this.reachable.has(oid)) continue;
      const pos = this.current.get(oid);
      if (pos === undefined) {
        // Packing to before the root was created: nothing is reachable.
        if (oid === ROOT && this.current.size === 0) continue;
        throw new PackError(
          'ERR_FS_PACK_POSKEY',
          `object ${oid} is reachable (${oid === ROOT ? 'the root' : 'referred to by a reachable object'}) but has no ` +
            `revision at the pack time; ZODB's pack fails on it too (POSKeyError)`,
        );
      }
      this.reachable.set(oid, pos);
      for (const ref of this.refs(pos)) if (!this.reachable.has(ref)) todo.push(ref);
    }
  }

  /** Checks the transactions after the pack time and notes their backpointers before it. */
  scanRest(from: number): void {
    for (let i = from; i < this.txns.length; i++) {
      for (const r of this.check(this.txns[i]!)) {
        if (r.back !== 0 && r.back < this.packPosition) this.fromFuture.push([key(r.oid), r.back]);
      }
    }
  }

  /**
   * Backpointers from after the pack time into the packed part keep the record they name;
   * when its object was reachable already, the objects that record refers to are reachable
   * too. (When it was not, ZODB keeps the record without following its references, and so
   * does this.)
   */
  future(): void {
    const roots: number[] = [];
    for (const [oid, back] of this.fromFuture) {
      if (this.reachable.has(oid)) {
        const more = this.extra.get(oid) ?? [];
        this.extra.set(oid, more);
        if (!more.includes(back)) {
          more.push(back);
          roots.push(back);
        }
      } else this.reachable.set(oid, back);
    }
    for (const pos of roots) this.reach(this.refs(pos));
  }

  /** The oids the revision at `pos` refers to (after its backpointers). */
  refs(pos: number): string[] {
    const record = this.reader.readDataRecord(pos);
    const data = this.reader.resolve(record).data;
    if (data === null) return [];
    try {
      return referencedOids(data).map(key);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new PackError('ERR_FS_PACK_PICKLE', `cannot find the references of the record of ${key(record.oid)} at ${pos}: ${why}`);
    }
  }
}

/** One transaction written to the new file, for pointing backpointers at it. */
interface Written {
  offset: number;
  records: { oid: string; offset: number; plen: number }[];
}

/** The new file being written. */
class Output {
  readonly fd: number;
  end = 0;
  records = 0;
  transactions = 0;
  /** oid → offset of its latest record in the new file. */
  readonly latest = new Map<string, number>();
  /** tid → the transaction written with it. */
  readonly byTid = new Map<string, Written>();

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w+');
  }

  write(bytes: Buffer): number {
    const at = this.end;
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done, at + done);
    this.end += bytes.length;
    return at;
  }

  /** Appends a transaction record: header fields of `t`, then `records`. */
  transaction(t: TxnInfo, status: string, records: Buffer[], written: Written['records']): void {
    const body = Buffer.concat([t.user, t.description, t.extension, ...records]);
    const tlen = TXN_HEADER_SIZE + body.length;
    const trailer = Buffer.alloc(TRAILER_SIZE);
    trailer.writeBigUInt64BE(BigInt(tlen));
    const header = encodeTxnHeader({ tid: t.tid, tlen, status, ulen: t.user.length, dlen: t.description.length, elen: t.extension.length });
    const offset = this.write(Buffer.concat([header, body, trailer]));
    this.transactions++;
    this.records += written.length;
    this.byTid.set(hex8(t.tid), { offset, records: written });
  }

  /** The data of the record written at `offset` with `plen` bytes. */
  data(offset: number, plen: number): Buffer {
    return readAt(this.fd, offset + DATA_HEADER_SIZE, plen);
  }

  private closed = false;

  close(): void {
    if (!this.closed) closeSync(this.fd);
    this.closed = true;
  }
}

/**
 * Packs the FileStorage file at `path` to `packTime`: the transactions whose tid is at most
 * `packTime` are packed (ZODB compares `tid > packtime` to find the first one it keeps as
 * it is), the later ones copied. See the module documentation for what is kept.
 *
 * Refused with a {@link PackError}, the file left alone, when the pack time is z64, when
 * the file ends with a transaction still being committed (status `c`, ERR_FS_PACK_BUSY) or
 * with a damaged tail (ERR_FS_PACK_DAMAGED: open it with a writer first, which recovers
 * it), when an object reachable at the pack time has no revision (ERR_FS_PACK_POSKEY, as
 * ZODB), or when the file changed while it was packed (ERR_FS_PACK_CHANGED). A damaged
 * record throws the reader's {@link FileFormatError}.
 */
export function packFile(file: string, packTime: Uint8Array, options: PackOptions = {}): PackResult {
  if (packTime.length !== 8) throw new PackError('ERR_FS_PACK_TIME', `a pack time is a tid of 8 bytes, not ${packTime.length}`);
  if (compareTids(packTime, Z64) === 0) throw new PackError('ERR_FS_PACK_TIME', 'invalid pack time z64');
  const gc = options.gc ?? true;
  const keepOld = options.keepOld ?? true;
  const result: PackResult = {
    packed: false,
    skipped: null,
    packTime: Buffer.from(packTime),
    oldPath: null,
    packPosition: MAGIC_SIZE,
    bytesBefore: 0,
    bytesAfter: 0,
    transactionsBefore: 0,
    transactionsAfter: 0,
    transactionsPacked: 0,
    transactionsRemoved: 0,
    transactionsCopied: 0,
    recordsBefore: 0,
    recordsAfter: 0,
    recordsRemoved: 0,
    objectsKept: 0,
    lastTid: Z64,
  };
  const skip = (why: NonNullable<PackResult['skipped']>): PackResult => {
    result.skipped = why;
    result.transactionsPacked = result.transactionsRemoved = result.transactionsCopied = 0;
    result.bytesAfter = result.bytesBefore;
    result.transactionsAfter = result.transactionsBefore;
    result.recordsAfter = result.recordsBefore;
    return result;
  };

  if (statSync(file).size === 0) return skip('empty');
  const reader = FileStorageReader.open(file);
  try {
    // The committed transactions; a tail that is not (yet) committed stops the pack.
    const txns: TxnInfo[] = [];
    let eof = MAGIC_SIZE;
    for (;;) {
      const s = reader.scan(eof);
      if (s.kind === 'end') break;
      if (s.kind === 'checkpoint') {
        throw new PackError('ERR_FS_PACK_BUSY', `${file}: a transaction is being committed at ${eof} (status c); pack after it is finished`, 'FS-STATUS-2');
      }
      if (s.kind === 'partial') {
        throw new PackError('ERR_FS_PACK_DAMAGED', `${file}: the transaction at ${eof} is incomplete; open the file with a writer to recover it before packing`);
      }
      txns.push(s.txn);
      eof = s.txn.next;
    }
    result.bytesBefore = eof;
    result.transactionsBefore = txns.length;
    result.lastTid = txns.length ? txns[txns.length - 1]!.tid : Z64;

    const gcPass = new Reachability(reader, txns, packTime);
    const firstAfter = gcPass.index();
    gcPass.scanRest(firstAfter);
    result.packPosition = gcPass.packPosition;
    result.recordsBefore = gcPass.records;
    if (gcPass.records === 0) return skip('empty');
    // ZODB's RedundantPackWarning: everything up to the pack time was packed before and
    // the first transaction after it (if any) is packed too.
    if (!gcPass.unpacked) {
      const next = txns[firstAfter];
      if (next === undefined ? firstAfter > 0 : next.status === Status.PACKED) return skip('redundant');
    }
    if (gc) {
      gcPass.reach([ROOT]);
      gcPass.future();
    } else gcPass.reachable = gcPass.current;
    result.objectsKept = gcPass.reachable.size;

    const packPath = `${file}.pack`;
    const out = new Output(packPath);
    let done = false;
    try {
      out.write(reader.read(0, MAGIC_SIZE));
      // Up to the pack time: kept records only, with their data, in `p` transactions.
      for (const t of txns.slice(0, firstAfter)) {
        const kept: DataRecord[] = [];
        for (const r of reader.records(t)) if (gcPass.keeps(key(r.oid), r.offset)) kept.push(r);
        if (kept.length === 0) {
          result.transactionsRemoved++;
          continue;
        }
        const tpos = out.end;
        let at = tpos + TXN_HEADER_SIZE + t.ulen + t.dlen + t.elen;
        const parts: Buffer[] = [];
        const written: Written['records'] = [];
        for (const r of kept) {
          const data = reader.resolve(r).data;
          const bytes = encodeDataRecord({ oid: r.oid, tid: r.tid, prev: 0, tloc: tpos, vlen: 0, data: data && data.length ? data : null, back: 0 });
          parts.push(bytes);
          written.push({ oid: key(r.oid), offset: at, plen: data?.length ?? 0 });
          out.latest.set(key(r.oid), at);
          at += bytes.length;
        }
        out.transaction(t, Status.PACKED, parts, written);
        result.transactionsPacked++;
      }
      // ZODB leaves the file alone when packing frees nothing.
      if (out.end === gcPass.packPosition) {
        return skip('nothing freed');
      }
      // After the pack time: everything, pointers rewritten for the new offsets.
      for (const t of txns.slice(firstAfter)) {
        copyTransaction(reader, out, t);
        result.transactionsCopied++;
      }
      // Pack takes no lock: refuse to replace a file that something appended to meanwhile.
      const after = reader.scan(eof);
      if (after.kind !== 'end') {
        throw new PackError('ERR_FS_PACK_CHANGED', `${file} grew while it was being packed; nothing was changed`);
      }
      fsyncSync(out.fd);
      out.close();

      const oldPath = `${file}.old`;
      rmSync(oldPath, { force: true });
      renameSync(file, oldPath);
      renameSync(packPath, file);
      syncDirectory(path.dirname(file));
      rmSync(`${file}.index`, { force: true });
      if (!keepOld) rmSync(oldPath, { force: true });
      result.oldPath = keepOld ? oldPath : null;
      done = true;
    } finally {
      if (!done) {
        out.close();
        rmSync(packPath, { force: true });
      }
    }
    result.packed = true;
    result.bytesAfter = out.end;
    result.transactionsAfter = out.transactions;
    result.recordsAfter = out.records;
    result.recordsRemoved = result.recordsBefore - result.recordsAfter;
    return result;
  } finally {
    reader.close();
  }
}

/**
 * Copies one transaction from after the pack time (ZODB's `copyOne`): same header and
 * status; each record's `prev` is the object's latest record in the new file before this
 * transaction; a backpointer is pointed at the record of the same object in the new copy of
 * the transaction it named, when that record's data is the same (or is a backpointer
 * itself); otherwise the data is written in its place.
 */
function copyTransaction(reader: FileStorageReader, out: Output, t: TxnInfo): void {
  const tpos = out.end;
  let at = tpos + TXN_HEADER_SIZE + t.ulen + t.dlen + t.elen;
  const parts: Buffer[] = [];
  const written: Written['records'] = [];
  const mine = new Map<string, number>();
  for (const r of reader.records(t)) {
    const oid = key(r.oid);
    let data: Buffer | null = r.data;
    let back = 0;
    if (r.data === null && r.back !== 0) {
      data = reader.resolve(r).data;
      const named = reader.readDataRecord(r.back);
      if (!named.oid.equals(r.oid)) {
        throw new FileFormatError('ERR_FS_BACK_POINTER', `back pointer ${r.back} names a record of another object`, r.offset, 'FS-CHECK-19');
      }
      back = findCopy(out, named.tid, oid, data);
    }
    const prev = out.latest.get(oid) ?? 0;
    const bytes = encodeDataRecord({ oid: r.oid, tid: r.tid, prev, tloc: tpos, vlen: 0, data: back ? null : data && data.length ? data : null, back });
    parts.push(bytes);
    written.push({ oid, offset: at, plen: back ? 0 : (data?.length ?? 0) });
    mine.set(oid, at);
    at += bytes.length;
  }
  out.transaction(t, t.status, parts, written);
  for (const [oid, offset] of mine) out.latest.set(oid, offset);
}

/**
 * The offset in the new file of the record of `oid` in the transaction `tid` that can stand
 * for `data` (ZODB's `_txn_find` and `_data_find`), or 0 when there is none.
 */
function findCopy(out: Output, tid: Buffer, oid: string, data: Buffer | null): number {
  const t = out.byTid.get(hex8(tid));
  if (!t) return 0;
  const r = t.records.find((w) => w.oid === oid);
  if (!r) return 0;
  if (r.plen === 0) return r.offset; // a backpointer (or no data) itself: trusted, as ZODB does
  if (data === null || data.length !== r.plen) return 0;
  return out.data(r.offset, r.plen).equals(data) ? r.offset : 0;
}

/** Makes the renames durable where the platform lets a directory be synced. */
function syncDirectory(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // not supported here (Windows)
  } finally {
    closeSync(fd);
  }
}
