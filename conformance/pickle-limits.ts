/**
 * Extensions at the decoding limits of wire-protocol §6.7. At the floors every decoder must
 * accept: nesting (WIRE-PICKLE-16), a large integer (WIRE-PICKLE-17) and memo references
 * (WIRE-PICKLE-18), as the protocol-3 pickles ZODB stores, and checks of what was decoded.
 * At and just over the limits a descriptor declares (WIRE-PICKLE-20): the extension field of
 * a `T`, as protocol-1 pickle text without `STOP`.
 * @module
 */
import type { PickleOptions } from '../reference/pickle/decoder.ts';
import { maxIntDigits, PICKLE_LIMIT_CEILING } from '../reference/pickle/limits.ts';
import { PyDict, type PickleValue } from '../reference/pickle/values.ts';

/** Lists nested this deep: under the floor of 500, and under the depth at which Python's pickler, which zc.zrs uses, gives up (about 500, less its own call depth). */
export const DEPTH = 400;
/** An integer of this many decimal digits: the floor, and the most Python converts to text. */
export const DIGITS = 4300;
/** A list of this many `None`s (logical size 1000), fetched this many times from the memo: 449 000 of the floor's 500 000. */
export const SHARED_ITEMS = 999;
export const FETCHES = 449;

const B = (s: string) => Buffer.from(s, 'latin1');
const key = (k: string) => Buffer.concat([B('X'), u32(k.length), B(k)]);
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

/** The integer of {@link DIGITS} nines. */
export const BIG = 10n ** BigInt(DIGITS) - 1n;

/** Little-endian two's complement bytes of a positive bigint, as `LONG1`/`LONG4` carry it. */
function longBytes(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  if (Number.parseInt(hex[0]!, 16) >= 8) hex = `00${hex}`; // keep the sign bit clear
  return Buffer.from(hex, 'hex').reverse();
}

/** Stored extensions (protocol 3), each `{key: value}`. */
export const storedExtension = {
  depth: () => Buffer.concat([B('\x80\x03}'), key('d'), B(']'.repeat(DEPTH) + 'a'.repeat(DEPTH - 1)), B('s.')]),
  integer: () => {
    const bytes = longBytes(BIG);
    return Buffer.concat([B('\x80\x03}'), key('i'), B('\x8b'), u32(bytes.length), bytes, B('s.')]);
  },
  shared: () => Buffer.concat([B('\x80\x03}'), key('e'), B('](]q\x01('), B('N'.repeat(SHARED_ITEMS)), B('e'), B('h\x01'.repeat(FETCHES)), B('es.')]),
};

/** The values of the extensions, for a primary under test to send. */
export const extensionValue = {
  depth: (): PyDict => {
    let v: PickleValue = [];
    for (let i = 1; i < DEPTH; i++) v = [v];
    return new PyDict([['d', v]]);
  },
  integer: (): PyDict => new PyDict([['i', BIG]]),
};

/** Depth of nested lists, or -1 when `v` is not a list whose only item (if any) is one. */
export function listDepth(v: PickleValue | undefined): number {
  let depth = 0;
  let x = v;
  while (Array.isArray(x)) {
    depth++;
    if (x.length === 0) return depth;
    if (x.length !== 1) return -1;
    x = x[0];
  }
  return -1;
}

/** True when `v` is {@link FETCHES} + 1 lists of {@link SHARED_ITEMS} `None`s. */
export function isSharedLists(v: PickleValue | undefined): boolean {
  return Array.isArray(v) && v.length === FETCHES + 1 && v.every((l) => Array.isArray(l) && l.length === SHARED_ITEMS && l.every((n) => n === null));
}

/**
 * A secondary's declared decoding limits (conformance.md §3), counted over the whole `T`
 * message as §6.7 defines them.
 */
export interface DecodingLimits {
  maxPickleValues?: number;
  maxPickleDepth?: number;
  maxPickleIntDigits?: number;
  maxPickleExpansion?: number;
}

/** The decoding limits a descriptor may declare, in the order cases are run. */
export const DECODING_LIMITS = ['maxPickleValues', 'maxPickleDepth', 'maxPickleIntDigits', 'maxPickleExpansion'] as const;

/** The highest declared limit at which the harness can decode what a secondary stored. */
export const HARNESS_CEILING: Record<keyof DecodingLimits, number> = {
  maxPickleValues: PICKLE_LIMIT_CEILING.maxItems,
  maxPickleDepth: PICKLE_LIMIT_CEILING.maxDepth,
  maxPickleIntDigits: maxIntDigits(PICKLE_LIMIT_CEILING.maxIntBytes),
  maxPickleExpansion: PICKLE_LIMIT_CEILING.maxExpansion,
};

