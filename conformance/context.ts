/**
 * What every conformance case needs: the implementations under test (from the environment
 * the runner sets), their features, fresh workspaces, nodes started from fixtures, and
 * clean-up after each case.
 * @module
 */
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, expect, type TestContext } from 'vitest';
import { fileContent } from '../reference/filestorage/content.ts';
import { FileStorageReader } from '../reference/filestorage/reader.ts';
import net from 'node:net';
import { type Address, formatAddress, parseAddress } from '../reference/net/address.ts';
import { hex8, Z64 } from '../reference/timestamp.ts';
import { type Descriptor, type Feature, readDescriptor } from './iut/descriptor.ts';
import { ENV, FIXTURES, REFERENCE_IUT, REPO_ROOT } from './env.ts';
import { type ControlMessage, IutNode, NodeError, NodeStartError, type ReadySignal } from './iut/node.ts';
import { FaultProxy } from './proxy/fault-proxy.ts';
import { FrameDecoder } from '../reference/framing.ts';
import { freePort } from '../reference/net/ports.ts';
import { until } from './wait.ts';
import { check, citedByCase, declareSubject, HarnessError, type Subject } from './checks.ts';

const cache = new Map<string, Descriptor>();
function descriptor(file: string): Descriptor {
  let d = cache.get(file);
  if (!d) cache.set(file, (d = readDescriptor(file)));
  return d;
}

/** The implementation whose primary is under test. */
export function primaryIut(): Descriptor {
  return descriptor(process.env[ENV.primary] ?? REFERENCE_IUT);
}

/** The implementation whose secondary is under test. */
export function secondaryIut(): Descriptor {
  return descriptor(process.env[ENV.secondary] ?? process.env[ENV.primary] ?? REFERENCE_IUT);
}

/** `quick` (CI) or `full`. */
export const PROFILE: 'quick' | 'full' = process.env[ENV.profile] === 'full' ? 'full' : 'quick';

/** Seed of the property-based cases (fixed per run, printed in reports). */
export const SEED = Number(process.env[ENV.seed] ?? 20261126);

/** How long a property case may search and shrink; once spent, it reports what it found so far. */
const PROPERTY_BUDGET_MS = propertyBudget(process.env[ENV.propertyBudget]) ?? (PROFILE === 'full' ? 180_000 : 75_000);

function propertyBudget(seconds: string | undefined): number | null {
  if (seconds === undefined) return null;
  if (!/^[0-9]+(\.[0-9]+)?$/.test(seconds) || Number(seconds) <= 0) throw new Error(`${ENV.propertyBudget} is a number of seconds above 0, not ${JSON.stringify(seconds)}`);
  return Number(seconds) * 1000;
}

/** The vitest timeout of a property case: its budget, and time to stop its nodes and report. */
export const PROPERTY_TIMEOUT_MS = PROPERTY_BUDGET_MS + 40_000;

/** fast-check parameters of a property case: the run's seed, or a failure to replay. */
export function propertyParameters(quickRuns: number, fullRuns: number) {
  const replay = process.env[ENV.replay];
  const budget = { interruptAfterTimeLimit: PROPERTY_BUDGET_MS, markInterruptAsFailure: false };
  return replay
    ? { seed: SEED, numRuns: 1_000_000, path: replay, endOnFailure: true }
    : { seed: SEED, numRuns: PROFILE === 'full' ? fullRuns : quickRuns, ...budget };
}

