/**
 * The reference secondary (wire-protocol §9.3): connects to a primary, sends its handshake,
 * applies the stream to its own FileStorage, sends keep-alives, and reconnects after any
 * failure, resuming after its last committed transaction. With a listen address it is also
 * a primary for its own secondaries (chaining, §9.6).
 * @module
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { ZrsError } from '../errors.ts';
import { BlobDirectory } from '../filestorage/blobs.ts';
import { FileStorageWriter } from '../filestorage/writer.ts';
import { encodeFrame, FrameDecoder } from '../framing.ts';
import { type Address, formatAddress, sameAddress } from '../net/address.ts';
import { type Logger, silentLogger } from '../net/log.ts';
import { nodeStatus, type NodeStatus, type PeerStatus } from '../net/status.ts';
import { Primary } from '../primary/primary.ts';
import { StreamDecoder } from '../stream.ts';
import { hex8, tidToString } from '../timestamp.ts';
import { SecondaryApplier } from './applier.ts';

/** Group commit: an fsync starts once this many transactions, or this many milliseconds, are waiting (or when the last one ends). */
const GROUP_MAX = 2000;
const GROUP_DELAY_MS = 20;

/** The empty frame a secondary sends to keep an idle connection alive (WIRE-KA-1). */
export const KEEP_ALIVE = Buffer.alloc(4);

export interface SecondaryOptions {
  /** The FileStorage file to replicate into. */
  fs: string;
  /** The primary's address; `null` to wait for {@link Secondary.setAddress} (discovery). */
  from: Address | null;
  /** Blob directory: then the secondary stores blobs and asks for `zrs2.1`. */
  blobDir?: string | null;
  /** Seconds between keep-alives; 0 turns them off (the default, as in zc.zrs). */
  keepAliveDelay?: number;
  /** Seconds to wait before connecting again (default 60, as in zc.zrs). */
  reconnectDelay?: number;
  /** Also serve the replicated file to downstream secondaries here. */
  listen?: Address | null;
  /**
   * `every` (the default, as ZODB): fsync each transaction before counting it as committed.
   * `group`: when transactions arrive back to back (a catch-up), finish them and share one
   * fsync among them (at most 2000 transactions or 20 ms), counting them as committed only
   * after it (FS-COMMIT-7).
   */
  sync?: 'every' | 'group';
  logger?: Logger;
}

/** Events: `committed` (tid), `connected` (), `disconnected` (reason). */
export class Secondary extends EventEmitter {
  private readonly writer: FileStorageWriter;
  private readonly applier: SecondaryApplier;
  private readonly blobs: BlobDirectory | null;
  private socket: net.Socket | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private downstream: Primary | null = null;
  private from: Address | null;
  private unsynced: Buffer[] = [];
  /** The background fsyncs of group commit, while they run; a connection waiting for them. */
  private syncing: Promise<void> | null = null;
  private connectPending = false;
  /** Start tid of the current connection, and bytes received on earlier ones. */
  private connectedFrom: Buffer | null = null;
  private bytesReceived = 0;
  private flushTimer: NodeJS.Timeout | null = null;
  readonly logger: Logger;
  /** Transactions applied since start. */
  appliedTransactions = 0;

  /** Bytes received from primaries since start. */
  get receivedBytes(): number {
    return this.bytesReceived + (this.socket?.bytesRead ?? 0);
  }

  private constructor(readonly options: SecondaryOptions) {
    super();
    this.logger = options.logger ?? silentLogger;
    this.from = options.from;
    this.writer = FileStorageWriter.open(options.fs);
    const r = this.writer.recovery;
    if (r) this.logger.log('warn', 'recovered', `damaged tail (${r.reason}) of ${r.removed} bytes saved to ${r.savedAs}`, { offset: r.truncatedAt });
    this.blobs = options.blobDir ? new BlobDirectory(options.blobDir, { create: true }) : null;
    // Blob chunks of a transaction that never committed (a crash) are of no use (DEV-BLOBTMP-1).
    const stale = this.blobs?.removeIncoming() ?? 0;
    if (stale) this.logger.log('info', 'blob-tmp', `removed ${stale} incomplete incoming blob file(s)`);
    this.applier = new SecondaryApplier(this.writer, this.blobs, this.logger, options.sync === 'group');
  }

