/**
 * One secondary's connection to a primary (wire-protocol §9.2): the handshake, positioning,
 * streaming every committed transaction as it comes, and the two ways of closing.
 *
 * Back-pressure: frames are written only while the socket accepts more; when its buffer is
 * full the stream waits for it to drain, so a slow or stalled secondary holds at most one
 * record (or 64 KiB of small frames) beyond the socket's buffer and never slows the others.
 * @module
 */
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { ZrsError } from '../errors.ts';
import type { BlobDirectory } from '../filestorage/blobs.ts';
import { FileFollower } from '../filestorage/follower.ts';
import type { TxnInfo } from '../filestorage/reader.ts';
import { FrameDecoder, FrameTooLargeError, PRIMARY_RECEIVE_LIMIT } from '../framing.ts';
import type { Fields, Logger } from '../net/log.ts';
import { StreamEncoder } from '../stream.ts';
import { hex8, tidToString } from '../timestamp.ts';
import { type FrameNotice, transactionFrames } from './frames.ts';
import { type HandshakeStep, PrimaryHandshake } from './handshake.ts';
import { ERR_HANDSHAKE_TIMEOUT } from './limits.ts';
import type { CommitSignal } from './signal.ts';

/** What a connection needs from its primary. */
export interface PrimaryContext {
  /** The FileStorage file served. */
  path: string;
  /** The blob directory, when the primary serves blobs. */
  blobs: BlobDirectory | null;
  signal: CommitSignal;
  logger: Logger;
  /** Time allowed from accepting the connection to its start tid, in ms; 0 for no limit (WIRE-LIMIT-1). */
  handshakeTimeoutMs: number;
}

/** Frames smaller than this are gathered into writes of about this size. */
const GATHER_LIMIT = 64 << 10;

type State = 'handshake' | 'positioning' | 'streaming' | 'draining' | 'closed';

