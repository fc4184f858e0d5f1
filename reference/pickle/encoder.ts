/**
 * Pickle encoders that write byte for byte what Python 3's C pickler writes, in the two
 * profiles ZRS needs:
 *
 * - {@link dumpPickle}: protocol 1 in fast mode (no memo), how zc.zrs encodes its control
 *   messages. No `PROTO` opcode (protocol 1 has none); text is `BINUNICODE`; non-empty bytes
 *   are `_codecs.encode(latin-1 text, 'latin1')`, empty bytes `__builtin__.bytes()`; integers
 *   use the shortest of `BININT1`, `BININT2`, `BININT`, else decimal `LONG`; booleans are
 *   `I01`/`I00`; floats `BINFLOAT`; dicts and lists are filled in batches of 1000.
 * - {@link dumpExtension}: protocol 3 with a memo, how ZODB on Python 3 writes a
 *   transaction's extension dict into a FileStorage file.
 * @module
 */
import { PickleError } from '../errors.ts';
import { PICKLE_LIMITS } from './limits.ts';
import { Op } from './opcodes.ts';
import { encodeUtf8 } from './utf8.ts';
import {
  type PickleValue,
  PyBuild,
  PyDict,
  PyGlobal,
  PyInst,
  PyNewObj,
  PyObj,
  PyReduce,
  PyTuple,
} from './values.ts';

const BATCH = 1000;
/**
 * Deepest nesting written, counted from 0 at the top: values of up to `PICKLE_LIMITS.maxDepth`
 * levels as the decoder counts them, so that whatever the decoder accepts can be written again
 * (a secondary stores what it received) and whatever is written decodes again. Python's pickler
 * gives up sooner (RecursionError at about 500 nested lists).
 */
const MAX_DEPTH = PICKLE_LIMITS.maxDepth - 1;

/** Encodes one value as a standalone protocol 1 pickle without memo, ending with `STOP`. */
export function dumpPickle(value: PickleValue): Buffer {
  const w = new Writer(1);
  w.value(value, 0);
  w.byte(Op.STOP);
  return w.finish();
}

/**
 * Encodes a transaction's extension dict as ZODB on Python 3 stores it: empty bytes for an
 * empty dict, else a protocol 3 pickle with a memo. Objects that a Python unpickler shares
 * (the empty and one-character strings, empty and one-byte bytes, classes) are written once
 * and then fetched from the memo; any other value is assumed to be a distinct object, as it is
 * after unpickling a message that was written without a memo.
 */
export function dumpExtension(extension: PyDict): Buffer {
  if (extension.entries.length === 0) return Buffer.alloc(0);
  const w = new Writer(3);
  w.byte(Op.PROTO);
  w.byte(3);
  w.value(extension, 0);
  w.byte(Op.STOP);
  return w.finish();
}

class Writer {
  /** Memo of protocol 3: key (object, or a string naming a shared value) to index. */
  private readonly memo: Map<unknown, number> | null;

  constructor(private readonly proto: 1 | 3) {
    this.memo = proto >= 3 ? new Map() : null;
  }

  private buf = Buffer.allocUnsafe(256);
  private len = 0;

