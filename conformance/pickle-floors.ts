/**
 * Extension dicts at the decoding floors of wire-protocol §6.7, which every decoder must
 * accept: nesting (WIRE-PICKLE-16), a large integer (WIRE-PICKLE-17) and memo references
 * (WIRE-PICKLE-18); as the protocol-3 pickles ZODB stores, and checks of what was decoded.
 * @module
 */
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
