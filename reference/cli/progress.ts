/**
 * Progress of long operations (a secondary's catch-up, fsck of a large file, the benchmark's
 * input generation): one status line on a terminal, redrawn in place at most five times a
 * second. When the stream is not a terminal there is no line at all, so logs and pipes stay
 * clean.
 * @module
 */
import type { Secondary } from '../secondary/secondary.ts';
import { tidToString, tidToUnixSeconds } from '../timestamp.ts';

/** Redraws no more often than this. */
const REDRAW_MS = 200;
const CLEAR = '\r\x1b[K';

/** A terminal stream, as `process.stderr` is when it is one. */
export interface TerminalStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

/** The status line of one terminal stream. */
export class ProgressLine {
  private text = '';
  private drawnAt = 0;

  private constructor(private readonly stream: TerminalStream) {}

  /** The status line of `stream`, or `null` when it is not a terminal. */
  static of(stream: TerminalStream = process.stderr): ProgressLine | null {
    return stream.isTTY ? new ProgressLine(stream) : null;
  }

  /**
   * Draws the text `make` gives (cut to the terminal's width) if the last redraw is old
   * enough; otherwise does nothing, not even call `make`.
   */
  show(make: () => string, now = Date.now()): void {
    if (now - this.drawnAt < REDRAW_MS) return;
    this.text = make().slice(0, Math.max(10, (this.stream.columns || 80) - 1));
    this.drawnAt = now;
    this.stream.write(`${CLEAR}${this.text}`);
  }

  /** Removes the line. */
  clear(): void {
    if (this.text) this.stream.write(CLEAR);
    this.text = '';
    this.drawnAt = 0;
  }

  /** Writes whole lines (log lines) above the status line, which is then drawn again. */
  write(lines: string): void {
    this.stream.write(this.text ? `${CLEAR}${lines}${this.text}` : lines);
  }
}

/** A secondary counts as catching up while its last transaction is older than this. */
const BEHIND_MS = 5000;

/**
 * Shows a secondary's catch-up on `line`: transactions and bytes received, the rate, and the
 * time of the last transaction applied with how far behind now it is. The line appears while
 * that transaction is more than 5 s old, and gives way to a one-line summary once the
 * secondary has caught up. Returns a function that stops showing it.
 */
export function showCatchUp(secondary: Secondary, line: ProgressLine): () => void {
  let burst: { at: number; transactions: number; bytes: number } | null = null;
  const onCommitted = (tid: Buffer) => {
    const now = Date.now();
    const behind = now - tidToUnixSeconds(tid) * 1000;
    if (behind <= BEHIND_MS) {
      line.clear();
      if (burst) line.write(`${summary(burst, now, tid)}\n`);
      burst = null;
      return;
    }
    burst ??= { at: now, transactions: 0, bytes: secondary.receivedBytes };
    burst.transactions++;
    const b = burst;
    line.show(() => {
      const megabytes = (secondary.receivedBytes - b.bytes) / 1e6;
      const rate = megabytes / Math.max((now - b.at) / 1000, 0.001);
      return `catching up: ${b.transactions} transactions, ${megabytes.toFixed(1)} MB, ${rate.toFixed(1)} MB/s; at ${tidToString(tid)}, ${duration(behind)} behind`;
    }, now);
  };
  const summary = (b: NonNullable<typeof burst>, now: number, tid: Buffer) =>
    `caught up: ${b.transactions + 1} transactions, ${((secondary.receivedBytes - b.bytes) / 1e6).toFixed(1)} MB in ${duration(now - b.at)}; last ${tidToString(tid)}`;
  secondary.on('committed', onCommitted);
  return () => {
    secondary.off('committed', onCommitted);
    line.clear();
  };
}

/** A duration for people: `850 ms`, `12.3 s`, `4 min 5 s`, `3 h 2 min`, `5 d 4 h`. */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const [unit, next, big, small] = s < 3600 ? [60, 1, 'min', 's'] : s < 86400 ? [3600, 60, 'h', 'min'] : [86400, 3600, 'd', 'h'];
  return `${Math.floor(s / unit)} ${big} ${Math.floor((s % unit) / next)} ${small}`;
}
