/**
 * The checker: applies every validity rule of spec/file-format.md §9 (FS-CHECK-2 to
 * FS-CHECK-19) in file order and reports the first violation with its rule and offset, in
 * the words ZODB's `fstest` uses where it has words for it.
 * @module
 */
import { closeSync, existsSync, fstatSync, openSync, statSync } from 'node:fs';
import { BlobDirectory, isBlobRecord } from './blobs.ts';
import { FileStorageReader } from './reader.ts';
import { readAt } from './io.ts';
import { compareTids, hex8, Z64 } from '../timestamp.ts';
import {
  DATA_HEADER_SIZE,
  dataRecordLength,
  decodeDataHeader,
  decodeTxnHeader,
  MAGIC_FS21,
  MAGIC_FS30,
  MAGIC_SIZE,
  Status,
  TRAILER_SIZE,
  TXN_HEADER_SIZE,
} from './records.ts';

/** The first rule a file breaks. */
export interface Violation {
  /** Requirement ID of the rule, for example `FS-CHECK-5`. */
  rule: string;
  /** Offset of the offending record. */
  offset: number;
  message: string;
}

/** What the checker found. */
export interface CheckResult {
  ok: boolean;
  violation: Violation | null;
  magic: string | null;
  /** Whole transactions read before the first violation (all of them when `ok`). */
  transactions: number;
  /** Data records read before the first violation. */
  records: number;
  /** Tid of the last transaction read (z64 when none). */
  lastTid: string;
  size: number;
  /** Blob records seen (only when blobs are checked). */
  blobs: number;
  /** Findings that do not make the file invalid. */
  warnings: string[];
}

class Stop extends Error {
  constructor(readonly violation: Violation) {
    super(violation.message);
  }
}

/** Offsets and oids of every data record seen, kept compact: 16 bytes a record. */
class RecordIndex {
  private offsets = new Float64Array(1024);
  private oids = new BigUint64Array(1024);
  private n = 0;

  add(offset: number, oid: bigint): void {
    if (this.n === this.offsets.length) {
      const o = new Float64Array(this.n * 2);
      o.set(this.offsets);
      this.offsets = o;
      const d = new BigUint64Array(this.n * 2);
      d.set(this.oids);
      this.oids = d;
    }
    this.offsets[this.n] = offset;
    this.oids[this.n++] = oid;
  }

