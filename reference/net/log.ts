/**
 * Logging for the running nodes: one line per event, with the peer it concerns, as text for
 * people or JSON for machines.
 * @module
 */

/** Severity of an event. */
export type Level = 'debug' | 'info' | 'warn' | 'error';

/** Extra facts about an event (peer address, tid, offset, ...). */
export type Fields = Record<string, string | number | boolean | null | undefined>;

/** Where events go. */
export interface Logger {
  log(level: Level, event: string, message: string, fields?: Fields): void;
}

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** A logger writing one line per event to a stream (stderr by default). */
export function streamLogger(options: {
  format?: 'text' | 'json';
  level?: Level;
  out?: { write(text: string): unknown };
  name?: string;
}): Logger {
  const format = options.format ?? 'text';
  const min = ORDER[options.level ?? 'info'];
  const out = options.out ?? process.stderr;
  return {
    log(level, event, message, fields = {}) {
      if (ORDER[level] < min) return;
      const time = new Date().toISOString();
      const defined = Object.entries(fields).filter(([, v]) => v !== undefined);
      if (format === 'json') {
        out.write(`${JSON.stringify({ time, level, node: options.name, event, message, ...Object.fromEntries(defined) })}\n`);
      } else {
        const extra = defined.map(([k, v]) => ` ${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : v}`).join('');
        out.write(`${time} ${level.toUpperCase().padEnd(5)} ${options.name ? `${options.name} ` : ''}${event}: ${message}${extra}\n`);
      }
    },
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = { log() {} };
