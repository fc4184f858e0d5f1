/**
 * Writing a FileStorage file: recovery of a damaged tail on open, and appending whole
 * transactions with the commit protocol of spec/file-format.md §4 (write everything with
 * status `c`, then overwrite the status byte, then fsync; only then is it committed).
 *
 * Records are written with `restore` semantics, as a secondary needs them: the serial is
 * the one given, and a `dataTxn` hint becomes a back pointer when the hinted transaction
 * holds a record of the same object with the same data; otherwise the data itself is
 * written (a missing hinted transaction is not an error, see spec/deviations.md).
 * @module
 */
import {
  closeSync,
  existsSync,
  fsync,
  fsyncSync,
  ftruncateSync,
  openSync,
  rmSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { FileFormatError, ZrsError } from '../errors.ts';
import { compareTids, hex8, Z64 } from '../timestamp.ts';
import { FileStorageReader } from './reader.ts';
import {
  encodeBackPointer,
  encodeDataHeader,
  encodeTxnHeader,
  MAGIC_FS30,
  MAGIC_SIZE,
  MAX_META_LENGTH,
  Status,
  TRAILER_SIZE,
  TXN_HEADER_SIZE,
} from './records.ts';

/** What recovery did when the file was opened. */
export interface Recovery {
  /** Offset where the damaged tail started and the file now ends. */
  truncatedAt: number;
  /** Bytes removed. */
  removed: number;
  /** Where the removed bytes were saved (`FILE.trN`). */
  savedAs: string;
  /** Which case of spec/file-format.md §6 it was. */
  reason: 'cut header' | 'cut record' | 'checkpoint' | 'crash debris';
}

/** Metadata of a transaction to append. */
export interface TxnMeta {
  tid: Uint8Array;
  /** `' '`, or `'p'` when a secondary copies a packed transaction. */
  status: string;
  user: Uint8Array;
  description: Uint8Array;
  /** Raw extension bytes (see `dumpExtension`). */
  extension: Uint8Array;
}

/** A record to append, with `restore` semantics. */
export interface RecordToWrite {
  oid: Uint8Array;
  /** The record's tid; normally the transaction's. */
  serial: Uint8Array;
  /** The object's data, or `null` for a revision without data. */
  data: Uint8Array | null;
  /** Tid of a transaction that may hold the same data for this object. */
  dataTxn?: Uint8Array | null;
  /** A back pointer to write instead of data (undo); `data` must then be null. */
  back?: number;
}

/**
 * An 8-byte id (oid or tid) as a Map key: a number while it is below 2^53 (every oid of a
 * real database), else its hex. Distinct ids always give distinct keys.
 */
function idKey(id: Uint8Array): number | string {
  const hi = ((id[0]! << 24) | (id[1]! << 16) | (id[2]! << 8) | id[3]!) >>> 0;
  if (hi >= 0x200000) return Buffer.from(id.buffer, id.byteOffset, 8).toString('hex');
  return hi * 0x1_0000_0000 + (((id[4]! << 24) | (id[5]! << 16) | (id[6]! << 8) | id[7]!) >>> 0);
}

/** An open, writable FileStorage file. One transaction at a time. */
export class FileStorageWriter {
  private fd: number;
  private reader: FileStorageReader;
  /** Offset just past the last committed transaction. */
  /** Offset just past the last transaction counted as committed (synced). */
  private endOffset: number;
  private last: Buffer;
  /** Offset where the next transaction goes, and the tid of the last one finished (synced or not). */
  private nextOffset: number;
  private written: Buffer;
  /** oid → offset of its latest committed data record. */
  private readonly latest = new Map<number | string, number>();
  /** tid → offset of the transaction, for back pointer hints. */
  private readonly txnAt = new Map<number | string, number>();
  private open: PendingTransaction | null = null;
  /** A background flush of a streaming transaction is running; the error of one, for the next sync. */
  private flushing = false;
  private flushError: Error | null = null;

  private constructor(
    readonly path: string,
    readonly recovery: Recovery | null,
  ) {
    this.fd = openSync(path, 'r+');
    this.reader = FileStorageReader.open(path);
    this.endOffset = MAGIC_SIZE;
    this.last = Z64;
    for (const t of this.reader.transactions(MAGIC_SIZE, true)) {
      if (t.status !== Status.UNDONE) for (const r of this.reader.records(t)) this.latest.set(idKey(r.oid), r.offset);
      this.txnAt.set(idKey(t.tid), t.offset);
      this.endOffset = t.next;
      this.last = t.tid;
    }
    this.nextOffset = this.endOffset;
    this.written = this.last;
  }

  /**
   * Opens (creating it with the `FS30` magic when missing or empty) and recovers the file:
   * a damaged tail is saved to the first unused `FILE.trN` and cut off, and a stale
   * `FILE.index` removed; then the file is fsynced. Damage anywhere else is refused with a
   * {@link FileFormatError}.
   */
  static open(path: string): FileStorageWriter {
    if (!existsSync(path)) closeSync(openSync(path, 'wx'));
    const fd = openSync(path, 'r+');
    let recovery: Recovery | null;
    try {
      recovery = recover(path, fd);
      // what the file holds counts as committed from here on: make it durable first (a
      // process that died, or a storage failure, may have left it written but not synced)
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return new FileStorageWriter(path, recovery);
  }

  /** Tid of the last committed transaction (z64 when there is none). */
  get lastTid(): Buffer {
    return this.last;
  }

  /** Offset just past the last committed transaction: the size of the committed file. */
  get end(): number {
    return this.endOffset;
  }

  /** Tid of the last transaction finished, synced or not (equal to `lastTid` unless a sync is pending). */
  get lastWritten(): Buffer {
    return this.written;
  }

  /** @internal Offset where the next transaction goes. */
  get next(): number {
    return this.nextOffset;
  }

  /** The magic of the file. */
  get magic(): string {
    return this.reader.magic;
  }

  /**
   * Starts a transaction. Its tid must be greater than the last committed one
   * (FS-TID-2): a secondary that receives an older tid has diverged from its primary.
   */
  begin(meta: TxnMeta): PendingTransaction {
    if (this.fd < 0) throw new ZrsError('ERR_FS_CLOSED', 'the storage is closed');
    if (this.open) throw new ZrsError('ERR_FS_BUSY', 'a transaction is already in progress');
    if (meta.tid.length !== 8) throw new ZrsError('ERR_FS_TID', 'a tid has 8 bytes');
    if (compareTids(meta.tid, this.written) <= 0) {
      throw new ZrsError(
        'ERR_FS_TID_ORDER',
        `transaction ${hex8(meta.tid)} is not later than the last one, ${hex8(this.written)}`,
        'FS-TID-2',
      );
    }
    // A secondary copies the primary's status; only `c` and `u` can never be final.
    if (meta.status.length !== 1 || meta.status.charCodeAt(0) > 0x7f || meta.status === Status.CHECKPOINT || meta.status === Status.UNDONE) {
      throw new ZrsError('ERR_FS_STATUS', `a transaction cannot be committed with status ${JSON.stringify(meta.status)}`, 'FS-STATUS-3');
    }
    for (const [name, v] of [['user', meta.user], ['description', meta.description], ['extension', meta.extension]] as const) {
      if (v.length > MAX_META_LENGTH) throw new ZrsError('ERR_FS_META_TOO_LONG', `${name} is longer than 65535 bytes`, 'FS-TXN-4');
    }
    this.open = new PendingTransaction(this, meta);
    return this.open;
  }

  /** Appends one whole transaction: begin, records, vote and finish. */
  commit(meta: TxnMeta, records: RecordToWrite[]): number {
    const t = this.begin(meta);
    try {
      for (const r of records) t.restore(r);
      t.vote();
    } catch (e) {
      t.abort();
      throw e;
    }
    return t.finish();
  }

  /**
   * The records that undo the transaction `tid`, as ZODB's transactional undo writes them:
   * each object of that transaction gets a back pointer to its revision before it (0 when
   * the transaction created it). Refused when a later transaction changed one of them.
   */
  undoRecords(tid: Uint8Array, serial: Uint8Array): RecordToWrite[] {
    const at = this.txnAt.get(idKey(tid));
    if (at === undefined) throw new ZrsError('ERR_UNDO', `no transaction ${hex8(tid)} to undo`);
    const s = this.reader.scan(at);
    if (s.kind !== 'transaction' || s.txn.status !== Status.COMMITTED) {
      throw new ZrsError('ERR_UNDO', `transaction ${hex8(tid)} cannot be undone (status ${JSON.stringify(s.kind === 'transaction' ? s.txn.status : s.kind)})`);
    }
    return [...this.reader.records(s.txn)].map((rec) => {
      const current = this.latest.get(idKey(rec.oid))!;
      if (current !== rec.offset) {
        const now = this.reader.resolve(this.reader.readDataRecord(current)).data;
        const then = this.reader.resolve(rec).data;
        const same = now === null || then === null ? now === then : now.equals(then);
        if (!same) throw new ZrsError('ERR_UNDO', `object ${hex8(rec.oid)} was modified by a later transaction`);
      }
      return { oid: rec.oid, serial, data: null, back: rec.prev };
    });
  }

  /** @internal Position and back pointer for a record, following the writer's index. */
  placeRecord(r: RecordToWrite): { prev: number; back: number } {
    const prev = this.latest.get(idKey(r.oid)) ?? 0;
    if (r.back !== undefined) return { prev, back: r.back };
    let back = 0;
    if (r.dataTxn) {
      const at = this.txnAt.get(idKey(r.dataTxn));
      if (at !== undefined) back = this.matchingRecord(at, r);
    }
    return { prev, back };
  }

  /** Offset of the record of `r.oid` in the transaction at `tpos` whose data equals `r.data`, or 0. */
  private matchingRecord(tpos: number, r: RecordToWrite): number {
    const s = this.reader.scan(tpos);
    if (s.kind !== 'transaction') return 0;
    const oid = Buffer.from(r.oid);
    for (const rec of this.reader.records(s.txn)) {
      if (!rec.oid.equals(oid)) continue;
      const { data } = this.reader.resolve(rec);
      const same = data === null || r.data === null ? data === r.data : data.equals(r.data);
      return same ? rec.offset : 0;
    }
    return 0;
  }

  /** @internal Writes buffers at an offset, all of them, with vectored writes. */
  writeAt(buffers: Uint8Array[], offset: number): void {
    const pending = buffers.filter((b) => b.length > 0);
    let at = offset;
    let i = 0; // the first buffer not wholly written
    while (i < pending.length) {
      let n = writevSync(this.fd, pending.slice(i, i + 1024), at);
      at += n;
      while (i < pending.length && n >= pending[i]!.length) n -= pending[i++]!.length;
      if (n > 0) pending[i] = pending[i]!.subarray(n);
    }
  }

  /** @internal Makes the voted transaction at `tpos` final: status byte, then (unless deferred) fsync. */
  finished(tpos: number, next: number, meta: TxnMeta, placed: { oid: number | string; offset: number }[], sync: boolean): void {
    this.writeAt([Buffer.from(meta.status, 'latin1')], tpos + 16);
    this.open = null;
    const tid = Buffer.from(meta.tid);
    for (const r of placed) this.latest.set(r.oid, r.offset);
    this.txnAt.set(idKey(tid), tpos);
    this.nextOffset = next;
    this.written = tid;
    if (sync) this.sync();
  }

  /**
   * @internal Starts an fsync on the thread pool, unless one runs: while a large transaction
   * streams, its bytes reach the disk meanwhile, so that the fsync of its commit, which holds
   * the event loop, has little left to write. A failure is thrown by the next sync.
   */
  flushInBackground(): void {
    if (this.flushing || this.fd < 0) return;
    this.flushing = true;
    fsync(this.fd, (e) => {
      this.flushing = false;
      if (e) this.flushError ??= e;
    });
  }

  /** A failure of a background flush, thrown once: the data it covered may not be on disk. */
  private throwFlushError(): void {
    const e = this.flushError;
    this.flushError = null;
    if (e) throw e;
  }

  /** Fsyncs what was finished without a sync, then counts it as committed; false when there was nothing. */
  sync(): boolean {
    if (this.nextOffset === this.endOffset) return false;
    this.throwFlushError();
    fsyncSync(this.fd);
    this.endOffset = this.nextOffset;
    this.last = this.written;
    return true;
  }

  /**
   * {@link FileStorageWriter.sync} on the thread pool, so that more transactions can be
   * written meanwhile: what was finished before the call counts as committed once it
   * resolves (true), or at once when there was nothing (false). The file must not be closed
   * before it settles.
   */
  syncInBackground(): Promise<boolean> {
    if (this.nextOffset === this.endOffset) return Promise.resolve(false);
    const upTo = this.nextOffset;
    const tid = this.written;
    try {
      this.throwFlushError();
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return new Promise((resolve, reject) =>
      fsync(this.fd, (e) => {
        if (e) return reject(e);
        // a synchronous sync may have covered more meanwhile
        if (upTo > this.endOffset) {
          this.endOffset = upTo;
          this.last = tid;
        }
        resolve(true);
      }),
    );
  }

  /** @internal Abandons the transaction, cutting back anything it wrote. */
  aborted(written: boolean): void {
    if (written) {
      ftruncateSync(this.fd, this.nextOffset);
      fsyncSync(this.fd);
    }
    this.open = null;
  }

  close(): void {
    if (this.open) this.open.abort();
    if (this.fd >= 0) this.sync();
    if (this.fd >= 0) closeSync(this.fd);
    this.reader.close();
    this.fd = -1;
  }

  /**
   * Closes the file after a storage failure, writing nothing more: no abort, no fsync. What
   * the failure left at the end is for the recovery of the next open (FS-FAIL-2).
   */
  discard(): void {
    this.open = null;
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.reader.close();
  }
}

/** A transaction's records go to the file once this many bytes of them wait in memory (FS-COMMIT-8). */
const STREAM_BATCH = 1 << 20;
/** A streaming transaction starts a background flush every time this many more bytes went to the file. */
const FLUSH_EVERY = 32 << 20;

/**
 * The length a streamed transaction's header carries until its vote: longer than any file,
 * so that a crash before the vote leaves a cut record (file-format.md §6, case (b)).
 */
const PROVISIONAL_TLEN = 2 ** 52;

/** A transaction between `begin` and `finish` or `abort`. */
export class PendingTransaction {
  /** Record headers and data (or back pointers) not yet written to the file. */
  private parts: Uint8Array[] = [];
  private buffered = 0;
  /** Bytes of all the records so far, written or not. */
  private length = 0;
  /** The header and some records are in the file already (a large transaction). */
  private streaming = false;
  /** Bytes streamed since the last background flush. */
  private unflushed = 0;
  private readonly placed: { oid: number | string; offset: number }[] = [];
  private state: 'open' | 'voted' | 'done' = 'open';
  private readonly headerLength: number;
  private readonly tpos: number;

  constructor(
    private readonly writer: FileStorageWriter,
    readonly meta: TxnMeta,
  ) {
    this.headerLength = TXN_HEADER_SIZE + meta.user.length + meta.description.length + meta.extension.length;
    this.tpos = writer.next;
  }

  /**
   * Adds a data record (or a back pointer, when the hint matches). The data is not copied;
   * it is written to the file with the vote, or before once the waiting records pass 1 MiB.
   */
  restore(r: RecordToWrite): void {
    if (this.state !== 'open') throw new ZrsError('ERR_FS_TXN_STATE', `cannot add a record to a ${this.state} transaction`);
    if (r.oid.length !== 8 || r.serial.length !== 8) throw new ZrsError('ERR_FS_OID', 'oids and serials have 8 bytes');
    const { prev, back } = this.writer.placeRecord(r);
    const data = back || !r.data || r.data.length === 0 ? null : r.data;
    const header = encodeDataHeader({ oid: r.oid, tid: r.serial, prev, tloc: this.tpos, vlen: 0, plen: data ? data.length : 0 });
    const body = data ?? encodeBackPointer(back);
    this.placed.push({ oid: idKey(r.oid), offset: this.tpos + this.headerLength + this.length });
    this.parts.push(header, body);
    this.buffered += header.length + body.length;
    this.length += header.length + body.length;
    if (this.buffered >= STREAM_BATCH) this.stream();
  }

  /** The transaction header and metadata, with status `c`. */
  private head(tlen: number): Uint8Array[] {
    const { tid, user, description, extension } = this.meta;
    const header = encodeTxnHeader({ tid, tlen, status: Status.CHECKPOINT, ulen: user.length, dlen: description.length, elen: extension.length });
    return [header, user, description, extension];
  }

  /** Writes the waiting records; the first time after a header with the provisional length. */
  private stream(): void {
    const at = this.tpos + this.headerLength + this.length - this.buffered;
    const parts = this.parts;
    this.unflushed += this.buffered;
    this.parts = [];
    this.buffered = 0;
    const first = !this.streaming;
    this.streaming = true; // from here on an abort cuts the file back
    this.writer.writeAt(first ? [...this.head(PROVISIONAL_TLEN), ...parts] : parts, first ? this.tpos : at);
    if (this.unflushed >= FLUSH_EVERY) {
      this.unflushed = 0;
      this.writer.flushInBackground();
    }
  }

  /**
   * Completes the record with status `c` at the end of the file (FS-COMMIT-1): the records
   * still waiting and the trailing length, then, for a streamed record, its true length.
   */
  vote(): void {
    if (this.state !== 'open') throw new ZrsError('ERR_FS_TXN_STATE', `cannot vote a ${this.state} transaction`);
    const tlen = this.headerLength + this.length;
    const trailer = Buffer.alloc(TRAILER_SIZE);
    trailer.writeBigUInt64BE(BigInt(tlen));
    this.state = 'voted';
    try {
      if (!this.streaming) {
        this.writer.writeAt([...this.head(tlen), ...this.parts, trailer], this.tpos);
      } else {
        this.writer.writeAt([...this.parts, trailer], this.tpos + this.headerLength + this.length - this.buffered);
        this.writer.writeAt(this.head(tlen).slice(0, 1), this.tpos);
      }
      this.parts = [];
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /**
   * Overwrites the status byte and syncs (FS-COMMIT-2); returns the transaction's offset.
   * With `sync: false` the fsync (and so the counting as committed) is left to the next
   * {@link FileStorageWriter.sync}, which may then cover several transactions (FS-COMMIT-7).
   */
  finish(options: { sync?: boolean } = {}): number {
    if (this.state !== 'voted') throw new ZrsError('ERR_FS_TXN_STATE', `cannot finish a ${this.state} transaction`);
    this.state = 'done';
    this.writer.finished(this.tpos, this.tpos + this.headerLength + this.length + TRAILER_SIZE, this.meta, this.placed, options.sync ?? true);
    return this.tpos;
  }

  /** Abandons the transaction; once anything was written the file is cut back (FS-COMMIT-3). */
  abort(): void {
    if (this.state === 'done') return;
    const written = this.state === 'voted' || this.streaming;
    this.state = 'done';
    this.parts = [];
    this.writer.aborted(written);
  }
}

/** Finds a damaged tail (spec/file-format.md §6), saves it and cuts it off. */
function recover(path: string, fd: number): Recovery | null {
  const reader = (() => {
    try {
      return FileStorageReader.open(path);
    } catch (e) {
      if (e instanceof FileFormatError && e.code === 'ERR_FS_EMPTY') {
        writeSync(fd, Buffer.from(MAGIC_FS30, 'latin1'), 0, MAGIC_SIZE, 0);
        fsyncSync(fd);
        return FileStorageReader.open(path);
      }
      throw e;
    }
  })();
  try {
    const size = reader.size();
    let tpos = MAGIC_SIZE;
    let reason: Recovery['reason'] | null = null;
    for (;;) {
      let s;
      try {
        s = reader.scan(tpos);
      } catch (e) {
        if (e instanceof FileFormatError && e.code === 'ERR_FS_TXN_HEADER' && looksLikeDebris(reader, size, tpos)) {
          reason = 'crash debris';
          break;
        }
        throw e;
      }
      if (s.kind === 'end') return null;
      if (s.kind === 'partial') {
        reason = s.have < TXN_HEADER_SIZE ? 'cut header' : 'cut record';
        break;
      }
      if (s.kind === 'checkpoint') {
        reason = 'checkpoint';
        break;
      }
      // whole records must be sound (FS-RECOVER-6): the reader checks their extent, we their tloc
      for (const rec of reader.records(s.txn)) {
        if (rec.tloc !== s.txn.offset) {
          throw new FileFormatError('ERR_FS_TLOC', `data record's tloc ${rec.tloc} is not its transaction's offset ${s.txn.offset}`, rec.offset, 'FS-RECOVER-6');
        }
        if (rec.vlen !== 0) throw new FileFormatError('ERR_FS_VERSION', `data record has a version length of ${rec.vlen}`, rec.offset, 'FS-RECOVER-6');
      }
      tpos = s.txn.next;
    }
    let n = 0;
    while (existsSync(`${path}.tr${n}`)) n++;
    const savedAs = `${path}.tr${n}`;
    const tr = openSync(savedAs, 'wx');
    try {
      const tail = reader.read(tpos, size - tpos);
      writeSync(tr, tail, 0, tail.length, 0);
      fsyncSync(tr);
    } finally {
      closeSync(tr);
    }
    ftruncateSync(fd, tpos);
    fsyncSync(fd);
    rmSync(`${path}.index`, { force: true });
    return { truncatedAt: tpos, removed: size - tpos, savedAs, reason };
  } finally {
    reader.close();
  }
}

/** Case (d): the last 8 bytes of the file cannot be the trailing length of a last record. */
function looksLikeDebris(reader: FileStorageReader, size: number, tpos: number): boolean {
  if (size - tpos < 8) return true;
  const r = Number(reader.read(size - 8, 8).readBigUInt64BE(0));
  return size - r < tpos || r < TXN_HEADER_SIZE;
}
