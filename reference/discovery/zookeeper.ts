/**
 * A small ZooKeeper session for registration and discovery (spec/discovery.md), on the pure
 * JavaScript client `node-zookeeper-client`.
 *
 * {@link ZooKeeper} keeps one session open: the client itself reconnects after a lost
 * connection and keeps the session and its watches; when the session expires, a new client
 * and session are made and the `session` event tells the users of the old one to restore
 * their ephemeral nodes and watches (DISC-ZK-3). Every operation fails after a bounded time.
 * @module
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import {
  ACL,
  type Client,
  CreateMode,
  createClient,
  Event,
  Exception,
  Id,
  Permission,
  type Stat,
} from 'node-zookeeper-client';
import { ZrsError } from '../errors.ts';
import { type Logger, silentLogger } from '../net/log.ts';
import { isZooKeeperPath } from './path.ts';

/** ZooKeeper could not be reached in time, or refused an operation. */
export class DiscoveryError extends ZrsError {
  /** ZooKeeper's error code (`Exception.NO_NODE`, ...) when ZooKeeper refused the operation. */
  readonly zookeeperCode: number | null;

  constructor(message: string, requirement?: string, zookeeperCode: number | null = null) {
    super('ERR_DISCOVERY', message, requirement);
    this.zookeeperCode = zookeeperCode;
  }
}

export interface ZooKeeperOptions {
  /** Session timeout asked of the server, ms (default 10 000, as zc.zk; the server may change it). */
  sessionTimeout?: number;
  /** How long {@link ZooKeeper.open} waits for the first connection, ms (default 10 000). */
  connectTimeout?: number;
  /** How long one operation may wait, ms (default 10 000). */
  operationTimeout?: number;
  logger?: Logger;
}

/** How long a connect request may wait for the server's answer once TCP is up (ms). */
export const HANDSHAKE_TIMEOUT_MS = 2000;

/** Read access for everyone: the ACL zc.zk gave registration nodes. */
export const READ_ONLY_ACL = [new ACL(Permission.READ, new Id('world', 'anyone'))];
/** Every permission for everyone: for the persistent nodes of a path. */
export const OPEN_ACL = [new ACL(Permission.ALL, new Id('world', 'anyone'))];

type Callback<T> = (error: Error | Exception | null, result: T) => void;

function isCode(e: unknown, code: number): boolean {
  if (e instanceof DiscoveryError) return e.zookeeperCode === code;
  return e instanceof Exception && e.getCode() === code;
}

/** True for ZooKeeper's "no node" error. */
export const isNoNode = (e: unknown) => isCode(e, Exception.NO_NODE);
/** True for ZooKeeper's "node exists" error. */
export const isNodeExists = (e: unknown) => isCode(e, Exception.NODE_EXISTS);

/** Checks a ZooKeeper path (see {@link isZooKeeperPath}). */
export function checkPath(p: string): string {
  if (!isZooKeeperPath(p)) throw new DiscoveryError(`${JSON.stringify(p)} is not a ZooKeeper path (absolute, without empty, "." or ".." components)`, 'DISC-CONF-3');
  return p;
}

/**
 * One ZooKeeper session at a time, renewed when it expires.
 *
 * Events: `connected` (after every (re)connection), `disconnected`, `expired` (the session is
 * gone; a new one is being made), `session` (a new session after an expiry), `error` is never
 * emitted: failures of the background renewal are logged and retried.
 */
export class ZooKeeper extends EventEmitter {
  private client: Client;
  private closed = false;
  private generation = 0;
  private readonly watchdog: NodeJS.Timeout;
  private handshake: { socket: net.Socket; since: number } | null = null;
  readonly logger: Logger;

  private constructor(
    readonly connectionString: string,
    readonly options: ZooKeeperOptions,
  ) {
    super();
    this.logger = options.logger ?? silentLogger;
    this.client = this.makeClient();
    this.watchdog = setInterval(() => this.checkHandshake(), 250);
    this.watchdog.unref();
  }

