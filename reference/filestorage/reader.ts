/**
 * Reading a FileStorage file, including one another process is appending to.
 *
 * The reader never trusts the tail: a transaction is whole only when its header, its data
 * records and its trailing length are all in the file and its status is final. Reads are
 * positioned (`pread`), one transaction header or one data record at a time, so memory
 * stays bounded by the largest record.
 * @module
 */
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import { readAt, readInto } from './io.ts';
import { FileFormatError, ZrsError } from '../errors.ts';
import { compareTids, hex8, Z64 } from '../timestamp.ts';
import {
  DATA_HEADER_SIZE,
  type DataRecord,
  dataRecordAt,
  dataRecordLength,
  decodeDataHeader,
  decodeTxnHeader,
  MAGIC_FS21,
  MAGIC_FS30,
  MAGIC_SIZE,
  Status,
  TRAILER_SIZE,
  TXN_HEADER_SIZE,
  type TxnHeader,
} from './records.ts';

/** Transactions whose data records fit in this many bytes are read with one read. */
const WHOLE_READ = 1 << 20;
/** `scan` reads transactions up to this size whole when their records are wanted, and at least this much at once. */
const SCAN_READ = 256 << 10;
const MIN_SCAN_READ = 1024;

/** A start tid later than every transaction a primary could send. */
export class TidTooHighError extends ZrsError {
  constructor(tid: Uint8Array, why: string) {
    super('ERR_TID_TOO_HIGH', `start tid ${hex8(tid)} is too high: ${why}`, 'WIRE-POS-3');
  }
}

/** A transaction header with its metadata, as found in the file. */
export interface TxnInfo extends TxnHeader {
  /** File offset of the transaction record. */
  offset: number;
  user: Buffer;
  description: Buffer;
  /** Raw extension bytes (a pickled dict, or empty). */
  extension: Buffer;
  /** Offset of the first data record. */
  dataStart: number;
  /** Offset just past the last data record (= offset + tlen). */
  dataEnd: number;
  /** Offset of the next transaction record. */
  next: number;
}

/** What lies at an offset where a transaction record is expected. */
export type TxnScan =
  /** A whole transaction with a final status. */
  | { kind: 'transaction'; txn: TxnInfo }
  /** Nothing yet: the offset is the end of the file. */
  | { kind: 'end' }
  /** Part of a transaction: still being written, or torn by a crash. */
  | { kind: 'partial'; have: number }
  /** A whole transaction whose status is still `c` (voted, not finished). */
  | { kind: 'checkpoint'; txn: TxnInfo };

/** Record data as a primary sends it: backpointers resolved, and the one-hop hint. */
export interface ResolvedData {
  data: Buffer | null;
  /** Tid of the record the back pointer names (one hop), or `null` without one. */
  dataTxn: Buffer | null;
}

/** An open FileStorage file, read with positioned reads. */
export class FileStorageReader {
  /** How much `scan` reads first when records are wanted: the size of the last transaction. */
  private guess = MIN_SCAN_READ;
  /** The last transaction `scan` read whole, with its bytes, for `records`. */
  private whole: { txn: TxnInfo; bytes: Buffer } | null = null;

  private constructor(
    readonly path: string,
    private fd: number,
    /** `FS30` or `FS21`. */
    readonly magic: string,
    private readonly ino: number,
  ) {}

