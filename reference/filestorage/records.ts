/**
 * Byte layout of FileStorage records, with no file I/O.
 *
 * A file is a 4-byte magic (`FS30`, or `FS21` from Python 2 ZODB) followed by transaction
 * records back to back. All integers are big-endian; offsets are absolute file positions.
 *
 * Transaction record: tid (8) · tlen (8, excludes the trailing copy) · status (1) · ulen (2)
 * · dlen (2) · elen (2) · user · description · extension · data records · tlen again (8).
 *
 * Data record: oid (8) · tid (8) · prev (8) · tloc (8) · vlen (2) · plen (8) · then `plen`
 * bytes of data, or, when plen is 0, an 8-byte back pointer (0 = no data).
 * @module
 */
import { FileFormatError } from '../errors.ts';

/** Magic of files written by Python 3 ZODB (the one to write). */
export const MAGIC_FS30 = 'FS30';
/** Magic of files written by Python 2 ZODB (read, never written). */
export const MAGIC_FS21 = 'FS21';
/** Bytes of the magic. */
export const MAGIC_SIZE = 4;
/** Fixed part of a transaction record header. */
export const TXN_HEADER_SIZE = 23;
/** Fixed part of a data record header. */
export const DATA_HEADER_SIZE = 42;
/** Bytes of the redundant transaction length after the data records. */
export const TRAILER_SIZE = 8;
/** Limit of user, description and extension lengths (u16 fields). */
export const MAX_META_LENGTH = 0xffff;

/** Transaction status bytes. */
export const Status = {
  /** Committed. */
  COMMITTED: ' ',
  /** Committed and rewritten by pack. */
  PACKED: 'p',
  /** Checkpoint: written and voted, not yet finished. */
  CHECKPOINT: 'c',
  /** Obsolete status, skipped by readers and by primaries. */
  UNDONE: 'u',
} as const;

/** The fixed fields of a transaction record header. */
export interface TxnHeader {
  tid: Buffer;
  /** Length of the record without its trailing 8-byte copy of this length. */
  tlen: number;
  status: string;
  ulen: number;
  dlen: number;
  elen: number;
}

/** The fixed fields of a data record header. */
export interface DataHeader {
  oid: Buffer;
  tid: Buffer;
  /** Offset of the previous record of the same oid, 0 for none. */
  prev: number;
  /** Offset of the transaction record holding this record. */
  tloc: number;
  /** Version-name length; always 0 in files of ZODB 3.9 and later. */
  vlen: number;
  /** Data length; 0 means the record holds a back pointer instead. */
  plen: number;
}

/**
 * A u64 field as a number. Values beyond 2^53 lose precision (rounded as `Number(bigint)`
 * rounds), but every one of them is far beyond any file offset, so comparisons with offsets
 * and sizes still decide correctly.
 */
function u64(b: Buffer, at: number): number {
  return b.readUInt32BE(at) * 0x1_0000_0000 + b.readUInt32BE(at + 4);
}

/** Writes a non-negative integer as a u64 field. */
function putU64(b: Buffer, v: number, at: number): void {
  b.writeUInt32BE(Math.floor(v / 0x1_0000_0000), at);
  b.writeUInt32BE(v % 0x1_0000_0000, at + 4);
}

/** A header to encode: its ids may be any 8 bytes, not only Buffers. */
export type WithIds<H> = { [K in keyof H]: H[K] extends Buffer ? Uint8Array : H[K] };

/** Decodes the 23 fixed bytes of a transaction header found at file offset `offset`. */
export function decodeTxnHeader(b: Buffer, offset = 0): TxnHeader {
  if (b.length < TXN_HEADER_SIZE) {
    throw new FileFormatError('ERR_FS_SHORT_HEADER', 'transaction header is cut short', offset);
  }
  return {
    tid: Buffer.from(b.subarray(0, 8)),
    tlen: u64(b, 8),
    status: String.fromCharCode(b[16]!),
    ulen: b.readUInt16BE(17),
    dlen: b.readUInt16BE(19),
    elen: b.readUInt16BE(21),
  };
}

/** Encodes the 23 fixed bytes of a transaction header. */
export function encodeTxnHeader(h: WithIds<TxnHeader>): Buffer {
  const b = Buffer.allocUnsafe(TXN_HEADER_SIZE);
  b.set(h.tid, 0);
  putU64(b, h.tlen, 8);
  b[16] = h.status.charCodeAt(0);
  b.writeUInt16BE(h.ulen, 17);
  b.writeUInt16BE(h.dlen, 19);
  b.writeUInt16BE(h.elen, 21);
  return b;
}

/** Decodes the 42 fixed bytes of a data record header found at file offset `offset`. */
export function decodeDataHeader(b: Buffer, offset = 0): DataHeader {
  if (b.length < DATA_HEADER_SIZE) {
    throw new FileFormatError('ERR_FS_SHORT_HEADER', 'data record header is cut short', offset);
  }
  return {
    oid: Buffer.from(b.subarray(0, 8)),
    tid: Buffer.from(b.subarray(8, 16)),
    prev: u64(b, 16),
    tloc: u64(b, 24),
    vlen: b.readUInt16BE(32),
    plen: u64(b, 34),
  };
}

/** Encodes the 42 fixed bytes of a data record header. */
export function encodeDataHeader(h: WithIds<DataHeader>): Buffer {
  const b = Buffer.allocUnsafe(DATA_HEADER_SIZE);
  b.set(h.oid, 0);
  b.set(h.tid, 8);
  putU64(b, h.prev, 16);
  putU64(b, h.tloc, 24);
  b.writeUInt16BE(h.vlen, 32);
  putU64(b, h.plen, 34);
  return b;
}

