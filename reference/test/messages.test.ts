import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { MessageError, PickleError, ZrsError } from '../errors.ts';
import { decodeMessage, encodeMessage, type Message } from '../messages.ts';
import { PyDict } from '../pickle/values.ts';
import { StreamDecoder, StreamEncoder, StreamError } from '../stream.ts';
import { Z64 } from '../timestamp.ts';

const unhex = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex');
const bytes8 = fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => Buffer.from(b));
const extension = fc
  .uniqueArray(fc.tuple(fc.string({ maxLength: 6 }), fc.oneof(fc.string(), fc.integer().map(BigInt), fc.constant(null))), {
    maxLength: 4,
    selector: ([k]) => k,
  })
  .map((e) => new PyDict(e));

const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    type: fc.constant('T' as const),
    tid: bytes8,
    status: fc.constantFrom(' ', 'p'),
    user: fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b)),
    description: fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b)),
    extension,
  }),
  fc.record({ type: fc.constant('S' as const), oid: bytes8, tid: bytes8, version: fc.constant(''), dataTxn: fc.option(bytes8) }),
  fc.record({
    type: fc.constant('B' as const),
    oid: bytes8,
    tid: bytes8,
    version: fc.constant(''),
    dataTxn: fc.option(bytes8),
    blocks: fc.nat({ max: 2 ** 32 - 1 }),
  }),
  fc.record({ type: fc.constant('C' as const), checksum: fc.option(fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b))) }),
);

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof ZrsError ? e.code : 'not a ZrsError';
  }
  return undefined;
}

describe('control messages', () => {
  test.prop([message])('round-trip through the Python 3 encoding', (m) => {
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
  });

  it('the legacy commit without checksum is ("C", ())', () => {
    expect(encodeMessage({ type: 'C', checksum: null }).toString('hex')).toBe('2858010000004329742e');
    expect(decodeMessage(unhex('2858010000004329742e'))).toEqual({ type: 'C', checksum: null });
  });

  it('reads the Python 2 encodings (8-bit strings, long block counts)', () => {
    const t = decodeMessage(unhex('28550154285508036c6b90f777777855012055005519696e697469616c206461746162617365206372656174696f6e7d74742e'));
    expect(t).toEqual({
      type: 'T',
      tid: unhex('036c6b90f7777778'),
      status: ' ',
      user: Buffer.alloc(0),
      description: Buffer.from('initial database creation'),
      extension: new PyDict(),
    });
    const b = decodeMessage(unhex('2855014228550800000000000000015508036c6b90f777777855004e4c334c0a74742e'));
    expect(b).toEqual({ type: 'B', oid: unhex('0000000000000001'), tid: unhex('036c6b90f7777778'), version: '', dataTxn: null, blocks: 3 });
  });

  it('refuses a class reference outside the extension dict, naming its offset', () => {
    // ('S', (os.system('x'), ...)) — never executed, refused
    const bad = Buffer.from("(X\x01\x00\x00\x00S(cos\nsystem\n(X\x01\x00\x00\x00xtRNX\x00\x00\x00\x00Ntt.", 'latin1');
    let error: unknown;
    try {
      decodeMessage(bad);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PickleError);
    expect((error as PickleError).code).toBe('ERR_PICKLE_GLOBAL');
    expect((error as PickleError).offset).toBeGreaterThan(0);
  });

  it('keeps a class reference inside the extension dict as an inert value and re-encodes it', () => {
    const ext = '}X\x01\x00\x00\x00kcdatetime\ndate\n(c_codecs\nencode\n(X\x05\x00\x00\x00\x07\xc3\xa4\x01\x02X\x06\x00\x00\x00latin1tRtRs';
    const t = Buffer.from(
      `(X\x01\x00\x00\x00T(c_codecs\nencode\n(X\x08\x00\x00\x00ABCDEFGHX\x06\x00\x00\x00latin1tRX\x01\x00\x00\x00 c__builtin__\nbytes\n)Rc__builtin__\nbytes\n)R${ext}tt.`,
      'latin1',
    );
    const m = decodeMessage(t);
    expect(m.type).toBe('T');
    expect(encodeMessage(m).equals(t)).toBe(true);
  });

  it.each([
    ['not a tuple', '4e2e', 'ERR_MESSAGE_SHAPE'],
    ['unknown type', '2858010000005a29742e', 'ERR_MESSAGE_TYPE'],
    ['wrong arity', '285801000000532974 2e', 'ERR_MESSAGE_SHAPE'],
    ['short tid in C', '2858010000004328635f5f6275696c74696e5f5f0a62797465730a29527474 2e', 'ERR_MESSAGE_SHAPE'],
    ['not a pickle', '00', 'ERR_PICKLE_OPCODE'],
  ])('rejects %s', (_name, input, code) => {
    expect(codeOf(() => decodeMessage(unhex(input)))).toBe(code);
  });

  test.prop([fc.uint8Array({ maxLength: 120 })], { numRuns: 2000 })('random bytes give a message or a typed error', (b) => {
    const code = codeOf(() => decodeMessage(b));
    expect(code).not.toBe('not a ZrsError');
  });
});

