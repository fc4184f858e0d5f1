import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { decodeMessage, decodePickledMessage } from '../messages.ts';
import { dumpPickle } from '../pickle/encoder.ts';
import { PyTuple } from '../pickle/values.ts';
import { encodeStoreMessage, matchStoreMessage } from '../store-message.ts';

const bytes8 = fc.uint8Array({ minLength: 8, maxLength: 8 }).map((b) => Buffer.from(b));
/** The S message as the general pickle encoder writes it. */
const generic = (oid: Buffer, tid: Buffer, dataTxn: Buffer | null) => dumpPickle(new PyTuple(['S', new PyTuple([oid, tid, '', dataTxn])]));
/** What the general decoder makes of `p`, or the error code it refuses it with. */
function general(p: Uint8Array): unknown {
  try {
    return decodePickledMessage(p);
  } catch (e) {
    return (e as { code?: string }).code ?? 'thrown';
  }
}

describe('the S message fast path', () => {
  test.prop([bytes8, bytes8, fc.option(bytes8)])('writes the bytes of the general encoder and reads them back', (oid, tid, dataTxn) => {
    const fast = encodeStoreMessage(oid, tid, dataTxn);
    expect(fast.toString('hex')).toBe(generic(oid, tid, dataTxn).toString('hex'));
    expect(matchStoreMessage(fast)).toEqual({ type: 'S', oid, tid, version: '', dataTxn });
  });

  test.prop([bytes8, bytes8, fc.option(bytes8), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'cut', 'insert')])(
    'on a damaged S message it answers as the general decoder, or leaves it to it',
    (oid, tid, dataTxn, where, byte, how) => {
      const p = Buffer.from(encodeStoreMessage(oid, tid, dataTxn));
      const at = where % p.length;
      const damaged =
        how === 'flip' ? Buffer.from(p.map((c, i) => (i === at ? byte : c))) : how === 'cut' ? p.subarray(0, at) : Buffer.concat([p.subarray(0, at), Buffer.from([byte]), p.subarray(at)]);
      const fast = matchStoreMessage(damaged);
      if (fast) expect(fast).toEqual(general(damaged));
      expect(decodeMessage.bind(null, damaged)).not.toThrow(TypeError);
    },
  );

  it('leaves other encodings of S to the general decoder', () => {
    const oid = Buffer.from('0000000000000001', 'hex');
    // a version, and Python 2's short strings: valid S messages the fast path does not know
    const withVersion = dumpPickle(new PyTuple(['S', new PyTuple([oid, oid, 'v', null])]));
    const python2 = Buffer.from(`(U\x01S(U\x08${oid.toString('latin1')}U\x08${oid.toString('latin1')}U\x00Ntt.`, 'latin1');
    for (const p of [withVersion, python2]) {
      expect(matchStoreMessage(p)).toBeNull();
      expect(decodeMessage(p)).toMatchObject({ type: 'S', oid, tid: oid });
    }
  });
});
