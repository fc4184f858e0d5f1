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
import { storageFailure, type StorageError } from '../filestorage/failure.ts';
import { FileLock } from '../filestorage/lock.ts';
import { FileStorageWriter } from '../filestorage/writer.ts';
import { DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_RECORD_SIZE, encodeFrame, type FrameBound, FrameDecoder } from '../framing.ts';
import { type Address, formatAddress, sameAddress } from '../net/address.ts';
import { type Logger, silentLogger } from '../net/log.ts';
import { nodeStatus, type NodeStatus, type PeerStatus } from '../net/status.ts';
import { Primary } from '../primary/primary.ts';
import type { PickleLimits } from '../pickle/limits.ts';
import { StreamDecoder } from '../stream.ts';
import { hex8, tidToString } from '../timestamp.ts';
import { SecondaryApplier } from './applier.ts';
import type { ExtensionPolicy } from './extension-policy.ts';

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
  /**
   * What to store of an extension dict that names Python globals (WIRE-EXT-1): `keep` (the
   * default, as zc.zrs), `strip` those entries, or `refuse` the transaction.
   */
  extensionGlobals?: ExtensionPolicy;
  /** The largest control message accepted, in bytes, checked before decoding (WIRE-FRAME-8; default 1 MiB). */
  maxMessageSize?: number;
  /** The largest record data frame or blob chunk accepted, in bytes (WIRE-FRAME-9; default 64 MiB). */
  maxRecordSize?: number;
  /** Decoding limits of control messages, each replacing its default (wire-protocol §6.7). */
  pickleLimits?: Partial<PickleLimits>;
  logger?: Logger;
}

/**
 * Events: `committed` (tid), `connected` (), `disconnected` (reason). It holds the lock of its
 * file from start to close (FS-LOCK-1); when that lock is lost it logs it and closes (FS-LOCK-5).
 */
export class Secondary extends EventEmitter {
  private writer: FileStorageWriter;
  private applier: SecondaryApplier;
  /** A storage failure left the open file in doubt: open it again (recovering) before the next connection. */
  private reopen = false;
  private readonly messageBound: FrameBound;
  private readonly recordBound: FrameBound;
  private readonly blobs: BlobDirectory | null;
  private socket: net.Socket | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private keepAliveTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
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

  private constructor(
    readonly options: SecondaryOptions,
    /** The lock of the file. */
    readonly lock: FileLock,
  ) {
    super();
    this.logger = options.logger ?? silentLogger;
    this.from = options.from;
    lock.closeOnLoss(this.logger, () => this.close());
    this.messageBound = { max: options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE, code: 'ERR_MESSAGE_TOO_LARGE', requirement: 'WIRE-FRAME-8', what: 'control message' };
    this.recordBound = { max: options.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE, code: 'ERR_RECORD_TOO_LARGE', requirement: 'WIRE-FRAME-9', what: 'record data frame or blob chunk' };
    this.blobs = options.blobDir ? new BlobDirectory(options.blobDir, { create: true }) : null;
    this.writer = this.openStorage();
    this.applier = this.newApplier();
  }

  private newApplier(): SecondaryApplier {
    return new SecondaryApplier(this.writer, this.blobs, this.logger, this.options.sync === 'group', this.options.extensionGlobals);
  }

  /** Opens and recovers the file; blob chunks of a transaction that never committed are of no use (DEV-BLOBTMP-1). */
  private openStorage(): FileStorageWriter {
    const writer = FileStorageWriter.open(this.options.fs);
    const r = writer.recovery;
    if (r) this.logger.log('warn', 'recovered', `damaged tail (${r.reason}) of ${r.removed} bytes saved to ${r.savedAs}`, { offset: r.truncatedAt });
    const stale = this.blobs?.removeIncoming() ?? 0;
    if (stale) this.logger.log('info', 'blob-tmp', `removed ${stale} incomplete incoming blob file(s)`);
    return writer;
  }

  /**
   * After a storage failure (FS-FAIL-2): the file is opened again, which cuts off whatever
   * the failure left at its end; false, logged, when it cannot be opened yet.
   */
  private reopenStorage(): boolean {
    try {
      this.writer.discard();
    } catch {
      // the descriptor is gone either way
    }
    try {
      this.writer = this.openStorage();
    } catch (e) {
      const failure = storageFailure(e, this.options.fs);
      if (!failure) throw e;
      this.logger.log('error', 'storage-failed', failure.message, { code: failure.code, errno: failure.errno, requirement: failure.requirement });
      return false;
    }
    this.applier = this.newApplier();
    this.reopen = false;
    return true;
  }

  /** A storage failure: the open transaction is abandoned and the file reopened before the next connection. */
  private storageFailed(failure: StorageError): void {
    this.reopen = true;
    this.logger.log('error', 'storage-failed', `${failure.message}; transaction abandoned`, { code: failure.code, errno: failure.errno, requirement: failure.requirement });
    this.abandon();
  }