describe('the replication stream grammar', () => {
  const t: Message = { type: 'T', tid: unhex('040d453df6bc0811'), status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: new PyDict() };
  const s: Message = { type: 'S', oid: Buffer.alloc(8), tid: unhex('040d453df6bc0811'), version: '', dataTxn: null };

  it('a commit carries the digest of everything sent since the handshake', () => {
    const enc = new StreamEncoder(Z64);
    const frames = enc.transaction(t, [{ message: s, data: Buffer.from('data') }]);
    const dec = new StreamDecoder(Z64);
    const events = frames.filter((_, i) => i % 2 === 1).map((p) => dec.push(p));
    expect(events.map((e) => e?.kind ?? null)).toEqual(['begin', null, 'record', 'commit']);
  });

  it('a wrong digest is refused with ERR_CHECKSUM', () => {
    const dec = new StreamDecoder(Z64);
    dec.push(encodeMessage(t));
    expect(codeOf(() => dec.push(encodeMessage({ type: 'C', checksum: Buffer.alloc(16) })))).toBe('ERR_CHECKSUM');
  });

  it('the legacy commit is refused while checksums are checked, accepted otherwise', () => {
    const strict = new StreamDecoder(Z64);
    strict.push(encodeMessage(t));
    expect(codeOf(() => strict.push(encodeMessage({ type: 'C', checksum: null })))).toBe('ERR_CHECKSUM');
    const lax = new StreamDecoder(Z64, { checkChecksums: false });
    lax.push(encodeMessage(t));
    expect(lax.push(encodeMessage({ type: 'C', checksum: null }))?.kind).toBe('commit');
  });

  it.each([
    ['T inside T', [t, t], 'ERR_STREAM_NESTED'],
    ['S without T', [s], 'ERR_STREAM_NO_TXN'],
    ['C without T', [{ type: 'C', checksum: Buffer.alloc(16) } as Message], 'ERR_STREAM_NO_TXN'],
  ])('%s is a StreamError', (_name, messages, code) => {
    const dec = new StreamDecoder(Z64);
    let error: unknown;
    try {
      for (const m of messages) dec.push(encodeMessage(m));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(StreamError);
    expect((error as StreamError).code).toBe(code);
  });

  it('a data frame and blob chunks are taken by position, never parsed', () => {
    const enc = new StreamEncoder(Z64);
    const b: Message = { type: 'B', oid: Buffer.alloc(8), tid: t.tid, version: '', dataTxn: null, blocks: 2 };
    const frames = enc.transaction(t, [{ message: b, data: Buffer.from('not a pickle'), chunks: [Buffer.from('('), Buffer.alloc(0)] }]);
    const dec = new StreamDecoder(Z64);
    const kinds = frames.filter((_, i) => i % 2 === 1).map((p) => dec.push(p)?.kind ?? null);
    expect(kinds).toEqual(['begin', null, 'record', 'chunk', 'chunk', 'commit']);
  });
});

it('MessageError is a ZrsError', () => {
  expect(new MessageError('X', 'y')).toBeInstanceOf(ZrsError);
});