/** The command that replays the failure of property case `filter` found at fast-check path `at`. */
export function replayCommand(at: string, filter: string): string {
  const q = (x: string) => `'${x.replace(/'/g, `'\\''`)}'`;
  const iuts = [`--primary-iut ${q(process.env[ENV.primary] ?? REFERENCE_IUT)}`, `--secondary-iut ${q(process.env[ENV.secondary] ?? process.env[ENV.primary] ?? REFERENCE_IUT)}`];
  return ['npm run conformance --', ...iuts, ...(PROFILE === 'full' ? ['--full'] : []), `--seed ${SEED}`, `--replay ${q(at)}`, `--filter ${q(filter)}`].join(' ');
}

/** Where failing cases leave their wire transcripts. */
export function transcriptDir(): string {
  return path.join(process.env[ENV.reportDir] ?? path.join(REPO_ROOT, 'reports/conformance'), 'transcripts');
}

/**
 * Skips the running case, reported as unsupported, unless the implementation claims every
 * feature (and has the role) it needs.
 */
export function requires(ctx: TestContext, iut: Descriptor, role: Subject, ...features: Feature[]): void {
  declareSubject(role);
  if (!iut[role]) ctx.skip(`unsupported: ${iut.name} has no ${role}`);
  const missing = features.filter((f) => !iut.features.has(f));
  if (missing.length) ctx.skip(`unsupported: ${iut.name} does not claim ${missing.join(', ')}`);
}

const nodes = new Set<IutNode>();
const dirs: string[] = [];

afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') ctx.task.meta.nodes = [...nodes].map((n) => n.log());
  await Promise.all([...nodes].map((n) => n.stop(5000)));
  nodes.clear();
  await Promise.all([...relays].map((r) => r.stop()));
  relays.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh folder for one case, removed after it. */
export function workdir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'zrs-conformance-'));
  dirs.push(d);
  return d;
}

/** A loopback address with a free port. */
export async function loopback(): Promise<Extract<Address, { kind: 'tcp' }>> {
  return { kind: 'tcp', host: '127.0.0.1', port: await freePort() };
}

/**
 * Writes a zc.zrs configuration file: `settings` (lines such as `replicate-from HOST:PORT`) in
 * its `<zrs>` section, then the FileStorage `fs` (with its blob directory). Returns `file`.
 */
export function writeZrsConfig(file: string, settings: string[], fs: string, blobDir?: string, readOnly = false): string {
  const storage = [`    path ${fs}`, ...(blobDir ? [`    blob-dir ${blobDir}`] : []), ...(readOnly ? ['    read-only true'] : [])];
  writeFileSync(file, ['%import zc.zrs', '<zrs>', ...settings.map((l) => `  ${l}`), '  <filestorage>', ...storage, '  </filestorage>', '</zrs>', ''].join('\n'));
  return file;
}

/** Writes the configuration file of a node (for IUTs started from one). */
function writeConfig(dir: string, name: string, o: { fs: string; listen?: Address; from?: Address; blobDir?: string; keepAliveDelay?: number; readOnly?: boolean }): string {
  const settings = [
    ...(o.listen ? [`replicate-to ${formatAddress(o.listen)}`] : []),
    ...(o.from ? [`replicate-from ${formatAddress(o.from)}`] : []),
    ...(o.keepAliveDelay ? [`keep-alive-delay ${Math.ceil(o.keepAliveDelay)}`] : []),
  ];
  return writeZrsConfig(path.join(dir, `${name}.conf`), settings, o.fs, o.blobDir, o.readOnly);
}

/**
 * A node of the IUT started from a configuration file whose `<zrs>` section holds `settings`
 * (lines such as `replicate-from /db/providers`) and a new FileStorage (feature `zconfig`).
 */
export async function startFromConfig(role: 'primary' | 'secondary', settings: string[], o: { reconnectDelay?: number } = {}): Promise<{ node: IutNode; fs: string }> {
  const iut = role === 'primary' ? primaryIut() : secondaryIut();
  const dir = workdir();
  const fs = path.join(dir, 'Data.fs');
  const config = writeZrsConfig(path.join(dir, `${role}.conf`), settings, fs);
  const node = await IutNode.start(iut, role, { fs, config, reconnectDelay: String(o.reconnectDelay ?? 0.2) }, { fromConfig: true });
  nodes.add(node);
  return { node, fs };
}

/** Gives the `n`-th transaction of a file the obsolete status `u` (which no primary sends). */
export function markUndone(fs: string, n: number): void {
  setStatus(fs, n, 0x75);
}

/** Sets the status byte of the `n`-th transaction of a file. */
export function setStatus(fs: string, n: number, status: number): void {
  const r = FileStorageReader.open(fs);
  const txn = [...r.transactions()][n]!;
  r.close();
  const fd = openSync(fs, 'r+');
  writeSync(fd, Buffer.of(status), 0, 1, txn.offset + 16);
  closeSync(fd);
}

/** Where a node registers or discovers (feature `discovery`): a ZooKeeper connection string and a provider path. */
export interface ZooKeeperPlace {
  zookeeper: string;
  providers: string;
}

/** Whether nothing listens on a loopback port. */
async function portFree(port: number): Promise<boolean> {
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Implementations whose ready event did not report the port they got for port 0. */
const noPortZero = new Set<string>();

/**
 * Starts a node that listens, at `wanted` or where the harness chooses. A node with a ready
 * event is told port 0 and reports the port it got (CONF-PROC-4, CONF-CTL-11); any other gets a
 * free port, and a new one should another process take it between the choice and the start.
 */
async function startListening(iut: Descriptor, role: Subject, wanted: Address | undefined, launch: (listen: Address) => Promise<IutNode>): Promise<{ node: IutNode; address: Address }> {
  if (wanted) return { node: await launch(wanted), address: wanted };
  if (iut[role]!.ready.kind === 'control' && !noPortZero.has(iut.dir + iut.name)) {
    // port 0 is a SHOULD (CONF-PROC-4): a node that refuses it, or does not report the port it
    // got, is started again on a port the harness chose
    const node = await launch({ kind: 'tcp', host: '127.0.0.1', port: 0 }).catch((e: unknown) => {
      if (e instanceof NodeStartError) return null;
      throw e;
    });
    const listen = node?.ready?.listen;
    const address = typeof listen === 'string' ? parseAddress(listen) : null;
    if (node && address?.kind === 'tcp' && address.port !== 0) return { node, address };
    noPortZero.add(iut.dir + iut.name);
    await node?.kill();
  }
  for (let attempt = 1; ; attempt++) {
    const address = await loopback();
    try {
      return { node: await launch(address), address };
    } catch (e) {
      if (attempt < 3 && e instanceof NodeStartError && !(await portFree(address.port))) continue; // someone took the port
      throw e;
    }
  }
}

/**
 * Starts a node of the role under test: a node that does not start, or does not become ready,
 * fails the check of `requirement` (CONF-PROC-5 unless the case names the rule a refusal breaks)
 * against the implementation playing `role`. In a case citing one requirement, such a failure
 * is that requirement's, as any other; with `requirement` null the case judges it itself.
 */
function startJudged<T>(role: Subject, requirement: string | null | undefined, start: () => Promise<T>): Promise<T> {
  if (requirement === null || (requirement === undefined && citedByCase().length === 1)) return start();
  return check(requirement ?? 'CONF-PROC-5', start, role);
}

/**
 * A primary of the IUT serving a copy of a fixture store (or a new file). `readOnly` asks an
 * implementation started from a configuration file to open the file read-only (`read-only true`
 * in `<filestorage>`), so that it serves the file as it is, a damaged tail included (ZODB cuts
 * such a tail when it opens a file for writing); other implementations open it as they do.
 */
export async function startPrimary(
  o: {
    store?: string | null;
    file?: string;
    blobs?: boolean;
    listen?: Address;
    markUndone?: number;
    follow?: boolean;
    register?: ZooKeeperPlace;
    readOnly?: boolean;
    /** Serve this file, where it is (instead of a copy in a new folder). */
    fs?: string;
    /** The requirement a failure to start breaks (default CONF-PROC-5); null when the case judges a refusal itself. */
    startFailure?: string | null;
  } = {},
): Promise<{
  node: IutNode;
  address: Address;
  fs: string;
  blobDir: string | null;
}> {
  const iut = primaryIut();
  const dir = workdir();
  const fs = o.fs ?? path.join(dir, 'Data.fs');
  let blobDir: string | null = null;
  if (o.store) cpSync(path.join(FIXTURES, o.store, 'Data.fs'), fs);
  if (o.file) cpSync(o.file, fs);
  if (o.markUndone !== undefined) markUndone(fs, o.markUndone);
  if (o.blobs) {
    blobDir = path.join(dir, 'blobs');
    if (o.store) cpSync(path.join(FIXTURES, o.store, 'blobs'), blobDir, { recursive: true });
    else mkdirSync(blobDir);
  }
  const { node, address } = await startJudged('primary', o.startFailure, () => startListening(iut, 'primary', o.listen, async (address) => {
    const listen = formatAddress(address);
    const config = writeConfig(dir, 'primary', { fs, listen: address, blobDir: blobDir ?? undefined, readOnly: o.readOnly });
    const node = await IutNode.start(
      iut,
      'primary',
      { fs, listen, config, ...(blobDir ? { blobDir } : {}), ...o.register },
      {
        signal: address.kind === 'tcp' ? { port: address.port } : { path: address.path },
        extraArgs: [...(o.follow ? iut.primary!.followArgs : []), ...(o.register ? iut.primary!.registerArgs : [])],
      },
    );
    nodes.add(node);
    return node;
  }));
  return { node, address, fs, blobDir };
}

/** Relays of secondaries whose readiness is their handshake; stopped after each case. */
const relays = new Set<FaultProxy>();

/**
 * For a secondary that is ready "port" but listens nowhere, a relay in front of its primary
 * (transparent: no faults) through which the harness sees its handshake.
 */
async function handshakeRelay(from: Address, dir: string): Promise<{ address: Address; signal: ReadySignal }> {
  const relay = from.kind === 'unix' ? await FaultProxy.start(from, SEED, { path: path.join(dir, 'relay.sock') }) : await FaultProxy.start(from, SEED);
  relays.add(relay);
  const seen = until('the handshake', () => {
    const first = relay.history[0];
    if (!first) return false;
    const frames = new FrameDecoder();
    let n = 0;
    for (const chunk of first.transcript.up) n += frames.push(chunk).length;
    return n >= 2;
  });
  return { address: relay.address, signal: { seen, what: `to send its handshake to ${formatAddress(from)}` } };
}

/** A secondary of the IUT replicating from `from`, or from the primary it discovers, into a new file (or `fs`). */
export async function startSecondary(o: {
  from?: Address;
  discover?: ZooKeeperPlace;
  fs?: string;
  blobs?: boolean;
  /** Reuse this blob directory (a restart); implies `blobs`. */
  blobDir?: string;
  /** Listen there too (a chained node); `true` for where the harness chooses. */
  listen?: Address | true;
  keepAliveDelay?: number;
  reconnectDelay?: number;
  /** The requirement a failure to start breaks (default CONF-PROC-5); null when the case judges a refusal itself. */
  startFailure?: string | null;
}): Promise<{ node: IutNode; fs: string; blobDir: string | null; listen: Address | null }> {
  const iut = secondaryIut();
  const dir = workdir();
  const fs = o.fs ?? path.join(dir, 'Data.fs');
  const blobDir = o.blobDir ?? (o.blobs ? path.join(dir, 'blobs') : null);
  const launch = async (listen: Address | undefined) => {
    let from = o.from;
    let signal: ReadySignal | undefined = listen ? (listen.kind === 'tcp' ? { port: listen.port } : { path: listen.path }) : undefined;
    if (!signal && iut.secondary!.ready.kind === 'port' && from) ({ address: from, signal } = await handshakeRelay(from, dir));
    const config = writeConfig(dir, 'secondary', { fs, from, listen, blobDir: blobDir ?? undefined, keepAliveDelay: o.keepAliveDelay });
    const values = {
      fs,
      ...(from ? { from: formatAddress(from) } : {}),
      ...o.discover,
      config,
      reconnectDelay: String(o.reconnectDelay ?? 0.2),
      ...(listen ? { listen: formatAddress(listen) } : {}),
      ...(blobDir ? { blobDir } : {}),
      ...(o.keepAliveDelay !== undefined ? { keepAliveDelay: String(o.keepAliveDelay) } : {}),
    };
    const node = await IutNode.start(iut, 'secondary', values, { signal, extraArgs: o.discover ? iut.secondary!.discoverArgs : [] });
    nodes.add(node);
    return node;
  };
  const wanted = o.listen;
  const { node, address } = await startJudged('secondary', o.startFailure, async () =>
    wanted ? startListening(iut, 'secondary', wanted === true ? undefined : wanted, launch) : { node: await launch(undefined), address: null },
  );
  return { node, fs, blobDir, listen: address };
}

/**
 * Starts a node that must refuse to start (`start` calls startPrimary or startSecondary with
 * `startFailure: null`, or startFromConfig), and judges how it ended:
 * - it exited before it was ready, or within `graceMs` of its readiness: `rule` holds (with
 *   `also`, what else it needs), and CONF-PROC-3 judges the exit: a non-zero status, not a
 *   signal, and a message on standard error (that contains `names`, when given);
 * - it was ready and still ran `graceMs` later: it took what it was given, and `rule` fails;
 * - it was neither ready nor gone in the time a start is given (then killed): whether it refused
 *   cannot be told, and the case gives no verdict (HarnessError), unless running on is itself
 *   what `rule` forbids (`hangBreaks`).
 */
export async function refusesToStart(
  start: () => Promise<{ node: IutNode }>,
  rule: string,
  o: { took: string; names?: string; graceMs?: number; hangBreaks?: boolean; also?: () => void },
): Promise<void> {
  const graceMs = o.graceMs ?? 2000;
  let ended: { exit: { code: number | null; signal: NodeJS.Signals | null }; stderr: string } | null = null;
  let fault: string | null = null;
  try {
    const { node } = await start();
    let timer!: NodeJS.Timeout;
    const exit = await Promise.race([node.exited, new Promise<null>((r) => (timer = setTimeout(() => r(null), graceMs)))]).finally(() => clearTimeout(timer));
    if (exit) ended = { exit, stderr: node.stderrTail() };
    else fault = `still running ${graceMs} ms after its ready event ${JSON.stringify(node.ready)}: ${o.took}`;
  } catch (e) {
    // an exit has a status or a signal; a program that could not be run at all, neither
    if (e instanceof NodeStartError && (e.exit?.code ?? e.exit?.signal ?? null) !== null) ended = { exit: e.exit!, stderr: e.stderr };
    else if (!(e instanceof NodeError) || e instanceof NodeStartError) throw e; // the harness's fault, or a program it cannot run
    else if (o.hangBreaks) fault = `neither ready nor gone in the time a start is given: ${o.took} (${e.message.split('\n')[0]})`;
    else throw new HarnessError(`neither ready nor gone in the time a start is given: whether it refused cannot be told (${e.message.split('\n')[0]})`);
  }
  check(rule, () => {
    if (fault) throw new Error(fault);
    o.also?.();
  });
  const { exit, stderr } = ended!;
  const said = `(its standard error ends: ${JSON.stringify(stderr.slice(-400))})`;
  check('CONF-PROC-3', () => {
    expect(exit.code, `exit status ${said}`).not.toBe(0);
    expect(exit.signal, `killed by a signal ${said}`).toBeNull();
    if (o.names) expect(stderr, `standard error names ${o.names}`).toContain(o.names);
    else expect(stderr.trim(), 'standard error').not.toBe('');
  });
}

/**
 * The last tid a secondary started by {@link startSecondary} reports: over its control channel when it has one, else
 * the last whole transaction of its file (z64 while there is none, or while it is unreadable).
 */
export async function lastTidOf(s: { node: IutNode; fs: string }): Promise<string> {
  if (secondaryIut().features.has('control')) return s.node.lastTid();
  if (!existsSync(s.fs) || statSync(s.fs).size < 4) return hex8(Z64);
  try {
    return fileContent(s.fs).at(-1)?.tid ?? hex8(Z64);
  } catch {
    return hex8(Z64);
  }
}

/**
 * Commits a transaction on a primary over its control channel (`records`, and optionally `user`,
 * `description`, `extension`): anything but success, within the request's time, blames
 * CONF-CTL-6 on the primary. Returns the new tid.
 */
export async function commitOn(node: IutNode, fields: ControlMessage): Promise<string> {
  return check(
    'CONF-CTL-6',
    async () => {
      const r = await node.request('commit', fields);
      expect(r, `the commit response: ${JSON.stringify(r).slice(0, 500)}`).toMatchObject({ ok: true, tid: expect.stringMatching(/^[0-9a-f]{16}$/) });
      return r.tid as string;
    },
    'primary',
  );
}

/** Waits until a started secondary reports `tid` as its last committed transaction. */
export async function reaches(s: { node: IutNode; fs: string }, tid: string, timeoutMs = 30_000): Promise<void> {
  let last = '';
  await until(`the secondary to reach ${tid}`, async () => (last = await lastTidOf(s)) === tid, { timeoutMs, everyMs: 25, seen: () => last });
}
