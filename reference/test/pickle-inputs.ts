/**
 * Inputs for fuzzing the pickle decoder, shared by `pickle-fuzz.test.ts` and `npm run fuzz`
 * (reference/bench/fuzz-pickle.ts): a seeded random source, a corpus of real pickles, mutations
 * of them, random bytes, and structured hostile pickles sized around given limits.
 */
import { encodeMessage, encodePickledMessage, type Message } from '../messages.ts';
import { dumpExtension, dumpPickle } from '../pickle/encoder.ts';
import { maxIntDigits, type PickleLimits } from '../pickle/limits.ts';
import { Op } from '../pickle/opcodes.ts';
import { PyBuild, PyDict, PyGlobal, PyNewObj, PyReduce, PyTuple } from '../pickle/values.ts';
import { Prng } from '../../fixtures/lib/prng.ts';
import { interopFile, interopJson, type Manifest, WHOLE_FILES } from './interop.ts';

/** An integer from 0 to `n` − 1. */
export type Rand = (n: number) => number;

/** A seeded random source (mulberry32): the same seed gives the same inputs. */
export function seeded(seed: number): Rand {
  const p = new Prng(seed);
  return (n) => Math.floor((p.u32() / 2 ** 32) * n);
}

const L = (s: string) => Buffer.from(s, 'latin1');
const pick = <T>(rand: Rand, items: readonly T[]): T => items[rand(items.length)]!;
const repeat = (s: string | Buffer, n: number) => Buffer.alloc(Math.max(0, n) * s.length, typeof s === 'string' ? L(s) : s);

const TRANSCRIPTS = ['small-from-z64', 'undo-from-z64', 'packed-from-z64', 'blobs-from-z64', 'small-after-txn9'];

/** Values of many kinds, for the encoder's part of the corpus. */
const SAMPLE = new PyDict([
  ['text', 'é€𝄞'],
  ['big', 1n << 70n],
  ['negative', -(1n << 40n)],
  ['int', 70000n],
  ['float', 1.5],
  ['bytes', Buffer.from([0, 0x80, 0xff])],
  ['empty', Buffer.alloc(0)],
  ['list', [1n, 2n, [3n, null, true]]],
  ['tuple', new PyTuple(['a', false])],
  ['nested', new PyDict([[1n, new PyDict([['k', 'v']])]])],
  ['datetime', new PyReduce(new PyGlobal('datetime', 'datetime'), new PyTuple([Buffer.from([7, 0xe4, 1, 2])]))],
  ['built', new PyBuild(new PyNewObj(new PyGlobal('app', 'Obj'), []), new PyDict([['x', 1n]]))],
]);

/**
 * Real pickles: every frame of the interop transcripts up to 4 KB (control messages and record
 * data written by real zc.zrs and ZODB), every stored extension of the interop files, and what
 * the reference's encoders write.
 */
export function seedCorpus(): Buffer[] {
  const seen = new Set<string>();
  const out: Buffer[] = [];
  const add = (b: Buffer) => {
    const key = b.toString('latin1');
    if (b.length > 0 && b.length <= 4096 && !seen.has(key)) {
      seen.add(key);
      out.push(b);
    }
  };
  for (const name of TRANSCRIPTS) {
    const stream = interopFile(`transcripts/${name}.zrs`);
    for (let at = 0; at + 4 <= stream.length; ) {
      const n = stream.readUInt32BE(at);
      add(stream.subarray(at + 4, at + 4 + n));
      at += 4 + n;
    }
  }
  for (const [, manifest] of WHOLE_FILES) {
    for (const t of interopJson<Manifest>(manifest).transaction_log) add(Buffer.from(t.extension_bytes_hex, 'hex'));
  }
  const id = Buffer.from('0123456789abcdef', 'hex');
  const messages: Message[] = [
    { type: 'T', tid: id, status: ' ', user: L('/ alice'), description: L('café'), extension: SAMPLE },
    { type: 'T', tid: id, status: 'p', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: new PyDict() },
    { type: 'S', oid: id, tid: id, version: '', dataTxn: null },
    { type: 'B', oid: id, tid: id, version: '', dataTxn: id, blocks: 3 },
    { type: 'C', checksum: Buffer.alloc(16, 0xab) },
    { type: 'C', checksum: null },
  ];
  for (const m of messages) {
    add(encodeMessage(m));
    add(encodePickledMessage(m));
  }
  add(dumpExtension(SAMPLE));
  add(dumpPickle(SAMPLE));
  return out;
}

