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
import { HarnessError, type NodeLog } from '../checks.ts';
import { until } from '../wait.ts';
import { listensOn } from './listeners.ts';
import { type Descriptor, expandArgs, type Placeholder, type Template } from './descriptor.ts';

/** `p`, or the error `timeout()` makes once `ms` have passed. */
function withTimeout<T>(p: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  let timer!: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(timeout()), ms)))]).finally(() => clearTimeout(timer));
}

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

/** Whether something accepts connections on a loopback port or a Unix socket path. */
export async function accepts(at: number | string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = typeof at === 'number' ? net.connect({ host: '127.0.0.1', port: at }) : net.connect(at);
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

/** A node failed to answer in time. */
export class NodeError extends Error {
  readonly code: string = 'ERR_IUT_NODE';
}

/** A node exited, or never became ready, after it was started: the message holds its command line and standard error. */
export class NodeStartError extends NodeError {
  override readonly code = 'ERR_IUT_START';
  constructor(
    message: string,
    readonly exit: { code: number | null; signal: NodeJS.Signals | null } | null,
    /** The tail of its standard error. */
    readonly stderr = '',
  ) {
    super(message);
  }
}

/** How a node's readiness shows when the descriptor says `port`: the port it listens on, or a handshake the harness will see. */
export type ReadySignal = { port: number } | { path: string } | { seen: Promise<unknown>; what: string };

/** A running node of the implementation under test. */
export class IutNode {
  readonly messages: ControlMessage[] = [];
  private waiters: { test: (m: ControlMessage) => boolean; resolve: (m: ControlMessage) => void }[] = [];
  private nextId = 1;
  private readonly stderrLines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The `ready` event, when the node speaks the control channel. */
  ready: ControlMessage | null = null;

  private constructor(
    readonly role: 'primary' | 'secondary',
    readonly proc: ChildProcess,
    readonly argv: string[],
    readonly implementation: string,
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
    proc.stderr!.setEncoding('utf8');
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      this.stderrLines.push(line);
      if (this.stderrLines.length > 400) this.stderrLines.splice(0, 200);
    });
    proc.stdin!.on('error', () => undefined);
    // Settled once the process exited and its output was read (or half a second later, should
    // a child of its own keep the pipes open), so that a report holds its last words.
    this.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        live.delete(proc);
        const done = () => resolve({ code, signal });
        const timer = setTimeout(done, 500);
        proc.once('close', () => (clearTimeout(timer), done()));
      });
      // a program that could not be run at all emits no exit
      proc.once('error', () => {
        if (proc.pid === undefined) live.delete(proc), resolve({ code: null, signal: null });
      });
    });
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
    options: { signal?: ReadySignal; timeoutMs?: number; extraArgs?: Template; fromConfig?: boolean } = {},
  ): Promise<IutNode> {
    const cmd = iut[role];
    if (!cmd) throw new NodeError(`${iut.name} describes no ${role}`);
    hookExit();
    const base = options.fromConfig ? (cmd.configArgs ?? cmd.args) : cmd.args;
    const argv = [...expandArgs(base, values), ...expandArgs(options.extraArgs ?? [], values)];
    const proc = spawn(cmd.command, argv, { cwd: iut.dir, env: { ...process.env, ...cmd.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const node = new IutNode(role, proc, argv, iut.name);
    const timeoutMs = options.timeoutMs ?? 20_000;
    const commandLine = [cmd.command, ...argv].join(' ');
    let spawnError: Error | null = null;
    proc.once('error', (e) => (spawnError = e));
    const died = node.exited.then((exit) => {
      const why = spawnError ? `could not be started (${spawnError.message})` : `exited (${exit.signal ?? exit.code}) before it was ready`;
      throw new NodeStartError(`${iut.name} ${role} ${why}: ${commandLine}\n${node.stderrTail()}`, exit, node.stderrTail());
    });
    const ready = (async () => {
      const r = cmd.ready;
      if (r.kind === 'control') node.ready = await node.waitFor((m) => m.event === 'ready', timeoutMs);
      else if (r.kind === 'stdout') await node.waitFor((m) => typeof m.line === 'string' && r.pattern.test(m.line), timeoutMs);
      else if (r.kind === 'stderr') await node.untilStderr(r.pattern, timeoutMs);
      else {
        const signal = options.signal;
        if (!signal) throw new HarnessError(`${iut.name} ${role}: "ready": "port" needs a listen address or a connection the harness can watch, and this node has neither`);
        const what = 'port' in signal ? `to accept on port ${signal.port}` : 'path' in signal ? `to accept on ${signal.path}` : signal.what;
        const seen = 'seen' in signal ? signal.seen : until(what, () => node.listens('port' in signal ? signal.port : signal.path), { timeoutMs, everyMs: 20 });
        await withTimeout(seen, timeoutMs, () => new NodeError(`${iut.name} ${role} was not ready: no sign of it ${what} within ${timeoutMs} ms: ${commandLine}\n${node.stderrTail()}`));
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

  /** Whether this node itself listens at `at` and accepts there (where /proc cannot tell whose it is, whether something accepts). */
  async listens(at: number | string): Promise<boolean> {
    const own = this.proc.pid === undefined ? false : listensOn(this.proc.pid, at);
    return own !== false && (await accepts(at));
  }

  /** What a report shows of this node: its command line, how it ended, and its last words. */
  log(): NodeLog {
    const exit = this.proc.exitCode !== null || this.proc.signalCode !== null ? String(this.proc.signalCode ?? this.proc.exitCode) : null;
    return { role: this.role, implementation: this.implementation, argv: this.argv, exit, stderrTail: this.stderrTail() };
  }

  /** Waits until the node's standard error holds a line matching `pattern`. */
  private untilStderr(pattern: RegExp, timeoutMs: number): Promise<unknown> {
    return until(`a line of standard error matching ${pattern}`, () => this.stderrLines.some((l) => pattern.test(l)), { timeoutMs });
  }

  /** The last lines of the node's standard error, for failure reports. */
  stderrTail(lines = 30): string {
    return this.stderrLines.slice(-lines).join('\n');
  }

  /** The next message (already received or to come) that passes `test`. */
  waitFor(test: (m: ControlMessage) => boolean, timeoutMs = 30_000): Promise<ControlMessage> {
    const seen = this.messages.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new NodeError(`${this.implementation} ${this.role}: no expected message within ${timeoutMs} ms\n${this.stderrTail()}`)), timeoutMs);
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
