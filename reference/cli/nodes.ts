/**
 * `zrs primary`, `zrs secondary` and `zrs run --config FILE`: the two roles as long-running
 * processes. They stop gracefully on SIGTERM or SIGINT, or on `shutdown` over the control
 * channel; a node that loses the lock of its file (FS-LOCK-5) stops too, with exit status 1.
 * @module
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Discovery } from '../discovery/discover.ts';
import { ZrsError } from '../errors.ts';
import { Registration } from '../discovery/register.ts';
import type { FileLock } from '../filestorage/lock.ts';
import { PICKLE_LIMIT_CEILING, PICKLE_LIMIT_FLOOR, type PickleLimits } from '../pickle/limits.ts';
import { MAX_FRAME } from '../framing.ts';
import { EXTENSION_POLICIES, type ExtensionPolicy } from '../secondary/extension-policy.ts';
import { type Address, formatAddress, parseAddress } from '../net/address.ts';
import { type Level, type Logger, streamLogger } from '../net/log.ts';
import { type NodeStatus, serveStatus } from '../net/status.ts';
import { Primary } from '../primary/primary.ts';
import { Secondary } from '../secondary/secondary.ts';
import { hex8 } from '../timestamp.ts';
import { type ControlTarget, serveControl } from './control.ts';
import { type Output, UsageError } from './output.ts';
import { ProgressLine, showCatchUp } from './progress.ts';
import { checkServedFile, ERR_NO_FILE } from './served-file.ts';
import { readZrsConfig } from './zconfig.ts';
import { isZooKeeperPath } from '../discovery/path.ts';

type OptionSpec = Record<string, { type: 'string' | 'boolean'; default?: string }>;

const COMMON: OptionSpec = {
  control: { type: 'string' },
  'status-listen': { type: 'string' },
  'log-format': { type: 'string', default: 'text' },
  'log-level': { type: 'string', default: 'info' },
};

function options(args: string[], spec: OptionSpec) {
  try {
    return parseArgs({ args, options: { ...COMMON, ...spec }, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function required(v: Record<string, string | boolean | undefined>, name: string): string {
  const x = v[name];
  if (typeof x !== 'string' || x === '') throw new UsageError(`--${name} is required`);
  return x;
}

function address(v: Record<string, string | boolean | undefined>, name: string, fallback?: string): Address {
  try {
    return parseAddress(fallback !== undefined && v[name] === undefined ? fallback : required(v, name));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--${name}: ${(e as Error).message}`);
  }
}

function seconds(v: Record<string, string | boolean | undefined>, name: string, fallback: number): number {
  const x = v[name];
  if (x === undefined) return fallback;
  if (typeof x !== 'string' || !/^[0-9]+(\.[0-9]+)?$/.test(x)) throw new UsageError(`--${name} takes a number of seconds, not ${JSON.stringify(x)}`);
  return Number(x);
}

function count(v: Record<string, string | boolean | undefined>, name: string, fallback: number): number {
  const x = v[name];
  if (x === undefined) return fallback;
  if (typeof x !== 'string' || !/^[0-9]+$/.test(x)) throw new UsageError(`--${name} takes a whole number, not ${JSON.stringify(x)}`);
  return Number(x);
}

/** Options of a primary's connection limits (wire-protocol §9.7); 0 turns a limit off. */
const LIMITS: OptionSpec = {
  'handshake-timeout': { type: 'string' },
  'max-connections': { type: 'string' },
};

/** What `--handshake-timeout S` and `--max-connections N` ask for; the primary's defaults otherwise. */
function limits(v: Record<string, string | boolean | undefined>): { handshakeTimeoutMs?: number; maxConnections?: number } {
  return {
    ...(v['handshake-timeout'] !== undefined ? { handshakeTimeoutMs: seconds(v, 'handshake-timeout', 0) * 1000 } : {}),
    ...(v['max-connections'] !== undefined ? { maxConnections: count(v, 'max-connections', 0) } : {}),
  };
}

