/**
 * Registration (spec/discovery.md §3): a node that listens for secondaries (a primary, or a
 * chained secondary on its downstream side) publishes its replication address in ZooKeeper
 * as an ephemeral child `HOST:PORT` of a provider path, with `{"pid":N}` as data, and keeps it
 * there for as long as it runs: again in a new session after an expiry, and removed before
 * the node stops listening.
 * @module
 */
import dns from 'node:dns/promises';
import { hostname } from 'node:os';
import { type Address, formatAddress } from '../net/address.ts';
import { type Logger, silentLogger } from '../net/log.ts';
import { checkPath, DiscoveryError, isNodeExists, ZooKeeper, type ZooKeeperOptions } from './zookeeper.ts';

/** Hosts that mean "all interfaces" when listened on. */
const WILDCARDS = new Set(['', '0.0.0.0', '::', '0:0:0:0:0:0:0:0', '[::]']);

/** True when listening on `host` means listening on all interfaces. */
export function isWildcardHost(host: string): boolean {
  return WILDCARDS.has(host);
}

/**
 * The machine's fully qualified name, as Python's `socket.getfqdn()` gives it (zc.zk 2.4.1 and
 * later registered it): the host name's canonical name when it resolves to a dotted name,
 * otherwise the host name itself. Bounded by `timeoutMs`.
 */
export async function fullyQualifiedHostName(timeoutMs = 2000): Promise<string> {
  const name = hostname();
  if (name.includes('.')) return name.toLowerCase();
  const lookup = async () => {
    const { address } = await dns.lookup(name);
    const { hostname: canonical } = await dns.lookupService(address, 0);
    return canonical.includes('.') ? canonical : name;
  };
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => (timer = setTimeout(() => resolve(name), timeoutMs)));
  try {
    return (await Promise.race([lookup().catch(() => name), late])).toLowerCase();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The name of the registration node for a listening address (DISC-REG-2, DISC-REG-4,
 * DISC-REG-5): `HOST:PORT`, an IPv6 host in brackets, and for all interfaces the machine's
 * name (`machine`).
 */
export function registrationName(listening: Address, machine: string): string {
  if (listening.kind !== 'tcp') {
    throw new DiscoveryError(`cannot register the Unix socket ${listening.path} in ZooKeeper: register a TCP address`, 'DISC-REG-8');
  }
  if (listening.port === 0) throw new DiscoveryError('cannot register port 0: register once listening, with the real port', 'DISC-REG-1');
  const host = isWildcardHost(listening.host) ? machine : listening.host;
  return formatAddress({ kind: 'tcp', host: host.toLowerCase(), port: listening.port });
}

/** The registration node's data (DISC-REG-3): compact JSON with the process id. */
export function registrationData(pid = process.pid, extra: Record<string, string | number | boolean> = {}): Buffer {
  return Buffer.from(JSON.stringify({ ...extra, pid }));
}

export interface RegistrationOptions extends ZooKeeperOptions {
  /** ZooKeeper connection string. */
  zookeeper: string;
  /** The provider path (DISC-CONF-3). */
  path: string;
  /** The address the node listens on, with its real port. */
  address: Address;
  /** The host name to register for all interfaces (default: {@link fullyQualifiedHostName}). */
  machine?: string;
}

/** A registration, kept alive until {@link Registration.close}. */
export class Registration {
  private closed = false;
  private pending: Promise<void> = Promise.resolve();

  private constructor(
    readonly zk: ZooKeeper,
    readonly path: string,
    /** The registration node's name, `HOST:PORT`. */
    readonly name: string,
    private readonly logger: Logger,
  ) {}

  /** The registration node's full path. */
  get node(): string {
    return this.path === '/' ? `/${this.name}` : `${this.path}/${this.name}`;
  }

  /**
   * Connects to ZooKeeper, creates the provider path if missing (DISC-REG-6) and registers
   * (DISC-REG-2). Call it only once the node listens (DISC-REG-1).
   */
  static async start(options: RegistrationOptions): Promise<Registration> {
    const logger = options.logger ?? silentLogger;
    checkPath(options.path);
    const machine = options.machine ?? (options.address.kind === 'tcp' && isWildcardHost(options.address.host) ? await fullyQualifiedHostName() : '');
    const name = registrationName(options.address, machine);
    const zk = await ZooKeeper.open(options.zookeeper, options);
    const r = new Registration(zk, options.path, name, logger);
    try {
      await r.register();
    } catch (e) {
      zk.close();
      throw e;
    }
    // A new session after an expiry: the old node vanished with the old session (DISC-ZK-3).
    zk.on('session', () => void r.again());
    return r;
  }

  private again(): Promise<void> {
    this.pending = this.pending.then(async () => {
      for (let attempt = 1; !this.closed; attempt++) {
        try {
          await this.register();
          return;
        } catch (e) {
          this.logger.log('warn', 'register-retry', `cannot register ${this.node} again: ${(e as Error).message}`, { attempt });
          await new Promise((r) => setTimeout(r, Math.min(5000, 200 * attempt)));
        }
      }
    });
    return this.pending;
  }

  /** Creates the node; replaces a node of the same name left by another session (DISC-REG-7). */
  private async register(): Promise<void> {
    await this.zk.ensurePath(this.path);
    const data = registrationData();
    try {
      await this.zk.createEphemeral(this.node, data);
    } catch (e) {
      if (!isNodeExists(e)) throw e;
      if (await this.zk.ownsEphemeral(this.node)) return;
      this.logger.log('warn', 'register-replace', `replacing ${this.node}, left by another ZooKeeper session`);
      await this.zk.remove(this.node);
      await this.zk.createEphemeral(this.node, data);
    }
    this.logger.log('info', 'registered', `registered in ZooKeeper as ${this.node}`, { session: this.zk.sessionId });
  }

  /** Removes the registration and closes the session (DISC-REG-9): call it before closing the listener. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pending;
    // Closing the session removes the ephemeral node; delete it first so that it is gone even
    // if the close request is lost.
    if (this.zk.connected) await this.zk.remove(this.node).catch(() => undefined);
    this.zk.close();
    this.logger.log('info', 'unregistered', `removed ${this.node} from ZooKeeper`);
  }
}
