/**
 * A node of an implementation under test, started as a child process from its descriptor:
 * readiness, the control channel client, the tail of its standard error for reports, and
 * clean-up — every process the harness starts is ended, even when a case fails or the
 * harness is interrupted.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { type Descriptor, expandArgs, type Placeholder, type Template } from './descriptor.ts';

/** A message of the control channel (a response or an event), or `{ line }` for other output. */
export type ControlMessage = Record<string, unknown>;

const live = new Set<ChildProcess>();
let hooked = false;

/** Kills every IUT process still running (also run at exit and on SIGINT/SIGTERM). */
export function killAll(): void {
  for (const p of live) p.kill('SIGKILL');
  live.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', killAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killAll();
      process.exit(130);
    });
  }
}

/** Whether something accepts TCP connections on a loopback port. */
export async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** A node failed to start or to answer in time. */
export class NodeError extends Error {
  readonly code = 'ERR_IUT_NODE';
}

/** A running node of the implementation under test. */
export class IutNode {
  readonly messages: ControlMessage[] = [];
  private waiters: { test: (m: ControlMessage) => boolean; resolve: (m: ControlMessage) => void }[] = [];
  private nextId = 1;
  private stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The `ready` event, when the node speaks the control channel. */
  ready: ControlMessage | null = null;

  private constructor(
    readonly role: 'primary' | 'secondary',
    readonly proc: ChildProcess,
    readonly argv: string[],
  ) {
    live.add(proc);
    proc.stdout!.setEncoding('utf8');
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      let m: ControlMessage;
      try {
        m = JSON.parse(line) as ControlMessage;
      } catch {
        m = { line };
      }
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => (w.test(m) ? (w.resolve(m), false) : true));
    });
    proc.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    proc.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        live.delete(proc);
        resolve({ code, signal });
      }),
    );
  }

  /**
   * Starts a role of `iut` with the given placeholder values, and waits until it is ready
   * (its `ready` event, its listen port accepting, or its stdout line), or fails with the
   * tail of its standard error.
   */
  static async start(
    iut: Descriptor,
    role: 'primary' | 'secondary',
    values: Partial<Record<Placeholder, string>>,
    options: { listenPort?: number; timeoutMs?: number; extraArgs?: Template; fromConfig?: boolean } = {},
  ): Promise<IutNode> {
    const cmd = iut[role];
    if (!cmd) throw new NodeError(`${iut.name} describes no ${role}`);
    hookExit();
    const base = options.fromConfig ? (cmd.configArgs ?? cmd.args) : cmd.args;
    const argv = [...expandArgs(base, values), ...expandArgs(options.extraArgs ?? [], values)];
    const proc = spawn(cmd.command, argv, { cwd: iut.dir, env: { ...process.env, ...cmd.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const node = new IutNode(role, proc, argv);
    const timeoutMs = options.timeoutMs ?? 20_000;
    const died = node.exited.then(({ code, signal }) => {
      throw new NodeError(`${iut.name} ${role} exited (${signal ?? code}) before it was ready: ${cmd.command} ${argv.join(' ')}\n${node.stderrTail()}`);
    });
    const ready = (async () => {
      switch (cmd.ready.kind) {
        case 'control':
          node.ready = await node.waitFor((m) => m.event === 'ready', timeoutMs);
          return;
        case 'stdout': {
          const pattern = cmd.ready.pattern;
          await node.waitFor((m) => typeof m.line === 'string' && pattern.test(m.line), timeoutMs);
          return;
        }
        case 'port': {
          if (options.listenPort === undefined) return; // nothing to wait for: it does not listen
          const until = Date.now() + timeoutMs;
          while (!(await accepts(options.listenPort))) {
            if (Date.now() > until) throw new NodeError(`${iut.name} ${role} did not accept on port ${options.listenPort}`);
            await new Promise((r) => setTimeout(r, 20));
          }
        }
      }
    })();
    try {
      await Promise.race([ready, died]);
    } catch (e) {
      proc.kill('SIGKILL');
      throw e;
    }
    return node;
  }

  /** The last lines of the node's standard error, for failure reports. */
  stderrTail(lines = 30): string {
    return this.stderr.split('\n').slice(-lines).join('\n');
  }

  /** The next message (already received or to come) that passes `test`. */
  waitFor(test: (m: ControlMessage) => boolean, timeoutMs = 30_000): Promise<ControlMessage> {
    const seen = this.messages.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new NodeError(`no expected message within ${timeoutMs} ms\n${this.stderrTail()}`)), timeoutMs);
      this.waiters.push({ test, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  }

  /** Sends a control-channel request and waits for its response. */
  async request(op: string, fields: ControlMessage = {}, timeoutMs = 30_000): Promise<ControlMessage> {
    const id = this.nextId++;
    this.proc.stdin!.write(`${JSON.stringify({ id, op, ...fields })}\n`);
    return this.waitFor((m) => m.id === id, timeoutMs);
  }

  /** The node's last committed tid, over the control channel. */
  async lastTid(): Promise<string> {
    const r = await this.request('last-tid');
    if (r.ok !== true) throw new NodeError(`last-tid failed: ${JSON.stringify(r)}`);
    return r.tid as string;
  }

  /** Graceful stop: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }

  /** Immediate stop, as a crash (`kill -9`). */
  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.proc.kill('SIGKILL');
    return this.exited;
  }
}