/** A size in bytes: a whole number, or with K, M or G for KiB, MiB or GiB. */
function size(v: Record<string, string | boolean | undefined>, name: string): number | undefined {
  const x = v[name];
  if (x === undefined) return undefined;
  const m = typeof x === 'string' ? /^([0-9]+)([KMG]?)$/.exec(x) : null;
  const n = m ? Number(m[1]) * 1024 ** ' KMG'.indexOf(m[2] || ' ') : NaN;
  if (!m || n < 1 || n > MAX_FRAME) throw new UsageError(`--${name} takes a size in bytes from 1 to 4G-1 (suffix K, M or G), not ${JSON.stringify(x)}`);
  return n;
}

/** The flags of a secondary's decoding limits on control messages (wire-protocol §6.7), by limit. */
const PICKLE_FLAGS: Record<string, keyof PickleLimits> = {
  'max-pickle-values': 'maxItems',
  'max-pickle-depth': 'maxDepth',
  'max-pickle-int-bytes': 'maxIntBytes',
  'max-pickle-expansion': 'maxExpansion',
};

/** The decoding limits the `--max-pickle-*` flags ask for, each from the spec's floor to the most the decoder can hold. */
function pickleLimits(v: Record<string, string | boolean | undefined>): Partial<PickleLimits> {
  const out: Partial<PickleLimits> = {};
  for (const [flag, field] of Object.entries(PICKLE_FLAGS)) {
    if (v[flag] === undefined) continue;
    const n = count(v, flag, 0);
    const [least, most] = [PICKLE_LIMIT_FLOOR[field], PICKLE_LIMIT_CEILING[field]];
    if (n < least || n > most) throw new UsageError(`--${flag} takes a whole number from ${least} (spec §6.7) to ${most}, not ${JSON.stringify(v[flag])}`);
    out[field] = n;
  }
  return out;
}

/** Options of what a secondary accepts and stores: receive limits (wire-protocol §3.1), extension policy (§6.5). */
const RECEIVE_LIMITS: OptionSpec = {
  'max-message-size': { type: 'string' },
  'max-record-size': { type: 'string' },
  'extension-globals': { type: 'string' },
  ...Object.fromEntries(Object.keys(PICKLE_FLAGS).map((f) => [f, { type: 'string' }])),
};

/** What `--max-message-size`, `--max-record-size`, `--max-pickle-*` and `--extension-globals` ask for; the secondary's defaults otherwise. */
function receiveLimits(v: Record<string, string | boolean | undefined>): {
  maxMessageSize?: number;
  maxRecordSize?: number;
  pickleLimits?: Partial<PickleLimits>;
  extensionGlobals?: ExtensionPolicy;
} {
  const decoding = pickleLimits(v);
  const maxMessageSize = size(v, 'max-message-size');
  const maxRecordSize = size(v, 'max-record-size');
  const policy = v['extension-globals'];
  if (policy !== undefined && !EXTENSION_POLICIES.includes(policy as ExtensionPolicy)) {
    throw new UsageError(`--extension-globals is ${EXTENSION_POLICIES.join(', ')}, not ${JSON.stringify(policy)}`);
  }
  return {
    ...(maxMessageSize !== undefined ? { maxMessageSize } : {}),
    ...(maxRecordSize !== undefined ? { maxRecordSize } : {}),
    ...(Object.keys(decoding).length ? { pickleLimits: decoding } : {}),
    ...(policy !== undefined ? { extensionGlobals: policy as ExtensionPolicy } : {}),
  };
}

/** The logger of the options; with a progress line, log lines go above it. */
function logger(v: Record<string, string | boolean | undefined>, name: string, line: ProgressLine | null = null) {
  const format = v['log-format'];
  if (format !== 'text' && format !== 'json') throw new UsageError(`--log-format is text or json, not ${JSON.stringify(format)}`);
  const level = v['log-level'];
  if (!['debug', 'info', 'warn', 'error'].includes(level as string)) throw new UsageError(`--log-level is debug, info, warn or error`);
  return streamLogger({ format, level: level as Level, name, out: line ?? process.stderr });
}

function controlMode(v: Record<string, string | boolean | undefined>): boolean {
  if (v.control === undefined) return false;
  if (v.control !== 'stdio') throw new UsageError(`--control takes stdio, not ${JSON.stringify(v.control)}`);
  return true;
}

