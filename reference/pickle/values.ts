/**
 * The values a ZRS pickle can hold, as plain TypeScript data.
 *
 * Python types map one to one, so that a decoded value re-encodes to the same pickle:
 * `None` → `null`, `bool` → `boolean`, `int` → `bigint`, `float` → `number`, `str` →
 * `string`, `bytes` → `Uint8Array`, `list` → array, `tuple` → {@link PyTuple}, `dict` →
 * {@link PyDict}. Anything else (a class reference, a reduce call, an object built from
 * state) is kept as an inert node — never imported, never called.
 * @module
 */

/** A decoded pickle value. */
export type PickleValue =
  | null
  | boolean
  | bigint
  | number
  | string
  | Uint8Array
  | PickleValue[]
  | PyTuple
  | PyDict
  | InertValue;

/** Nodes that describe a Python object without creating it. */
export type InertValue = PyGlobal | PyReduce | PyBuild | PyInst | PyObj | PyNewObj;

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: PickleValue[]) {}
}

/** A Python dict: entries in insertion order, keys of any type. */
export class PyDict {
  constructor(readonly entries: [PickleValue, PickleValue][] = []) {}

  /** The value stored under a text key, or `undefined`. */
  get(key: string): PickleValue | undefined {
    for (const [k, v] of this.entries) if (k === key) return v;
    return undefined;
  }
}

/** Python 2 module names that Python 3's unpickler reads as another module (the ones ZRS meets). */
const PYTHON3_MODULE: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

/** The module a Python 3 unpickler resolves `module` to: `__builtin__` is `builtins`, `copy_reg` is `copyreg`. */
export function python3Module(module: string): string {
  return PYTHON3_MODULE[module] ?? module;
}

/** A reference to a module-level name (`GLOBAL`), never resolved. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    /** Offset of the opcode in the pickle it was decoded from, or -1. */
    readonly offset = -1,
  ) {}

  /** True when this names `module.name` once read as Python 3 reads it. */
  is(module: string, name: string): boolean {
    return this.name === name && python3Module(this.module) === module;
  }
}

/** `callable(*args)` as `REDUCE` records it, never called. */
export class PyReduce {
  constructor(
    readonly callable: PickleValue,
    readonly args: PickleValue,
    readonly offset = -1,
  ) {}
}

/** `obj.__setstate__(state)` as `BUILD` records it, never applied. */
export class PyBuild {
  constructor(
    readonly object: PickleValue,
    readonly state: PickleValue,
    readonly offset = -1,
  ) {}
}

/** An instance created by the protocol 0 `INST` opcode. */
export class PyInst {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly args: PickleValue[],
    readonly offset = -1,
  ) {}
}

/** An instance created by the `OBJ` opcode. */
export class PyObj {
  constructor(
    readonly cls: PickleValue,
    readonly args: PickleValue[],
    readonly offset = -1,
  ) {}
}

/** An instance created by the protocol 2 `NEWOBJ` opcode (`cls.__new__(cls, *args)`). */
export class PyNewObj {
  constructor(
    readonly cls: PickleValue,
    readonly args: PickleValue[],
    readonly offset = -1,
  ) {}
}

/** True when `v` is one of the inert object nodes. */
export function isInert(v: PickleValue): v is InertValue {
  return (
    v instanceof PyGlobal ||
    v instanceof PyReduce ||
    v instanceof PyBuild ||
    v instanceof PyInst ||
    v instanceof PyObj ||
    v instanceof PyNewObj
  );
}
