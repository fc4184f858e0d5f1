/** Runs `zrs` nodes as real processes, driven over their control channel. */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll } from 'vitest';
import { workspace } from './helpers.ts';
import { REPO_ROOT } from './interop.ts';

export const ZRS_BIN = path.join(REPO_ROOT, 'reference/cli/zrs.mjs');

type Message = Record<string, unknown>;

/** A running `zrs` process with `--control stdio`. */
export class NodeProcess {
  readonly messages: Message[] = [];
  private waiters: { test: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  private nextId = 1;
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as Message;
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => (w.test(m) ? (w.resolve(m), false) : true));
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Starts `zrs ARGS --control stdio` and waits for its `ready` event. */
  static async start(args: string[]): Promise<NodeProcess & { ready: Message }> {
    const proc = spawn(process.execPath, [ZRS_BIN, ...args, '--control', 'stdio', '--log-level', 'debug'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const node = new NodeProcess(proc);
    const ready = await Promise.race([
      node.waitFor((m) => m.event === 'ready'),
      node.exited.then(({ code }) => {
        throw new Error(`zrs ${args[0]} exited with ${code} before it was ready:\n${node.stderr}`);
      }),
    ]);
    return Object.assign(node, { ready });
  }

  /** The next message (already received or to come) that passes `test`. */
  waitFor(test: (m: Message) => boolean, timeoutMs = 30_000): Promise<Message> {
    const seen = this.messages.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching message within ${timeoutMs} ms; stderr:\n${this.stderr.slice(-3000)}`)), timeoutMs);
      this.waiters.push({ test, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }

  /** Sends a request and waits for its response. */
  async request(op: string, fields: Message = {}): Promise<Message> {
    const id = this.nextId++;
    this.proc.stdin!.write(`${JSON.stringify({ id, op, ...fields })}\n`);
    return this.waitFor((m) => m.id === id);
  }

  /** Waits until a secondary has committed `tid` (now or at its start). */
  async committed(tid: string, timeoutMs = 30_000): Promise<void> {
    if ((await this.request('last-tid')).tid === tid) return;
    await this.waitFor((m) => m.event === 'committed' && m.tid === tid, timeoutMs);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.proc.kill(signal);
    return this.exited;
  }
}

/** A commit request's records: `n` objects of `size` bytes. */
export function records(n: number, size: number, seed: number): { oid: string; data: string }[] {
  return Array.from({ length: n }, (_, i) => ({
    oid: (seed * 1000 + i).toString(16).padStart(16, '0'),
    data: Buffer.alloc(size, (seed + i) % 251).toString('hex'),
  }));
}

/** A test file's workspace and node starter: after the file's tests every node it started is killed and the workspace removed. */
export function nodeSession(prefix: string) {
  const ws = workspace(prefix);
  const running: NodeProcess[] = [];
  afterAll(async () => {
    await Promise.all(running.map((n) => n.kill()));
    ws.cleanup();
  });
  const start = async (args: string[]) => {
    const n = await NodeProcess.start(args);
    running.push(n);
    return n;
  };
  return { ws, start };
}
