/**
 * A pickle decoder that never imports or calls anything.
 *
 * It understands the opcodes of pickle protocols 0 to 5 that can describe plain data, and
 * keeps every class reference and object construction as an inert node (see
 * {@link PyGlobal}, {@link PyReduce}). Two reductions that Python uses to pickle `bytes` at
 * protocols below 3 are recognised and turned into bytes: `_codecs.encode(text, 'latin1')`
 * and `__builtin__.bytes()` (or `builtins.bytes()`). Python 2 strings (`STRING`,
 * `BINSTRING`, `SHORT_BINSTRING`) decode to text when they are ASCII, as Python 3 reads
 * them, and to bytes otherwise. Persistent ids (`PERSID`, `BINPERSID`) are refused unless the
 * caller passes a `persistentLoad` option, which receives each id as an inert value.
 *
 * Every failure is a {@link PickleError} naming the offset and opcode. Lengths are checked
 * against the input before anything is allocated, no recursion is used, and the limits of
 * {@link PickleLimits} (items, depth, integer size, memo expansion) are checked before the work
 * they bound, so hostile input cannot exhaust the stack or memory, nor take long.
 * @module
 */
import { PickleError } from '../errors.ts';
import { Budget } from './budget.ts';
import { DictKeys } from './dict-keys.ts';
import { type PickleLimits, resolveLimits } from './limits.ts';
import { Op, opName } from './opcodes.ts';
import { decodeUtf8 } from './utf8.ts';
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

/** Result of {@link readPickle}: the value and the offset just past its `STOP`. */
export interface PickleRead {
  value: PickleValue;
  end: number;
  /** Items and marks left on the stack below the value at `STOP` (Python ignores them). */
  leftover: number;
}

/** Options of {@link loadPickle} and {@link readPickle}: limits replacing the defaults, and persistent ids. */
export interface PickleOptions extends Partial<PickleLimits> {
  /**
   * Called for each persistent id (`PERSID`, `BINPERSID`) with the id, decoded and inert; what
   * it returns takes the id's place. Without it, persistent ids are refused (`ERR_PICKLE_OPCODE`).
   */
  persistentLoad?: (pid: PickleValue) => PickleValue;
  /**
   * `false`: keep every key-value pair a pickle sets in a dict, where by default a key set again
   * keeps one entry as in Python (WIRE-PICKLE-21). For looking at stored bytes as they are.
   */
  mergeKeys?: boolean;
}

const MARK: unique symbol = Symbol('mark');
type Slot = PickleValue | typeof MARK;

const HIGHEST_PROTOCOL = 5;
const latin1 = new TextDecoder('latin1');

/** Decodes one pickle that must fill `bytes` exactly. */
export function loadPickle(bytes: Uint8Array, options?: PickleOptions): PickleValue {
  const { value, end } = readPickle(bytes, 0, options);
  if (end !== bytes.length) {
    throw new PickleError('ERR_PICKLE_TRAILING', `${bytes.length - end} bytes after STOP`, end);
  }
  return value;
}

/** Decodes the pickle that starts at `start`; bytes after its `STOP` are left alone. */
export function readPickle(bytes: Uint8Array, start = 0, options?: PickleOptions): PickleRead {
  return new Reader(bytes, start, options).run();
}

class Reader {
  private pos: number;
  private readonly stack: Slot[] = [];
  private readonly memo = new Map<number, PickleValue>();
  /** False: keep every pair a dict is given (`mergeKeys: false`). */
  private readonly mergeKeys: boolean;
  /** Numbers of dict keys, and where each key of a dict sits in its entries: made at the first dict filled. */
  private dicts: { keys: DictKeys; index: WeakMap<PyDict, Map<number, number>> } | null = null;
  private op = 0;
  private opAt = 0;
  private readonly view: DataView;
  private readonly budget: Budget;
  private readonly persistentLoad: ((pid: PickleValue) => PickleValue) | undefined;

  constructor(
    private readonly b: Uint8Array,
    start: number,
    options: PickleOptions | undefined,
  ) {
    this.pos = start;
    this.view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.persistentLoad = options?.persistentLoad;
    this.mergeKeys = options?.mergeKeys !== false;
    this.budget = new Budget(resolveLimits(options), (code, what, requirement) => this.fail(code, what, requirement));
  }

