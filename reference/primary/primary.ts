/**
 * The reference primary: serves one FileStorage file to any number of secondaries.
 *
 * Where new transactions come from:
 * - `own`: this process commits them (the `commit` method, used by the control channel);
 * - `follow`: another process appends to the file; it is watched and polled;
 * - `chained`: a secondary in this process writes the file and calls `notify` after each
 *   commit (a chained node, wire-protocol §9.6).
 * @module
 */
import { existsSync, lstatSync, statSync, unlinkSync, watch, type FSWatcher } from 'node:fs';
import net from 'node:net';
import { ZrsError } from '../errors.ts';
import { BlobDirectory } from '../filestorage/blobs.ts';
import { FileLock } from '../filestorage/lock.ts';
import { packFile, type PackResult } from '../filestorage/pack.ts';
import { FileStorageReader } from '../filestorage/reader.ts';
import { FileStorageWriter, type RecordToWrite, type TxnMeta } from '../filestorage/writer.ts';
import { type Address, formatAddress } from '../net/address.ts';
import { type Logger, silentLogger } from '../net/log.ts';
import { lagSeconds, nodeStatus, type NodeStatus, type PeerStatus } from '../net/status.ts';
import { dumpExtension } from '../pickle/encoder.ts';
import { PyDict } from '../pickle/values.ts';
import { hex8, laterThan, tidFromUnixMillis, Z64 } from '../timestamp.ts';
import { PrimaryConnection } from './connection.ts';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DropLog } from './limits.ts';
import { CommitSignal } from './signal.ts';

export interface PrimaryOptions {
  /** The FileStorage file to serve. */
  fs: string;
  /** Where to listen; port 0 picks a free port (see {@link Primary.address}). */
  listen: Address;
  /** Blob directory: the primary then serves blobs and refuses `zrs2.0`. */
  blobDir?: string | null;
  /** Where commits come from (default `own`). */
  mode?: 'own' | 'follow' | 'chained';
  /** In `follow` mode, how often to look at the file besides watching it (ms, default 100). */
  pollInterval?: number;
  /** Time a connection has to complete its handshake, in ms (default 30 s; 0: no limit). */
  handshakeTimeoutMs?: number;
  /** Connections held open at once, handshakes included (default 100; 0: no limit). */
  maxConnections?: number;
  logger?: Logger;
}

/** A transaction committed through the primary itself. */
export interface Commit {
  user?: Uint8Array;
  description?: Uint8Array;
  extension?: PyDict;
  records: { oid: Uint8Array; data: Uint8Array | null }[];
}

export class Primary {
  readonly connections = new Set<PrimaryConnection>();
  private readonly signal = new CommitSignal();
  private writer: FileStorageWriter | null = null;
  private server: net.Server | null = null;
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  private drops: DropLog | null = null;
  private bound: Address;
  readonly blobs: BlobDirectory | null;
  readonly logger: Logger;

  private constructor(
    readonly options: PrimaryOptions,
    /** The lock of the file, held while this primary writes it (`own` mode). */
    readonly lock: FileLock | null,
  ) {
    this.logger = options.logger ?? silentLogger;
    lock?.closeOnLoss(this.logger, () => this.close());
    this.blobs = options.blobDir ? new BlobDirectory(options.blobDir) : null;
    this.bound = options.listen;
  }

  /** Opens the file (locking and recovering it in `own` mode) and starts listening. */
  static async start(options: PrimaryOptions): Promise<Primary> {
    // only a primary that writes its file locks it (FS-LOCK-1, FS-LOCK-4)
    const lock = (options.mode ?? 'own') === 'own' ? await FileLock.acquire(options.fs) : null;
    try {
      return await Primary.open(options, lock);
    } catch (e) {
      await lock?.release();
      throw e;
    }
  }

