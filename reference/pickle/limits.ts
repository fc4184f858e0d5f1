/**
 * The bounds the pickle decoder enforces on one pickle (wire-protocol.md §6.7). Each is checked
 * before the work it bounds and fails with its own `PickleError` code, so that a hostile
 * peer can neither exhaust memory or the stack nor freeze the event loop, and so that anything
 * walking a decoded value afterwards (re-encoding, JSON) does bounded work.
 * @module
 */

/** Limits of the decoder; the options of `loadPickle` and `readPickle` may override each. */
export interface PickleLimits {
  /** Values the pickle creates (a memo `GET` or `DUP` creates none), and entries of its memo. */
  maxItems: number;
  /**
   * Nesting depth of any value: text, bytes, numbers, `None` and globals are 0, a list, tuple,
   * dict or object is 1 more than its deepest part. Also the `MARK`s open at once.
   */
  maxDepth: number;
  /**
   * Bytes of a binary integer (`LONG1`, `LONG4`). A decimal one (`INT`, `LONG`) may have as
   * many digits as the largest unsigned integer of that many bytes ({@link maxIntDigits}).
   */
  maxIntBytes: number;
  /**
   * What references to values built earlier (memo `GET`, `DUP`) add: the sum, over every
   * reference, of the logical size of the value referenced: 1 for each value inside it,
   * counted as often as it is referenced, plus the {@link scalarSize} extras.
   */
  maxExpansion: number;
}

/** The defaults; wire-protocol.md §6.7 justifies them. */
export const PICKLE_LIMITS: Readonly<PickleLimits> = Object.freeze({
  maxItems: 1_000_000,
  maxDepth: 1000,
  maxIntBytes: 4096,
  maxExpansion: 1_000_000,
});

/** Error codes, one per limit, and that of a list or dict changed after it was referenced again. */
export const LimitCode = {
  items: 'ERR_PICKLE_TOO_MANY_ITEMS',
  depth: 'ERR_PICKLE_TOO_DEEP',
  int: 'ERR_PICKLE_INT_TOO_LARGE',
  expansion: 'ERR_PICKLE_EXPANSION',
  cycle: 'ERR_PICKLE_CYCLE',
} as const;

/** Requirement IDs of wire-protocol.md §6.7, by limit. */
export const LimitRequirement = {
  items: 'WIRE-PICKLE-15',
  depth: 'WIRE-PICKLE-16',
  int: 'WIRE-PICKLE-17',
  expansion: 'WIRE-PICKLE-18',
  cycle: 'WIRE-PICKLE-19',
} as const;

/** A JS Map holds at most 2^24 entries; the item limit never goes beyond it. */
const MAP_CAPACITY = 2 ** 24;

/** The limits in force: the defaults, with the fields given (and not undefined) replacing them. */
export function resolveLimits(given?: Partial<PickleLimits>): PickleLimits {
  const field = (k: keyof PickleLimits) => given?.[k] ?? PICKLE_LIMITS[k];
  return {
    maxItems: Math.min(field('maxItems'), MAP_CAPACITY - 1),
    maxDepth: field('maxDepth'),
    maxIntBytes: field('maxIntBytes'),
    maxExpansion: field('maxExpansion'),
  };
}

/** Digits of the largest unsigned integer of `bytes` bytes: ⌊8·bytes·log10 2⌋ + 1. */
export function maxIntDigits(bytes: number): number {
  return Math.floor(8 * bytes * Math.log10(2)) + 1;
}

/**
 * Logical size of a plain value that holds no other value: 1, plus the length of a text
 * (UTF-16 units) or bytes, or the bytes of an integer beyond 32 bits.
 */
export function scalarSize(v: string | Uint8Array | bigint | number | boolean | null): number {
  if (typeof v === 'string' || v instanceof Uint8Array) return 1 + v.length;
  if (typeof v === 'bigint') return v >= -0x80000000n && v <= 0x7fffffffn ? 1 : 1 + Math.ceil(v.toString(16).length / 2);
  return 1;
}