  /** Opens (and recovers) the file, starts serving downstream if asked, and connects. */
  static async start(options: SecondaryOptions): Promise<Secondary> {
    if (options.listen && options.from && sameAddress(options.listen, options.from)) {
      throw new ZrsError('ERR_CONFIG', 'Values for replicate-to and replicate-from must be different.', 'WIRE-CHAIN-4');
    }
    const s = new Secondary(options);
    try {
      if (options.listen) {
        s.downstream = await Primary.start({ fs: options.fs, listen: options.listen, blobDir: options.blobDir ?? null, mode: 'chained', logger: s.logger });
      }
    } catch (e) {
      s.writer.close();
      throw e;
    }
    s.connect();
    return s;
  }

  /** The last committed tid: what the next handshake sends (WIRE-HS-3, DEV-RESUME-1). */
  get lastTid(): Buffer {
    return this.writer.lastTid;
  }

  /** The downstream primary of a chained secondary. */
  get primary(): Primary | null {
    return this.downstream;
  }

  /** The status document of `--status-listen`: the upstream connection, and downstream ones when chained. */
  status(): NodeStatus {
    const upstream: PeerStatus = {
      peer: this.from ? formatAddress(this.from) : '',
      direction: 'upstream',
      connected: this.connected,
      startTid: this.connectedFrom ? hex8(this.connectedFrom) : null,
      lastTid: hex8(this.lastTid),
      transactions: this.appliedTransactions,
      bytes: this.receivedBytes,
    };
    return nodeStatus(this.downstream ? 'chained' : 'secondary', this.lastTid, [upstream, ...(this.downstream?.peers() ?? [])]);
  }

  /** True while connected to the primary. */
  get connected(): boolean {
    return this.socket !== null && !this.socket.connecting && !this.socket.destroyed;
  }

  /** The primary's address now (it changes through {@link Secondary.setAddress}). */
  get address(): Address | null {
    return this.from;
  }

  /**
   * Replaces the primary's address (WIRE-RECON-4): used from the next connection attempt on,
   * at once when there was no address yet; an established connection is kept.
   */
  setAddress(a: Address | null): void {
    const first = this.from === null;
    this.from = a;
    this.logger.log('info', 'address', a ? `primary address is now ${formatAddress(a)}` : 'primary address unknown');
    if (first && a && !this.socket && !this.reconnectTimer && !this.connectPending) this.connect();
  }