  /**
   * The client waits without a time limit for the server's answer to its connect request once
   * the TCP connection is up; a server that is still starting can accept the connection and
   * never answer (seen with ZooKeeper 3.8 restarting). Give up on such an attempt after
   * {@link HANDSHAKE_TIMEOUT_MS}: the client then tries again.
   */
  private checkHandshake(): void {
    // node-zookeeper-client's ConnectionManager (lib/ConnectionManager.js): state 1 is CONNECTING.
    const cm = this.connection;
    const socket = cm?.socket;
    if (this.closed || !cm || cm.state !== 1 || !socket || socket.connecting || socket.destroyed) {
      this.handshake = null;
      return;
    }
    if (this.handshake?.socket !== socket) {
      this.handshake = { socket, since: Date.now() };
      return;
    }
    if (Date.now() - this.handshake.since < HANDSHAKE_TIMEOUT_MS) return;
    this.logger.log('debug', 'zookeeper-handshake', `no answer to the connect request from ZooKeeper at ${this.connectionString}; trying again`);
    this.handshake = null;
    socket.destroy();
  }

  /** Connects to `connectionString` (`HOST:PORT[,HOST:PORT...][/chroot]`), waiting at most `connectTimeout`. */
  static async open(connectionString: string, options: ZooKeeperOptions = {}): Promise<ZooKeeper> {
    const zk = new ZooKeeper(connectionString, options);
    try {
      await zk.waitConnected(options.connectTimeout ?? 10_000);
    } catch (e) {
      zk.close();
      throw e;
    }
    zk.logger.log('info', 'zookeeper-connected', `connected to ZooKeeper at ${connectionString}`, { session: zk.sessionId });
    return zk;
  }

  private makeClient(): Client {
    const client = createClient(this.connectionString, { sessionTimeout: this.options.sessionTimeout ?? 10_000, spinDelay: 200, retries: 0 });
    const generation = ++this.generation;
    const current = () => generation === this.generation && !this.closed;
    client.on('connected', () => current() && this.emit('connected'));
    client.on('disconnected', () => {
      if (!current()) return;
      this.logger.log('warn', 'zookeeper-disconnected', `lost the connection to ZooKeeper at ${this.connectionString}; reconnecting`);
      this.emit('disconnected');
    });
    client.on('expired', () => current() && this.renew());
    client.connect();
    return client;
  }

  /** The session expired: every ephemeral node and watch of it is gone (DISC-ZK-3). */
  private renew(): void {
    this.logger.log('warn', 'zookeeper-expired', 'the ZooKeeper session expired; opening a new one');
    const old = this.client;
    this.client = this.makeClient();
    old.close();
    this.emit('expired');
    this.once('connected', () => {
      this.logger.log('info', 'zookeeper-session', 'new ZooKeeper session', { session: this.sessionId });
      this.emit('session');
    });
  }

  /** The client's connection manager (node-zookeeper-client's lib/ConnectionManager.js). */
  private get connection(): { state: number; socket?: net.Socket } | undefined {
    return (this.client as unknown as { connectionManager?: { state: number; socket?: net.Socket } }).connectionManager;
  }

  /** Drops the TCP connection as a network failure would (for tests); the client reconnects by itself. */
  dropConnection(): void {
    this.connection?.socket?.destroy();
  }

