/**
 * Equality of dict keys as Python sees it, so that a decoded dict keeps one entry per key as
 * Python's does (wire-protocol §6.5): `None`; numbers by value across `bool`, `int` and `float`
 * (`True == 1 == 1.0`, `-0.0 == 0`); text and bytes each by content, never equal to each other;
 * tuples item by item. Any other key (a `NaN`, an inert object, a list or a dict) equals no
 * other key here.
 * @module
 */
import { type PickleValue, PyTuple } from './values.ts';

/** A string equal for two keys exactly when Python finds them equal, or `null` for a key equal to no other. */
export function keyIdentity(v: PickleValue): string | null {
  if (v === null) return 'N';
  switch (typeof v) {
    case 'boolean':
      return v ? 'n1' : 'n0';
    case 'bigint':
      return `n${v}`;
    case 'number':
      if (Number.isNaN(v)) return null;
      return Number.isInteger(v) ? `n${BigInt(v)}` : `f${v}`;
    case 'string':
      return `s${v}`;
  }
  if (v instanceof Uint8Array) return `b${Buffer.from(v.buffer, v.byteOffset, v.length).toString('hex')}`;
  if (v instanceof PyTuple) {
    const parts: string[] = [];
    for (const item of v.items) {
      const id = keyIdentity(item);
      if (id === null) return null;
      parts.push(id);
    }
    return `t${JSON.stringify(parts)}`;
  }
  return null;
}
