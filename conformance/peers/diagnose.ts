/**
 * What a primary got wrong, from what a fake secondary could not accept: the requirement a
 * decoding error or a bad digest breaks. A bad digest is explained by trying the usual ways to
 * get the running checksum wrong (spec wire-protocol §7) and naming the rule of the one that
 * reproduces the digest received.
 * @module
 */
import { createHash } from 'node:crypto';
import { frameHeader } from '../../reference/framing.ts';
import { ZrsError } from '../../reference/errors.ts';

/** A frame the primary sent after the handshake: a control message, record data or a blob chunk. */
export interface SentFrame {
  kind: 'message' | 'data' | 'chunk';
  payload: Buffer;
  /** Index of the transaction it belongs to (the `T` that opened it). */
  txn: number;
  /** The message type, for control messages. */
  type?: string;
}

const md5 = (parts: Uint8Array[]) => parts.reduce((h, p) => h.update(p), createHash('md5')).digest();

/**
 * The rule a `C` digest breaks: `frames` are the payloads sent before that `C`, in order; the
 * digest is tried against the mistakes each rule forbids.
 */
export function digestFault(startTid: Buffer, protocol: Buffer, frames: SentFrame[], digest: Buffer): { id: string; why: string } {
  const payloads = frames.map((f) => f.payload);
  const last = frames.at(-1)?.txn ?? 0;
  const own = frames.filter((f) => f.txn === last).map((f) => f.payload);
  const tried: [string, string, Uint8Array[]][] = [
    ['WIRE-SUM-1', 'the hash was not seeded with the start tid', payloads],
    ['WIRE-SUM-1', 'the hash was seeded with z64, not the start tid', [Buffer.alloc(8), ...payloads]],
    ['WIRE-SUM-2', 'the hash was fed the length prefixes too', [startTid, ...payloads.flatMap((p) => [frameHeader(p.length), p])]],
    ['WIRE-SUM-2', 'the hash was fed the length prefixes too, after each payload', [startTid, ...payloads.flatMap((p) => [p, frameHeader(p.length)])]],
    ['WIRE-SUM-2', 'the hash was fed the protocol id', [protocol, startTid, ...payloads]],
    ['WIRE-SUM-2', 'the hash was not fed the data frames', [startTid, ...frames.filter((f) => f.kind !== 'data').map((f) => f.payload)]],
    ['WIRE-SUM-2', 'the hash was not fed the blob chunks', [startTid, ...frames.filter((f) => f.kind !== 'chunk').map((f) => f.payload)]],
    ['WIRE-SUM-2', 'the hash was not fed the C messages', [startTid, ...frames.filter((f) => f.type !== 'C').map((f) => f.payload)]],
    ['WIRE-SUM-4', 'the hash was reset at each transaction, seeded with the start tid', [startTid, ...own]],
    ['WIRE-SUM-4', 'the hash was reset at each transaction', own],
    ['WIRE-SUM-3', 'the digest was taken before the last payload of the transaction', [startTid, ...payloads.slice(0, -1)]],
  ];
  for (const [id, why, parts] of tried) if (md5(parts).equals(digest)) return { id, why };
  return { id: 'WIRE-SUM-3', why: 'the digest is not that of the payloads sent before the C' };
}

/** The primary's requirement that a decoding error of what it sent breaks. */
export function streamFault(e: unknown): string {
  if (!(e instanceof ZrsError)) return 'WIRE-MSG-1';
  switch (e.code) {
    case 'ERR_STREAM_NESTED':
    case 'ERR_STREAM_NO_TXN':
      return 'WIRE-MSG-1'; // a message out of the order of the grammar
    case 'ERR_MESSAGE_TYPE':
      return 'WIRE-MSG-3';
    case 'ERR_MESSAGE_SHAPE':
      return 'WIRE-MSG-2';
    default:
      return e.name === 'PickleError' ? 'WIRE-PICKLE-1' : 'WIRE-MSG-2';
  }
}