/** Starts the status server of `--status-listen`, if asked; its address goes into the ready event. */
async function statusServer(v: Record<string, string | boolean | undefined>, status: () => NodeStatus, log: Logger): Promise<{ address: string | null; close: () => Promise<void> }> {
  if (v['status-listen'] === undefined) return { address: null, close: async () => undefined };
  const s = await serveStatus(address(v, 'status-listen'), status);
  const text = formatAddress(s.address);
  log.log('info', 'status-listening', 'serving /status and /metrics', { address: text });
  return { address: text, close: s.close };
}

/** Runs a node until it is told to stop; resolves with the exit status. */
async function serve(target: ControlTarget, withControl: boolean, ready: Record<string, string | null>, lock: FileLock | null, onCommit?: (f: (tid: Buffer) => void) => void): Promise<number> {
  let status = 0;
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  const shutdown = async () => {
    process.off('SIGTERM', shutdown);
    process.off('SIGINT', shutdown);
    await target.shutdown();
    stop();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  lock?.once('lost', () => {
    status = 1;
    void shutdown();
  });
  const control = withControl ? serveControl({ ...target, shutdown: async () => void (await shutdown()) }) : null;
  control?.send({ event: 'ready', role: target.role, ...ready, lastTid: hex8(target.lastTid()) });
  if (control) onCommit?.((tid) => control.send({ event: 'committed', tid: hex8(tid) }));
  await stopped;
  control?.flush(); // what the shutdown committed
  return status;
}

/** Options of ZooKeeper registration and discovery (spec/discovery.md). */
const ZOOKEEPER: OptionSpec = {
  zookeeper: { type: 'string' },
  register: { type: 'string' },
};

/** What `--zookeeper CONN --register PATH` ask for, checked; null without `--register`. */
function registration(v: Record<string, string | boolean | undefined>): { zookeeper: string; path: string } | null {
  if (v.register === undefined) {
    if (v.zookeeper !== undefined && v.discover === undefined) throw new UsageError('--zookeeper is used with --register or --discover');
    return null;
  }
  const path = required(v, 'register');
  if (!isZooKeeperPath(path)) throw new UsageError(`--register takes a ZooKeeper path such as /db/replication/providers (absolute, without empty, "." or ".." components), not ${JSON.stringify(path)}`);
  if (typeof v.zookeeper !== 'string' || v.zookeeper === '') throw new UsageError('--register needs --zookeeper CONNECTION-STRING');
  return { zookeeper: v.zookeeper, path };
}

/** Registers `listening` under the path of `--register` (DISC-REG-1: the node listens already). */
async function register(zk: { zookeeper: string; path: string } | null, listening: Address | undefined, log: Logger): Promise<Registration | null> {
  if (!zk || !listening) return null;
  return Registration.start({ zookeeper: zk.zookeeper, path: zk.path, address: listening, logger: log });
}

/**
 * `zrs primary --fs FILE --listen ADDR [--create] [--blob-dir DIR] [--follow] [--handshake-timeout S]
 * [--max-connections N] [--zookeeper CONN --register PATH]`
 */
export async function primaryCommand(args: string[], _out: Output): Promise<number> {
  const v = options(args, {
    fs: { type: 'string' },
    listen: { type: 'string' },
    create: { type: 'boolean' },
    'blob-dir': { type: 'string' },
    follow: { type: 'boolean' },
    'shutdown-timeout': { type: 'string' },
    ...LIMITS,
    ...ZOOKEEPER,
  });
  const withControl = controlMode(v);
  const timeout = seconds(v, 'shutdown-timeout', 60);
  const log = logger(v, 'primary');
  const zk = registration(v);
  // Registered primaries listen on all interfaces and a free port unless told otherwise (as zc.zrs).
  const listen = address(v, 'listen', zk ? '0' : undefined);
  const fs = required(v, 'fs');
  await checkServedFile(fs, v.create === true, v.follow === true);
  const primary = await Primary.start({
    fs,
    listen,
    blobDir: (v['blob-dir'] as string | undefined) ?? null,
    mode: v.follow ? 'follow' : 'own',
    ...limits(v),
    logger: log,
  });
  const registered = await register(zk, primary.address, log).catch(async (e: unknown) => {
    await primary.close(0);
    throw e;
  });
  return servePrimary(primary, v, log, timeout, withControl, registered);
}

async function servePrimary(
  primary: Primary,
  v: Record<string, string | boolean | undefined>,
  log: Logger,
  timeout: number,
  withControl: boolean,
  registered: Registration | null = null,
): Promise<number> {
  const status = await statusServer(v, () => primary.status(), log);
  const target = primaryTarget(primary, timeout);
  const shutdown = target.shutdown;
  // The registration goes first, so that no secondary picks a node that stops (DISC-REG-9).
  target.shutdown = async () => (await registered?.close(), await status.close(), await shutdown());
  return serve(target, withControl, { listen: formatAddress(primary.address), status: status.address, ...(registered ? { registered: registered.node } : {}) }, primary.lock);
}

function primaryTarget(primary: Primary, timeout: number): ControlTarget {
  const own = (primary.options.mode ?? 'own') === 'own';
  return {
    role: 'primary',
    lastTid: () => primary.lastTid,
    commit: own ? (c) => primary.commit(c) : undefined,
    undo: own ? (tid, meta) => primary.undo(tid, meta) : undefined,
    pack: own ? (before) => void primary.pack(before) : undefined,
    shutdown: () => primary.close(timeout * 1000),
  };
}

/**
 * `zrs secondary --fs FILE (--from ADDR | --zookeeper CONN --discover PATH) [--blob-dir DIR] [--listen ADDR]
 * [--register PATH] [--keep-alive-delay S] [--reconnect-delay S] [--max-message-size SIZE] [--max-record-size SIZE] [--max-pickle-values N] [--max-pickle-depth N] [--max-pickle-int-bytes N] [--max-pickle-expansion N] [--extension-globals keep|strip|refuse]`
 */
export async function secondaryCommand(args: string[], _out: Output): Promise<number> {
  const v = options(args, {
    fs: { type: 'string' },
    from: { type: 'string' },
    'blob-dir': { type: 'string' },
    listen: { type: 'string' },
    'keep-alive-delay': { type: 'string' },
    'reconnect-delay': { type: 'string' },
    sync: { type: 'string' },
    discover: { type: 'string' },
    'discover-zookeeper': { type: 'string' },
    ...RECEIVE_LIMITS,
    ...ZOOKEEPER,
  });
  const sync = v.sync ?? 'every';
  if (sync !== 'every' && sync !== 'group') throw new UsageError(`--sync is every or group, not ${JSON.stringify(sync)}`);
  const withControl = controlMode(v);
  const discover = discovery(v);
  const zk = registration(v);
  const line = ProgressLine.of();
  const secondary = await Secondary.start({
    fs: required(v, 'fs'),
    from: discover ? null : address(v, 'from'),
    blobDir: (v['blob-dir'] as string | undefined) ?? null,
    listen: v.listen === undefined && !zk ? null : address(v, 'listen', zk ? '0' : undefined),
    keepAliveDelay: seconds(v, 'keep-alive-delay', 0),
    reconnectDelay: seconds(v, 'reconnect-delay', 60),
    sync,
    ...receiveLimits(v),
    logger: logger(v, 'secondary', line),
  });
  return serveSecondary(secondary, v, withControl, line, discover, zk);
}

/** What `--discover PATH` (with `--discover-zookeeper` or `--zookeeper`) asks for, checked; null without it. */
function discovery(v: Record<string, string | boolean | undefined>): { zookeeper: string; path: string } | null {
  if (v.discover === undefined) {
    if (v['discover-zookeeper'] !== undefined) throw new UsageError('--discover-zookeeper is used with --discover');
    return null;
  }
  if (v.from !== undefined) throw new UsageError('give either --from or --discover, not both');
  const path = required(v, 'discover');
  if (!isZooKeeperPath(path)) throw new UsageError(`--discover takes a ZooKeeper path such as /db/replication/providers (absolute, without empty, "." or ".." components), not ${JSON.stringify(path)}`);
  const zookeeper = v['discover-zookeeper'] ?? v.zookeeper;
  if (typeof zookeeper !== 'string' || zookeeper === '') throw new UsageError('--discover needs --zookeeper (or --discover-zookeeper) CONNECTION-STRING');
  return { zookeeper, path };
}

async function serveSecondary(
  secondary: Secondary,
  v: Record<string, string | boolean | undefined>,
  withControl: boolean,
  line: ProgressLine | null,
  discover: { zookeeper: string; path: string } | null = null,
  zk: { zookeeper: string; path: string } | null = null,
): Promise<number> {
  let found: Discovery | null = null;
  let registered: Registration | null = null;
  try {
    if (discover) found = await Discovery.start({ zookeeper: discover.zookeeper, path: discover.path, secondary, logger: secondary.logger });
    registered = await register(zk, secondary.primary?.address, secondary.logger);
  } catch (e) {
    found?.close();
    await secondary.close();
    throw e;
  }
  const listen = secondary.primary ? formatAddress(secondary.primary.address) : null;
  const status = await statusServer(v, () => secondary.status(), secondary.logger);
  // on a terminal, a catch-up shows how far it got
  const hideCatchUp = line ? showCatchUp(secondary, line) : () => undefined;
  const shutdown = async () => {
    hideCatchUp();
    found?.close();
    await registered?.close();
    await status.close();
    await secondary.close();
  };
  const extra = { ...(discover ? { discover: discover.path } : {}), ...(registered ? { registered: registered.node } : {}) };
  return serve(
    { role: 'secondary', lastTid: () => secondary.lastTid, shutdown },
    withControl,
    { listen, from: secondary.address ? formatAddress(secondary.address) : null, status: status.address, ...extra },
    secondary.lock,
    (emit) => secondary.on('committed', emit),
  );
}

/**
 * `zrs run --config FILE [--register-listen ADDR]`: a node described by a zc.zrs configuration
 * file. With ZooKeeper (spec/discovery.md §2), `replicate-to` and `replicate-from` are paths;
 * the registered node listens on `--register-listen` (default `0`: all interfaces, a free port).
 */
export async function runCommand(args: string[], _out: Output): Promise<number> {
  const v = options(args, { config: { type: 'string' }, 'shutdown-timeout': { type: 'string' }, 'register-listen': { type: 'string' }, 'reconnect-delay': { type: 'string' }, ...LIMITS, ...RECEIVE_LIMITS });
  const withControl = controlMode(v);
  const config = readZrsConfig(required(v, 'config'));
  const zk = config.zookeeper;
  const register = zk?.registerPath ? { zookeeper: zk.connect!, path: zk.registerPath } : null;
  const discover = zk?.discoverPath ? { zookeeper: zk.discoverConnect!, path: zk.discoverPath } : null;
  const listen = register ? address(v, 'register-listen', '0') : config.replicateTo;
  if (!register && v['register-listen'] !== undefined) throw new UsageError('--register-listen is for a configuration that registers in ZooKeeper (zookeeper and replicate-to)');
  const line = ProgressLine.of();
  const log = logger(v, config.replicateFrom || discover ? 'secondary' : 'primary', line);
  if (Object.keys(receiveLimits(v)).length && !config.replicateFrom && !discover) throw new UsageError('--max-message-size, --max-record-size, --max-pickle-* and --extension-globals are for a secondary configuration (replicate-from)');
  if (!config.replicateFrom && !discover) {
    // As ZODB's <filestorage> does, a missing file is created (the log line 'serving' says so),
    // unless it is read-only: then the file is followed, never written nor locked.
    if (config.readOnly && !existsSync(config.fs)) throw new ZrsError(ERR_NO_FILE, `${config.fs} does not exist (read-only true: nothing is created)`);
    const mode = config.readOnly ? 'follow' : 'own';
    const primary = await Primary.start({ fs: config.fs, listen: listen!, blobDir: config.blobDir, mode, ...limits(v), logger: log });
    const registered = await (register ? Registration.start({ ...register, address: primary.address, logger: log }) : Promise.resolve(null)).catch(async (e: unknown) => {
      await primary.close(0);
      throw e;
    });
    return servePrimary(primary, v, log, seconds(v, 'shutdown-timeout', 60), withControl, registered);
  }
  if (Object.keys(limits(v)).length) throw new UsageError('--handshake-timeout and --max-connections are for a primary configuration (replicate-to without replicate-from)');
  const secondary = await Secondary.start({
    fs: config.fs,
    from: discover ? null : config.replicateFrom,
    blobDir: config.blobDir,
    listen,
    keepAliveDelay: config.keepAliveDelay,
    ...(v['reconnect-delay'] !== undefined ? { reconnectDelay: seconds(v, 'reconnect-delay', 60) } : {}),
    ...receiveLimits(v),
    logger: log,
  });
  return serveSecondary(secondary, v, withControl, line, discover, register);
}