  private room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }

  byte(b: number): void {
    this.room(1);
    this.buf[this.len++] = b;
  }

  raw(bytes: Uint8Array): void {
    this.room(bytes.length);
    this.buf.set(bytes, this.len);
    this.len += bytes.length;
  }

  ascii(text: string): void {
    this.raw(Buffer.from(text, 'latin1'));
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.len);
  }

  private u16(n: number): void {
    this.room(2);
    this.buf.writeUInt16LE(n, this.len);
    this.len += 2;
  }

  private i32(n: number): void {
    this.room(4);
    this.buf.writeInt32LE(n, this.len);
    this.len += 4;
  }

  private u32(n: number): void {
    this.room(4);
    this.buf.writeUInt32LE(n, this.len);
    this.len += 4;
  }

  text(s: string): void {
    // Python shares '' and one-character strings below U+0100; others are distinct objects.
    const key = s.length === 0 || (s.length === 1 && s.charCodeAt(0) < 256) ? `s:${s}` : undefined;
    if (this.fetch(key)) return;
    const utf8 = encodeUtf8(s);
    this.byte(Op.BINUNICODE);
    this.u32(utf8.length);
    this.raw(utf8);
    this.put(key);
  }

  global(module: string, name: string): void {
    if (this.fetch(`g:${module}\n${name}`)) return;
    this.byte(Op.GLOBAL);
    this.ascii(`${module}\n${name}\n`);
    this.put(`g:${module}\n${name}`);
  }

  /** Writes a memo GET and returns true when `key` was stored before. */
  private fetch(key: unknown): boolean {
    const index = key === undefined ? undefined : this.memo?.get(key);
    if (index === undefined) return false;
    if (index < 256) {
      this.byte(Op.BINGET);
      this.byte(index);
    } else {
      this.byte(Op.LONG_BINGET);
      this.u32(index);
    }
    return true;
  }

  /** Stores the object just written in the memo (protocol 3 only). */
  private put(key: unknown): void {
    if (!this.memo) return;
    const index = this.memo.size;
    // Every memoised object takes an index, shared or not; unshared ones get a fresh key.
    this.memo.set(key === undefined ? Symbol() : key, index);
    if (index < 256) {
      this.byte(Op.BINPUT);
      this.byte(index);
    } else {
      this.byte(Op.LONG_BINPUT);
      this.u32(index);
    }
  }

  int(n: bigint): void {
    if (n >= 0n && n <= 0xffn) {
      this.byte(Op.BININT1);
      this.byte(Number(n));
    } else if (n >= 0n && n <= 0xffffn) {
      this.byte(Op.BININT2);
      this.u16(Number(n));
    } else if (n >= -0x80000000n && n <= 0x7fffffffn) {
      this.byte(Op.BININT);
      this.i32(Number(n));
    } else if (this.proto >= 2) {
      const b = longBytes(n);
      if (b.length < 256) {
        this.byte(Op.LONG1);
        this.byte(b.length);
      } else {
        this.byte(Op.LONG4);
        this.i32(b.length);
      }
      this.raw(b);
    } else {
      this.byte(Op.LONG);
      this.ascii(`${n}L\n`);
    }
  }

  bytes(b: Uint8Array): void {
    if (this.proto >= 3) {
      // Python shares b'' and one-byte bytes; others are distinct objects.
      const key = b.length <= 1 ? `b:${b[0] ?? ''}` : b;
      if (this.fetch(key)) return;
      if (b.length < 256) {
        this.byte(Op.SHORT_BINBYTES);
        this.byte(b.length);
      } else {
        this.byte(Op.BINBYTES);
        this.u32(b.length);
      }
      this.raw(b);
      return this.put(key);
    }
    if (b.length === 0) {
      this.global('__builtin__', 'bytes');
      this.byte(Op.EMPTY_TUPLE);
    } else {
      this.global('_codecs', 'encode');
      this.byte(Op.MARK);
      this.text(Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1'));
      this.text('latin1');
      this.byte(Op.TUPLE);
    }
    this.byte(Op.REDUCE);
  }

  private items(values: PickleValue[], depth: number): void {
    for (const v of values) this.value(v, depth);
  }

  private tuple(t: PyTuple, depth: number): void {
    const items = t.items;
    if (items.length === 0) return this.byte(Op.EMPTY_TUPLE);
    if (this.fetch(t)) return;
    if (this.proto >= 2 && items.length <= 3) {
      this.items(items, depth);
      this.byte(Op.TUPLE1 + items.length - 1);
    } else {
      this.byte(Op.MARK);
      this.items(items, depth);
      this.byte(Op.TUPLE);
    }
    this.put(t);
  }

  private list(items: PickleValue[], depth: number): void {
    if (this.fetch(items)) return;
    this.byte(Op.EMPTY_LIST);
    this.put(items);
    if (items.length === 1) {
      this.value(items[0]!, depth);
      return this.byte(Op.APPEND);
    }
    // Python writes full batches and then the rest, never an empty batch, for lists.
    for (let i = 0; i < items.length; i += BATCH) {
      this.byte(Op.MARK);
      this.items(items.slice(i, i + BATCH), depth);
      this.byte(Op.APPENDS);
    }
  }

  private dict(d: PyDict, depth: number): void {
    const entries = d.entries;
    if (this.fetch(d)) return;
    this.byte(Op.EMPTY_DICT);
    this.put(d);
    if (entries.length === 0) return;
    if (entries.length === 1) {
      this.value(entries[0]![0], depth);
      this.value(entries[0]![1], depth);
      return this.byte(Op.SETITEM);
    }
    // Python repeats batches while the last one was full: a size that is a multiple of
    // 1000 ends with an empty MARK SETITEMS batch.
    let i = 0;
    let batch: number;
    do {
      this.byte(Op.MARK);
      const slice = entries.slice(i, i + BATCH);
      for (const [k, v] of slice) {
        this.value(k, depth);
        this.value(v, depth);
      }
      this.byte(Op.SETITEMS);
      batch = slice.length;
      i += batch;
    } while (batch === BATCH);
  }

  value(v: PickleValue, depth: number): void {
    const d = depth + 1;
    if (v === null) return this.byte(Op.NONE);
    switch (typeof v) {
      case 'boolean':
        if (this.proto >= 2) return this.byte(v ? Op.NEWTRUE : Op.NEWFALSE);
        return this.ascii(v ? 'I01\n' : 'I00\n');
      case 'bigint':
        return this.int(v);
      case 'number': {
        this.byte(Op.BINFLOAT);
        this.room(8);
        this.buf.writeDoubleBE(v, this.len);
        this.len += 8;
        return;
      }
      case 'string':
        return this.text(v);
    }
    if (v instanceof Uint8Array) return this.bytes(v);
    if (v instanceof PyGlobal) return this.global(v.module, v.name);
    // what is left holds other values: depth 1 or more
    if (depth > MAX_DEPTH) {
      throw new PickleError('ERR_PICKLE_DEPTH', `value nested deeper than ${MAX_DEPTH + 1} levels`, this.len);
    }
    if (Array.isArray(v)) return this.list(v, d);
    if (v instanceof PyTuple) return this.tuple(v, d);
    if (v instanceof PyDict) return this.dict(v, d);
    if (v instanceof PyReduce) {
      if (this.fetch(v)) return;
      const cls = this.proto >= 2 ? reconstructedClass(v) : undefined;
      if (cls !== undefined) {
        // a plain object as protocol 1 writes it: Python's pickler writes it with NEWOBJ from protocol 2 on
        this.value(cls, d);
        this.tuple(new PyTuple([]), d);
        this.byte(Op.NEWOBJ);
      } else {
        this.value(v.callable, d);
        this.value(v.args, d);
        this.byte(Op.REDUCE);
      }
      return this.put(v);
    }
    if (v instanceof PyBuild) {
      this.value(v.object, d);
      this.value(v.state, d);
      return this.byte(Op.BUILD);
    }
    if (v instanceof PyInst) {
      this.byte(Op.MARK);
      this.items(v.args, d);
      this.byte(Op.INST);
      return this.ascii(`${v.module}\n${v.name}\n`);
    }
    if (v instanceof PyObj) {
      this.byte(Op.MARK);
      this.value(v.cls, d);
      this.items(v.args, d);
      return this.byte(Op.OBJ);
    }
    if (v instanceof PyNewObj) return this.newObj(v, d);
    throw new PickleError('ERR_PICKLE_TYPE', 'value of a type pickles cannot hold', this.len);
  }

  /**
   * Protocol 1 has no NEWOBJ. For a plain object Python 3 writes
   * `copy_reg._reconstructor(cls, object, None)` instead; that is only possible when
   * `__new__` took no arguments.
   */
  private newObj(v: PyNewObj, depth: number): void {
    if (this.proto >= 2) {
      if (this.fetch(v)) return;
      this.value(v.cls, depth);
      this.tuple(new PyTuple(v.args), depth);
      this.byte(Op.NEWOBJ);
      return this.put(v);
    }
    if (v.args.length > 0) {
      throw new PickleError('ERR_PICKLE_TYPE', 'an object made with NEWOBJ arguments has no protocol 1 form', this.len);
    }
    this.global('copy_reg', '_reconstructor');
    this.byte(Op.MARK);
    this.value(v.cls, depth);
    this.global('__builtin__', 'object');
    this.byte(Op.NONE);
    this.byte(Op.TUPLE);
    this.byte(Op.REDUCE);
  }
}

