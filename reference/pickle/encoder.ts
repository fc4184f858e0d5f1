/**
 * The pickle encoder of the ZRS profile: byte for byte what Python 3's C pickler writes at
 * protocol 1 in fast mode (no memo), which is how zc.zrs encodes its control messages.
 *
 * Wire facts: no `PROTO` opcode (protocol 1 has none); text is `BINUNICODE`; non-empty bytes
 * are `_codecs.encode(latin-1 text, 'latin1')`, empty bytes `__builtin__.bytes()`; integers
 * use the shortest of `BININT1`, `BININT2`, `BININT`, else decimal `LONG`; booleans are
 * `I01`/`I00`; floats `BINFLOAT`; dicts and lists are filled in batches of 1000.
 * @module
 */
import { PickleError } from '../errors.ts';
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
/** Python's pickler gives up (RecursionError) near this depth; so does this one. */
const MAX_DEPTH = 900;

/** Encodes one value as a standalone protocol 1 pickle, ending with `STOP`. */
export function dumpPickle(value: PickleValue): Buffer {
  const w = new Writer();
  w.value(value, 0);
  w.byte(Op.STOP);
  return w.finish();
}

class Writer {
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
    const utf8 = encodeUtf8(s);
    this.byte(Op.BINUNICODE);
    this.u32(utf8.length);
    this.raw(utf8);
  }

  global(module: string, name: string): void {
    this.byte(Op.GLOBAL);
    this.ascii(`${module}\n${name}\n`);
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
    } else {
      this.byte(Op.LONG);
      this.ascii(`${n}L\n`);
    }
  }

  bytes(b: Uint8Array): void {
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

  private tuple(items: PickleValue[], depth: number): void {
    if (items.length === 0) return this.byte(Op.EMPTY_TUPLE);
    this.byte(Op.MARK);
    this.items(items, depth);
    this.byte(Op.TUPLE);
  }

  private list(items: PickleValue[], depth: number): void {
    this.byte(Op.EMPTY_LIST);
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

  private dict(entries: [PickleValue, PickleValue][], depth: number): void {
    this.byte(Op.EMPTY_DICT);
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
    if (depth > MAX_DEPTH) {
      throw new PickleError('ERR_PICKLE_DEPTH', `value nested deeper than ${MAX_DEPTH} levels`, this.len);
    }
    const d = depth + 1;
    if (v === null) return this.byte(Op.NONE);
    switch (typeof v) {
      case 'boolean':
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
    if (Array.isArray(v)) return this.list(v, d);
    if (v instanceof PyTuple) return this.tuple(v.items, d);
    if (v instanceof PyDict) return this.dict(v.entries, d);
    if (v instanceof PyGlobal) return this.global(v.module, v.name);
    if (v instanceof PyReduce) {
      this.value(v.callable, d);
      this.value(v.args, d);
      return this.byte(Op.REDUCE);
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
