/**
 * `zrs primary`, `zrs secondary` and `zrs run --config FILE`: the two roles as long-running
 * processes. They stop gracefully on SIGTERM or SIGINT, or on `shutdown` over the control
 * channel.
 * @module
 */
import { parseArgs } from 'node:util';
import { type Address, formatAddress, parseAddress } from '../net/address.ts';
import { type Level, type Logger, streamLogger } from '../net/log.ts';
import { type NodeStatus, serveStatus } from '../net/status.ts';
import { Primary } from '../primary/primary.ts';
import { Secondary } from '../secondary/secondary.ts';
import { hex8 } from '../timestamp.ts';
import { type ControlTarget, serveControl } from './control.ts';
import { type Output, UsageError } from './output.ts';
import { readZrsConfig } from './zconfig.ts';

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

function address(v: Record<string, string | boolean | undefined>, name: string): Address {
  try {
    return parseAddress(required(v, name));
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

function logger(v: Record<string, string | boolean | undefined>, name: string) {
  const format = v['log-format'];
  if (format !== 'text' && format !== 'json') throw new UsageError(`--log-format is text or json, not ${JSON.stringify(format)}`);
  const level = v['log-level'];
  if (!['debug', 'info', 'warn', 'error'].includes(level as string)) throw new UsageError(`--log-level is debug, info, warn or error`);
  return streamLogger({ format, level: level as Level, name });
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
async function serve(target: ControlTarget, withControl: boolean, ready: Record<string, string | null>, onCommit?: (f: (tid: Buffer) => void) => void): Promise<number> {
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
  if (withControl) {
    const control = serveControl({ ...target, shutdown: async () => void (await shutdown()) });
    control.send({ event: 'ready', role: target.role, ...ready, lastTid: hex8(target.lastTid()) });
    onCommit?.((tid) => control.send({ event: 'committed', tid: hex8(tid) }));
  }
  await stopped;
  return 0;
}

/** `zrs primary --fs FILE --listen ADDR [--blob-dir DIR] [--follow]` */
export async function primaryCommand(args: string[], _out: Output): Promise<number> {
  const v = options(args, {
    fs: { type: 'string' },
    listen: { type: 'string' },
    'blob-dir': { type: 'string' },
    follow: { type: 'boolean' },
    'shutdown-timeout': { type: 'string' },
  });
  const withControl = controlMode(v);
  const timeout = seconds(v, 'shutdown-timeout', 60);
  const log = logger(v, 'primary');
  const primary = await Primary.start({
    fs: required(v, 'fs'),
    listen: address(v, 'listen'),
    blobDir: (v['blob-dir'] as string | undefined) ?? null,
    mode: v.follow ? 'follow' : 'own',
    logger: log,
  });
  return servePrimary(primary, v, log, timeout, withControl);
}

async function servePrimary(primary: Primary, v: Record<string, string | boolean | undefined>, log: Logger, timeout: number, withControl: boolean): Promise<number> {
  const status = await statusServer(v, () => primary.status(), log);
  const target = primaryTarget(primary, timeout);
  const shutdown = target.shutdown;
  target.shutdown = async () => (await status.close(), await shutdown());
  return serve(target, withControl, { listen: formatAddress(primary.address), status: status.address });
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

/** `zrs secondary --fs FILE --from ADDR [--blob-dir DIR] [--listen ADDR] [--keep-alive-delay S] [--reconnect-delay S]` */
export async function secondaryCommand(args: string[], _out: Output): Promise<number> {
  const v = options(args, {
    fs: { type: 'string' },
    from: { type: 'string' },
    'blob-dir': { type: 'string' },
    listen: { type: 'string' },
    'keep-alive-delay': { type: 'string' },
    'reconnect-delay': { type: 'string' },
    sync: { type: 'string' },
  });
  const sync = v.sync ?? 'every';
  if (sync !== 'every' && sync !== 'group') throw new UsageError(`--sync is every or group, not ${JSON.stringify(sync)}`);
  const withControl = controlMode(v);
  const secondary = await Secondary.start({
    fs: required(v, 'fs'),
    from: address(v, 'from'),
    blobDir: (v['blob-dir'] as string | undefined) ?? null,
    listen: v.listen === undefined ? null : address(v, 'listen'),
    keepAliveDelay: seconds(v, 'keep-alive-delay', 0),
    reconnectDelay: seconds(v, 'reconnect-delay', 60),
    sync,
    logger: logger(v, 'secondary'),
  });
  return serveSecondary(secondary, v, withControl);
}

async function serveSecondary(secondary: Secondary, v: Record<string, string | boolean | undefined>, withControl: boolean): Promise<number> {
  const listen = secondary.primary ? formatAddress(secondary.primary.address) : null;
  const status = await statusServer(v, () => secondary.status(), secondary.logger);
  return serve(
    { role: 'secondary', lastTid: () => secondary.lastTid, shutdown: async () => (await status.close(), await secondary.close()) },
    withControl,
    { listen, from: secondary.address ? formatAddress(secondary.address) : null, status: status.address },
    (emit) => secondary.on('committed', emit),
  );
}

/** `zrs run --config FILE`: a node described by a zc.zrs configuration file. */
export async function runCommand(args: string[], _out: Output): Promise<number> {
  const v = options(args, { config: { type: 'string' }, 'shutdown-timeout': { type: 'string' } });
  const withControl = controlMode(v);
  const config = readZrsConfig(required(v, 'config'));
  const log = logger(v, config.replicateFrom ? 'secondary' : 'primary');
  if (!config.replicateFrom) {
    const primary = await Primary.start({ fs: config.fs, listen: config.replicateTo!, blobDir: config.blobDir, logger: log });
    return servePrimary(primary, v, log, seconds(v, 'shutdown-timeout', 60), withControl);
  }
  const secondary = await Secondary.start({
    fs: config.fs,
    from: config.replicateFrom,
    blobDir: config.blobDir,
    listen: config.replicateTo,
    keepAliveDelay: config.keepAliveDelay,
    logger: log,
  });
  return serveSecondary(secondary, v, withControl);
}