  private static async open(options: PrimaryOptions, lock: FileLock | null): Promise<Primary> {
    const p = new Primary(options, lock);
    const mode = options.mode ?? 'own';
    const created = !existsSync(options.fs);
    if (mode === 'own') {
      p.writer = FileStorageWriter.open(options.fs);
      if (p.writer.recovery) {
        const r = p.writer.recovery;
        p.logger.log('warn', 'recovered', `damaged tail (${r.reason}) of ${r.removed} bytes saved to ${r.savedAs}`, { offset: r.truncatedAt });
      }
    } else {
      FileStorageReader.open(options.fs).close(); // the file must exist and be a FileStorage
    }
    if (mode === 'follow') p.watchFile(options.pollInterval ?? 100);
    await p.listen();
    const size = statSync(options.fs).size;
    const lastTid = hex8(p.lastTid);
    p.logger.log('info', 'serving', `serving ${options.fs}: ${size} bytes, last tid ${lastTid}${created ? ' (a new file)' : ''}`, { file: options.fs, size, lastTid, created });
    return p;
  }

  /** The address actually listened on (with the port chosen when 0 was asked for). */
  get address(): Address {
    return this.bound;
  }

  /** The last committed tid (own mode), or of the file as it is now. */
  get lastTid(): Buffer {
    if (this.writer) return this.writer.lastTid;
    const r = FileStorageReader.open(this.options.fs);
    try {
      let last = Z64;
      for (const t of r.transactions()) last = t.tid;
      return last;
    } finally {
      r.close();
    }
  }

