// The pickle decoder's limits (wire-protocol.md §6.7): each default accepted exactly up to its
// bound and refused one step beyond, with its own code; the hostile inputs of issue 14 refused
// quickly; and the code that walks decoded values safe with anything the decoder accepts.
import { writeFileSync } from 'node:fs';
import { fc, test } from '@fast-check/vitest';
import { afterAll, describe, expect, it } from 'vitest';
import { PickleError, ZrsError } from '../errors.ts';
import { fsdump } from '../cli/fsdump.ts';
import { FileStorageReader } from '../filestorage/reader.ts';
import { encodeTxnRecord, MAGIC_FS30 } from '../filestorage/records.ts';
import { transactionFrames } from '../primary/frames.ts';
import { loadPickle, type PickleOptions } from '../pickle/decoder.ts';
import { dumpExtension, dumpPickle } from '../pickle/encoder.ts';
import { pickleToJson, pickleToManifestJson } from '../pickle/json.ts';
import { PICKLE_LIMITS } from '../pickle/limits.ts';
import { type PickleValue, PyDict, PyTuple } from '../pickle/values.ts';
import { StreamEncoder } from '../stream.ts';
import { Z64 } from '../timestamp.ts';
import { workspace } from './helpers.ts';

const L = (s: string) => Buffer.from(s, 'latin1');
const repeat = (s: string, n: number) => Buffer.alloc(n * s.length, L(s));
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** The error `loadPickle` throws, or undefined when it decodes. */
function refusal(bytes: Uint8Array, options?: PickleOptions): PickleError | undefined {
  try {
    loadPickle(bytes, options);
    return undefined;
  } catch (e) {
    if (!(e instanceof PickleError)) throw e;
    return e;
  }
}

/** Asserts that `bytes` is refused with `code`, naming a requirement and an offset. */
function expectRefused(bytes: Uint8Array, code: string, requirement: string, options?: PickleOptions): void {
  const e = refusal(bytes, options);
  expect(e?.code).toBe(code);
  expect(e?.requirement).toBe(requirement);
  expect(e?.message).toMatch(/at offset \d+$/);
}

/** Times `f` in milliseconds. */
function timed(f: () => void): number {
  const start = performance.now();
  f();
  return performance.now() - start;
}

const listOf = (item: string, n: number) => Buffer.concat([L(']('), repeat(item, n), L('e.')]);
const nestedLists = (d: number) => Buffer.concat([repeat(']', d), repeat('a', d - 1), L('.')]);

describe('[WIRE-PICKLE-15] values created', () => {
  it('decodes 1 000 000 values and refuses one more', () => {
    expect(refusal(listOf('N', PICKLE_LIMITS.maxItems - 1))).toBeUndefined();
    expectRefused(listOf('N', PICKLE_LIMITS.maxItems), 'ERR_PICKLE_TOO_MANY_ITEMS', 'WIRE-PICKLE-15');
  });

  it('counts memo entries against the same limit', () => {
    const memoized = (n: number) => Buffer.concat([L('\x80\x04N'), repeat('\x94', n), L('.')]);
    expect(refusal(memoized(1000), { maxItems: 1000 })).toBeUndefined();
    expectRefused(memoized(1001), 'ERR_PICKLE_TOO_MANY_ITEMS', 'WIRE-PICKLE-15', { maxItems: 1000 });
  });

  it('refuses 17 M empty lists (17 MB) in seconds, where a JS Map used to overflow', () => {
    const bytes = listOf(']', 17_000_000);
    expect(timed(() => expectRefused(bytes, 'ERR_PICKLE_TOO_MANY_ITEMS', 'WIRE-PICKLE-15'))).toBeLessThan(5000);
  });
});

