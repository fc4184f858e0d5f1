/**
 * The common control messages in the exact bytes Python 3 zc.zrs writes for them, built and
 * recognised without the general pickle machinery: a catch-up sends an `S` per record and a
 * `T` and a `C` per transaction, so they are the hottest code on both sides. Covered: every
 * `S` with an empty version and 8-byte ids, every `C` with a checksum, and every `T` with an ASCII status
 * and an empty extension. Anything else (Python 2's encoding, other opcodes, extensions) is
 * left to the general codec; the two agree on every input (tested).
 *
 * Protocol 1, no memo. A message is `(` text(type) `(` fields `t` `t` `.`, where text(s) is
 * `X` u32le-length UTF-8, bytes(b) is `c__builtin__\nbytes\n)R` when empty and otherwise
 * `c_codecs\nencode\n(` text(latin-1 decoding of b) text("latin1") `t` `R`, and None is `N`,
 * an empty dict `}`.
 * @module
 */
import type { CommitMessage, Message, StoreMessage, TransactionMessage } from './messages.ts';
import { PyDict } from './pickle/values.ts';

const latin = (s: string) => Buffer.from(s, 'latin1');
const CODECS = latin('c_codecs\nencode\n(X');
const LATIN1 = latin('X\x06\x00\x00\x00latin1tR');
const EMPTY_BYTES = latin('c__builtin__\nbytes\n)R');
const EMPTY_TEXT = latin('X\x00\x00\x00\x00');
const CLOSE = latin('tt.');
const MARK = 0x28;
const NONE = 0x4e;
const EMPTY_DICT = 0x7d;
/** `(` then text of one character: the type (and, in a T, the status) is the byte at 6. */
const ONE_CHAR = latin('(X\x01\x00\x00\x00');

/** Most bytes that bytes(b) takes for `n` bytes. */
const bytesRoom = (n: number) => CODECS.length + 4 + 2 * n + LATIN1.length;

/** Builds a message into a buffer large enough for it. */
class Builder {
  private at = 0;
  constructor(private readonly out: Buffer) {}

  raw(b: Buffer): this {
    this.at += b.copy(this.out, this.at);
    return this;
  }

  byte(c: number): this {
    this.out[this.at++] = c;
    return this;
  }

  /** `(` text(c): a one-character ASCII text after a mark. */
  mark(c: string): this {
    return this.raw(ONE_CHAR).byte(c.charCodeAt(0));
  }

  bytes(b: Uint8Array): this {
    if (b.length === 0) return this.raw(EMPTY_BYTES);
    this.raw(CODECS);
    const lengthAt = this.at;
    this.at += 4;
    for (const c of b) {
      // each byte is one latin-1 character, written as UTF-8
      if (c < 0x80) this.out[this.at++] = c;
      else {
        this.out[this.at++] = 0xc0 | (c >> 6);
        this.out[this.at++] = 0x80 | (c & 0x3f);
      }
    }
    this.out.writeUInt32LE(this.at - lengthAt - 4, lengthAt);
    return this.raw(LATIN1);
  }

  finish(): Buffer {
    this.raw(CLOSE);
    return this.out.subarray(0, this.at);
  }
}

/** Encodes a message of a covered form; `null` for the others. */
export function encodeFastMessage(m: Message): Buffer | null {
  switch (m.type) {
    case 'S':
      return m.version === '' && m.oid.length === 8 && m.tid.length === 8 && (m.dataTxn?.length ?? 8) === 8 ? encodeStore(m.oid, m.tid, m.dataTxn) : null;
    case 'C':
      return m.checksum === null ? null : encodeCommit(m.checksum);
    case 'T':
      return encodeTransaction(m);
    case 'B':
      return null;
  }
}

function encodeStore(oid: Uint8Array, tid: Uint8Array, dataTxn: Uint8Array | null): Buffer {
  const b = new Builder(Buffer.allocUnsafe(2 * ONE_CHAR.length + 2 + 3 * bytesRoom(8) + EMPTY_TEXT.length + CLOSE.length));
  b.mark('S').byte(MARK).bytes(oid).bytes(tid).raw(EMPTY_TEXT);
  return (dataTxn ? b.bytes(dataTxn) : b.byte(NONE)).finish();
}