  /** The oid of the data record that starts at `offset`, if one does (offsets ascend). */
  oidAt(offset: number): bigint | undefined {
    let lo = 0;
    let hi = this.n - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.offsets[mid]!;
      if (v === offset) return this.oids[mid];
      if (v < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }
}

/**
 * Checks the FileStorage file at `path`; with `blobDir`, also that every blob record has its
 * blob file (FS-BLOB-8; an empty blob file is only a warning, since zc.zrs secondaries keep
 * none for zero-length blobs). Never throws for bad content, only for I/O errors.
 */
export function checkFile(path: string, options: { blobDir?: string; progress?: (offset: number, size: number) => void } = {}): CheckResult {
  const fd = openSync(path, 'r');
  let result: CheckResult;
  try {
    result = check(fd, path, options.progress);
  } finally {
    closeSync(fd);
  }
  if (result.ok && options.blobDir) checkBlobs(path, new BlobDirectory(options.blobDir), result);
  return result;
}

function checkBlobs(path: string, blobs: BlobDirectory, result: CheckResult): void {
  const r = FileStorageReader.open(path);
  try {
    for (const t of r.transactions()) {
      if (t.status === Status.UNDONE) continue;
      for (const rec of r.records(t)) {
        if (!isBlobRecord(r.resolve(rec).data)) continue;
        result.blobs++;
        const file = blobs.blobPath(rec.oid, rec.tid);
        if (!existsSync(file)) {
          result.ok = false;
          result.violation = { rule: 'FS-BLOB-8', offset: rec.offset, message: `${path} blob record of oid 0x${hex8(rec.oid)} at ${rec.offset} has no blob file ${file}` };
          return;
        }
        if (statSync(file).size === 0) result.warnings.push(`zero-length blob file ${file} (oid 0x${hex8(rec.oid)}, tid 0x${hex8(rec.tid)})`);
      }
    }
  } finally {
    r.close();
  }
}

function check(fd: number, path: string, progress?: (offset: number, size: number) => void): CheckResult {
  const size = fstatSync(fd).size;
  const read = (offset: number, length: number) => readAt(fd, offset, length);
  const result: CheckResult = { ok: false, violation: null, magic: null, transactions: 0, records: 0, lastTid: hex8(Z64), size, blobs: 0, warnings: [] };
  const fail = (rule: string, offset: number, message: string): never => {
    throw new Stop({ rule, offset, message });
  };
  const index = new RecordIndex();
  try {
    if (size === 0) fail('FS-CHECK-2', 0, `${path} empty file`);
    const magic = read(0, MAGIC_SIZE).toString('latin1');
    if (magic !== MAGIC_FS30 && magic !== MAGIC_FS21) fail('FS-CHECK-3', 0, `${path} invalid file header`);
    result.magic = magic;
    let tpos = MAGIC_SIZE;
    let last: Buffer = Z64;
    while (tpos < size) {
      const head = read(tpos, TXN_HEADER_SIZE);
      if (head.length < TXN_HEADER_SIZE) fail('FS-CHECK-4', tpos, `${path} truncated at ${tpos}`);
      const h = decodeTxnHeader(head, tpos);
      if (compareTids(h.tid, last) <= 0) {
        fail('FS-CHECK-5', tpos, `${path} time-stamp reduction at ${tpos}: 0x${hex8(h.tid)} <= 0x${hex8(last)}`);
      }
      if (tpos + h.tlen + TRAILER_SIZE > size) {
        fail('FS-CHECK-6', tpos, `${path} truncated possibly because of damaged records at ${tpos}`);
      }
      if (h.status === Status.CHECKPOINT) fail('FS-CHECK-7', tpos, `${path} checkpoint flag was not cleared at ${tpos}`);
      if (h.status !== Status.COMMITTED && h.status !== Status.PACKED && h.status !== Status.UNDONE) {
        fail('FS-CHECK-8', tpos, `${path} has invalid status '${h.status}' at ${tpos}`);
      }
      const headerLength = TXN_HEADER_SIZE + h.ulen + h.dlen + h.elen;
      if (headerLength > h.tlen) fail('FS-CHECK-9', tpos, `${path} has an invalid transaction header at ${tpos}`);
      const end = tpos + h.tlen;
      if (h.status !== Status.UNDONE) {
        let pos = tpos + headerLength;
        while (pos < end) {
          if (end - pos < DATA_HEADER_SIZE) fail('FS-CHECK-12', pos, `${path} data records don't add up at ${pos}`);
          const d = decodeDataHeader(read(pos, DATA_HEADER_SIZE), pos);
          if (d.tloc !== tpos) {
            fail('FS-CHECK-10', pos, `${path} data record exceeds transaction record at ${pos}: tloc ${d.tloc} != tpos ${tpos}`);
          }
          const next = pos + dataRecordLength(d);
          if (next > end) {
            fail('FS-CHECK-11', pos, `${path} has data records that extend beyond the transaction record; end at ${next}`);
          }
          if (d.vlen !== 0) fail('FS-CHECK-14', pos, `${path} data record has a non-zero version length at ${pos}`);
          if (!d.tid.equals(h.tid)) {
            fail('FS-CHECK-15', pos, `${path} data record tid 0x${hex8(d.tid)} differs from its transaction's at ${pos}`);
          }
          const oid = d.oid.readBigUInt64BE(0);
          if (d.prev !== 0) {
            if (d.prev >= pos) fail('FS-CHECK-16', pos, `${path} invalid previous pointer ${d.prev} at ${pos}`);
            if (index.oidAt(d.prev) !== oid) {
              fail('FS-CHECK-17', pos, `${path} previous pointer ${d.prev} names no record of oid 0x${hex8(d.oid)} at ${pos}`);
            }
          }
          if (d.plen === 0) {
            const back = Number(read(pos + DATA_HEADER_SIZE, 8).readBigUInt64BE(0));
            if (back !== 0) {
              if (back >= pos) fail('FS-CHECK-18', pos, `${path} invalid back pointer ${back} at ${pos}`);
              if (index.oidAt(back) !== oid) {
                fail('FS-CHECK-19', pos, `${path} back pointer ${back} names no record of oid 0x${hex8(d.oid)} at ${pos}`);
              }
            }
          }
          index.add(pos, oid);
          result.records++;
          pos = next;
        }
      }
      const trailer = read(end, TRAILER_SIZE).readBigUInt64BE(0);
      if (trailer !== BigInt(h.tlen)) {
        fail('FS-CHECK-13', tpos, `${path} has inconsistent transaction length at ${tpos}`);
      }
      result.transactions++;
      if (progress && result.transactions % 4096 === 0) progress(tpos, size);
      last = h.tid;
      result.lastTid = hex8(h.tid);
      tpos = end + TRAILER_SIZE;
    }
    result.ok = true;
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    result.violation = e.violation;
  }
  return result;
}
