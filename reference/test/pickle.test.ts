import { spawnSync } from 'node:child_process';
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { PickleError } from '../errors.ts';
import { loadPickle, readPickle } from '../pickle/decoder.ts';
import { dumpExtension, dumpPickle } from '../pickle/encoder.ts';
import { type PickleValue, PyBuild, PyDict, PyGlobal, PyReduce, PyTuple } from '../pickle/values.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (h: string) => Buffer.from(h.replace(/\s+/g, ''), 'hex');

/** Plain data as fast-check generates it: the values an extension dict holds. */
const plain: fc.Arbitrary<PickleValue> = fc.letrec<{ leaf: PickleValue; node: PickleValue }>((tie) => ({
  leaf: fc.oneof(
    fc.constant(null),
    fc.boolean(),
    fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
    fc.integer({ min: -70000, max: 70000 }).map(BigInt),
    fc.double({ noNaN: true }),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
    fc.uint8Array({ maxLength: 20 }),
  ),
  node: fc.oneof(
    { depthSize: 'small' },
    tie('leaf'),
    fc.array(tie('node'), { maxLength: 5 }),
    fc.array(tie('node'), { maxLength: 4 }).map((items) => new PyTuple(items)),
    fc
      .uniqueArray(fc.tuple(fc.oneof(fc.string({ maxLength: 8 }), fc.integer().map(BigInt)), tie('node')), {
        maxLength: 5,
        selector: ([k]) => k, // Python dict keys are unique
      })
      .map((entries) => new PyDict(entries)),
  ),
})).node;

/** A JSON description of a value, for the differential test against Python. */
function describeValue(v: PickleValue): unknown {
  if (v === null) return { t: 'none' };
  if (typeof v === 'boolean') return { t: 'bool', v };
  if (typeof v === 'bigint') return { t: 'int', v: v.toString() };
  if (typeof v === 'number') return { t: 'float', v: Object.is(v, -0) ? '-0.0' : String(v) };
  if (typeof v === 'string') return { t: 'str', v: Buffer.from(v, 'utf16le').toString('hex') };
  if (v instanceof Uint8Array) return { t: 'bytes', v: hex(v) };
  if (Array.isArray(v)) return { t: 'list', v: v.map(describeValue) };
  if (v instanceof PyTuple) return { t: 'tuple', v: v.items.map(describeValue) };
  if (v instanceof PyDict) return { t: 'dict', v: v.entries.map(([k, x]) => [describeValue(k), describeValue(x)]) };
  throw new Error('not plain data');
}

const PYTHON = `
import sys, json, io, pickle
def build(d):
    t = d['t']; v = d.get('v')
    if t == 'none': return None
    if t in ('bool',): return v
    if t == 'int': return int(v)
    if t == 'float': return float(v)
    if t == 'str': return bytes.fromhex(v).decode('utf-16-le', 'surrogatepass')
    if t == 'bytes': return bytes.fromhex(v)
    if t == 'list': return [build(x) for x in v]
    if t == 'tuple': return tuple(build(x) for x in v)
    if t == 'dict': return {build(k): build(x) for k, x in v}
out = []
for d in json.load(sys.stdin):
    value = build(d)
    b = io.BytesIO(); p = pickle.Pickler(b, 1); p.fast = 1; p.dump(value)
    # what a ZODB secondary stores: the dict unpickled from the message, pickled at protocol 3
    m = io.BytesIO(); p = pickle.Pickler(m, 1); p.fast = 1; p.dump({'v': value, 'w': value})
    ext = pickle.dumps(pickle.loads(m.getvalue()), 3)
    out.append({'fast1': b.getvalue().hex(), 'all': [pickle.dumps(value, n).hex() for n in range(6)], 'ext': ext.hex()})
json.dump(out, sys.stdout)
`;

function python(values: PickleValue[]): { fast1: string; all: string[]; ext: string }[] | null {
  const r = spawnSync('python3', ['-c', PYTHON], { input: JSON.stringify(values.map(describeValue)), maxBuffer: 1 << 28 });
  if (r.error || r.status !== 0) return null;
  return JSON.parse(r.stdout.toString()) as { fast1: string; all: string[]; ext: string }[];
}

/** Equality that tells int from float and -0.0 from 0.0 (dict keys are unique in Python). */
function same(a: PickleValue, b: PickleValue): boolean {
  return hex(dumpPickle(a)) === hex(dumpPickle(b));
}