  /** Resolves once connected; rejects after `timeoutMs`. */
  waitConnected(timeoutMs: number): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => (clearTimeout(timer), this.off('connected', done), resolve());
      const timer = setTimeout(() => {
        this.off('connected', done);
        reject(new DiscoveryError(`could not connect to ZooKeeper at ${this.connectionString} within ${timeoutMs} ms`, 'DISC-ZK-1'));
      }, timeoutMs);
      this.on('connected', done);
    });
  }

  /** True while the session is connected. */
  get connected(): boolean {
    const s = this.client.getState();
    return s.code === 3 /* SYNC_CONNECTED */ || s.code === 5; /* CONNECTED_READ_ONLY */
  }

  /** The session id, 16 hex digits. */
  get sessionId(): string {
    return this.client.getSessionId().toString('hex');
  }

  /** The session timeout the server granted, ms (DISC-ZK-4). */
  get sessionTimeout(): number {
    return this.client.getSessionTimeout();
  }

  /** The session's id and password: enough for a test to end this session (see {@link expireSession}). */
  get credentials(): { sessionId: Buffer; sessionPassword: Buffer } {
    return { sessionId: Buffer.from(this.client.getSessionId()), sessionPassword: Buffer.from(this.client.getSessionPassword()) };
  }

  /** Runs one client call, bounded by `operationTimeout`. */
  private call<T>(what: string, f: (client: Client, cb: Callback<T>) => void): Promise<T> {
    if (this.closed) return Promise.reject(new DiscoveryError(`${what}: the ZooKeeper session is closed`));
    const timeoutMs = this.options.operationTimeout ?? 10_000;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new DiscoveryError(`${what}: no answer from ZooKeeper within ${timeoutMs} ms`)), timeoutMs);
      f(this.client, (error, result) => {
        clearTimeout(timer);
        if (error instanceof Exception) reject(new DiscoveryError(`${what}: ${error.getName()}`, undefined, error.getCode()));
        else if (error) reject(error);
        else resolve(result);
      });
    });
  }

  /** Creates `path` and its missing ancestors as persistent nodes with an open ACL. */
  async ensurePath(path: string): Promise<void> {
    checkPath(path);
    if (path === '/') return;
    await this.call<string>(`create ${path}`, (c, cb) => c.mkdirp(path, OPEN_ACL, CreateMode.PERSISTENT, cb));
  }

  /** Creates an ephemeral node of this session holding `data`. */
  async createEphemeral(path: string, data: Buffer, acl = READ_ONLY_ACL): Promise<void> {
    await this.call<string>(`create ${path}`, (c, cb) => c.create(path, data, acl, CreateMode.EPHEMERAL, cb));
  }

  /** Deletes a node, any version; a node already gone is no error. */
  async remove(path: string): Promise<void> {
    try {
      await this.call<void>(`delete ${path}`, (c, cb) => c.remove(path, -1, (e) => cb(e, undefined)));
    } catch (e) {
      if (!isNoNode(e)) throw e;
    }
  }

  /** A node's data and stat, or null when there is no such node. */
  async get(path: string): Promise<{ data: Buffer; stat: Stat } | null> {
    try {
      return await this.call<{ data: Buffer; stat: Stat }>(`read ${path}`, (c, cb) => c.getData(path, (e, data, stat) => cb(e, { data: data ?? Buffer.alloc(0), stat })));
    } catch (e) {
      if (isNoNode(e)) return null;
      throw e;
    }
  }

  /** True when the node exists and is an ephemeral node of this session. */
  async ownsEphemeral(path: string): Promise<boolean | null> {
    const node = await this.get(path);
    if (!node) return null;
    return node.stat.ephemeralOwner.equals(this.client.getSessionId());
  }

  /** A node's children, sorted, or null when there is no such node. */
  async children(path: string): Promise<string[] | null> {
    try {
      return (await this.call<string[]>(`list ${path}`, (c, cb) => c.getChildren(path, cb))).sort();
    } catch (e) {
      if (isNoNode(e)) return null;
      throw e;
    }
  }

  /**
   * Calls `onChange` with the children of `path` (null while the node does not exist) now and
   * whenever they change, for as long as the returned watch is open: across reconnections,
   * ZooKeeper restarts and session expiries. Calls are serialised and only made when the list
   * differs from the last one reported.
   */
  watchChildren(path: string, onChange: (children: string[] | null) => void): ChildrenWatch {
    return new ChildrenWatch(this, path, onChange);
  }

  /** @internal Lists the children and sets a one-shot children watch (or an existence watch when absent). */
  listAndWatch(path: string, watcher: (event: Event) => void): Promise<string[] | null> {
    return this.call<string[] | null>(`watch ${path}`, (c, cb) =>
      c.getChildren(path, watcher, (e, children) => {
        if (!e) return cb(null, [...children].sort());
        if (!isNoNode(e)) return cb(e, null);
        // No node: watch for its creation instead (DISC-FIND-6).
        c.exists(path, watcher, (e2, stat) => {
          if (e2) return cb(e2, null);
          if (stat) return this.listAndWatch(path, watcher).then((r) => cb(null, r), (e3: Error) => cb(e3, null));
          cb(null, null);
        });
      }),
    );
  }

  /** Closes the session (its ephemeral nodes vanish at once). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    this.client.close();
    this.removeAllListeners();
  }
}

/** A children watch made by {@link ZooKeeper.watchChildren}. */
export class ChildrenWatch {
  private closed = false;
  private last: string | null | undefined = undefined;
  private running: Promise<void> = Promise.resolve();
  private retry: NodeJS.Timeout | null = null;
  private readonly watcher = (_event: Event) => this.refresh();
  private readonly onSession = () => this.refresh();

  constructor(
    private readonly zk: ZooKeeper,
    readonly path: string,
    private readonly onChange: (children: string[] | null) => void,
  ) {
    checkPath(path);
    // Watches survive reconnections (the client sets them again), not a new session.
    zk.on('session', this.onSession);
    zk.on('connected', this.onSession);
    this.refresh();
  }

