// Progress of long operations: a status line on a terminal, nothing when output is not one.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { generateLog } from '../bench/generate.ts';
import { duration, ProgressLine } from '../cli/progress.ts';
import { hex8 } from '../timestamp.ts';
import { nodeSession, records, ZRS_BIN } from './processes.ts';

const { ws, start } = nodeSession('progress');

/** A terminal stream that records what is written to it. */
function terminal(columns = 80) {
  const written: string[] = [];
  return { isTTY: true, columns, written, write: (t: string) => written.push(t) };
}

describe('the progress line', () => {
  it('is not there when the stream is not a terminal', () => {
    expect(ProgressLine.of({ write: () => undefined })).toBeNull();
    expect(ProgressLine.of({ isTTY: false, write: () => undefined })).toBeNull();
  });

  it('redraws in place at most every 200 ms, cut to the width, and keeps log lines above it', () => {
    const t = terminal(20);
    const line = ProgressLine.of(t)!;
    const made: string[] = [];
    const text = (s: string) => () => (made.push(s), s);
    line.show(text('first'), 1000);
    line.show(text('second'), 1100); // too soon: not drawn, not even made
    line.write('a log line\n');
    line.show(text('a rather long third text'), 1300);
    line.clear();
    line.clear(); // nothing left to clear
    expect(made).toEqual(['first', 'a rather long third text']);
    expect(t.written).toEqual(['\r\x1b[Kfirst', '\r\x1b[Ka log line\nfirst', '\r\x1b[Ka rather long third', '\r\x1b[K']);
  });

  it('writes durations for people', () => {
    expect([850, 12_340, 245_000, 3 * 3600_000 + 125_000, 5 * 86_400_000 + 4 * 3600_000].map(duration)).toEqual(['850 ms', '12.3 s', '4 min 5 s', '3 h 2 min', '5 d 4 h']);
  });
});

/** Runs `zrs ARGS` on a pseudo-terminal (util-linux `script`) until `until` appears in its output. */
async function onTerminal(args: string[], until: RegExp, timeoutMs = 30_000): Promise<string> {
  const command = `stty cols 200; ${[process.execPath, ZRS_BIN, ...args].map((a) => `'${a}'`).join(' ')}`;
  const proc = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${until} within ${timeoutMs} ms; output:\n${out}`)), timeoutMs);
      proc.stdout!.on('data', () => until.test(out) && (clearTimeout(timer), resolve()));
    });
  } finally {
    process.kill(-proc.pid!, 'SIGTERM');
  }
  return out;
}

describe('zrs secondary on a terminal', () => {
  it('shows its catch-up, then a summary once caught up; with its output in a pipe, nothing of it', async () => {
    // a log dated 2026-01-01: far behind the clock, so replicating it is a catch-up
    const file = ws.file('old.fs');
    const log = generateLog(file, { recordSize: 1000, recordsPerTxn: 2, totalBytes: 2 << 20 });
    const p = await start(['primary', '--fs', file, '--listen', '127.0.0.1:0']);
    const from = p.ready.listen as string;
    const shown = onTerminal(['secondary', '--fs', ws.file('tty.fs'), '--from', from, '--log-level', 'warn'], /caught up: [^\r\n]*\r?\n/);
    const piped = await start(['secondary', '--fs', ws.file('pipe.fs'), '--from', from]);
    await piped.committed(hex8(log.lastTid));
    // a transaction of now ends the catch-up
    const now = await p.request('commit', { records: records(1, 10, 1) });
    await piped.committed(now.tid as string);
    const out = await shown;
    expect(out).toMatch(/catching up: \d+ transactions, [\d.]+ MB, [\d.]+ MB\/s; at 2026-01-01 [\d:.]+, \d+ d \d+ h behind/);
    expect(out).toMatch(new RegExp(`caught up: ${log.transactions + 1} transactions, [\\d.]+ MB in [\\d.]+ (ms|s); last \\d{4}-`));
    expect(piped.stderr).not.toMatch(/catching up|caught up|\x1b\[K/);
  });
});
