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
   * digits as fit that many bytes whatever they are ({@link maxIntDigits}), so that a decimal
   * integer accepted is also accepted once written again in binary.
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

/** The least each limit may be set: what every decoder must accept (wire-protocol §6.7, WIRE-PICKLE-15 to 18). */
export const PICKLE_LIMIT_FLOOR: Readonly<PickleLimits> = Object.freeze({
  maxItems: 600_000,
  maxDepth: 500,
  maxIntBytes: 1786,
  maxExpansion: 500_000,
});

/**
 * The highest each limit may be set: a JS Map (the memo) holds fewer than 2^24 entries; the
 * encoder writes no deeper than the default depth (so a secondary can store all it accepts); no
 * stored extension holds an integer of more than 65535 bytes.
 */
export const PICKLE_LIMIT_CEILING: Readonly<PickleLimits> = Object.freeze({
  maxItems: 2 ** 24 - 1,
  maxDepth: PICKLE_LIMITS.maxDepth,
  maxIntBytes: 65_535,
  maxExpansion: 2 ** 24 - 1,
});

/** The limits in force: the defaults, with the fields given (and not undefined) replacing them, each at most its ceiling. */
export function resolveLimits(given?: Partial<PickleLimits>): PickleLimits {
  const field = (k: keyof PickleLimits) => Math.min(given?.[k] ?? PICKLE_LIMITS[k], PICKLE_LIMIT_CEILING[k]);
  return { maxItems: field('maxItems'), maxDepth: field('maxDepth'), maxIntBytes: field('maxIntBytes'), maxExpansion: field('maxExpansion') };
}

/**
 * Most decimal digits accepted with a binary limit of `bytes`: ⌊(8·bytes − 1)·log10 2⌋, so
 * that every integer of that many digits, whatever its sign, takes at most `bytes` bytes in
 * two's complement (4096 bytes: 9863 digits).
 */
export function maxIntDigits(bytes: number): number {
  return Math.floor((8 * bytes - 1) * Math.log10(2));
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
