/**
 * Generates FileStorage logs for the benchmarks (never committed): deterministic contents,
 * increasing tids, written as raw records in large sequential writes.
 * @module
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { DATA_HEADER_SIZE, encodeTxnRecord, MAGIC_FS30, TXN_HEADER_SIZE } from '../filestorage/records.ts';
import { laterThan, tidFromString } from '../timestamp.ts';

/** The shape of a generated log. */
export interface LogShape {
  /** Bytes of data per record. */
  recordSize: number;
  /** Records per transaction. */
  recordsPerTxn: number;
  /** Stop once the file is at least this large. */
  totalBytes: number;
}

/** A class pickle of a persistent mapping, as record data of ZODB begins. */
const CLASS_PICKLE = Buffer.from('80036370657273697374656e742e6d617070696e670a50657273697374656e744d617070696e670a71002e', 'hex');

/** 1 MiB of deterministic noise that record contents are cut from (xorshift32). */
function noise(): Buffer {
  const b = Buffer.alloc(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
}

/** Record data of ZODB's shape, `size` bytes: the class pickle, then a bytes state pickle. */
function recordData(pool: Buffer, size: number, seed: number): Buffer {
  const payload = Math.max(0, size - CLASS_PICKLE.length - 8);
  const start = (seed * 7919) % (pool.length - Math.min(payload, pool.length - 1));
  const state = Buffer.alloc(8 + payload);
  state.write('8003', 0, 'hex'); // PROTO 3
  state[2] = 0x42; // BINBYTES, then its length
  state.writeUInt32LE(payload, 3);
  for (let at = 0; at < payload; at += pool.length) pool.copy(state, 7 + at, at === 0 ? start : 0, Math.min(pool.length, payload - at + (at === 0 ? start : 0)));
  state[7 + payload] = 0x2e; // STOP
  return Buffer.concat([CLASS_PICKLE, state]);
}

/** Writes a log of the given shape to `file`, telling `progress` the bytes written so far; returns its transaction count, size and last tid. */
export function generateLog(file: string, shape: LogShape, progress?: (bytes: number) => void): { transactions: number; bytes: number; lastTid: Buffer } {
  const pool = noise();
  const fd = openSync(file, 'w');
  let size = 0;
  const write = (b: Buffer) => {
    writeSync(fd, b, 0, b.length, size);
    size += b.length;
  };
  write(Buffer.from(MAGIC_FS30, 'latin1'));
  let tid = tidFromString('2026-01-01 00:00:00');
  let transactions = 0;
  const latest = new Map<number, number>();
  let batch: Buffer[] = [];
  let batchBytes = 0;
  let pos = size;
  while (pos < shape.totalBytes) {
    tid = laterThan(tid, tid);
    const description = Buffer.from(`txn ${transactions}`);
    let at = pos + TXN_HEADER_SIZE + description.length;
    const records = Array.from({ length: shape.recordsPerTxn }, (_, i) => {
      const n = (transactions * shape.recordsPerTxn + i) % 5000;
      const oid = Buffer.alloc(8);
      oid.writeUInt32BE(n, 4);
      const data = recordData(pool, shape.recordSize, transactions * 31 + i);
      const r = { oid, tid, prev: latest.get(n) ?? 0, tloc: pos, vlen: 0, data, back: 0 };
      latest.set(n, at);
      at += DATA_HEADER_SIZE + data.length;
      return r;
    });
    const bytes = encodeTxnRecord({ tid, status: ' ', user: Buffer.alloc(0), description, extension: Buffer.alloc(0), records });
    batch.push(bytes);
    batchBytes += bytes.length;
    pos += bytes.length;
    transactions++;
    if (batchBytes > 8 << 20) {
      write(Buffer.concat(batch, batchBytes));
      batch = [];
      batchBytes = 0;
      progress?.(size);
    }
  }
  if (batch.length) write(Buffer.concat(batch, batchBytes));
  closeSync(fd);
  return { transactions, bytes: size, lastTid: tid };
}