/** A whole data record: header and either data or a back pointer. */
export interface DataRecord extends DataHeader {
  /** File offset of the record. */
  offset: number;
  /** The record's data, or `null` when it holds a back pointer. */
  data: Buffer | null;
  /** The back pointer (0 = no data) when `plen` is 0, else 0. */
  back: number;
}

/** A whole transaction record. */
export interface TxnRecord extends TxnHeader {
  /** File offset of the record. */
  offset: number;
  user: Buffer;
  description: Buffer;
  /** The raw extension bytes (a pickled dict, or empty). */
  extension: Buffer;
  records: DataRecord[];
}

/** Total bytes of a data record whose header is `h`. */
export function dataRecordLength(h: Pick<DataHeader, 'plen'>): number {
  return DATA_HEADER_SIZE + (h.plen > 0 ? h.plen : 8);
}

/**
 * Decodes the data record at `at` in `b`, whose first byte is at file offset `base`; the
 * record must end by `limit`, the end of its transaction's data (FS-CHECK-11). The record's
 * fields share memory with `b`.
 */
export function dataRecordAt(b: Buffer, at: number, limit: number, base: number): DataRecord {
  if (at + DATA_HEADER_SIZE > limit) {
    throw new FileFormatError('ERR_FS_DATA_OVERRUN', 'data record header extends beyond the transaction', base + at, 'FS-CHECK-11');
  }
  const plen = u64(b, at + 34);
  const end = at + DATA_HEADER_SIZE + (plen > 0 ? plen : 8);
  if (end > limit) throw new FileFormatError('ERR_FS_DATA_OVERRUN', 'data record extends beyond the transaction', base + at, 'FS-CHECK-11');
  return {
    oid: b.subarray(at, at + 8),
    tid: b.subarray(at + 8, at + 16),
    prev: u64(b, at + 16),
    tloc: u64(b, at + 24),
    vlen: b.readUInt16BE(at + 32),
    plen,
    offset: base + at,
    data: plen > 0 ? b.subarray(at + DATA_HEADER_SIZE, end) : null,
    back: plen > 0 ? 0 : u64(b, at + DATA_HEADER_SIZE),
  };
}

/** Decodes one whole data record held in `b`, which starts at file offset `offset`. */
export function decodeDataRecord(b: Buffer, offset: number): DataRecord {
  const length = dataRecordLength(decodeDataHeader(b, offset));
  if (b.length < length) throw new FileFormatError('ERR_FS_TRUNCATED', 'data record is cut short', offset);
  return dataRecordAt(b, 0, length, offset);
}

/** Encodes a whole data record; `plen` is the data's length, or 0 with the back pointer. */
export function encodeDataRecord(r: Omit<DataRecord, 'plen' | 'offset'>): Buffer {
  const plen = r.data ? r.data.length : 0;
  const header = encodeDataHeader({ ...r, plen });
  if (plen > 0) return Buffer.concat([header, r.data!]);
  return Buffer.concat([header, encodeBackPointer(r.back)]);
}

/** The 8 bytes a data record without data holds instead: its back pointer. */
export function encodeBackPointer(back: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  putU64(b, back, 0);
  return b;
}

/**
 * Decodes one whole transaction record (header to trailing length) held in `b`, which
 * starts at file offset `offset`. Checks the structure: data records fill the transaction
 * exactly and the trailing length repeats `tlen`.
 */
export function decodeTxnRecord(b: Buffer, offset: number): TxnRecord {
  const h = decodeTxnHeader(b, offset);
  const metaEnd = TXN_HEADER_SIZE + h.ulen + h.dlen + h.elen;
  if (metaEnd > h.tlen) throw new FileFormatError('ERR_FS_TXN_HEADER', 'transaction header is longer than tlen', offset);
  if (b.length < h.tlen + TRAILER_SIZE) throw new FileFormatError('ERR_FS_TRUNCATED', 'transaction is cut short', offset);
  const trailer = u64(b, h.tlen);
  if (trailer !== h.tlen) {
    throw new FileFormatError('ERR_FS_REDUNDANT_LENGTH', `trailing length ${trailer} differs from tlen ${h.tlen}`, offset + h.tlen);
  }
  let at = TXN_HEADER_SIZE;
  const take = (n: number) => b.subarray(at, (at += n));
  const user = take(h.ulen);
  const description = take(h.dlen);
  const extension = take(h.elen);
  const records: DataRecord[] = [];
  while (at < h.tlen) {
    const r = dataRecordAt(b, at, h.tlen, offset);
    records.push(r);
    at += dataRecordLength(r);
  }
  return { ...h, offset, user, description, extension, records };
}

/** Encodes a whole transaction record; `tlen` and each record's `plen` are recomputed. */
export function encodeTxnRecord(t: Omit<TxnRecord, 'tlen' | 'ulen' | 'dlen' | 'elen' | 'offset' | 'records'> & {
  records: Omit<DataRecord, 'plen' | 'offset'>[];
}): Buffer {
  const parts = t.records.map(encodeDataRecord);
  const body = Buffer.concat([t.user, t.description, t.extension, ...parts]);
  const tlen = TXN_HEADER_SIZE + body.length;
  const trailer = Buffer.alloc(TRAILER_SIZE);
  trailer.writeBigUInt64BE(BigInt(tlen));
  for (const [name, v] of [['user', t.user], ['description', t.description], ['extension', t.extension]] as const) {
    if (v.length > MAX_META_LENGTH) throw new FileFormatError('ERR_FS_META_TOO_LONG', `${name} longer than 65535 bytes`, 0);
  }
  const header = encodeTxnHeader({
    tid: t.tid,
    tlen,
    status: t.status,
    ulen: t.user.length,
    dlen: t.description.length,
    elen: t.extension.length,
  });
  return Buffer.concat([header, body, trailer]);
}