describe('[WIRE-PICKLE-16] depth', () => {
  const chains: [string, (d: number) => Buffer][] = [
    ['lists', nestedLists],
    ['tuples', (d) => Buffer.concat([L('N'), repeat('\x85', d), L('.')])],
    ['tuples between MARKs', (d) => Buffer.concat([repeat('(', d), L('N'), repeat('t', d), L('.')])],
    ['dicts', (d) => Buffer.concat([L('}'), repeat('K\x00}', d - 1), repeat('s', d - 1), L('.')])],
    ['reduce calls', (d) => Buffer.concat([repeat('cm\nf\n', d), L('N'), repeat('R', d), L('.')])],
    ['BUILD objects', (d) => Buffer.concat([L('N'), repeat('Nb', d), L('.')])],
  ];

  it.each(chains)('decodes %s nested 1000 deep and refuses 1001', (_name, chain) => {
    expect(refusal(chain(1000))).toBeUndefined();
    expectRefused(chain(1001), 'ERR_PICKLE_TOO_DEEP', 'WIRE-PICKLE-16');
  });

  it('refuses a 1001st open MARK', () => {
    expectRefused(Buffer.concat([repeat('(', 1001), L('N.')]), 'ERR_PICKLE_TOO_DEEP', 'WIRE-PICKLE-16');
  });

  it('refuses 1 M and 5 M nested lists with bounded work', () => {
    expect(timed(() => expectRefused(nestedLists(1_000_000), 'ERR_PICKLE_TOO_DEEP', 'WIRE-PICKLE-16'))).toBeLessThan(5000);
    expect(timed(() => expectRefused(nestedLists(5_000_000), 'ERR_PICKLE_TOO_MANY_ITEMS', 'WIRE-PICKLE-15'))).toBeLessThan(5000);
  });
});

describe('[WIRE-PICKLE-17] integers', () => {
  const long4 = (n: number, fill: number) => Buffer.concat([L('\x8b'), u32(n), Buffer.alloc(n, fill), L('.')]);

  it('decodes binary integers of 4096 bytes and refuses 4097', () => {
    expect(loadPickle(long4(4096, 0xff))).toBe(-1n);
    expect(loadPickle(long4(4096, 0x7f))).toBe(BigInt(`0x${'7f'.repeat(4096)}`));
    expectRefused(long4(4097, 0), 'ERR_PICKLE_INT_TOO_LARGE', 'WIRE-PICKLE-17');
    const long1 = (n: number) => Buffer.concat([L('\x8a'), Buffer.from([n]), Buffer.alloc(n, 1), L('.')]);
    expect(refusal(long1(100), { maxIntBytes: 100 })).toBeUndefined();
    expectRefused(long1(101), 'ERR_PICKLE_INT_TOO_LARGE', 'WIRE-PICKLE-17', { maxIntBytes: 100 });
  });

  it('decodes decimal integers of 9863 digits, which any sign fits in 4096 bytes, and refuses 9864', () => {
    expect(loadPickle(L(`I-${'9'.repeat(9863)}\n.`))).toBe(-BigInt('9'.repeat(9863)));
    expect(loadPickle(L(`L${'1'.repeat(9863)}L\n.`))).toBe(BigInt('1'.repeat(9863)));
    // the largest, written again at protocol 3, is a LONG4 of at most 4096 bytes, which decodes again
    expect(loadPickle(dumpExtension(new PyDict([['i', BigInt('9'.repeat(9863))]])))).toEqual(new PyDict([['i', BigInt('9'.repeat(9863))]]));
    expectRefused(L(`I${'9'.repeat(9864)}\n.`), 'ERR_PICKLE_INT_TOO_LARGE', 'WIRE-PICKLE-17');
    expectRefused(L(`L+${'0'.repeat(9864)}L\n.`), 'ERR_PICKLE_INT_TOO_LARGE', 'WIRE-PICKLE-17');
  });

  it('refuses 150 KB integers at once, where converting them froze the event loop for a minute', () => {
    const huge = [long4(150_000, 0x11), L(`I${'7'.repeat(150_000)}\n.`), L(`L${'7'.repeat(150_000)}L\n.`)];
    for (const bytes of huge) expect(timed(() => expectRefused(bytes, 'ERR_PICKLE_INT_TOO_LARGE', 'WIRE-PICKLE-17'))).toBeLessThan(100);
  });
});

