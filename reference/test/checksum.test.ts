import { createHash } from 'node:crypto';
import { fc, test } from '@fast-check/vitest';
import { expect } from 'vitest';
import { RunningChecksum } from '../checksum.ts';

// sizes around the gathering threshold (4096) and its buffer (16384)
const payload = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc.integer({ min: 4000, max: 4200 }).map((n) => new Uint8Array(n).fill(n & 0xff)),
  fc.integer({ min: 16300, max: 16500 }).map((n) => new Uint8Array(n).fill(n & 0x7f)),
);

test.prop([fc.uint8Array({ minLength: 8, maxLength: 8 }), fc.array(fc.tuple(payload, fc.boolean()), { maxLength: 30 })])(
  'the running checksum is the MD5 of the start tid and every payload so far, whatever their sizes',
  (start, steps) => {
    const sum = new RunningChecksum(start);
    const all = createHash('md5').update(start);
    for (const [p, digestNow] of steps) {
      sum.update(p);
      all.update(p);
      if (digestNow) expect(sum.digest().toString('hex')).toBe(all.copy().digest('hex'));
    }
    expect(sum.digest().toString('hex')).toBe(all.copy().digest('hex'));
  },
);
