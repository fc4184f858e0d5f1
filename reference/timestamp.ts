/**
 * Transaction ids (tids) are ZODB TimeStamps: 8 bytes, two big-endian u32.
 *
 * High word: minutes since 1900-01-01 00:00 UTC in a calendar of 12 months of 31 days.
 * Low word: the fraction of the minute, `seconds * 2^32 / 60`. Comparing the 8 bytes as
 * an unsigned number orders tids in time.
 * @module
 */
import { TimeStampError } from './errors.ts';

/** The tid of "no transaction": eight zero bytes. */
export const Z64: Buffer = Buffer.alloc(8);

/** The calendar fields of a tid. `second` is a fraction, exact to the low word. */
export interface TimeStampParts {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const MINUTES_PER_DAY = 24 * 60;

function checkTid(tid: Uint8Array): void {
  if (tid.length !== 8) throw new TimeStampError('ERR_TID_LENGTH', `a tid has 8 bytes, not ${tid.length}`);
}

function words(tid: Uint8Array): [number, number] {
  checkTid(tid);
  const v = new DataView(tid.buffer, tid.byteOffset, 8);
  return [v.getUint32(0), v.getUint32(4)];
}

/** Splits a tid into its calendar fields. */
export function tidToParts(tid: Uint8Array): TimeStampParts & { fraction: number } {
  const [hi, lo] = words(tid);
  let rest = hi;
  const minute = rest % 60;
  rest = Math.floor(rest / 60);
  const hour = rest % 24;
  rest = Math.floor(rest / 24);
  const day = (rest % 31) + 1;
  rest = Math.floor(rest / 31);
  const month = (rest % 12) + 1;
  const year = Math.floor(rest / 12) + 1900;
  // 60 / 2^32 = 15 / 2^30 is exact in binary, so `second` is the exact value.
  return { year, month, day, hour, minute, second: (lo * 15) / 2 ** 30, fraction: lo };
}

/**
 * Builds a tid from calendar fields, as `TimeStamp(y, mo, d, h, mi, s)` does: the low word
 * is `floor(s * 2^32 / 60)`.
 */
export function tidFromParts(p: TimeStampParts): Buffer {
  const { year, month, day, hour, minute, second } = p;
  const ok =
    Number.isInteger(year) && year >= 1900 &&
    Number.isInteger(month) && month >= 1 && month <= 12 &&
    Number.isInteger(day) && day >= 1 && day <= 31 &&
    Number.isInteger(hour) && hour >= 0 && hour < 24 &&
    Number.isInteger(minute) && minute >= 0 && minute < 60 &&
    second >= 0 && second < 60;
  if (!ok) throw new TimeStampError('ERR_TID_DATE', `not a TimeStamp date: ${JSON.stringify(p)}`);
  const hi = ((((year - 1900) * 12 + month - 1) * 31 + day - 1) * 24 + hour) * 60 + minute;
  if (hi > 0xffffffff) throw new TimeStampError('ERR_TID_DATE', `year ${year} is beyond what a tid can hold`);
  const lo = Math.min(Math.floor((second * 2 ** 32) / 60), 0xffffffff);
  const out = Buffer.alloc(8);
  out.writeUInt32BE(hi, 0);
  out.writeUInt32BE(lo, 4);
  return out;
}

/**
 * The TimeStamp string form, `YYYY-MM-DD HH:MM:SS.ffffff`, with the seconds rounded to six
 * places half to even on the exact value, as Python's `%09.6f` prints them.
 */
export function tidToString(tid: Uint8Array): string {
  const p = tidToParts(tid);
  // seconds * 10^6 = lo * 15 * 10^6 / 2^30, rounded half to even.
  const scaled = BigInt(p.fraction) * 15_000_000n;
  let micros = scaled >> 30n;
  const rem = scaled & ((1n << 30n) - 1n);
  const half = 1n << 29n;
  if (rem > half || (rem === half && (micros & 1n) === 1n)) micros += 1n;
  const whole = micros / 1_000_000n;
  const frac = micros % 1_000_000n;
  const pad = (n: number | bigint, w: number) => String(n).padStart(w, '0');
  return (
    `${pad(p.year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)} ` +
    `${pad(p.hour, 2)}:${pad(p.minute, 2)}:${pad(whole, 2)}.${pad(frac, 6)}`
  );
}

/** Parses the string form back into a tid (`YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]`). */
export function tidFromString(text: string): Buffer {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?)?$/.exec(text.trim());
  if (!m) throw new TimeStampError('ERR_TID_DATE', `not a TimeStamp string: ${JSON.stringify(text)}`);
  return tidFromParts({
    year: Number(m[1]),
    month: Number(m[2]),
    day: Number(m[3]),
    hour: Number(m[4] ?? 0),
    minute: Number(m[5] ?? 0),
    second: Number(m[6] ?? 0),
  });
}

/**
 * Seconds since the Unix epoch, as `TimeStamp.timeTime()` computes them: the calendar
 * fields are taken as a real UTC date (days past a month's end roll into the next month).
 */
export function tidToUnixSeconds(tid: Uint8Array): number {
  const p = tidToParts(tid);
  const [hi] = words(tid);
  const dayMinutes = hi % MINUTES_PER_DAY;
  const midnight = Date.UTC(p.year, p.month - 1, 1) / 1000 + (p.day - 1) * 86400;
  return midnight + dayMinutes * 60 + p.second;
}

/** Builds the tid of a moment given in milliseconds since the Unix epoch. */
export function tidFromUnixMillis(ms: number): Buffer {
  const d = new Date(ms);
  const second = d.getUTCSeconds() + (ms - Math.floor(ms / 1000) * 1000) / 1000;
  return tidFromParts({
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second,
  });
}

/** Compares two tids as unsigned 64-bit numbers: negative, zero or positive. */
export function compareTids(a: Uint8Array, b: Uint8Array): number {
  checkTid(a);
  checkTid(b);
  return Buffer.compare(a, b);
}

/**
 * `TimeStamp.laterThan`: `tid` itself when it is greater than `previous`, otherwise the
 * smallest tid greater than `previous` (one more in the low word, carrying into the minutes,
 * and from the last real day of a month into the next month).
 */
export function laterThan(tid: Uint8Array, previous: Uint8Array): Buffer {
  if (compareTids(tid, previous) > 0) return Buffer.from(tid);
  const [hi, lo] = words(previous);
  const out = Buffer.alloc(8);
  if (lo < 0xffffffff) {
    out.writeUInt32BE(hi, 0);
    out.writeUInt32BE(lo + 1, 4);
    return out;
  }
  // Next minute, keeping to real calendar days as persistent's C TimeStamp does.
  const p = tidToParts(previous);
  const next = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute + 1);
  if (!Number.isFinite(next)) throw new TimeStampError('ERR_TID_OVERFLOW', 'no tid follows this one');
  const t = tidFromUnixMillis(next);
  t.writeUInt32BE(0, 4);
  return t;
}

/** Hex form of a tid or oid (16 lower-case digits). */
export function hex8(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');
}
