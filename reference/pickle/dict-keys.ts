/**
 * Equality of dict keys as Python sees it, so that a decoded dict keeps one entry per key as
 * Python's does (wire-protocol §6.5, WIRE-PICKLE-21): `None`; numbers by value across `bool`,
 * `int` and `float` (`True == 1 == 1.0`, `-0.0 == 0`); text and bytes each by content, never
 * equal to each other; tuples item by item; globals by module and name (`__builtin__` and
 * `copy_reg` read as Python 3's `builtins` and `copyreg`). Any other key (an inert object, a
 * list, a dict) is equal only to itself (fetched again from the memo); a `NaN` to no key.
 * @module
 */
import { type PickleValue, PyGlobal, PyTuple, python3Module } from './values.ts';

/** Gives keys a number, the same for two keys exactly when Python finds them equal; one instance per pickle. */
export class DictKeys {
  private readonly byValue = new Map<string, number>();
  private readonly byObject = new WeakMap<object, number>();
  private next = 0;

  /** The number of key `v`, or `null` for a key equal to no other (`NaN`). */
  of(v: PickleValue): number | null {
    if (v === null) return this.value('N');
    switch (typeof v) {
      case 'boolean':
        return this.value(v ? 'n1' : 'n0');
      case 'bigint':
        return this.value(`n${v}`);
      case 'number':
        if (Number.isNaN(v)) return null;
        return this.value(Number.isInteger(v) ? `n${BigInt(v)}` : `f${v}`);
      case 'string':
        return this.value(`s${v}`);
    }
    if (v instanceof Uint8Array) return this.value(`b${Buffer.from(v.buffer, v.byteOffset, v.length).toString('hex')}`);
    if (v instanceof PyGlobal) return this.value(`g${python3Module(v.module)}\n${v.name}`);
    const known = this.byObject.get(v);
    if (known !== undefined) return known;
    let id: number | null = null;
    if (v instanceof PyTuple) {
      // items by their numbers, so that nesting never makes the text longer than its items
      const items: number[] = [];
      for (const item of v.items) {
        const n = this.of(item);
        if (n === null) break;
        items.push(n);
      }
      if (items.length === v.items.length) id = this.value(`t${items.join(',')}`);
    }
    id ??= this.next++;
    this.byObject.set(v, id);
    return id;
  }

  private value(text: string): number {
    let id = this.byValue.get(text);
    if (id === undefined) this.byValue.set(text, (id = this.next++));
    return id;
  }
}