  private connect(): void {
    if (this.closed) return;
    const a = this.from;
    if (!a) return; // waiting for an address
    // the handshake names the last committed transaction: first commit what was finished
    if (this.syncing || this.unsynced.length) {
      this.connectPending = true;
      return void this.flush().then(() => {
        this.connectPending = false;
        this.connect();
      });
    }
    const peer = formatAddress(a);
    const socket = a.kind === 'unix' ? net.connect(a.path) : net.connect({ port: a.port, host: a.host || 'localhost' });
    this.socket = socket;
    const frames = new FrameDecoder();
    let stream: StreamDecoder | null = null;
    let failure: string | null = null;

    socket.on('connect', () => {
      if (this.closed) return void socket.destroy();
      socket.setNoDelay(true);
      const start = this.writer.lastTid;
      const protocol = this.blobs ? 'zrs2.1' : 'zrs2.0';
      // Both handshake frames at once, before anything else (WIRE-HS-1, WIRE-KA-4).
      socket.write(Buffer.concat([encodeFrame(Buffer.from(protocol)), encodeFrame(start)]));
      stream = new StreamDecoder(start);
      this.connectedFrom = start;
      this.startKeepAlive(socket);
      this.logger.log('info', 'connected', `replicating from ${hex8(start)} (${tidToString(start)})`, { peer, protocol });
      this.emit('connected');
    });

    socket.on('data', (chunk: Buffer) => {
      if (!stream || failure) return;
      try {
        for (const frame of frames.push(chunk)) {
          const event = stream.push(frame);
          if (!event) continue;
          const tid = this.applier.apply(event);
          if (tid) this.finished(tid);
        }
      } catch (e) {
        if (!(e instanceof ZrsError)) throw e;
        failure = e.message;
        this.logger.log('error', 'input-error', e.message, { peer, code: e.code, requirement: e.requirement });
        this.applier.abort();
        socket.destroy();
      }
    });

    socket.on('error', (e) => {
      failure ??= e.message;
    });

    socket.on('close', () => {
      this.stopKeepAlive();
      if (this.applier.inTransaction) this.applier.abort(); // WIRE-CLOSE-6
      void this.flush();
      if (this.socket === socket) this.socket = null;
      this.bytesReceived += socket.bytesRead;
      this.connectedFrom = null;
      const reason = failure ?? 'connection closed by the primary';
      this.emit('disconnected', reason);
      if (this.closed) return;
      const delay = this.options.reconnectDelay ?? 60;
      this.logger.log('info', 'disconnected', `${reason}; reconnecting in ${delay} s`, { peer });
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = null;
        this.connect();
      }, delay * 1000);
    });
  }

  /** A transaction was finished: committed now, or (group commit) once a later fsync covers it. */
  private finished(tid: Buffer): void {
    if (this.options.sync !== 'group') return this.committed([tid]);
    this.unsynced.push(tid);
    if (this.unsynced.length >= GROUP_MAX) return void this.flush();
    this.flushTimer ??= setTimeout(() => void this.flush(), GROUP_DELAY_MS);
  }

  /**
   * Group commit: fsyncs in the background, each for the transactions finished before it,
   * which then count as committed; the stream goes on meanwhile. Resolves once every
   * transaction finished so far is committed.
   */
  private flush(): Promise<void> {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.syncing || !this.unsynced.length) return this.syncing ?? Promise.resolve();
    this.syncing = (async () => {
      try {
        while (this.unsynced.length) {
          const tids = this.unsynced.splice(0);
          await this.writer.syncInBackground();
          this.committed(tids);
        }
      } catch (e) {
        // nothing finished since the last fsync can count as committed: stop, saying why
        this.logger.log('error', 'fsync-failed', `fsync of ${this.options.fs} failed: ${(e as Error).message}`);
        throw e;
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  private committed(tids: Buffer[]): void {
    this.appliedTransactions += tids.length;
    this.downstream?.notify();
    for (const tid of tids) {
      this.logger.log('debug', 'committed', `committed ${hex8(tid)}`);
      this.emit('committed', tid);
    }
  }

  /** Keep-alives: the first one a full delay after the handshake, then every delay (WIRE-KA-2). */
  private startKeepAlive(socket: net.Socket): void {
    const delay = this.options.keepAliveDelay ?? 0;
    if (delay <= 0) return;
    this.keepAliveTimer = setInterval(() => {
      if (!socket.destroyed) socket.write(KEEP_ALIVE);
    }, delay * 1000);
  }

  private stopKeepAlive(): void {
    if (this.keepAliveTimer) clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = null;
  }

  /**
   * Stops for good (WIRE-SHUT-4): no more reconnects, the connection closed, the open
   * transaction aborted, then the downstream primary (if chained) and the file closed.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const socket = this.socket;
    if (socket && !socket.destroyed) {
      const gone = new Promise((r) => socket.once('close', r));
      socket.destroy();
      await gone;
    }
    this.stopKeepAlive();
    this.applier.abort();
    await this.flush();
    await this.downstream?.close();
    this.writer.close();
  }
}
