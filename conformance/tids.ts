/**
 * Tids and oids as the primary cases write them: hex text, 8-byte buffers, tids after the
 * fixtures', and the tids a fake secondary received.
 * @module
 */
import { tidFromParts } from '../reference/timestamp.ts';
import type { FakeSecondary } from './peers/fake-secondary.ts';

/** Lower-case hex of any bytes (a tid, an oid, record data). */
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** The 8 bytes of a tid (or oid) written as 16 hex digits. */
export const tidOf = (h: string): Buffer => Buffer.from(h, 'hex');

/** The oid whose number is `n`. */
export function oid(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** The tid `n` units after `t` (arithmetic on the whole 8 bytes, as a number). */
export function after(t: Uint8Array, n: number): Buffer {
  const b = Buffer.from(t);
  b.writeBigUInt64BE(b.readBigUInt64BE(0) + BigInt(n));
  return b;
}

/** A tid after every tid of the fixtures (which are of 2026-11-26). */
export const LATER: Buffer = tidFromParts({ year: 2026, month: 11, day: 27, hour: 9, minute: 0, second: 0 });

/** The tids, in hex, of the transactions a fake secondary received, in order. */
export const tids = (s: FakeSecondary): string[] => s.transactions.map((t) => hex(t.begin.tid));