  private fail(code: string, what: string, requirement = 'WIRE-PICKLE-9'): never {
    throw new PickleError(code, `${what} (opcode ${opName(this.op)})`, this.opAt, requirement);
  }

  private need(n: number): number {
    if (n < 0 || this.pos + n > this.b.length) this.fail('ERR_PICKLE_TRUNCATED', 'pickle ends early');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  private bytes(n: number): Uint8Array {
    const at = this.need(n);
    return this.b.subarray(at, at + n);
  }

  private u8(): number {
    return this.b[this.need(1)]!;
  }

  private u32(): number {
    return this.view.getUint32(this.need(4), true);
  }

  private u64(): number {
    const v = this.view.getBigUint64(this.need(8), true);
    if (v > BigInt(this.b.length)) this.fail('ERR_PICKLE_TRUNCATED', 'length beyond the end of the pickle');
    return Number(v);
  }

  /** Text up to the next newline, without it. */
  private line(): string {
    const nl = this.b.indexOf(0x0a, this.pos);
    if (nl < 0) this.fail('ERR_PICKLE_TRUNCATED', 'missing newline');
    const text = latin1.decode(this.b.subarray(this.pos, nl));
    this.pos = nl + 1;
    return text;
  }

  private text(raw: Uint8Array): string {
    const s = decodeUtf8(raw);
    if (s === undefined) this.fail('ERR_PICKLE_VALUE', 'text is not valid UTF-8');
    return s;
  }

  /** Pushes a new value; `parts` as for {@link Budget.created}. */
  private push(v: PickleValue, parts?: PickleValue[]): void {
    this.stack.push(this.budget.created(v, parts));
  }

  /** Pushes a value built earlier again (memo `GET`, `DUP`), or one that `persistentLoad` returned. */
  private pushAgain(v: PickleValue): void {
    this.stack.push(this.budget.referenced(v));
  }

  private pop(): PickleValue {
    const v = this.stack.pop();
    if (v === undefined || v === MARK) this.fail('ERR_PICKLE_STACK', 'stack underflow');
    return v;
  }

  private top(): PickleValue {
    const v = this.stack[this.stack.length - 1];
    if (v === undefined || v === MARK) this.fail('ERR_PICKLE_STACK', 'stack underflow');
    return v;
  }

  /** Pops everything above the last MARK, and the MARK. */
  private popMark(): PickleValue[] {
    const at = this.stack.lastIndexOf(MARK);
    if (at < 0) this.fail('ERR_PICKLE_STACK', 'no MARK on the stack');
    const items = this.stack.splice(at) as Slot[];
    items.shift();
    this.budget.unmark();
    return items as PickleValue[];
  }

  private memoPut(key: number): void {
    if (!this.memo.has(key)) this.budget.memoEntry(this.memo.size);
    this.memo.set(key, this.top());
  }

  private memoGet(key: number): PickleValue {
    const v = this.memo.get(key);
    if (v === undefined) this.fail('ERR_PICKLE_MEMO', `memo key ${key} was never stored`);
    return v;
  }

  private intLine(): number {
    const t = this.line();
    if (!/^[0-9]+$/.test(t)) this.fail('ERR_PICKLE_VALUE', `bad memo key ${JSON.stringify(t)}`);
    return Number(t);
  }

  private py2str(raw: Uint8Array): string | Uint8Array {
    for (const c of raw) if (c > 0x7f) return Buffer.from(raw);
    return latin1.decode(raw);
  }

  private dictInto(target: PickleValue, items: PickleValue[]): void {
    if (!(target instanceof PyDict)) this.fail('ERR_PICKLE_STACK', 'SETITEM on something that is not a dict');
    if (items.length % 2) this.fail('ERR_PICKLE_STACK', 'odd number of items for a dict');
    this.budget.grow(target, items);
    if (!this.mergeKeys) {
      for (let i = 0; i + 1 < items.length; i += 2) target.entries.push([items[i]!, items[i + 1]!]);
      return;
    }
    // one entry per key, as Python's dict: the first key and position, the last value
    const dicts = (this.dicts ??= { keys: new DictKeys(), index: new WeakMap() });
    let index = dicts.index.get(target);
    if (!index) dicts.index.set(target, (index = new Map()));
    for (let i = 0; i + 1 < items.length; i += 2) {
      const id = dicts.keys.of(items[i]!);
      const at = id === null ? undefined : index.get(id);
      if (at !== undefined) target.entries[at]![1] = items[i + 1]!;
      else {
        if (id !== null) index.set(id, target.entries.length);
        target.entries.push([items[i]!, items[i + 1]!]);
      }
    }
  }

  private listInto(target: PickleValue, items: PickleValue[]): void {
    if (!Array.isArray(target)) this.fail('ERR_PICKLE_STACK', 'APPEND on something that is not a list');
    this.budget.grow(target, items);
    for (const item of items) target.push(item);
  }

  private global(module: string, name: string): PyGlobal {
    return new PyGlobal(module, name, this.opAt);
  }

  run(): PickleRead {
    const b = this.b;
    for (;;) {
      this.opAt = this.pos;
      if (this.pos >= b.length) {
        this.op = -1;
        throw new PickleError('ERR_PICKLE_TRUNCATED', 'pickle ends before STOP', this.pos);
      }
      this.op = b[this.pos++]!;
      switch (this.op) {
        case Op.STOP: {
          const value = this.pop();
          return { value, end: this.pos, leftover: this.stack.length };
        }
        case Op.PROTO: {
          const p = this.u8();
          if (p > HIGHEST_PROTOCOL) this.fail('ERR_PICKLE_PROTOCOL', `unsupported protocol ${p}`);
          break;
        }
        case Op.FRAME:
          this.u64();
          break;
        case Op.MARK:
          this.budget.mark();
          this.stack.push(MARK);
          break;
        case Op.POP: {
          const popped = this.stack.pop();
          if (popped === undefined) this.fail('ERR_PICKLE_STACK', 'stack underflow');
          if (popped === MARK) this.budget.unmark();
          break;
        }
        case Op.POP_MARK:
          this.popMark();
          break;
        case Op.DUP:
          this.pushAgain(this.top());
          break;
        case Op.NONE:
          this.push(null);
          break;
        case Op.NEWTRUE:
          this.push(true);
          break;
        case Op.NEWFALSE:
          this.push(false);
          break;
        case Op.INT: {
          const t = this.line();
          if (t === '00') this.push(false);
          else if (t === '01') this.push(true);
          else this.push(this.decimal(t));
          break;
        }
        case Op.LONG: {
          const t = this.line();
          this.push(this.decimal(t.endsWith('L') ? t.slice(0, -1) : t));
          break;
        }
        case Op.BININT:
          this.push(BigInt(this.view.getInt32(this.need(4), true)));
          break;
        case Op.BININT1:
          this.push(BigInt(this.u8()));
          break;
        case Op.BININT2:
          this.push(BigInt(this.view.getUint16(this.need(2), true)));
          break;
        case Op.LONG1: {
          const n = this.u8();
          this.budget.intBytes(n);
          this.push(twosComplement(this.bytes(n)));
          break;
        }
        case Op.LONG4: {
          const n = this.view.getInt32(this.need(4), true);
          if (n < 0) this.fail('ERR_PICKLE_VALUE', 'negative length');
          this.budget.intBytes(n);
          this.push(twosComplement(this.bytes(n)));
          break;
        }
        case Op.FLOAT: {
          const t = this.line().trim().toLowerCase();
          const special: Record<string, number> = { inf: Infinity, '+inf': Infinity, '-inf': -Infinity, nan: NaN, '+nan': NaN, '-nan': NaN };
          const f = special[t] ?? (/^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?$/.test(t) ? Number(t) : undefined);
          if (f === undefined) this.fail('ERR_PICKLE_VALUE', `bad float ${JSON.stringify(t.slice(0, 40))}`);
          this.push(f);
          break;
        }
        case Op.BINFLOAT:
          this.push(this.view.getFloat64(this.need(8), false));
          break;
        case Op.BINUNICODE:
          this.push(this.text(this.bytes(this.u32())));
          break;
        case Op.SHORT_BINUNICODE:
          this.push(this.text(this.bytes(this.u8())));
          break;
        case Op.BINUNICODE8:
          this.push(this.text(this.bytes(this.u64())));
          break;
        case Op.UNICODE: {
          const text = rawUnicodeEscape(this.line());
          if (text === undefined) this.fail('ERR_PICKLE_VALUE', 'escape beyond U+10FFFF');
          this.push(text);
          break;
        }
        case Op.SHORT_BINSTRING:
          this.push(this.py2str(this.bytes(this.u8())));
          break;
        case Op.BINSTRING: {
          const n = this.view.getInt32(this.need(4), true);
          if (n < 0) this.fail('ERR_PICKLE_VALUE', 'negative length');
          this.push(this.py2str(this.bytes(n)));
          break;
        }
        case Op.STRING: {
          const raw = stringLiteral(this.line());
          if (raw === undefined) this.fail('ERR_PICKLE_VALUE', 'bad quoted string');
          this.push(this.py2str(raw));
          break;
        }
        case Op.SHORT_BINBYTES:
          this.push(Buffer.from(this.bytes(this.u8())));
          break;
        case Op.BINBYTES:
          this.push(Buffer.from(this.bytes(this.u32())));
          break;
        case Op.BINBYTES8:
          this.push(Buffer.from(this.bytes(this.u64())));
          break;
        case Op.EMPTY_TUPLE:
          this.push(new PyTuple([]), []);
          break;
        case Op.TUPLE: {
          const items = this.popMark();
          this.push(new PyTuple(items), items);
          break;
        }
        case Op.TUPLE1:
        case Op.TUPLE2:
        case Op.TUPLE3: {
          const n = this.op - Op.TUPLE1 + 1;
          const items: PickleValue[] = [];
          for (let i = 0; i < n; i++) items.unshift(this.pop());
          this.push(new PyTuple(items), items);
          break;
        }
        case Op.EMPTY_LIST:
          this.push([], []);
          break;
        case Op.LIST: {
          const items = this.popMark();
          this.push(items, items);
          break;
        }
        case Op.APPEND: {
          const item = this.pop();
          this.listInto(this.top(), [item]);
          break;
        }
        case Op.APPENDS: {
          const items = this.popMark();
          this.listInto(this.top(), items);
          break;
        }
        case Op.EMPTY_DICT:
          this.push(new PyDict(), []);
          break;
        case Op.DICT: {
          const items = this.popMark();
          const d = new PyDict();
          this.push(d, []);
          this.dictInto(d, items);
          break;
        }
        case Op.SETITEM: {
          const value = this.pop();
          const key = this.pop();
          this.dictInto(this.top(), [key, value]);
          break;
        }
        case Op.SETITEMS: {
          const items = this.popMark();
          this.dictInto(this.top(), items);
          break;
        }
        case Op.GLOBAL: {
          const module = this.line();
          const name = this.line();
          this.push(this.global(module, name));
          break;
        }
        case Op.STACK_GLOBAL: {
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') {
            this.fail('ERR_PICKLE_VALUE', 'STACK_GLOBAL needs two strings');
          }
          this.push(this.global(module, name));
          break;
        }
        case Op.REDUCE: {
          const args = this.pop();
          const callable = this.pop();
          const v = this.reduce(callable, args);
          this.push(v, v instanceof PyReduce ? [callable, args] : undefined);
          break;
        }
        case Op.BUILD: {
          const state = this.pop();
          const object = this.pop();
          this.push(new PyBuild(object, state, this.opAt), [object, state]);
          break;
        }
        case Op.INST: {
          const module = this.line();
          const name = this.line();
          const args = this.popMark();
          this.push(new PyInst(module, name, args, this.opAt), args);
          break;
        }
        case Op.OBJ: {
          const parts = this.popMark();
          const [cls, ...args] = parts;
          if (cls === undefined) this.fail('ERR_PICKLE_STACK', 'OBJ without a class');
          this.push(new PyObj(cls, args, this.opAt), parts);
          break;
        }
        case Op.NEWOBJ: {
          const args = this.pop();
          const cls = this.pop();
          if (!(args instanceof PyTuple)) this.fail('ERR_PICKLE_VALUE', 'NEWOBJ arguments are not a tuple');
          this.push(new PyNewObj(cls, args.items, this.opAt), [cls, args]);
          break;
        }
        case Op.PERSID: {
          if (!this.persistentLoad) this.fail('ERR_PICKLE_OPCODE', 'unsupported opcode');
          const pid = this.line();
          // Python reads a protocol 0 persistent id as ASCII text.
          if (!/^[\x00-\x7f]*$/.test(pid)) this.fail('ERR_PICKLE_VALUE', 'persistent id is not ASCII');
          this.pushAgain(this.persistentLoad(pid));
          break;
        }
        case Op.BINPERSID: {
          if (!this.persistentLoad) this.fail('ERR_PICKLE_OPCODE', 'unsupported opcode');
          this.pushAgain(this.persistentLoad(this.pop()));
          break;
        }
        case Op.PUT:
          this.memoPut(this.intLine());
          break;
        case Op.BINPUT:
          this.memoPut(this.u8());
          break;
        case Op.LONG_BINPUT:
          this.memoPut(this.u32());
          break;
        case Op.MEMOIZE:
          this.memoPut(this.memo.size);
          break;
        case Op.GET:
          this.pushAgain(this.memoGet(this.intLine()));
          break;
        case Op.BINGET:
          this.pushAgain(this.memoGet(this.u8()));
          break;
        case Op.LONG_BINGET:
          this.pushAgain(this.memoGet(this.u32()));
          break;
        default:
          this.fail('ERR_PICKLE_OPCODE', 'unsupported opcode');
      }
    }
  }