  /** Opens a file and checks its magic. An empty file is refused (nothing to read). */
  static open(path: string): FileStorageReader {
    const fd = openSync(path, 'r');
    try {
      const head = readAt(fd, 0, MAGIC_SIZE);
      const magic = head.toString('latin1');
      if (head.length === 0) throw new FileFormatError('ERR_FS_EMPTY', 'empty file', 0, 'FS-CHECK-2');
      if (magic !== MAGIC_FS30 && magic !== MAGIC_FS21) {
        throw new FileFormatError('ERR_FS_MAGIC', `invalid file header ${JSON.stringify(magic)}`, 0, 'FS-CHECK-3');
      }
      return new FileStorageReader(path, fd, magic, fstatSync(fd).ino);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Current size of the file in bytes. */
  size(): number {
    return fstatSync(this.fd).size;
  }

  /** True when the path now names another file (a pack replaced it). */
  replaced(): boolean {
    try {
      return statSync(this.path).ino !== this.ino;
    } catch {
      return true;
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** Reads up to `length` bytes at `offset`; fewer at the end of the file. */
  read(offset: number, length: number): Buffer {
    return readAt(this.fd, offset, length);
  }

  /** Reads exactly `length` bytes at `offset`, or throws naming what was cut. */
  private readExactly(offset: number, length: number, what: string): Buffer {
    // A corrupt length must not make us allocate more than the file could hold.
    if (length > 0xffff && offset + length > this.size()) {
      throw new FileFormatError('ERR_FS_TRUNCATED', `${what} of ${length} bytes runs past the end of the file`, offset);
    }
    const b = this.read(offset, length);
    if (b.length < length) throw new FileFormatError('ERR_FS_TRUNCATED', `${what} is cut short`, offset);
    return b;
  }

  /**
   * Examines the transaction record at `offset`. Structural damage inside a transaction
   * that is wholly present (a header longer than the record, a trailing length that differs)
   * throws a {@link FileFormatError}. With `withRecords`, a transaction of up to 256 KiB is
   * read whole, and {@link FileStorageReader.records} then takes its records from memory.
   */
  scan(offset: number, withRecords = false): TxnScan {
    // one read brings the header and a small transaction whole: a read of the size of the
    // last transaction when its records are wanted next, else a short one
    const first = withRecords ? this.guess : MIN_SCAN_READ;
    let head = Buffer.allocUnsafe(first);
    let got = readInto(this.fd, head, offset);
    if (got === 0) return { kind: 'end' };
    if (got < TXN_HEADER_SIZE) return { kind: 'partial', have: got };
    const h = decodeTxnHeader(head, offset);
    const metaLength = h.ulen + h.dlen + h.elen;
    if (h.tlen < TXN_HEADER_SIZE + metaLength) {
      throw new FileFormatError('ERR_FS_TXN_HEADER', `transaction header is longer than its length ${h.tlen}`, offset, 'FS-CHECK-9');
    }
    const next = offset + h.tlen + TRAILER_SIZE;
    const total = h.tlen + TRAILER_SIZE;
    if (withRecords) {
      if (total > got && got === first && total <= SCAN_READ) {
        const all = Buffer.allocUnsafe(total);
        head.copy(all, 0, 0, got);
        got += readInto(this.fd, all.subarray(got), offset + got);
        head = all;
      }
      // the next transaction is likely of the same size: read it whole at once, or only its header
      this.guess = total <= SCAN_READ ? Math.max(MIN_SCAN_READ, total) : MIN_SCAN_READ;
    }
    const whole = total <= got ? head.subarray(0, total) : null;
    if (!whole && next > this.size()) return { kind: 'partial', have: this.size() - offset };
    const trailer = whole ? whole.readBigUInt64BE(h.tlen) : this.readExactly(offset + h.tlen, TRAILER_SIZE, 'redundant length').readBigUInt64BE(0);
    if (trailer !== BigInt(h.tlen)) {
      throw new FileFormatError(
        'ERR_FS_REDUNDANT_LENGTH',
        `redundant length ${trailer} differs from the transaction length ${h.tlen}`,
        offset + h.tlen,
        'FS-CHECK-13',
      );
    }
    const meta = TXN_HEADER_SIZE + metaLength <= got ? head.subarray(TXN_HEADER_SIZE, TXN_HEADER_SIZE + metaLength) : this.readExactly(offset + TXN_HEADER_SIZE, metaLength, 'transaction metadata');
    const txn: TxnInfo = {
      ...h,
      offset,
      user: meta.subarray(0, h.ulen),
      description: meta.subarray(h.ulen, h.ulen + h.dlen),
      extension: meta.subarray(h.ulen + h.dlen),
      dataStart: offset + TXN_HEADER_SIZE + metaLength,
      dataEnd: offset + h.tlen,
      next,
    };
    this.whole = whole ? { txn, bytes: whole } : null;
    return h.status === Status.CHECKPOINT ? { kind: 'checkpoint', txn } : { kind: 'transaction', txn };
  }

  /** Reads the data record at `offset`; `limit` is the end of its transaction's data. */
  readDataRecord(offset: number, limit = Infinity): DataRecord {
    // the header first, for the length, then the whole record when it fits; the extent
    // checks (FS-CHECK-11) are dataRecordAt's, made before anything past `limit` is read
    const head = offset + DATA_HEADER_SIZE > limit ? Buffer.alloc(0) : this.readExactly(offset, DATA_HEADER_SIZE, 'data record header');
    const length = head.length ? dataRecordLength(decodeDataHeader(head, offset)) : 0;
    const record = length && offset + length <= limit ? this.readExactly(offset, length, 'data record') : head;
    return dataRecordAt(record, 0, limit - offset, offset);
  }

  /** The data records of a transaction, in file order, read one at a time. */
  *records(txn: TxnInfo): Generator<DataRecord> {
    const size = txn.dataEnd - txn.dataStart;
    if (size <= WHOLE_READ) {
      // one read for the whole transaction (or none, when scan read it): records are decoded from memory
      const whole = this.whole?.txn === txn ? this.whole.bytes : undefined;
      const all = whole ? whole.subarray(txn.dataStart - txn.offset, txn.dataEnd - txn.offset) : this.readExactly(txn.dataStart, size, 'data records');
      for (let at = 0; at < size; ) {
        const r = dataRecordAt(all, at, size, txn.dataStart);
        yield r;
        at += dataRecordLength(r);
      }
      return;
    }
    let at = txn.dataStart;
    while (at < txn.dataEnd) {
      const r = this.readDataRecord(at, txn.dataEnd);
      yield r;
      at += dataRecordLength(r);
    }
  }

  /**
   * Every whole transaction from `offset` on, in file order. Stops quietly at the end of
   * the file, at a partial tail or at a `c` transaction (what follows is not committed);
   * `withRecords` as for {@link FileStorageReader.scan}.
   */
  *transactions(offset = MAGIC_SIZE, withRecords = false): Generator<TxnInfo> {
    for (;;) {
      const s = this.scan(offset, withRecords);
      if (s.kind !== 'transaction') return;
      yield s.txn;
      offset = s.txn.next;
    }
  }

  /**
   * The data a record stands for and the hint a primary sends with it: data is found by
   * following back pointers to the first record with data (none when a pointer is 0);
   * the hint is the tid of the record the first back pointer names.
   */
  resolve(record: DataRecord): ResolvedData {
    if (record.data !== null) return { data: record.data, dataTxn: null };
    if (record.back === 0) return { data: null, dataTxn: null };
    let r = record;
    let dataTxn: Buffer | null = null;
    while (r.data === null && r.back !== 0) {
      if (r.back >= r.offset || r.back < MAGIC_SIZE) {
        throw new FileFormatError('ERR_FS_BACK_POINTER', `back pointer ${r.back} does not point before the record`, r.offset, 'FS-CHECK-18');
      }
      const target = this.readDataRecord(r.back);
      if (!target.oid.equals(record.oid)) {
        throw new FileFormatError('ERR_FS_BACK_POINTER', `back pointer ${r.back} names a record of another object`, r.offset, 'FS-CHECK-19');
      }
      dataTxn ??= target.tid;
      r = target;
    }
    return { data: r.data, dataTxn };
  }

  /**
   * Where a stream that starts after `startTid` begins: the offset of the first committed
   * transaction whose tid is greater (WIRE-POS-1, WIRE-POS-2). Any 8 bytes are accepted.
   * Returns `null` when the scan reaches a transaction that is still being written before
   * finding one (DEV-CTAIL-1: wait and ask again). Throws {@link TidTooHighError} when the
   * start tid is greater than every tid of the file (WIRE-POS-3).
   */
  positionAfter(startTid: Uint8Array): number | null {
    if (compareTids(startTid, Z64) === 0) return MAGIC_SIZE;
    let offset = MAGIC_SIZE;
    for (;;) {
      const s = this.scan(offset);
      if (s.kind === 'end') throw new TidTooHighError(startTid, 'no transaction follows it');
      if (s.kind !== 'transaction') return null;
      const c = compareTids(s.txn.tid, startTid);
      if (c > 0) return offset;
      if (c === 0) return s.txn.next;
      offset = s.txn.next;
    }
  }
}
