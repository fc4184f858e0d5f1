/**
 * The `S` message in the exact bytes Python 3 zc.zrs writes for it, built and recognised
 * without the general pickle machinery: a catch-up sends one per record, so it is the
 * hottest message on the wire. Anything else that is a valid `S` pickle (Python 2's
 * encoding, other opcodes) is left to the general decoder; the two agree on every input
 * (tested).
 *
 * Layout (protocol 1, no memo): `(` `X` len "S" `(` bytes(oid) bytes(tid) `X` 0 "" then
 * bytes(data_txn) or `N`, then `t` `t` `.`, where bytes(b) is
 * `c_codecs\nencode\n(` `X` len utf8(latin1(b)) `X` 6 "latin1" `t` `R`.
 * @module
 */
import type { StoreMessage } from './messages.ts';

const OPEN = Buffer.from('2858010000005328', 'hex'); // ( X 1 'S' (
const CODECS = Buffer.from('c_codecs\nencode\n(X', 'latin1');
const LATIN1 = Buffer.from('X\x06\x00\x00\x00latin1tR', 'latin1');
const EMPTY_TEXT = Buffer.from('X\x00\x00\x00\x00', 'latin1');
const CLOSE = Buffer.from('tt.', 'latin1');
const NONE = 0x4e;

/** Bytes of bytes(b) for 8 bytes: at most 16 bytes of UTF-8. */
const MAX_BYTES = CODECS.length + 4 + 16 + LATIN1.length;

/** Encodes an `S` message with an empty version, byte for byte as Python 3 zc.zrs. */
export function encodeStoreMessage(oid: Uint8Array, tid: Uint8Array, dataTxn: Uint8Array | null): Buffer {
  const out = Buffer.allocUnsafe(OPEN.length + 3 * MAX_BYTES + EMPTY_TEXT.length + CLOSE.length);
  let at = OPEN.copy(out, 0);
  at = putBytes(out, at, oid);
  at = putBytes(out, at, tid);
  at += EMPTY_TEXT.copy(out, at);
  if (dataTxn) at = putBytes(out, at, dataTxn);
  else out[at++] = NONE;
  at += CLOSE.copy(out, at);
  return out.subarray(0, at);
}

function putBytes(out: Buffer, at: number, b: Uint8Array): number {
  at += CODECS.copy(out, at);
  const lengthAt = at;
  at += 4;
  for (const c of b) {
    // each byte is one latin-1 character, written as UTF-8
    if (c < 0x80) out[at++] = c;
    else {
      out[at++] = 0xc0 | (c >> 6);
      out[at++] = 0x80 | (c & 0x3f);
    }
  }
  out.writeUInt32LE(at - lengthAt - 4, lengthAt);
  return at + LATIN1.copy(out, at);
}

/** Reads an `S` message laid out exactly as {@link encodeStoreMessage} writes it; `null` for anything else. */
export function matchStoreMessage(p: Uint8Array): StoreMessage | null {
  if (!startsWith(p, 0, OPEN)) return null;
  const oid = readBytes(p, OPEN.length);
  if (!oid) return null;
  const tid = readBytes(p, oid.end);
  if (!tid || !startsWith(p, tid.end, EMPTY_TEXT)) return null;
  let at = tid.end + EMPTY_TEXT.length;
  let dataTxn: Buffer | null = null;
  if (p[at] === NONE) at++;
  else {
    const d = readBytes(p, at);
    if (!d) return null;
    dataTxn = d.value;
    at = d.end;
  }
  if (at + CLOSE.length !== p.length || !startsWith(p, at, CLOSE)) return null;
  return { type: 'S', oid: oid.value, tid: tid.value, version: '', dataTxn };
}

/** bytes(b) of exactly 8 bytes at `at`. */
function readBytes(p: Uint8Array, at: number): { value: Buffer; end: number } | null {
  if (!startsWith(p, at, CODECS) || at + CODECS.length + 4 > p.length) return null;
  at += CODECS.length;
  const n = p[at]! | (p[at + 1]! << 8) | (p[at + 2]! << 16) | (p[at + 3]! << 24);
  at += 4;
  const end = at + n;
  if (n < 8 || n > 16 || end > p.length) return null;
  const value = Buffer.allocUnsafe(8);
  let k = 0;
  while (at < end && k < 8) {
    const c = p[at++]!;
    if (c < 0x80) value[k++] = c;
    else if ((c === 0xc2 || c === 0xc3) && at < end && (p[at]! & 0xc0) === 0x80) value[k++] = ((c & 0x03) << 6) | (p[at++]! & 0x3f);
    else return null;
  }
  if (k !== 8 || at !== end || !startsWith(p, end, LATIN1)) return null;
  return { value, end: end + LATIN1.length };
}

function startsWith(p: Uint8Array, at: number, prefix: Buffer): boolean {
  if (at + prefix.length > p.length) return false;
  for (let i = 0; i < prefix.length; i++) if (p[at + i] !== prefix[i]) return false;
  return true;
}