/** A memo tower of lists: L0 = [], Lk = [Lk-1, Lk-1], then Ln fetched once more. */
function tower(levels: number): Buffer {
  const put = (k: number) => (k < 256 ? L(`q${String.fromCharCode(k)}`) : Buffer.concat([L('r'), u32(k)]));
  const get = (k: number) => (k < 256 ? L(`h${String.fromCharCode(k)}`) : Buffer.concat([L('j'), u32(k)]));
  const parts = [L('\x80\x02]'), put(0)];
  for (let k = 1; k <= levels; k++) parts.push(L(']('), get(k - 1), get(k - 1), L('e'), put(k), L('0'));
  parts.push(get(levels), L('.'));
  return Buffer.concat(parts);
}

/** What the tower's references add: each level fetches the one below twice, and the top is fetched once. */
function towerExpansion(levels: number): number {
  let size = 1;
  let total = 0;
  for (let k = 1; k <= levels; k++) {
    total += 2 * size;
    size = 1 + 2 * size;
  }
  return total + size;
}

describe('[WIRE-PICKLE-18] memo expansion', () => {
  it('decodes references adding up to 1 000 000 and refuses one more', () => {
    // a text of 999 characters (logical size 1000) fetched 1000 times
    const text = Buffer.concat([L('X'), u32(999), Buffer.alloc(999, 0x61), L('q\x00')]);
    const fetched = (extra: string) => Buffer.concat([L('\x80\x03]('), text, repeat('h\x00', 1000), L(extra), L('e.')]);
    expect(refusal(fetched(''))).toBeUndefined();
    expectRefused(fetched('K\x01q\x01h\x01'), 'ERR_PICKLE_EXPANSION', 'WIRE-PICKLE-18');
  });

  test.prop([fc.integer({ min: 0, max: 300 }), fc.integer({ min: 1, max: 1 << 24 })])(
    'counts a tower of shared lists exactly: decoded when within the limit, refused beyond',
    (levels, limit) => {
      const e = refusal(tower(levels), { maxExpansion: limit });
      expect(e?.code).toBe(towerExpansion(levels) <= limit ? undefined : 'ERR_PICKLE_EXPANSION');
    },
  );

  it('refuses a memo bomb of 2^40 items in about 400 bytes, which fsdump and the primary could not walk', () => {
    expect(tower(40).length).toBeLessThan(410);
    expect(timed(() => expectRefused(tower(40), 'ERR_PICKLE_EXPANSION', 'WIRE-PICKLE-18'))).toBeLessThan(100);
  });
});

describe('[WIRE-PICKLE-19] containers changed after a reference', () => {
  it.each([
    ['a list appended to itself through the memo', ']q\x00h\x00a.'],
    ['a list appended to itself through DUP', ']2a.'],
    ['a dict set into itself', '}q\x00K\x01h\x00s.'],
    ['two lists holding each other', ']q\x00]q\x01h\x00a0h\x01a.'],
    ['a list grown after a reference, without a cycle', ']q\x00h\x000Na.'],
  ])('refuses %s', (_name, pickle) => {
    expectRefused(L(pickle), 'ERR_PICKLE_CYCLE', 'WIRE-PICKLE-19');
  });

  it('decodes values shared the way Python shares them', () => {
    // x = ['s']; [x, [x]] as Python's pickler writes it at protocol 2
    const v = loadPickle(L('\x80\x02](]q\x00X\x01\x00\x00\x00sa]h\x00ae.')) as PickleValue[][];
    expect(v).toEqual([['s'], [['s']]]);
    expect(v[1]![0]).toBe(v[0]);
  });
});

