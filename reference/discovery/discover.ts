/**
 * Discovery (spec/discovery.md §4): a secondary watches the children of a provider path and
 * tells the reference {@link Secondary} which address to use, choosing deterministically
 * among several providers, keeping its choice while it stays registered, and moving on to the
 * next provider when a connection fails.
 * @module
 */
import { type Address, formatAddress } from '../net/address.ts';
import type { Logger } from '../net/log.ts';
import type { Secondary } from '../secondary/secondary.ts';
import { type ChildrenWatch, checkPath, ZooKeeper, type ZooKeeperOptions } from './zookeeper.ts';

/** A registered provider: the node's name and the address it stands for. */
export interface Provider {
  name: string;
  address: Address & { kind: 'tcp' };
}

/**
 * Reads a registration node's name as an address (DISC-FIND-2, DISC-FIND-3): `HOST:PORT`,
 * `[IPV6]:PORT`, or an unbracketed IPv6 host followed by `:PORT` (what zc.zk would write),
 * split at the last colon. Null when the name is not an address.
 */
export function parseProviderName(name: string): Provider | null {
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]+)\]:([^:]*)$/.exec(name);
  if (bracketed) {
    host = bracketed[1]!;
    port = bracketed[2]!;
  } else {
    const colon = name.lastIndexOf(':');
    if (colon <= 0) return null;
    host = name.slice(0, colon);
    port = name.slice(colon + 1);
    if (host.includes('[') || host.includes(']')) return null;
  }
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return null;
  if (/\s|\//.test(host)) return null;
  return { name, address: { kind: 'tcp', host: host.toLowerCase(), port: Number(port) } };
}

/** The order of DISC-FIND-4: host text (lower case, without brackets) by code unit, then port by number. */
export function compareProviders(a: Provider, b: Provider): number {
  const ha = a.address.host;
  const hb = b.address.host;
  if (ha !== hb) return ha < hb ? -1 : 1;
  if (a.address.port !== b.address.port) return a.address.port - b.address.port;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The providers among the children of a provider path, in the order of DISC-FIND-4. */
export function providers(children: readonly string[]): { providers: Provider[]; ignored: string[] } {
  const found: Provider[] = [];
  const ignored: string[] = [];
  for (const c of children) {
    const p = parseProviderName(c);
    if (p) found.push(p);
    else ignored.push(c);
  }
  return { providers: found.sort(compareProviders), ignored };
}

/**
 * The provider to use (DISC-FIND-4, DISC-FIND-7): the current one while it is still
 * registered, else the first in order; the current one when none is registered.
 */
export function choose(list: readonly Provider[], current: string | null): string | null {
  if (current !== null && list.some((p) => p.name === current)) return current;
  return list[0]?.name ?? current;
}

/** The provider after `current` in order, wrapping around (DISC-FIND-5). */
export function next(list: readonly Provider[], current: string | null): string | null {
  if (list.length === 0) return current;
  const at = list.findIndex((p) => p.name === current);
  if (at < 0) {
    // The current one is gone: the first one after where it would sort.
    const gone = current === null ? null : parseProviderName(current);
    const after = gone ? list.find((p) => compareProviders(p, gone) > 0) : undefined;
    return (after ?? list[0]!).name;
  }
  return list[(at + 1) % list.length]!.name;
}

export interface DiscoveryOptions extends ZooKeeperOptions {
  /** ZooKeeper connection string. */
  zookeeper: string;
  /** The provider path (DISC-CONF-3). */
  path: string;
  /** The secondary to steer: start it with `from: null`. */
  secondary: Secondary;
}

/** Follows the providers registered under a path and steers a secondary to one of them. */
export class Discovery {
  private watch: ChildrenWatch | null = null;
  private list: Provider[] = [];
  private current: string | null = null;
  private readonly logger: Logger;
  private readonly onDisconnected = () => this.failover();

  private constructor(
    readonly zk: ZooKeeper,
    readonly path: string,
    readonly secondary: Secondary,
  ) {
    this.logger = secondary.logger;
  }

  /**
   * Connects to ZooKeeper and starts following `path`; resolves once the first list of
   * providers was read (the secondary connects at once if one is registered).
   */
  static async start(options: DiscoveryOptions): Promise<Discovery> {
    checkPath(options.path);
    const zk = await ZooKeeper.open(options.zookeeper, { logger: options.secondary.logger, ...options });
    const d = new Discovery(zk, options.path, options.secondary);
    let first!: () => void;
    const read = new Promise<void>((r) => (first = r));
    d.watch = zk.watchChildren(options.path, (children) => (d.update(children), first()));
    options.secondary.on('disconnected', d.onDisconnected);
    // Bounded: a list that cannot be read yet is read later, when ZooKeeper answers.
    await Promise.race([read, new Promise((r) => setTimeout(r, options.operationTimeout ?? 10_000))]);
    return d;
  }

  /** The registered providers, in order. */
  get providers(): readonly Provider[] {
    return this.list;
  }

  /** The name of the chosen provider, or null before one was ever registered. */
  get chosen(): string | null {
    return this.current;
  }

  private update(children: string[] | null): void {
    const { providers: list, ignored } = providers(children ?? []);
    for (const name of ignored) this.logger.log('warn', 'discover-ignored', `ignoring ${this.path}/${name}: not HOST:PORT`);
    this.list = list;
    this.logger.log('info', 'providers', `${list.length} provider(s) registered under ${this.path}${children === null ? ' (no such node yet)' : ''}`, {
      providers: list.map((p) => p.name).join(' '),
    });
    this.use(choose(list, this.current));
  }

  /** After a failed attempt or a lost connection, the next provider in order (DISC-FIND-5). */
  private failover(): void {
    if (this.list.length < 2) return;
    this.use(next(this.list, this.current));
  }

  private use(name: string | null): void {
    if (name === null || name === this.current) return;
    const p = this.list.find((x) => x.name === name);
    if (!p) return;
    this.current = name;
    this.logger.log('info', 'discovered', `replicating from ${formatAddress(p.address)} (found under ${this.path})`);
    this.secondary.setAddress(p.address);
  }

  /** Stops following (call before closing the secondary). */
  close(): void {
    this.secondary.off('disconnected', this.onDisconnected);
    this.watch?.close();
    this.zk.close();
  }
}
