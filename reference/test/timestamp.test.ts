import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import {
  compareTids,
  laterThan,
  tidFromParts,
  tidFromString,
  tidFromUnixMillis,
  tidToParts,
  tidToString,
  tidToUnixSeconds,
  Z64,
} from '../timestamp.ts';
import { INTEROP, interopJson, type Manifest } from './interop.ts';

function manifests(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) return manifests(p);
    return name.endsWith('.fs.json') ? [p] : [];
  });
}

const tid = (h: string) => Buffer.from(h, 'hex');

describe('TimeStamp', () => {
  it('known values', () => {
    expect(tidToString(Z64)).toBe('1900-01-01 00:00:00.000000');
    expect(tidToString(tid('036c6b90f3333333'))).toBe('2007-03-21 20:32:57.000000');
    expect(tidToString(tid('036c6b9100000000'))).toBe('2007-03-21 20:33:00.000000');
    expect(tidToString(tid('03ac3a4816c925bb'))).toBe('2015-01-11 19:20:05.340406');
    expect(tidFromString('2007-03-21 20:33:00').toString('hex')).toBe('036c6b9100000000');
    expect(tidToUnixSeconds(Z64)).toBe(-2208988800);
    expect(tidToUnixSeconds(tid('03ac3a493b577f88')) - tidToUnixSeconds(tid('03ac3a4816c925bb'))).toBeCloseTo(68.5678, 4);
  });

  it('rounds the seconds half to even on the exact value, as Python prints them', () => {
    // low word 3 * 2^23: exactly 0.3515625 seconds.
    const t = tidFromParts({ year: 2020, month: 1, day: 1, hour: 0, minute: 0, second: 0 });
    t.writeUInt32BE(3 * 2 ** 23, 4);
    expect(tidToString(t)).toBe('2020-01-01 00:00:00.351562');
    t.writeUInt32BE(2 ** 23, 4);
    expect(tidToString(t)).toBe('2020-01-01 00:00:00.117188');
  });

  it('agrees with real ZODB on every tid of the interop manifests', () => {
    let n = 0;
    for (const file of manifests(INTEROP)) {
      for (const t of interopJson<Manifest>(path.relative(INTEROP, file)).transaction_log) {
        expect(tidToString(tid(t.tid)), `${file} ${t.tid}`).toBe(t.time);
        n++;
      }
    }
    expect(n).toBeGreaterThan(50);
  });

  test.prop([fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })])('parts and tid convert both ways', (v) => {
    const t = Buffer.alloc(8);
    t.writeBigUInt64BE(v);
    const p = tidToParts(t);
    if (p.year > 9999) return;
    expect(tidFromParts(p).equals(t)).toBe(true);
  });

  test.prop([fc.bigInt({ min: 0n, max: (1n << 63n) - 2n }), fc.bigInt({ min: 0n, max: (1n << 63n) - 1n })])(
    'laterThan is greater than the previous tid, and is the tid itself when that is later',
    (a, b) => {
      const x = Buffer.alloc(8);
      const y = Buffer.alloc(8);
      x.writeBigUInt64BE(a);
      y.writeBigUInt64BE(b);
      const l = laterThan(x, y);
      expect(compareTids(l, y)).toBeGreaterThan(0);
      if (compareTids(x, y) > 0) expect(l.equals(x)).toBe(true);
    },
  );

  it('laterThan carries into the next minute, day, month and year', () => {
    const t = tidFromString('2019-12-31 23:59:00');
    t.writeUInt32BE(0xffffffff, 4);
    expect(tidToString(laterThan(Z64, t))).toBe('2020-01-01 00:00:00.000000');
    const feb = tidFromString('2021-02-28 23:59:00');
    feb.writeUInt32BE(0xffffffff, 4);
    expect(tidToString(laterThan(Z64, feb))).toBe('2021-03-01 00:00:00.000000');
    expect(laterThan(Z64, tid('0000000000000001')).toString('hex')).toBe('0000000000000002');
  });

  it('[FS-TID-3] [FS-TID-6] after a tid whose date does not exist, laterThan takes the next minute in the real calendar (persistent 4.6 raises ValueError there)', () => {
    // 30 February 2024 10:00 and 23:59, encoded as the fields say, low word 0xffffffff
    const feb30 = (hour: number, minute: number) => {
      const t = tidFromParts({ year: 2024, month: 2, day: 30, hour, minute, second: 0 });
      t.writeUInt32BE(0xffffffff, 4);
      return t;
    };
    expect(tidToString(laterThan(Z64, feb30(10, 0)))).toBe('2024-03-01 10:01:00.000000');
    expect(tidToString(laterThan(Z64, feb30(23, 59)))).toBe('2024-03-02 00:00:00.000000');
  });

  it('makes tids from clock time', () => {
    expect(tidToString(tidFromUnixMillis(Date.UTC(2026, 10, 26, 7, 57, 57, 500)))).toBe('2026-11-26 07:57:57.500000');
  });
});