/** Short opcode sequences that mutations insert: containers, memo, stack and integer opcodes. */
const SNIPPETS = [
  '(', ')', ']', '}', 'N', 'a', 'e', 't', 's', 'u', 'l', 'd', '0', '1', '2', 'R', 'b', 'o', '\x81', '\x85', '\x86', '\x87',
  'h\x00', 'q\x00', 'h\x01', 'q\x01', 'j\x00\x00\x00\x00', '\x94', 'p0\n', 'g0\n', 'K\xff', 'J\xff\xff\xff\x7f',
  '\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x80', '\x8b\x00\x01\x00\x00', 'I123\n', 'L-99L\n', 'F1e308\n', 'X\xff\xff\xff\xff',
  'cos\nsystem\n', '\x80\x05', '\x95\x00\x00\x00\x00\x00\x00\x00\x00', 'V\\u0041\n', 'V\\U0011ffff\n', 'V\\ud800\n',
  "S'\\x41'\n", 'P1\n', 'Q', '.',
].map(L);

/** A copy of `base` changed in one to four places: bytes set, inserted, deleted, repeated or spliced from `corpus`. */
export function mutate(base: Buffer, rand: Rand, corpus: Buffer[]): Buffer {
  let b = Buffer.from(base);
  for (let k = 1 + rand(4); k > 0; k--) {
    const at = rand(b.length + 1);
    const span = 1 + rand(Math.min(64, b.length + 1));
    switch (rand(8)) {
      case 0:
        if (at < b.length) b[at] = rand(256);
        break;
      case 1:
        if (at < b.length) b[at]! ^= 1 << rand(8);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, at), Buffer.from(Array.from({ length: 1 + rand(8) }, () => rand(256))), b.subarray(at)]);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, at), pick(rand, SNIPPETS), b.subarray(at)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + span)]);
        break;
      case 5: {
        const from = rand(b.length + 1);
        const piece = b.subarray(from, from + span);
        b = Buffer.concat([b.subarray(0, at), repeat(piece, 1 + rand(4)), b.subarray(at)]);
        break;
      }
      case 6: {
        const other = pick(rand, corpus);
        const from = rand(other.length);
        b = Buffer.concat([b.subarray(0, at), other.subarray(from, from + span), b.subarray(at)]);
        break;
      }
      default:
        b = b.subarray(0, at);
    }
  }
  return b;
}

const OPCODES = Object.values(Op);

/** Up to `max` random bytes: half of the time any byte, else mostly opcodes and small arguments. */
export function randomBytes(rand: Rand, max: number): Buffer {
  const n = rand(max + 1);
  const any = rand(2) === 0;
  return Buffer.from(Array.from({ length: n }, () => (any || rand(4) === 0 ? rand(256) : pick(rand, OPCODES))));
}

/** A size near `limit`: just under, at, or just over it, or anywhere up to twice it. */
function near(rand: Rand, limit: number): number {
  const choice = rand(4);
  return choice === 3 ? rand(2 * limit + 2) : limit - 1 + choice;
}

/** A one-byte memo key for `BINPUT`/`BINGET`, or a four-byte one (`LONG_BINPUT`/`LONG_BINGET`). */
const put = (k: number) => (k < 256 ? L(`q${String.fromCharCode(k)}`) : Buffer.concat([L('r'), u32(k)]));
const get = (k: number) => (k < 256 ? L(`h${String.fromCharCode(k)}`) : Buffer.concat([L('j'), u32(k)]));
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** Values nested `d` deep in one of several ways. */
function chain(rand: Rand, d: number): Buffer {
  switch (rand(6)) {
    case 0:
      return Buffer.concat([repeat(']', d), repeat('a', d - 1), L('.')]);
    case 1:
      return Buffer.concat([L('N'), repeat('\x85', d), L('.')]);
    case 2:
      return Buffer.concat([repeat('(', d), L('N'), repeat('t', d), L('.')]);
    case 3:
      return Buffer.concat([L('}'), repeat('K\x00}', d - 1), repeat('s', d - 1), L('.')]);
    case 4:
      return Buffer.concat([repeat('cm\nf\n', d), L('N'), repeat('R', d), L('.')]);
    default:
      return Buffer.concat([L('N'), repeat('Nb', d), L('.')]);
  }
}

/** `n` values in a list, made by one kind of opcode, some memoised or duplicated. */
function many(rand: Rand, n: number): Buffer {
  const item = pick(rand, ['N', ']', '}', ')', 'K\x01', 'X\x00\x00\x00\x00', 'C\x00', 'N\x85', 'N\x94', ']\x94', 'N2']);
  return Buffer.concat([L('\x80\x04]('), repeat(item, n), L('e.')]);
}