/** The harness's decoding of stored extensions: every limit at its ceiling, and every pair of a dict kept, as stored. */
export const HARNESS_DECODING: PickleOptions = { ...PICKLE_LIMIT_CEILING, mergeKeys: false };

/** An extension at or over one declared limit, and what the secondary must have stored of one at it. */
export interface LimitProbe {
  limit: keyof DecodingLimits;
  /** The extension field of the `T`, as pickle opcodes. */
  extension: Buffer;
  /** What the message holds, for messages. */
  what: string;
}

/** Lists nested `n` deep: `]` n times, then `a` n − 1 times (no `MARK`). */
const nested = (n: number) => B(']'.repeat(n) + 'a'.repeat(n - 1));
/** An expansion of `units`: a dict whose `None` key is set again and again to a list of 999 `None`s (logical size 1000) or an empty list (1) fetched from the memo, and last to `None`. */
function expansion(units: number): Buffer {
  const big = Math.floor(units / 1000);
  const ones = units - 1000 * big;
  return Buffer.concat([B('}(N](' + 'N'.repeat(999) + 'eq\x01N]q\x02'), B('Nh\x01'.repeat(big)), B('Nh\x02'.repeat(ones)), B('NNu')]);
}

/** Extensions just over each declared limit: one value, level, digit or unit of expansion beyond it in the whole message. */
export const overLimit: Record<keyof DecodingLimits, (limit: number) => LimitProbe> = {
  // the list alone creates limit + 1 values
  maxPickleValues: (limit) => ({ limit: 'maxPickleValues', extension: Buffer.concat([B('}'), key('v'), B('](' + 'N'.repeat(limit + 1) + 'e'), B('s')]), what: `a list of ${limit + 1} None` }),
  // the message tuple, the payload tuple and the dict hold the lists: depth limit + 1
  maxPickleDepth: (limit) => ({ limit: 'maxPickleDepth', extension: Buffer.concat([B('}'), key('d'), nested(limit - 2), B('s')]), what: `lists nested ${limit - 2} deep (the message ${limit + 1})` }),
  maxPickleIntDigits: (limit) => ({ limit: 'maxPickleIntDigits', extension: Buffer.concat([B('}'), key('i'), B(`L${'9'.repeat(limit + 1)}L\n`), B('s')]), what: `an integer of ${limit + 1} digits` }),
  maxPickleExpansion: (limit) => ({ limit: 'maxPickleExpansion', extension: expansion(limit + 1), what: `memo fetches of logical size ${limit + 1}` }),
};

/**
 * Extensions at each declared limit, each storable: what pushes the message to the limit is a
 * key set again and again, which a dict holds once (WIRE-PICKLE-21). For values, the extension
 * creates 64 fewer than the limit: the rest of a `T` creates fewer than that however a decoder
 * counts (the reference counts 17).
 */
export const atLimit = {
  maxPickleValues: (limit: number) => {
    const pairs = Math.max(0, Math.floor((limit - 64 - 1) / 2));
    return {
      probe: { limit: 'maxPickleValues', extension: B('}(' + 'NN'.repeat(pairs) + 'u'), what: `a dict whose None key is set ${pairs} times (${2 * pairs + 1} values)` } as LimitProbe,
      stored: (e: PyDict) => e.entries.length === 1 && e.entries[0]![0] === null && e.entries[0]![1] === null,
      repeatsKey: true,
    };
  },
  maxPickleDepth: (limit: number) => ({
    probe: { limit: 'maxPickleDepth', extension: Buffer.concat([B('}'), key('d'), nested(limit - 3), B('s')]), what: `lists nested ${limit - 3} deep (the message ${limit})` } as LimitProbe,
    stored: (e: PyDict) => listDepth(e.get('d')) === limit - 3,
    repeatsKey: false,
  }),
  maxPickleIntDigits: (limit: number) => ({
    probe: { limit: 'maxPickleIntDigits', extension: Buffer.concat([B('}'), key('i'), B(`L${'9'.repeat(limit)}L\n`), B('s')]), what: `an integer of ${limit} digits` } as LimitProbe,
    stored: (e: PyDict) => e.get('i') === 10n ** BigInt(limit) - 1n,
    repeatsKey: false,
  }),
  maxPickleExpansion: (limit: number) => ({
    probe: { limit: 'maxPickleExpansion', extension: expansion(limit), what: `memo fetches of logical size ${limit}` } as LimitProbe,
    // one entry (WIRE-PICKLE-21), whose value is the last set: None
    stored: (e: PyDict) => e.entries.length === 1 && e.entries[0]![0] === null && e.entries[0]![1] === null,
    repeatsKey: true,
  }),
};