function encodeCommit(checksum: Uint8Array): Buffer {
  return new Builder(Buffer.allocUnsafe(ONE_CHAR.length + 2 + bytesRoom(checksum.length) + CLOSE.length)).mark('C').byte(MARK).bytes(checksum).finish();
}

function encodeTransaction(m: TransactionMessage): Buffer | null {
  if (m.extension.entries.length !== 0 || m.status.length !== 1 || m.status.charCodeAt(0) >= 0x80) return null;
  const room = 2 * ONE_CHAR.length + 3 + bytesRoom(m.tid.length) + bytesRoom(m.user.length) + bytesRoom(m.description.length) + CLOSE.length;
  const b = new Builder(Buffer.allocUnsafe(room)).mark('T').byte(MARK).bytes(m.tid);
  return b.raw(ONE_CHAR.subarray(1)).byte(m.status.charCodeAt(0)).bytes(m.user).bytes(m.description).byte(EMPTY_DICT).finish();
}

/** Reads a message laid out exactly as the encoders above write it; `null` for anything else. */
export function matchFastMessage(p: Uint8Array): StoreMessage | TransactionMessage | CommitMessage | null {
  const r = new Reader(p);
  if (!r.skip(ONE_CHAR)) return null;
  const type = p[r.at++];
  if (p[r.at++] !== MARK) return null;
  switch (type) {
    case 0x53: {
      // S
      const oid = r.bytes(8);
      const tid = oid && r.bytes(8);
      if (!tid || !r.skip(EMPTY_TEXT)) return null;
      const dataTxn = p[r.at] === NONE ? (r.at++, null) : r.bytes(8);
      if (dataTxn === undefined || !r.end()) return null;
      return { type: 'S', oid, tid, version: '', dataTxn };
    }
    case 0x43: {
      // C
      const checksum = r.bytes(16);
      return checksum && r.end() ? { type: 'C', checksum } : null;
    }
    case 0x54: {
      // T
      const tid = r.bytes(8);
      if (!tid || !r.skip(ONE_CHAR.subarray(1)) || r.at >= p.length || p[r.at]! >= 0x80) return null;
      const status = String.fromCharCode(p[r.at++]!);
      const user = r.bytes();
      const description = user && r.bytes();
      if (!description || p[r.at++] !== EMPTY_DICT || !r.end()) return null;
      return { type: 'T', tid, status, user, description, extension: new PyDict() };
    }
    default:
      return null;
  }
}

class Reader {
  at = 0;
  constructor(private readonly p: Uint8Array) {}

  /** Steps over `prefix` if it is next. */
  skip(prefix: Buffer): boolean {
    if (this.at + prefix.length > this.p.length) return false;
    for (let i = 0; i < prefix.length; i++) if (this.p[this.at + i] !== prefix[i]) return false;
    this.at += prefix.length;
    return true;
  }

  /** The closing `tt.`, and nothing after it. */
  end(): boolean {
    return this.skip(CLOSE) && this.at === this.p.length;
  }

  /** bytes(b), of exactly `length` bytes when given (then never empty); undefined when it is not next. */
  bytes(length?: number): Buffer | undefined {
    const p = this.p;
    if (length === undefined && this.skip(EMPTY_BYTES)) return Buffer.alloc(0);
    if (!this.skip(CODECS) || this.at + 4 > p.length) return undefined;
    const n = (p[this.at]! | (p[this.at + 1]! << 8) | (p[this.at + 2]! << 16)) + p[this.at + 3]! * 0x1000000; // u32le
    let at = this.at + 4;
    const end = at + n;
    if (n === 0 || end > p.length || (length !== undefined && (n < length || n > 2 * length))) return undefined;
    const value = Buffer.allocUnsafe(n);
    let k = 0;
    while (at < end) {
      const c = p[at++]!;
      if (c < 0x80) value[k++] = c;
      else if ((c === 0xc2 || c === 0xc3) && at < end && (p[at]! & 0xc0) === 0x80) value[k++] = ((c & 0x03) << 6) | (p[at++]! & 0x3f);
      else return undefined;
    }
    if (at !== end || (length !== undefined && k !== length)) return undefined;
    this.at = end;
    if (!this.skip(LATIN1)) return undefined;
    return value.subarray(0, k);
  }
}