  private decimal(t: string): bigint {
    this.budget.intDigits(t.length - (t[0] === '-' || t[0] === '+' ? 1 : 0));
    if (!/^[+-]?[0-9]+$/.test(t)) this.fail('ERR_PICKLE_VALUE', `bad integer ${JSON.stringify(t.slice(0, 40))}`);
    return BigInt(t);
  }

  /** REDUCE: the two `bytes` idioms become bytes; every other call stays inert. */
  private reduce(callable: PickleValue, args: PickleValue): PickleValue {
    if (callable instanceof PyGlobal && args instanceof PyTuple) {
      if (callable.is('_codecs', 'encode') && args.items.length === 2) {
        const [text, encoding] = args.items;
        if (typeof text === 'string' && (encoding === 'latin1' || encoding === 'latin-1')) {
          const out = Buffer.alloc(text.length);
          for (let i = 0; i < text.length; i++) {
            const c = text.charCodeAt(i);
            if (c > 0xff) this.fail('ERR_PICKLE_VALUE', 'latin1 text holds a character above U+00FF');
            out[i] = c;
          }
          return out;
        }
      }
      if (callable.is('builtins', 'bytes') && args.items.length === 0) {
        return Buffer.alloc(0);
      }
    }
    return new PyReduce(callable, args, this.opAt);
  }
}