  private async listen(): Promise<void> {
    const a = this.options.listen;
    const server = net.createServer((socket) => this.accept(socket));
    const max = this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (max > 0) {
      // Node closes the sockets beyond the bound at once, writing nothing (WIRE-LIMIT-3).
      server.maxConnections = max;
      const drops = (this.drops = new DropLog(this.logger, max));
      server.on('drop', (d) => drops.dropped(d?.remoteAddress ? `${d.remoteAddress}:${d.remotePort}` : formatAddress(this.bound)));
    }
    const attempt = () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        const done = () => {
          server.off('error', reject);
          resolve();
        };
        if (a.kind === 'unix') server.listen(a.path, done);
        else server.listen({ port: a.port, host: a.host || undefined }, done);
      });
    try {
      await attempt();
    } catch (e) {
      if (a.kind !== 'unix' || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !(await staleSocket(a.path))) throw e;
      unlinkSync(a.path);
      await attempt();
    }
    this.server = server;
    // accept failures (out of file descriptors, say) are logged; the primary serves on
    server.on('error', (e: NodeJS.ErrnoException) => this.logger.log('error', 'accept-error', e.message, { code: e.code }));
    const addr = server.address();
    if (addr && typeof addr === 'object') this.bound = { kind: 'tcp', host: a.kind === 'tcp' ? a.host : '', port: addr.port };
    this.logger.log('info', 'listening', `listening on ${formatAddress(this.bound)}`, { address: formatAddress(this.bound), blobs: this.blobs !== null });
  }

  private accept(socket: net.Socket): void {
    if (this.closing) return void socket.destroy();
    const peer = socket.remoteAddress ? `${socket.remoteAddress}:${socket.remotePort}` : formatAddress(this.bound);
    socket.setNoDelay(true);
    const handshakeTimeoutMs = this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const c = new PrimaryConnection(socket, { path: this.options.fs, blobs: this.blobs, signal: this.signal, logger: this.logger, handshakeTimeoutMs }, peer);
    this.connections.add(c);
    void c.closed.then(() => {
      this.connections.delete(c);
      this.logger.log('info', 'disconnected', 'connection closed', { peer, transactions: c.sentTransactions });
    });
  }

  private watchFile(interval: number): void {
    try {
      this.watcher = watch(this.options.fs, () => this.signal.notify());
    } catch {
      this.watcher = null; // polling alone still works
    }
    this.poller = setInterval(() => this.signal.notify(), interval);
    this.poller.unref();
  }

  /** Each connected secondary: what it was sent and how far behind it is. */
  peers(): PeerStatus[] {
    const last = this.lastTid;
    return [...this.connections].map((c) => {
      const p = c.progress();
      return {
        peer: c.peer,
        direction: 'downstream' as const,
        connected: true,
        startTid: c.startTid ? hex8(c.startTid) : null,
        lastTid: p.lastSentTid ? hex8(p.lastSentTid) : null,
        transactions: c.sentTransactions,
        bytes: p.bytesSent,
        lagSeconds: lagSeconds(last, p.lastSentTid ?? c.startTid),
        lagTransactions: p.pendingTransactions,
      };
    });
  }

  /** The status document of `--status-listen`. */
  status(): NodeStatus {
    return nodeStatus('primary', this.lastTid, this.peers());
  }

  /** Tells the streams that the file may have grown (chained mode). */
  notify(): void {
    this.signal.notify();
  }

  /** Commits a transaction of this primary's own; returns its tid. */
  commit(c: Commit): Buffer {
    const writer = this.ownWriter();
    const tid = laterThan(tidFromUnixMillis(Date.now()), writer.lastTid);
    const records: RecordToWrite[] = c.records.map((r) => ({ oid: r.oid, serial: tid, data: r.data }));
    writer.commit(this.meta(tid, c), records);
    this.signal.notify();
    return tid;
  }

  private ownWriter(): FileStorageWriter {
    if (!this.writer) throw new ZrsError('ERR_READ_ONLY', `this primary does not write its file (mode ${this.options.mode})`);
    if (this.closing) throw new ZrsError('ERR_CLOSED', 'the primary is shutting down');
    return this.writer;
  }

  private meta(tid: Buffer, c: Omit<Commit, 'records'>): TxnMeta {
    return {
      tid,
      status: ' ',
      user: c.user ?? Buffer.alloc(0),
      description: c.description ?? Buffer.alloc(0),
      extension: dumpExtension(c.extension ?? new PyDict()),
    };
  }

  /** Undoes the transaction `tid` with a new transaction; returns the new tid. */
  undo(tid: Uint8Array, meta: Omit<Commit, 'records'> = {}): Buffer {
    const writer = this.ownWriter();
    const newTid = laterThan(tidFromUnixMillis(Date.now()), writer.lastTid);
    writer.commit(this.meta(newTid, meta), writer.undoRecords(tid, newTid));
    this.signal.notify();
    return newTid;
  }

  /**
   * Packs the file to `before` (a tid) as ZODB does; streams carry on after the last tid they
   * sent (WIRE-TXN-8). The writer is reopened on the new file.
   */
  pack(before: Uint8Array): PackResult {
    const writer = this.ownWriter();
    const result = packFile(this.options.fs, before);
    if (result.packed) {
      writer.close();
      this.writer = FileStorageWriter.open(this.options.fs);
      this.logger.log('info', 'packed', `packed to ${hex8(before)}`, { before: result.bytesBefore, after: result.bytesAfter });
    }
    this.signal.notify();
    return result;
  }

  /**
   * Shuts down (WIRE-SHUT-1..3): stop listening and committing, let every streaming
   * secondary catch up, then close; connections still open after `timeoutMs` are cut.
   */
  close(timeoutMs = 60_000): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    const server = this.server;
    const stopped = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    this.watcher?.close();
    if (this.poller) clearInterval(this.poller);
    this.drops?.close();
    for (const c of this.connections) c.drain();
    const all = Promise.all([...this.connections].map((c) => c.closed));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.logger.log('warn', 'shutdown-timeout', `${this.connections.size} connection(s) cut after ${timeoutMs} ms`);
      for (const c of this.connections) c.destroy();
    }
    await stopped;
    this.writer?.close();
    await this.lock?.release();
    this.logger.log('info', 'stopped', 'primary stopped');
  }
}

/** True when a unix socket path exists but nothing listens on it any more. */
async function staleSocket(path: string): Promise<boolean> {
  if (!existsSync(path) || !lstatSync(path).isSocket()) return false;
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', () => resolve(true));
  });
}