describe('walking decoded values', () => {
  const deepest = (d: number): PickleValue => {
    let v: PickleValue = [];
    for (let i = 1; i < d; i++) v = [v];
    return v;
  };

  it('the JSON views take the deepest value the decoder accepts, and refuse deeper or cyclic values', () => {
    const v = loadPickle(nestedLists(PICKLE_LIMITS.maxDepth));
    expect(JSON.stringify(pickleToJson(v))).toBe(`${'['.repeat(1000)}${']'.repeat(1000)}`);
    expect(() => pickleToManifestJson(v)).not.toThrow();
    const cyclic: PickleValue[] = [];
    cyclic.push(cyclic);
    for (const walk of [pickleToJson, pickleToManifestJson]) {
      for (const bad of [deepest(1001), cyclic]) {
        expect(() => walk(bad)).toThrow(expect.objectContaining({ code: 'ERR_PICKLE_TOO_DEEP' }));
      }
    }
  });

  it('the protocol 1 encoder refuses what it cannot write with a PickleError, and writes a message the decoder takes back', () => {
    expect(loadPickle(dumpPickle(loadPickle(nestedLists(1000))))).toEqual(loadPickle(nestedLists(1000)));
    expect(() => dumpPickle(deepest(1001))).toThrow(PickleError);
    // 1000 lists deep with a value at the bottom: still depth 1000
    const withNone = L(`${']'.repeat(1000)}N${'a'.repeat(1000)}.`);
    expect(loadPickle(dumpPickle(loadPickle(withNone)))).toEqual(loadPickle(withNone));
    // the deepest T message the encoder writes (1000 levels) decodes again
    const message = (d: number) => new PyTuple(['T', new PyTuple([Buffer.alloc(8), ' ', Buffer.alloc(0), Buffer.alloc(0), new PyDict([['deep', deepest(d)]])])]);
    expect(refusal(dumpPickle(message(997)))).toBeUndefined();
    expect(() => dumpPickle(message(998))).toThrow(expect.objectContaining({ code: 'ERR_PICKLE_DEPTH' }));
  });

  it('the largest expansion accepted is written and viewed in bounded time', () => {
    // 999 999 references to empty bytes: the most output per unit of logical size
    const v = loadPickle(Buffer.concat([L('\x80\x03](C\x00q\x00'), repeat('h\x00', 999_998), L('e.')]));
    const ms = timed(() => {
      expect(dumpPickle(v).length).toBeLessThan(25_000_000);
      expect(JSON.stringify(pickleToJson(v)).length).toBeLessThan(15_000_000);
    });
    expect(ms).toBeLessThan(10_000);
  });
});

describe('a stored extension that is a memo bomb', () => {
  const ws = workspace('pickle-limits');
  afterAll(() => ws.cleanup());
  const file = ws.file('Data.fs');
  const tid = Buffer.from('040d453df6d9afbb', 'hex');
  writeFileSync(
    file,
    Buffer.concat([
      L(MAGIC_FS30),
      encodeTxnRecord({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: tower(40), records: [] }),
    ]),
  );

  it('fsdump shows it as undecodable at once, instead of printing gigabytes', () => {
    let stdout = '';
    const out = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: () => true } };
    expect(timed(() => expect(fsdump(['--json', file], out)).toBe(0))).toBeLessThan(1000);
    const line = JSON.parse(stdout.split('\n')[0]!) as { extension: { $undecodable: string; error: string } };
    expect(line.extension.$undecodable).toBe(tower(40).toString('hex'));
    expect(line.extension.error).toMatch(/memo references expand/);
  });

  it('the primary refuses to send it (DEV-EXTASCII-2) at once, instead of hanging', () => {
    const r = FileStorageReader.open(file);
    try {
      const s = r.scan(4);
      if (s.kind !== 'transaction') throw new Error(`expected a transaction, got ${s.kind}`);
      const frames = transactionFrames(r, s.txn, new StreamEncoder(Z64), null);
      expect(() => frames.next()).toThrow(ZrsError);
      expect(() => transactionFrames(r, s.txn, new StreamEncoder(Z64), null).next()).toThrow(/ERR_PICKLE_EXPANSION|memo references expand/);
    } finally {
      r.close();
    }
  });
});