/** A memo tower: each level holds the level below twice (fetched from the memo, or duplicated). */
function tower(rand: Rand, levels: number): Buffer {
  const parts: Buffer[] = [L('\x80\x02')];
  switch (rand(4)) {
    case 0:
      parts.push(L(']'), put(0));
      for (let k = 1; k <= levels; k++) parts.push(L(']('), get(k - 1), get(k - 1), L('e'), put(k), L('0'));
      parts.push(get(levels));
      break;
    case 1:
      parts.push(L('}'), put(0));
      for (let k = 1; k <= levels; k++) parts.push(L('}(K\x00'), get(k - 1), L('K\x01'), get(k - 1), L('u'), put(k), L('0'));
      parts.push(get(levels));
      break;
    case 2:
      parts.push(L('N'), repeat('2\x86', levels));
      break;
    default:
      parts.push(L('X\x08\x00\x00\x00abcdefgh'), put(0));
      for (let k = 1; k <= levels; k++) parts.push(L('('), get(k - 1), get(k - 1), L('t'), put(k), L('0'));
      parts.push(get(levels));
  }
  parts.push(L('.'));
  return Buffer.concat(parts);
}

/** An integer of about `n` bytes or digits, in binary (`LONG1`, `LONG4`) or decimal (`INT`, `LONG`) form. */
function integer(rand: Rand, limits: PickleLimits): Buffer {
  const fill = rand(2) ? 0xff : 0x7f;
  switch (rand(4)) {
    case 0: {
      const n = Math.min(255, near(rand, Math.min(255, limits.maxIntBytes)));
      return Buffer.concat([L('\x8a'), Buffer.from([n]), Buffer.alloc(n, fill), L('.')]);
    }
    case 1: {
      const n = near(rand, limits.maxIntBytes);
      return Buffer.concat([L('\x8b'), u32(n), Buffer.alloc(n, fill), L('.')]);
    }
    case 2:
      return L(`I${rand(2) ? '-' : ''}${'9'.repeat(near(rand, maxIntDigits(limits.maxIntBytes)))}\n.`);
    default:
      return L(`L${'1'.repeat(near(rand, maxIntDigits(limits.maxIntBytes)))}L\n.`);
  }
}

/** A text of `n` characters fetched from the memo `refs` times. */
function sharedText(rand: Rand, limits: PickleLimits): Buffer {
  const n = 1 + rand(1000);
  const refs = Math.ceil(near(rand, limits.maxExpansion) / (n + 1));
  return Buffer.concat([L('\x80\x03]('), L('X'), u32(n), Buffer.alloc(n, 0x61), put(0), repeat(get(0), refs), L('e.')]);
}

/** Lists and dicts changed after a memo reference to them: a cycle, or not. */
const CHANGED_AFTER_REFERENCE = [']q\x00h\x00a.', ']2a.', '}q\x00K\x01h\x00s.', ']q\x00]q\x01h\x00a0h\x01a.', ']q\x00h\x000Na.', '}2K\x01K\x02s0.'].map(L);

/** Lines of text that are long, or full of escapes. */
function longLine(rand: Rand, n: number): Buffer {
  return pick(rand, [
    () => L(`F${'1'.repeat(n)}x\n.`),
    () => L(`S'${'\\1'.repeat(n)}'\n.`),
    () => L(`V${'\\u0041'.repeat(n)}\n.`),
    () => L(`N\x94p${'9'.repeat(n)}\ng${'9'.repeat(n)}\n.`),
    () => L(`I${'0'.repeat(n)}1\n.`),
    () => L(`c${'m'.repeat(n)}\n${'n'.repeat(n)}\n.`),
  ])();
}

/** A structured hostile pickle sized around `limits`: deep, wide, memo-heavy, with big integers, cycles or long lines. */
export function hostile(rand: Rand, limits: PickleLimits): Buffer {
  switch (rand(8)) {
    case 0:
      return chain(rand, Math.max(1, near(rand, limits.maxDepth)));
    case 1:
      return Buffer.concat([repeat('(', near(rand, limits.maxDepth)), L('N.')]);
    case 2:
      return many(rand, near(rand, limits.maxItems));
    case 3:
      return tower(rand, rand(40));
    case 4:
      return integer(rand, limits);
    case 5:
      return sharedText(rand, limits);
    case 6:
      return pick(rand, CHANGED_AFTER_REFERENCE);
    default:
      return longLine(rand, rand(20_000));
  }
}