/** Little-endian two's complement integer (`LONG1`, `LONG4`), in time linear in its length. */
function twosComplement(bytes: Uint8Array): bigint {
  if (bytes.length === 0) return 0n;
  // BigInt parses hexadecimal text in linear time; shifting byte by byte is quadratic.
  const v = BigInt(`0x${Buffer.from(bytes).reverse().toString('hex')}`);
  return bytes[bytes.length - 1]! & 0x80 ? v - (1n << BigInt(8 * bytes.length)) : v;
}

/**
 * Decodes Python's raw-unicode-escape (`UNICODE` opcode): latin-1 with \uXXXX escapes, or
 * `undefined` for an escape beyond U+10FFFF (Python refuses it too).
 */
function rawUnicodeEscape(s: string): string | undefined {
  let beyond = false;
  const text = s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_m, u: string | undefined, U: string | undefined) => {
    const c = parseInt((u ?? U)!, 16);
    beyond ||= c > 0x10ffff;
    return beyond ? '' : String.fromCodePoint(c);
  });
  return beyond ? undefined : text;
}

const simpleEscapes: Record<string, number> = {
  '\\': 0x5c, "'": 0x27, '"': 0x22, a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, '\n': -1,
};

/** Decodes a Python 2 `repr` of a str (the `STRING` opcode), or `undefined` when malformed. */
function stringLiteral(line: string): Uint8Array | undefined {
  const q = line[0];
  if (line.length < 2 || (q !== "'" && q !== '"') || line[line.length - 1] !== q) return undefined;
  const body = line.slice(1, -1);
  const out: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out.push(c.charCodeAt(0) & 0xff);
      continue;
    }
    const e = body[++i];
    if (e === undefined) return undefined;
    const simple = simpleEscapes[e];
    if (simple !== undefined) {
      if (simple >= 0) out.push(simple);
    } else if (e === 'x') {
      const hex = body.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return undefined;
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (/[0-7]/.test(e)) {
      const oct = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out.push(parseInt(oct, 8) & 0xff);
      i += oct.length - 1;
    } else out.push(0x5c, e.charCodeAt(0) & 0xff);
  }
  return Uint8Array.from(out);
}
