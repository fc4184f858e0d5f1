/**
 * Reference nodes as separate processes for the benchmarks: started with the control channel,
 * their events timestamped on arrival, their peak resident memory read from /proc.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ZRS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../cli/zrs.mjs');

export type Event = Record<string, unknown> & { at: number };

/** A running node. */
export class BenchNode {
  readonly events: Event[] = [];
  private listeners: ((e: Event) => void)[] = [];
  private nextId = 1;
  readonly exited: Promise<number | null>;

  private constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const e = { ...(JSON.parse(line) as Record<string, unknown>), at: performance.now() };
      this.events.push(e);
      for (const l of this.listeners) l(e);
    });
    proc.stderr!.on('data', () => undefined);
    this.exited = new Promise((r) => proc.once('exit', r));
  }

  /** Starts `zrs ARGS --control stdio` and waits for its ready event. */
  static async start(args: string[]): Promise<BenchNode & { ready: Event }> {
    const proc = spawn(process.execPath, [ZRS, ...args, '--control', 'stdio', '--log-level', 'warn'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const node = new BenchNode(proc);
    const ready = await node.next((e) => e.event === 'ready');
    return Object.assign(node, { ready });
  }

  /** The first event (already received or to come) that passes `test`. */
  next(test: (e: Event) => boolean): Promise<Event> {
    const seen = this.events.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const l = (e: Event) => {
        if (!test(e)) return;
        this.listeners = this.listeners.filter((x) => x !== l);
        resolve(e);
      };
      this.listeners.push(l);
    });
  }

  /** Sends a request without waiting; the response comes as an event with its id. */
  send(op: string, fields: Record<string, unknown> = {}): number {
    const id = this.nextId++;
    this.proc.stdin!.write(`${JSON.stringify({ id, op, ...fields })}\n`);
    return id;
  }

  async request(op: string, fields: Record<string, unknown> = {}): Promise<Event> {
    const id = this.send(op, fields);
    return this.next((e) => e.id === id);
  }

  /** Peak resident memory so far, in bytes (VmHWM). */
  peakRss(): number {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.proc.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  }

  async stop(): Promise<void> {
    this.proc.stdin!.end();
    await this.exited;
  }
}