describe('pickle encoder (Python 3, protocol 1, fast mode)', () => {
  it.each([
    ['None', null, '4e2e'],
    ['True', true, '4930310a2e'],
    ['False', false, '4930300a2e'],
    ['int 0..255', 255n, '4bff2e'],
    ['int 256..65535', 65535n, '4dffff2e'],
    ['int -1', -1n, '4affffffff2e'],
    ['int -2^31', -(2n ** 31n), '4a000000802e'],
    ['int 2^31', 2n ** 31n, '4c323134373438333634384c0a2e'],
    ['float', 1.5, '473ff80000000000002e'],
    ['text', 'é', '5802000000c3a92e'],
    ['empty bytes', new Uint8Array(0), '635f5f6275696c74696e5f5f0a62797465730a29522e'],
    ['bytes', Uint8Array.of(0xff), '635f636f646563730a656e636f64650a285802000000c3bf58060000006c6174696e317452 2e'],
    ['empty tuple', new PyTuple([]), '292e'],
    ['tuple', new PyTuple([1n, 2n, 3n]), '284b014b024b03742e'],
    ['one-item dict', new PyDict([['a', 1n]]), '7d5801000000614b01732e'],
    ['list of one', [0n], '5d4b00612e'],
  ])('%s', (_name, value, expected) => {
    expect(hex(dumpPickle(value))).toBe(expected.replace(/\s+/g, ''));
  });

  it('fills dicts in batches of 1000, ending with an empty batch after a full one', () => {
    const d = (n: number) => new PyDict(Array.from({ length: n }, (_, i) => [String(i), BigInt(i)]));
    expect(hex(dumpPickle(d(1000))).endsWith(hex(Buffer.from('u(u.')))).toBe(true);
    // 1001 pairs: a full batch, then a batch of one that still ends with SETITEMS
    expect(dumpPickle(d(1001)).subarray(-5).toString('latin1')).toBe('M\xe8\x03u.');
    // lists never end with an empty batch
    const list = dumpPickle(Array.from({ length: 1000 }, (_, i) => BigInt(i)));
    expect(list.subarray(-4).toString('latin1')).toBe('\xe7\x03e.');
  });

  it('re-encodes inert objects as they were written', () => {
    // datetime.datetime(2020, 1, 2, 3, 4, 5) as Python 3 pickles it at protocol 1
    const bytes = unhex(
      '636461746574696d650a6461746574696d650a28635f636f646563730a656e636f64650a28580b000000' +
        '07c3a401020304050000005806000000 6c6174696e3174527452 2e',
    );
    const v = loadPickle(bytes);
    expect(v).toBeInstanceOf(PyReduce);
    expect((v as PyReduce).callable).toEqual(new PyGlobal('datetime', 'datetime', 0));
    expect(hex(dumpPickle(v))).toBe(hex(bytes));
  });

  it('[FS-TXN-8] [DEV-EXTBYTES-1] stores a plain object received as copy_reg._reconstructor(cls, object, None) as ZODB on Python 3 writes it: NEWOBJ', () => {
    // {'n': argparse.Namespace(a=1)}: as zc.zrs sends it (protocol 1, fast), and as Python 3.11 pickles it at protocol 3
    const sent = unhex('7d58010000006e63636f70795f7265670a5f7265636f6e7374727563746f720a286361726770617273650a4e616d6573706163650a635f5f6275696c74696e5f5f0a6f626a6563740a4e74527d5801000000614b017362732e');
    const stored = '80037d710058010000006e71016361726770617273650a4e616d6573706163650a7102298171037d710458010000006171054b017362732e';
    expect(hex(dumpExtension(loadPickle(sent) as PyDict))).toBe(stored);
  });

  it('[WIRE-PICKLE-2] a lone surrogate in text goes as Python writes it (surrogatepass), and comes back as the same code point', () => {
    // pickle.dumps({'k': '\ud800x'}, 1) in Python 3.11, without its memo
    const python = '7d58010000006b5804000000eda08078732e';
    const v = loadPickle(unhex(python)) as PyDict;
    expect(v.get('k')).toBe('\ud800x');
    expect(hex(dumpPickle(v))).toBe(python);
  });

  it('refuses values nested deeper than Python can pickle', () => {
    let v: PickleValue = [];
    for (let i = 0; i < 2000; i++) v = [v];
    expect(() => dumpPickle(v)).toThrow(PickleError);
  });
});

