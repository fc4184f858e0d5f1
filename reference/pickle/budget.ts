/**
 * The accounting behind the decoder's limits ({@link PickleLimits}): values created, `MARK`s
 * open, the expansion of memo references, and the logical size and depth of every list,
 * tuple, dict and object the decoder builds.
 *
 * A list or dict is frozen when it is referenced again (memo `GET`, `DUP`); adding to it
 * afterwards is refused. Python's pickler does that only for a value that contains itself. A
 * value placed inside another leaves the stack, so it can be reached again only through such a
 * reference: the size and depth counted for it never go stale, and a decoded value has no cycle.
 *
 * Records are kept in a map for the values that hold something, and for those referenced
 * again. An empty list, tuple or dict needs none (its size and depth are 1), so a pickle of
 * one-byte empty containers, the cheapest way to make many values, adds no map entry.
 * @module
 */
import { LimitCode, LimitRequirement, maxIntDigits, type PickleLimits, scalarSize } from './limits.ts';
import { type PickleValue, PyDict, PyGlobal, PyTuple } from './values.ts';

/** Reports a refusal; the decoder adds the offset and the opcode. */
export type Refuse = (code: string, what: string, requirement: string) => never;

interface Meta {
  size: number;
  depth: number;
  /** Referenced again: no longer grows. */
  frozen: boolean;
}

/** Counts and measures what one pickle builds, and refuses it beyond the limits. */
export class Budget {
  private items = 0;
  private marks = 0;
  private expansion = 0;
  private readonly meta = new Map<object, Meta>();
  private readonly maxDigits: number;

  constructor(
    private readonly limits: PickleLimits,
    private readonly refuse: Refuse,
  ) {
    this.maxDigits = maxIntDigits(limits.maxIntBytes);
  }

  /**
   * Counts a new value. `parts` are the values a list, tuple, dict or object is made of
   * (empty for an empty one); they make its size and depth.
   */
  created<T extends PickleValue>(v: T, parts?: PickleValue[]): T {
    if (++this.items > this.limits.maxItems) {
      this.refuse(LimitCode.items, `more than ${this.limits.maxItems} values`, LimitRequirement.items);
    }
    if (parts?.length) {
      const m: Meta = { size: 1, depth: 1, frozen: false };
      this.adopt(m, parts);
      this.meta.set(v as object, m);
    }
    return v;
  }

  /** Adds `parts` to a list or dict, which must not have been referenced again. */
  grow(target: PickleValue[] | PyDict, parts: PickleValue[]): void {
    const m = this.record(target);
    if (m.frozen) {
      this.refuse(LimitCode.cycle, `${Array.isArray(target) ? 'list' : 'dict'} changed after it was referenced again`, LimitRequirement.cycle);
    }
    this.adopt(m, parts);
  }

  /** A memo `GET` or `DUP`: adds the logical size of `v` to the expansion, and freezes `v`. */
  referenced<T extends PickleValue>(v: T): T {
    let size: number;
    if (holdsValues(v)) {
      const m = this.record(v);
      m.frozen = true;
      size = m.size;
    } else size = leafSize(v);
    this.expansion += size;
    if (this.expansion > this.limits.maxExpansion) {
      this.refuse(LimitCode.expansion, `memo references expand to more than ${this.limits.maxExpansion}`, LimitRequirement.expansion);
    }
    return v;
  }

  /** A memo entry is about to be added to a memo of `entries`. */
  memoEntry(entries: number): void {
    if (entries >= this.limits.maxItems) {
      this.refuse(LimitCode.items, `more than ${this.limits.maxItems} memo entries`, LimitRequirement.items);
    }
  }

  mark(): void {
    if (++this.marks > this.limits.maxDepth) {
      this.refuse(LimitCode.depth, `more than ${this.limits.maxDepth} MARKs open`, LimitRequirement.depth);
    }
  }

  unmark(): void {
    this.marks--;
  }

  /** A binary integer of `n` bytes is about to be read. */
  intBytes(n: number): void {
    if (n > this.limits.maxIntBytes) {
      this.refuse(LimitCode.int, `integer of ${n} bytes, more than ${this.limits.maxIntBytes}`, LimitRequirement.int);
    }
  }

  /** A decimal integer of `n` digits is about to be converted. */
  intDigits(n: number): void {
    if (n > this.maxDigits) {
      this.refuse(LimitCode.int, `integer of ${n} digits, more than ${this.maxDigits}`, LimitRequirement.int);
    }
  }

  /** Adds the sizes and depths of `parts` to `m`. */
  private adopt(m: Meta, parts: PickleValue[]): void {
    let depth = m.depth - 1;
    let size = m.size;
    for (const p of parts) {
      if (!holdsValues(p)) {
        size += leafSize(p);
        continue;
      }
      const pm = isEmpty(p) ? undefined : this.meta.get(p);
      size += pm ? pm.size : 1;
      depth = Math.max(depth, pm ? pm.depth : 1);
    }
    m.size = size;
    m.depth = depth + 1;
    if (m.depth > this.limits.maxDepth) {
      this.refuse(LimitCode.depth, `value nested deeper than ${this.limits.maxDepth} levels`, LimitRequirement.depth);
    }
  }

  /** The record of a value that holds values; made now for one without (it is empty). */
  private record(v: object): Meta {
    let m = this.meta.get(v);
    if (!m) {
      m = { size: 1, depth: 1, frozen: false };
      this.meta.set(v, m);
    }
    return m;
  }
}

/** A list, tuple, dict or object: anything but a scalar, bytes or a global. */
function holdsValues(v: PickleValue): v is object & PickleValue {
  return typeof v === 'object' && v !== null && !(v instanceof Uint8Array) && !(v instanceof PyGlobal);
}

/** An empty list, tuple or dict: no record needed. */
function isEmpty(v: object): boolean {
  if (Array.isArray(v)) return v.length === 0;
  if (v instanceof PyDict) return v.entries.length === 0;
  return v instanceof PyTuple && v.items.length === 0;
}

/** Logical size of a scalar, bytes or a global (its module and name count as text). */
function leafSize(v: PickleValue): number {
  if (v instanceof PyGlobal) return 1 + v.module.length + v.name.length;
  return scalarSize(v as string | Uint8Array | bigint | number | boolean | null);
}