/** The class of `copy_reg._reconstructor(cls, object, None)`, how protocol 1 writes a plain object; undefined for any other reduction. */
function reconstructedClass(v: PyReduce): PickleValue | undefined {
  if (!(v.callable instanceof PyGlobal && v.callable.is('copyreg', '_reconstructor'))) return undefined;
  const a = v.args instanceof PyTuple ? v.args.items : [];
  return a.length === 3 && a[1] instanceof PyGlobal && a[1].is('builtins', 'object') && a[2] === null ? a[0] : undefined;
}

/**
 * Minimal little-endian two's complement bytes of a non-zero integer (LONG1, LONG4), in time
 * linear in its length: through hexadecimal text, as shifting byte by byte is quadratic.
 */
function longBytes(n: bigint): Buffer {
  // Bits of the magnitude (of -n-1 when negative), plus one for the sign, rounded up to bytes.
  const hex = (n < 0n ? -n - 1n : n).toString(16);
  const bits = hex === '0' ? 0 : (hex.length - 1) * 4 + 32 - Math.clz32(parseInt(hex[0]!, 16));
  const size = (bits >> 3) + 1;
  const unsigned = n < 0n ? n + (1n << BigInt(8 * size)) : n;
  return Buffer.from(unsigned.toString(16).padStart(2 * size, '0'), 'hex').reverse();
}
