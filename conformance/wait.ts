/**
 * Waiting by polling, for what the harness cannot be told about (a file that grows, a
 * connection that comes, a tid a node reports): one helper, so that every wait is bounded
 * and every timeout says what was awaited and what was last seen.
 * @module
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitOptions {
  /** Give up after this long (default 20 s). */
  timeoutMs?: number;
  /** Poll this often (default 20 ms). */
  everyMs?: number;
  /** What was last seen, for the timeout's message. */
  seen?: () => string;
}

/**
 * Polls `probe` until it gives a truthy value, and returns that value. After `timeoutMs`
 * throws an Error naming `what` (and what was last seen).
 */
export async function until<T>(what: string, probe: () => T | Promise<T>, o: WaitOptions = {}): Promise<NonNullable<T>> {
  const timeoutMs = o.timeoutMs ?? 20_000;
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${o.seen ? `; last seen: ${o.seen()}` : ''}`);
    await sleep(o.everyMs ?? 20);
  }
}