  /** Reads the children again (with a new watch) and reports them if they changed. */
  refresh(): Promise<void> {
    this.running = this.running.then(async () => {
      if (this.closed) return;
      try {
        const children = await this.zk.listAndWatch(this.path, this.watcher);
        if (this.closed) return;
        const key = children === null ? null : JSON.stringify(children);
        if (key !== this.last) {
          this.last = key;
          this.onChange(children);
        }
      } catch (e) {
        if (this.closed) return;
        // Not connected: the `connected` or `session` event reads again; retry anyway, bounded.
        this.zk.logger.log('debug', 'zookeeper-watch', `cannot read ${this.path}: ${(e as Error).message}`);
        this.retry ??= setTimeout(() => ((this.retry = null), void this.refresh()), 1000);
      }
    });
    return this.running;
  }

  close(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.zk.off('session', this.onSession);
    this.zk.off('connected', this.onSession);
  }
}

/**
 * Joins a session with its id and password and closes it at once, on a raw connection: the
 * connect request (ZooKeeper's jute `ConnectRequest`) and the close request go out in one
 * write, so that the owner of the session has no time to win it back in between. Resolves
 * with false when the server did not accept the session.
 */
function joinAndClose(connectionString: string, credentials: { sessionId: Buffer; sessionPassword: Buffer }, timeoutMs: number): Promise<boolean> {
  const first = connectionString.split('/')[0]!.split(',')[0]!;
  const colon = first.lastIndexOf(':');
  const host = colon > 0 ? first.slice(0, colon) : first;
  const port = colon > 0 ? Number(first.slice(colon + 1)) : 2181;
  const connect = Buffer.alloc(4 + 8 + 4 + 8 + 4 + 16 + 1);
  let o = 0;
  o = connect.writeInt32BE(0, o); // protocol version
  o += 8; // last zxid seen: 0
  o = connect.writeInt32BE(10_000, o); // session timeout
  o += credentials.sessionId.copy(connect, o, 0, 8);
  o = connect.writeInt32BE(16, o);
  o += credentials.sessionPassword.copy(connect, o, 0, 16);
  connect.writeUInt8(0, o); // not read-only
  const close = Buffer.alloc(8);
  close.writeInt32BE(1, 0); // xid
  close.writeInt32BE(-11, 4); // closeSession
  const withLength = (b: Buffer) => {
    const l = Buffer.alloc(4);
    l.writeInt32BE(b.length);
    return Buffer.concat([l, b]);
  };
  return new Promise((resolve) => {
    let answer = Buffer.alloc(0);
    const socket = net.connect({ host, port });
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      // ConnectResponse: length, protocol version, then the timeout; 0 or less: no such session.
      resolve(answer.length >= 12 && answer.readInt32BE(8) > 0);
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('connect', () => socket.write(Buffer.concat([withLength(connect), withLength(close)])));
    socket.on('data', (d: Buffer) => (answer = Buffer.concat([answer, d])));
    socket.on('error', done);
    socket.on('close', done);
  });
}

/**
 * Ends a session from the outside, as an expiry would (for tests): joins the session with its
 * id and password and closes it (see `joinAndClose`), until `zk` has noticed and opened a new
 * session; retried in case the owner won the session back first. Bounded by `timeoutMs`.
 */
export async function expireSession(zk: ZooKeeper, timeoutMs = 15_000): Promise<void> {
  const before = zk.sessionId;
  const credentials = zk.credentials;
  const until = Date.now() + timeoutMs;
  const renewed = () => zk.sessionId !== before && zk.connected;
  const wait = async (ms: number) => {
    const end = Math.min(until, Date.now() + ms);
    while (!renewed() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  };
  while (Date.now() < until) {
    await joinAndClose(zk.connectionString, credentials, Math.max(100, Math.min(5000, until - Date.now())));
    await wait(500);
    if (renewed()) return;
    // ZooKeeper may leave the owner's newest connection open on a session it closed: make the
    // owner reconnect, and learn that its session is gone.
    if (zk.sessionId === before) zk.dropConnection();
    await wait(1500);
    if (renewed()) return;
  }
  throw new DiscoveryError(`session ${before} did not end within ${timeoutMs} ms (now ${zk.sessionId}, ${zk.connected ? 'connected' : 'not connected'})`);
}
