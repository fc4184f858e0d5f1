/**
 * A standalone ZooKeeper server for tests and demonstrations: the one of Debian's `zookeeper`
 * package (jars under `/usr/share/java`), started directly with `java` on a loopback port and
 * a data folder of its own, so that neither `/etc/zookeeper` nor a system service is touched.
 *
 * {@link findZooKeeper} says whether ZooKeeper and Java are installed; {@link ZooKeeperServer}
 * starts, restarts and stops one server. Every wait is bounded.
 * @module
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../net/ports.ts';

/** Where ZooKeeper's jars and Java were found. */
export interface ZooKeeperInstallation {
  java: string;
  /** The class path: Debian's `zookeeper.jar` names its dependencies in its manifest. */
  classpath: string;
}

/** Debian's jar; its manifest's `Class-Path` brings in the other jars it needs. */
export const DEBIAN_ZOOKEEPER_JAR = '/usr/share/java/zookeeper.jar';

/** How to make these tests run where ZooKeeper is missing (one line). */
export const HOW_TO_ENABLE =
  'install Debian\'s zookeeper package (apt-get install zookeeper) and Java, or set ZRS_ZOOKEEPER_CLASSPATH to ZooKeeper\'s jars';

function onPath(name: string, env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Finds ZooKeeper and Java: `ZRS_ZOOKEEPER_CLASSPATH` (jars, separated by `:`) or Debian's
 * jar, and `JAVA` or `java` on the `PATH` (or under `JAVA_HOME`). Null when either is missing.
 */
export function findZooKeeper(env: NodeJS.ProcessEnv = process.env): ZooKeeperInstallation | null {
  const classpath = env.ZRS_ZOOKEEPER_CLASSPATH || DEBIAN_ZOOKEEPER_JAR;
  if (!classpath.split(path.delimiter).some((p) => p !== '' && existsSync(p))) return null;
  const java = env.JAVA || (env.JAVA_HOME && existsSync(path.join(env.JAVA_HOME, 'bin/java')) ? path.join(env.JAVA_HOME, 'bin/java') : onPath('java', env));
  if (!java) return null;
  return { java, classpath };
}

/** Sends a four-letter word and returns the answer ('' when the connection fails). */
function fourLetterWord(port: number, word: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = net.connect({ host: '127.0.0.1', port });
    const done = () => (clearTimeout(timer), socket.destroy(), resolve(answer));
    const timer = setTimeout(done, timeoutMs);
    socket.on('connect', () => socket.write(word));
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('error', done);
    socket.on('close', done);
  });
}

/** Servers still running, killed if this process exits without stopping them. */
const live = new Set<ChildProcess>();
let exitHook = false;
function track(proc: ChildProcess): void {
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const p of live) p.kill('SIGKILL');
  });
}

export interface ZooKeeperServerOptions {
  /** Port on 127.0.0.1; a free one when absent. */
  port?: number;
  /** Data folder; a new temporary one (removed by {@link ZooKeeperServer.close}) when absent. */
  dataDir?: string;
  /** ZooKeeper's tick in ms (sessions may last 2 to 20 ticks); default 500. */
  tickTime?: number;
  /** How long to wait for the server to answer, in ms (default 30 000). */
  startTimeoutMs?: number;
  installation?: ZooKeeperInstallation;
}

/** One standalone ZooKeeper server listening on 127.0.0.1 only. */
export class ZooKeeperServer {
  private proc: ChildProcess | null = null;
  private output = '';
  private constructor(
    readonly installation: ZooKeeperInstallation,
    readonly port: number,
    readonly dataDir: string,
    private readonly ownDir: string | null,
    private readonly options: ZooKeeperServerOptions,
  ) {}

  /** Starts a server and waits until it serves requests. */
  static async start(options: ZooKeeperServerOptions = {}): Promise<ZooKeeperServer> {
    const installation = options.installation ?? findZooKeeper();
    if (!installation) throw new Error(`ZooKeeper is not installed: ${HOW_TO_ENABLE}`);
    const ownDir = options.dataDir ? null : mkdtempSync(path.join(tmpdir(), 'zrs-zookeeper-'));
    const dataDir = options.dataDir ?? path.join(ownDir!, 'data');
    const server = new ZooKeeperServer(installation, options.port ?? (await freePort()), dataDir, ownDir, options);
    try {
      await server.launch();
    } catch (e) {
      await server.close();
      throw e;
    }
    return server;
  }

  /** `127.0.0.1:PORT`, for a client. */
  get connectionString(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** True while the server process runs. */
  get running(): boolean {
    return this.proc !== null;
  }

  private async launch(): Promise<void> {
    mkdirSync(this.dataDir, { recursive: true });
    const config = path.join(path.dirname(this.dataDir), `zoo-${this.port}.cfg`);
    writeFileSync(
      config,
      [
        `tickTime=${this.options.tickTime ?? 500}`,
        `dataDir=${this.dataDir}`,
        `clientPort=${this.port}`,
        'clientPortAddress=127.0.0.1',
        'maxClientCnxns=0',
        'forceSync=no',
        'preAllocSize=1024',
        'admin.enableServer=false',
        '4lw.commands.whitelist=ruok,srvr',
        '',
      ].join('\n'),
    );
    const args = [
      '-Xmx256m',
      '-XX:+UseSerialGC',
      '-XX:TieredStopAtLevel=1',
      '-Dzookeeper.admin.enableServer=false',
      '-Dzookeeper.4lw.commands.whitelist=ruok,srvr',
      '-cp',
      this.installation.classpath,
      'org.apache.zookeeper.server.ZooKeeperServerMain',
      config,
    ];
    const proc = spawn(this.installation.java, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    track(proc);
    this.output = '';
    const keep = (d: Buffer) => (this.output = (this.output + d.toString()).slice(-4000));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    let exited = false;
    proc.once('exit', () => {
      exited = true;
      if (this.proc === proc) this.proc = null;
    });
    const until = Date.now() + (this.options.startTimeoutMs ?? 30_000);
    while (!exited && Date.now() < until) {
      // `srvr` answers with the server's mode only once it serves requests (`ruok` answers earlier).
      if (/^Mode: /m.test(await fourLetterWord(this.port, 'srvr'))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!exited) proc.kill('SIGKILL');
    throw new Error(`ZooKeeper did not start on 127.0.0.1:${this.port}${exited ? ' (it exited)' : ''}:\n${this.output}`);
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s); its data folder stays. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    const gone = new Promise<void>((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.once('exit', () => r())));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
    this.proc = null;
  }

  /** Stops the server and starts it again on the same port with the same data. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Starts the server again after {@link stop}. */
  async resume(): Promise<void> {
    if (!this.proc) await this.launch();
  }

  /** Stops the server and removes the temporary folder it made. */
  async close(): Promise<void> {
    await this.stop();
    if (this.ownDir) rmSync(this.ownDir, { recursive: true, force: true });
  }
}