/** The primary's side of one connection. */
export class PrimaryConnection {
  private state: State = 'handshake';
  private readonly decoder = new FrameDecoder(PRIMARY_RECEIVE_LIMIT);
  private readonly handshake: PrimaryHandshake;
  private follower: FileFollower | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** Resolves once the connection is closed, however that happened. */
  readonly closed: Promise<void>;
  private markClosed!: () => void;
  /** Transactions sent on this connection. */
  sentTransactions = 0;
  /** Start tid of the handshake, once known. */
  startTid: Buffer | null = null;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: PrimaryContext,
    readonly peer: string,
  ) {
    this.handshake = new PrimaryHandshake(ctx.blobs !== null);
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (e) => this.log('info', 'socket-error', e.message));
    socket.on('close', () => this.finish());
    this.log('info', 'connected', 'secondary connected');
    if (ctx.handshakeTimeoutMs > 0) this.handshakeTimer = setTimeout(() => this.handshakeTimedOut(), ctx.handshakeTimeoutMs).unref();
  }

  /** No start tid in time: close immediately, sending nothing (WIRE-LIMIT-1). */
  private handshakeTimedOut(): void {
    this.handshakeTimer = null;
    if (this.state !== 'handshake') return;
    const seconds = this.ctx.handshakeTimeoutMs / 1000;
    this.log('info', 'handshake-timeout', `no handshake within ${seconds} s`, { code: ERR_HANDSHAKE_TIMEOUT, requirement: 'WIRE-LIMIT-1' });
    this.destroy();
  }

  private stopHandshakeTimer(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', event: string, message: string, fields: Fields = {}): void {
    this.ctx.logger.log(level, event, message, { peer: this.peer, ...fields });
  }

  /** Bytes from the secondary: only the handshake and keep-alives are allowed. */
  private receive(chunk: Buffer): void {
    if (this.stopping) return; // WIRE-CLOSE-5
    let frames: Buffer[];
    let tooLarge: FrameTooLargeError | null = null;
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      if (!(e instanceof FrameTooLargeError)) throw e;
      frames = e.completed;
      tooLarge = e;
    }
    for (const frame of frames) {
      this.step(this.handshake.frame(frame));
      if (this.stopping) return;
    }
    if (tooLarge) this.step(this.handshake.tooLarge(tooLarge.length));
  }

  private step(s: HandshakeStep): void {
    switch (s.kind) {
      case 'continue':
        return;
      case 'keep-alive':
        return this.log('debug', 'keep-alive', 'keep-alive');
      case 'refuse':
        this.log('error', 'refused', s.reason, { requirement: s.requirement });
        return this.destroy();
      case 'violation':
        this.log('error', 'protocol-error', s.reason, { requirement: s.requirement });
        return this.drain();
      case 'start':
        this.stopHandshakeTimer(); // WIRE-LIMIT-2: the limit ends with the handshake
        this.startTid = s.startTid;
        this.log('info', 'start', `start ${hex8(s.startTid)} (${tidToString(s.startTid)})`, { protocol: s.protocol });
        this.state = 'positioning';
        void this.stream(s.startTid);
    }
  }

  /** What this stream has sent and still has to send, for status reports. */
  progress(): { lastSentTid: Buffer | null; pendingTransactions: number; bytesSent: number } {
    const f = this.follower;
    return {
      lastSentTid: this.sentTransactions ? (f?.lastTid ?? null) : null,
      pendingTransactions: f ? f.pending() : 0,
      bytesSent: this.socket.bytesWritten,
    };
  }

  /** Bytes written to the socket and not yet taken by the kernel (bounded by back-pressure). */
  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  /** Catch up then close (WIRE-CLOSE-2): send what is committed, then end the connection. */
  drain(): void {
    if (this.state === 'closed' || this.state === 'draining') return;
    // Before the stream is positioned there is nothing to catch up with: close, sending nothing.
    if (this.state !== 'streaming') return this.end();
    this.state = 'draining';
    this.ctx.signal.notify();
  }

  /** Close at once, sending nothing more (WIRE-CLOSE-1). */
  destroy(): void {
    if (this.state === 'closed') return;
    this.socket.destroy();
    this.finish();
  }

  private end(): void {
    this.state = 'closed';
    this.socket.end();
  }

  private finish(): void {
    if (this.state !== 'closed') this.state = 'closed';
    this.stopHandshakeTimer();
    this.follower?.close();
    this.follower = null;
    this.markClosed();
    this.ctx.signal.notify();
  }

  /** True once the connection is closing or closed: input is ignored from then on. */
  private get stopping(): boolean {
    return this.state === 'closed' || this.state === 'draining';
  }

  private get live(): boolean {
    return this.state !== 'closed' && !this.socket.destroyed;
  }

  /** The streaming loop: each committed transaction, whole, in file order. */
  private async stream(startTid: Buffer): Promise<void> {
    const encoder = new StreamEncoder(startTid);
    try {
      this.follower = new FileFollower(this.ctx.path, startTid);
      for (;;) {
        if (!this.live) return;
        const wake = this.ctx.signal.next();
        const step = this.follower.next();
        if (step.kind === 'transaction') {
          if (this.state === 'positioning') this.state = 'streaming';
          await this.sendTransaction(encoder, step.txn);
          continue;
        }
        if (this.state === 'positioning' && this.follower.positioned) this.state = 'streaming';
        if (this.state === 'draining') return this.end();
        await wake;
      }
    } catch (e) {
      if (!(e instanceof ZrsError)) throw e;
      if (this.live) this.log('error', 'stream-error', e.message, { code: e.code, requirement: e.requirement });
      this.destroy();
    }
  }

  /**
   * Writes the frames of a transaction. Small frames are gathered and written together (up
   * to 64 KiB at a time), a large payload goes as it is; whenever the socket's buffer is
   * full the stream waits for it to drain.
   */
  private async sendTransaction(encoder: StreamEncoder, txn: TxnInfo): Promise<void> {
    const notice = (n: FrameNotice) => this.log('warn', n.kind, `no blob file ${n.file}; sent as a plain record`, { oid: hex8(n.oid) });
    const socket = this.socket;
    const gathered: Uint8Array[] = [];
    let gatheredBytes = 0;
    const writeGathered = (): boolean => {
      const full = !socket.write(gathered.length === 1 ? gathered[0]! : Buffer.concat(gathered, gatheredBytes));
      gathered.length = 0;
      gatheredBytes = 0;
      return full;
    };
    socket.cork();
    try {
      for (const [header, payload] of transactionFrames(this.follower!.file, txn, encoder, this.ctx.blobs, notice)) {
        let full = false;
        if (payload.length >= GATHER_LIMIT) {
          if (gatheredBytes) writeGathered();
          socket.write(header);
          full = !socket.write(payload);
        } else {
          gathered.push(header, payload);
          gatheredBytes += header.length + payload.length;
          if (gatheredBytes >= GATHER_LIMIT) full = writeGathered();
        }
        if (!full) continue;
        await this.drained();
        // the secondary may have gone while we waited: pull no more frames from a closed file
        if (!this.live) throw new ZrsError('ERR_CONNECTION_CLOSED', 'the secondary went away');
      }
      if (gatheredBytes && this.live && writeGathered()) await this.drained();
    } finally {
      socket.uncork();
    }
    this.sentTransactions++;
  }

  /** Sends what the corked socket holds and waits until its buffer drained (or the connection closed). */
  private async drained(): Promise<void> {
    this.socket.uncork();
    await Promise.race([once(this.socket, 'drain').catch(() => undefined), this.closed]);
    this.socket.cork();
  }
}
