import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { FramingError } from '../errors.ts';
import { encodeFrame, FrameDecoder, frameHeader, FrameTooLargeError, PRIMARY_RECEIVE_LIMIT } from '../framing.ts';

/** Feeds `bytes` to a fresh decoder in pieces cut at `cuts`, returning the frames. */
function decodeSplit(bytes: Buffer, cuts: number[], limit?: number): Buffer[] {
  const d = new FrameDecoder(limit);
  const points = [...new Set(cuts)].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...points, bytes.length]) {
    out.push(...d.push(bytes.subarray(from, c)));
    from = c;
  }
  expect(d.idle).toBe(true);
  return out;
}

const payloads = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 12 });

describe('framing', () => {
  it('[WIRE-FRAME-1] a frame is a 4-byte big-endian length then the payload', () => {
    expect(encodeFrame(Buffer.from('zrs2.0')).toString('hex')).toBe('000000067a7273322e30');
    expect(frameHeader(0x01020304).toString('hex')).toBe('01020304');
  });

  it('[WIRE-FRAME-2] delivers empty frames (keep-alives, no-data frames)', () => {
    const frames = new FrameDecoder().push(Buffer.from('00000000000000000000000161', 'hex'));
    expect(frames.map((f) => f.toString('hex'))).toEqual(['', '', '61']);
  });

  test.prop([payloads, fc.array(fc.nat(4000), { maxLength: 20 })])('[WIRE-FRAME-3] any split of a frame stream decodes the same', (ps, cuts) => {
    const bytes = Buffer.concat(ps.map((p) => encodeFrame(p)));
    const frames = decodeSplit(bytes, cuts);
    expect(frames.map((f) => Buffer.from(f).toString('hex'))).toEqual(ps.map((p) => Buffer.from(p).toString('hex')));
  });

  it('decodes the same when split at every single point, and byte by byte', () => {
    const ps = [Buffer.from('zrs2.1'), Buffer.alloc(8), Buffer.alloc(0), Buffer.from('hello world')];
    const bytes = Buffer.concat(ps.map((p) => encodeFrame(p)));
    for (let cut = 0; cut <= bytes.length; cut++) {
      expect(Buffer.concat(decodeSplit(bytes, [cut])).equals(Buffer.concat(ps))).toBe(true);
    }
    const d = new FrameDecoder();
    const out = [...bytes].flatMap((b) => d.push(Buffer.of(b)));
    expect(out.map((f) => f.toString())).toEqual(ps.map((p) => p.toString()));
  });

  it('[WIRE-FRAME-5] checks the receive limit as soon as the header is complete, before any payload', () => {
    const d = new FrameDecoder(PRIMARY_RECEIVE_LIMIT);
    expect(d.push(frameHeader(8).subarray(0, 3))).toEqual([]);
    let error: unknown;
    try {
      d.push(Buffer.from([9]));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FramingError);
    expect((error as FramingError).code).toBe('ERR_FRAME_TOO_LARGE');
    expect(() => d.push(Buffer.alloc(1))).toThrow(FramingError);
  });

  it('[WIRE-FRAME-5] frames before an oversized header in the same chunk are not lost', () => {
    const d = new FrameDecoder(PRIMARY_RECEIVE_LIMIT);
    let error: unknown;
    try {
      d.push(Buffer.concat([encodeFrame(Buffer.from('zrs2.0')), encodeFrame(Buffer.alloc(8)), frameHeader(15)]));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FrameTooLargeError);
    expect((error as FrameTooLargeError).completed.map((f) => f.length)).toEqual([6, 8]);
    expect((error as FrameTooLargeError).length).toBe(15);
  });

  test.prop([fc.integer({ min: 0, max: 8 })])('a primary accepts frames of up to 8 bytes', (n) => {
    expect(new FrameDecoder(PRIMARY_RECEIVE_LIMIT).push(encodeFrame(Buffer.alloc(n)))).toHaveLength(1);
  });

  test.prop([fc.array(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(400))])(
    '[WIRE-FRAME-8] [WIRE-FRAME-9] a limit by state is asked at each header, once every earlier frame has been handled',
    (lengths, cuts) => {
      // even frames are "control messages" of at most 20 bytes, odd ones "data" of at most 40
      const bytes = Buffer.concat(lengths.map((n, i) => encodeFrame(Buffer.alloc(n, i))));
      let handled = 0;
      const bound = () => (handled % 2 === 0 ? { max: 20, code: 'ERR_MESSAGE_TOO_LARGE', requirement: 'WIRE-FRAME-8', what: 'control message' } : { max: 40, code: 'ERR_RECORD_TOO_LARGE', requirement: 'WIRE-FRAME-9', what: 'data' });
      const d = new FrameDecoder(bound);
      const points = [...new Set(cuts)].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b);
      const refused = lengths.findIndex((n, i) => i % 2 === 0 && n > 20);
      let error: unknown = null;
      let from = 0;
      try {
        for (const c of [...points, bytes.length]) {
          d.feed(bytes.subarray(from, c), (f) => {
            expect(f.equals(Buffer.alloc(lengths[handled]!, handled))).toBe(true);
            handled++;
          });
          from = c;
        }
      } catch (e) {
        error = e;
      }
      if (refused < 0) {
        expect(error).toBeNull();
        expect(handled).toBe(lengths.length);
      } else {
        expect(handled).toBe(refused);
        expect(error).toMatchObject({ code: 'ERR_MESSAGE_TOO_LARGE', requirement: 'WIRE-FRAME-8', length: lengths[refused], limit: 20 });
        expect((error as Error).message).toBe(`control message of ${lengths[refused]} bytes exceeds the receive limit of 20`);
      }
    },
  );

  it('refuses to encode a length a header cannot hold', () => {
    expect(() => frameHeader(2 ** 32)).toThrow(FramingError);
    expect(() => frameHeader(-1)).toThrow(FramingError);
  });
});
