import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { encodeFastMessage, matchFastMessage } from '../fast-messages.ts';
import { decodeMessage, decodePickledMessage, encodeMessage, encodePickledMessage, type Message } from '../messages.ts';
import { PyDict } from '../pickle/values.ts';

const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b));
const bytes8 = bytes(8, 8);
/** Messages of the forms the fast path covers, and of neighbouring forms it leaves alone. */
const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ type: fc.constant('S' as const), oid: bytes8, tid: bytes8, version: fc.constantFrom('', 'v'), dataTxn: fc.option(bytes8) }),
  fc.record({ type: fc.constant('C' as const), checksum: fc.option(bytes(16, 16)) }),
  fc.record({
    type: fc.constant('T' as const),
    tid: bytes8,
    status: fc.constantFrom(' ', 'p', 'x', '\u00e9'),
    user: bytes(0, 40),
    description: bytes(0, 40),
    extension: fc.constantFrom(new PyDict(), new PyDict([['k', 'v']])),
  }),
);
const covered = (m: Message) => (m.type === 'S' ? m.version === '' : m.type === 'C' ? m.checksum !== null : m.type === 'T' && m.extension.entries.length === 0 && m.status < '\u0080');

/** What the general decoder makes of `p`, or the error code it refuses it with. */
function general(p: Uint8Array): unknown {
  try {
    return decodePickledMessage(p);
  } catch (e) {
    return (e as { code?: string }).code ?? 'thrown';
  }
}

describe('the fast path of the common messages', () => {
  test.prop([message])('writes the bytes of the general encoder, and reads them back as the general decoder does', (m) => {
    const fast = encodeFastMessage(m);
    expect(fast !== null).toBe(covered(m));
    const bytes = encodeMessage(m);
    expect(bytes.toString('hex')).toBe(encodePickledMessage(m).toString('hex'));
    const read = matchFastMessage(bytes);
    expect(read !== null).toBe(covered(m));
    if (read) expect(read).toEqual(decodePickledMessage(bytes));
    expect(decodeMessage(bytes)).toEqual(m);
  });

  test.prop([message, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'cut', 'insert')], { numRuns: 500 })(
    'on a damaged message it answers as the general decoder, or leaves it to it',
    (m, where, byte, how) => {
      const p = encodeMessage(m);
      const at = where % p.length;
      const damaged =
        how === 'flip' ? Buffer.from(p.map((c, i) => (i === at ? byte : c))) : how === 'cut' ? p.subarray(0, at) : Buffer.concat([p.subarray(0, at), Buffer.from([byte]), p.subarray(at)]);
      const fast = matchFastMessage(damaged);
      if (fast) expect(fast).toEqual(general(damaged));
    },
  );

  it('refuses a damaged length of 2^31 and more without trying to allocate it', () => {
    const m = encodeMessage({ type: 'C', checksum: Buffer.alloc(16, 0x80) });
    const at = m.indexOf('c_codecs\nencode\n(X') + 17; // the text's u32le length
    for (const top of [0x80, 0xff]) {
      const damaged = Buffer.from(m);
      damaged[at + 3] = top;
      expect(matchFastMessage(damaged)).toBeNull();
      expect(() => decodeMessage(damaged)).toThrow(/./);
    }
  });

  const oddId = fc.oneof(bytes(0, 20), fc.uint8Array({ min: 0x80, max: 0xff, minLength: 24, maxLength: 40 }).map((b) => Buffer.from(b)));
  test.prop([oddId, oddId, fc.option(oddId)])('writes an S whose ids are not 8 bytes (as the harness does on purpose) as the general encoder does', (oid, tid, dataTxn) => {
    const m: Message = { type: 'S', oid, tid, version: '', dataTxn };
    expect(encodeMessage(m).toString('hex')).toBe(encodePickledMessage(m).toString('hex'));
  });

  it("leaves Python 2's encoding to the general decoder", () => {
    const oid = Buffer.from('0000000000000001', 'hex');
    const python2 = Buffer.from(`(U\x01S(U\x08${oid.toString('latin1')}U\x08${oid.toString('latin1')}U\x00Ntt.`, 'latin1');
    expect(matchFastMessage(python2)).toBeNull();
    expect(decodeMessage(python2)).toEqual({ type: 'S', oid, tid: oid, version: '', dataTxn: null });
  });
});