  /** Aborts the open transaction, if any; a failure to cut the file back is a storage failure too. */
  private abandon(): void {
    try {
      this.applier.abort();
    } catch (e) {
      const failure = storageFailure(e, this.options.fs);
      if (!failure) throw e;
      this.reopen = true;
      this.logger.log('error', 'storage-failed', failure.message, { code: failure.code, errno: failure.errno, requirement: failure.requirement });
    }
  }

  /** Locks, opens (and recovers) the file, starts serving downstream if asked, and connects. */
  static async start(options: SecondaryOptions): Promise<Secondary> {
    if (options.listen && options.from && sameAddress(options.listen, options.from)) {
      throw new ZrsError('ERR_CONFIG', 'Values for replicate-to and replicate-from must be different.', 'WIRE-CHAIN-4');
    }
    const lock = await FileLock.acquire(options.fs);
    let s: Secondary | null = null;
    try {
      s = new Secondary(options, lock);
      if (options.listen) {
        s.downstream = await Primary.start({ fs: options.fs, listen: options.listen, blobDir: options.blobDir ?? null, mode: 'chained', logger: s.logger });
      }
    } catch (e) {
      s?.writer.close();
      await lock.release();
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
    if (this.reopen && !this.reopenStorage()) return this.retryLater(`cannot open ${this.options.fs}`, null);
    const peer = formatAddress(a);
    const socket = a.kind === 'unix' ? net.connect(a.path) : net.connect({ port: a.port, host: a.host || 'localhost' });
    this.socket = socket;
    let stream: StreamDecoder | null = null;
    // a control message is small; record data and blob chunks are bounded apart (WIRE-FRAME-8, WIRE-FRAME-9)
    const frames = new FrameDecoder(() => (stream?.expecting === 'message' ? this.messageBound : this.recordBound));
    let failure: string | null = null;

    socket.on('connect', () => {
      if (this.closed) return void socket.destroy();
      socket.setNoDelay(true);
      const start = this.writer.lastTid;
      const protocol = this.blobs ? 'zrs2.1' : 'zrs2.0';
      // Both handshake frames at once, before anything else (WIRE-HS-1, WIRE-KA-4).
      socket.write(Buffer.concat([encodeFrame(Buffer.from(protocol)), encodeFrame(start)]));
      stream = new StreamDecoder(start, { pickleLimits: this.options.pickleLimits });
      this.connectedFrom = start;
      this.startKeepAlive(socket);
      this.logger.log('info', 'connected', `replicating from ${hex8(start)} (${tidToString(start)})`, { peer, protocol });
      this.emit('connected');
    });

    socket.on('data', (chunk: Buffer) => {
      if (!stream || failure) return;
      const decoder = stream;
      try {
        frames.feed(chunk, (frame) => {
          const event = decoder.push(frame);
          if (!event) return;
          const tid = this.applier.apply(event);
          if (tid) this.finished(tid);
        });
      } catch (e) {
        const storage = storageFailure(e, this.options.fs);
        if (storage) {
          failure = storage.message;
          this.storageFailed(storage);
        } else {
          if (!(e instanceof ZrsError)) throw e;
          failure = e.message;
          this.logger.log('error', 'input-error', e.message, { peer, code: e.code, requirement: e.requirement });
          this.abandon();
        }
        socket.destroy();
      }
    });

    socket.on('error', (e) => {
      failure ??= e.message;
    });

    socket.on('close', () => {
      this.stopKeepAlive();
      if (this.applier.inTransaction) this.abandon(); // WIRE-CLOSE-6
      void this.flush();
      if (this.socket === socket) this.socket = null;
      this.bytesReceived += socket.bytesRead;
      this.connectedFrom = null;
      const reason = failure ?? 'connection closed by the primary';
      this.emit('disconnected', reason);
      this.retryLater(reason, peer);
    });
  }

  /** Connects again after the reconnect delay (WIRE-RECON-1), unless closed. */
  private retryLater(reason: string, peer: string | null): void {
    if (this.closed) return;
    const delay = this.options.reconnectDelay ?? 60;
    this.logger.log('info', 'disconnected', `${reason}; reconnecting in ${delay} s`, peer ? { peer } : {});
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay * 1000);
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
        // nothing finished since the last fsync counts as committed; the file is reopened before the next connection
        const failure = storageFailure(e, this.options.fs);
        if (!failure) throw e;
        this.unsynced = [];
        this.storageFailed(failure);
        this.socket?.destroy();
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
   * transaction aborted, then the downstream primary (if chained) and the file closed and
   * unlocked. Resolves when all that is done, however often it is called.
   */
  close(): Promise<void> {
    this.closing ??= this.stop();
    return this.closing;
  }

  private async stop(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const socket = this.socket;
    if (socket && !socket.destroyed) {
      const gone = new Promise((r) => socket.once('close', r));
      socket.destroy();
      await gone;
    }
    this.stopKeepAlive();
    this.abandon();
    await this.flush();
    await this.downstream?.close();
    if (this.reopen) this.writer.discard();
    else this.writer.close();
    await this.lock.release();
  }
}