describe('pickle decoder', () => {
  test.prop([plain])('decodes what the encoder writes', (v) => {
    expect(same(loadPickle(dumpPickle(v)), v)).toBe(true);
  });

  it('reads Python 2 strings as text when ASCII and as bytes otherwise', () => {
    expect(loadPickle(unhex('5503616263 2e'))).toBe('abc');
    expect(loadPickle(unhex('5502ff00 2e'))).toEqual(Buffer.of(0xff, 0));
    expect(loadPickle(unhex('5403000000616263 2e'))).toBe('abc');
    expect(loadPickle(unhex(Buffer.from("S'a\\x00\\n'\n.").toString('hex')))).toBe('a\x00\n');
    expect(loadPickle(unhex(Buffer.from('L3L\n.').toString('hex')))).toBe(3n);
  });

  it('never resolves a global: any class reference stays an inert node', () => {
    const v = loadPickle(Buffer.from("cos\nsystem\n(S'echo hi'\ntR."));
    expect(v).toBeInstanceOf(PyReduce);
    expect(((v as PyReduce).callable as PyGlobal).module).toBe('os');
    expect(loadPickle(Buffer.from('c__main__\nC\n)\x81}b.', 'latin1'))).toBeInstanceOf(PyBuild);
  });

  it('[WIRE-PICKLE-21] keeps one entry per key as Python does: first key and position, last value; numbers equal across types, text apart from bytes, NaN equal to nothing', () => {
    // Python 3.11 unpickles this to {'a': 3, 'b': 2, 1: 'z', b'a': 'w', (1, 'a'): 'u', nan: 5, nan: 6}
    const d = loadPickle(
      unhex(
        '7d285801000000614b015801000000624b025801000000614b034b015801000000784930310a580100000079473ff000000000000058010000007a635f636f646563730a656e636f64650a2858010000006158060000006c6174696e317452580100000077284b015801000000617458010000007628473ff000000000000058010000006174580100000075477ff80000000000004b05477ff80000000000004b06752e',
      ),
    ) as PyDict;
    expect(d.entries).toEqual([
      ['a', 3n],
      ['b', 2n],
      [1n, 'z'],
      [Buffer.from('a'), 'w'],
      [new PyTuple([1n, 'a']), 'u'],
      [NaN, 5n],
      [NaN, 6n],
    ]);
  });

  it('[WIRE-PICKLE-21] compares globals by name, objects fetched again by identity, and nested tuple keys in time linear in their size; mergeKeys: false keeps every pair', () => {
    const L = (x: string) => Buffer.from(x, 'latin1');
    // {__builtin__.int: 1, builtins.int: 2}: one class to Python 3
    expect((loadPickle(L('}(c__builtin__\nint\nK\x01cbuiltins\nint\nK\x02u.')) as PyDict).entries).toEqual([[new PyGlobal('__builtin__', 'int', 2), 2n]]);
    // an object set as a key, then fetched from the memo and set again: one key
    const obj = (loadPickle(L('}(cm\nC\n)Rq\x01K\x01h\x01K\x02u.')) as PyDict).entries;
    expect(obj.map(([, v]) => v)).toEqual([2n]);
    // a key of tuples nested 28 deep, set twice: small and quick to compare (each level once)
    const deep = L(`}(K\x01${'\x85'.repeat(28)}K\x01K\x01${'\x85'.repeat(28)}K\x02u.`);
    expect((loadPickle(deep) as PyDict).entries.map(([, v]) => v)).toEqual([2n]);
    expect((loadPickle(deep, { mergeKeys: false }) as PyDict).entries.map(([, v]) => v)).toEqual([1n, 2n]);
  });

  it('reads the first of two concatenated pickles (record data holds class and state)', () => {
    const data = unhex('8003635a4f44422e626c6f620a426c6f620a71002e80034e2e');
    const first = readPickle(data);
    expect(first.value).toEqual(new PyGlobal('ZODB.blob', 'Blob', 2));
    expect(readPickle(data, first.end).value).toBeNull();
  });

  it.each([
    ['empty input', '', 'ERR_PICKLE_TRUNCATED'],
    ['no STOP', '4e', 'ERR_PICKLE_TRUNCATED'],
    ['length beyond the input', '58ffffff7f61', 'ERR_PICKLE_TRUNCATED'],
    ['unknown opcode', 'ff', 'ERR_PICKLE_OPCODE'],
    ['persistent id', '50310a2e', 'ERR_PICKLE_OPCODE'],
    ['stack underflow', '742e', 'ERR_PICKLE_STACK'],
    ['bytes after STOP', '4e2e4e', 'ERR_PICKLE_TRAILING'],
    ['bad memo key', '68052e', 'ERR_PICKLE_MEMO'],
    ['invalid UTF-8', '5801000000ff2e', 'ERR_PICKLE_VALUE'],
    ['protocol 6', '80064e2e', 'ERR_PICKLE_PROTOCOL'],
  ])('rejects %s with a PickleError naming the offset', (_name, input, code) => {
    let error: unknown;
    try {
      loadPickle(unhex(input));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PickleError);
    expect((error as PickleError).code).toBe(code);
    expect((error as PickleError).message).toMatch(/at offset \d+/);
  });

  test.prop([fc.uint8Array({ maxLength: 200 })], { numRuns: 3000 })('random bytes give a value or a PickleError, never anything else', (bytes) => {
    try {
      loadPickle(bytes);
    } catch (e) {
      expect(e).toBeInstanceOf(PickleError);
    }
  });
});

describe('differential test against Python 3 pickle', () => {
  const values = fc.sample(plain, { numRuns: 400, seed: 20261126 });
  const expected = python(values);

  it.skipIf(expected === null)('encodes 400 random values exactly as Python (protocol 1, fast)', () => {
    values.forEach((v, i) => expect(hex(dumpPickle(v)), `value #${i}`).toBe(expected![i]!.fast1));
  });

  it.skipIf(expected === null)('writes extension dicts as ZODB does after unpickling them from a message', () => {
    values.forEach((v, i) => {
      const received = loadPickle(dumpPickle(new PyDict([['v', v], ['w', v]])));
      expect(hex(dumpExtension(received as PyDict)), `value #${i}`).toBe(expected![i]!.ext);
    });
  });

  it.skipIf(expected === null)('decodes Python pickles of protocols 0 to 5 to the same values', () => {
    values.forEach((v, i) => {
      expected![i]!.all.forEach((p, proto) => expect(same(loadPickle(unhex(p)), v), `value #${i} protocol ${proto}`).toBe(true));
    });
  });
});
