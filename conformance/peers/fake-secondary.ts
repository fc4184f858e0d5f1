/**
 * A fake secondary, to test primaries: it connects, sends whatever handshake a case scripts
 * (right or wrong), can stop reading for a while, and records, decodes and checks everything
 * the primary sends.
 * @module
 */
import net from 'node:net';
import { type Address } from '../../reference/net/address.ts';
import { encodeFrame, FrameDecoder } from '../../reference/framing.ts';
import type { BlobMessage, StoreMessage, TransactionMessage } from '../../reference/messages.ts';
import { StreamDecoder } from '../../reference/stream.ts';
import { ZrsError } from '../../reference/errors.ts';
import { check } from '../checks.ts';
import { digestFault, type SentFrame, streamFault } from './diagnose.ts';

/** A transaction as received. */
export interface ReceivedTransaction {
  begin: TransactionMessage;
  records: { message: StoreMessage | BlobMessage; data: Uint8Array | null; chunks: Uint8Array[] }[];
  digest: Buffer;
}

export class FakeSecondary {
  private readonly chunks: Buffer[] = [];
  private frames = new FrameDecoder();
  private stream: StreamDecoder | null = null;
  private current: ReceivedTransaction | null = null;
  readonly transactions: ReceivedTransaction[] = [];
  /** The first decoding or checksum error, if any (the stream is not read further). */
  error: Error | null = null;
  /** The requirement of the primary's that {@link error} shows broken, and how. */
  fault: { id: string; why: string } | null = null;
  /** Frames after the handshake, kept to explain a bad digest. */
  private readonly sent: SentFrame[] = [];
  private startTid: Buffer = Buffer.alloc(8);
  private protocol: Buffer = Buffer.alloc(0);
  closed = false;
  private readonly closedAt: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => this.receive(d));
    socket.on('error', () => undefined);
    this.closedAt = new Promise((r) => socket.once('close', () => ((this.closed = true), r())));
  }

  /** Connects to a primary. */
  static async connect(a: Address): Promise<FakeSecondary> {
    const socket = a.kind === 'unix' ? net.connect(a.path) : net.connect({ host: a.host || '127.0.0.1', port: a.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new FakeSecondary(socket);
  }

  /** Every byte received so far. */
  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /** Sends raw bytes. */
  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Sends the two handshake frames; what follows is decoded as a stream after `startTid`. */
  handshake(protocol: string, startTid: Buffer): void {
    this.expectStream(startTid);
    this.protocol = Buffer.from(protocol, 'latin1');
    this.send(Buffer.concat([encodeFrame(Buffer.from(protocol, 'latin1')), encodeFrame(startTid)]));
  }

  /** Decode what arrives as a stream after `startTid` (for handshakes sent with `send`). */
  expectStream(startTid: Buffer): void {
    this.stream = new StreamDecoder(startTid);
    this.startTid = startTid;
  }

  private receive(d: Buffer): void {
    this.chunks.push(d);
    if (!this.stream || this.error) return;
    try {
      for (const f of this.frames.push(d)) {
        const kind = this.stream.expecting;
        const e = this.stream.push(f);
        const type = kind !== 'message' ? undefined : e?.kind === 'begin' ? 'T' : e?.kind === 'commit' ? 'C' : 'S';
        this.sent.push({ kind, payload: Buffer.from(f), txn: this.transactions.length, ...(type ? { type } : {}) });
        if (!e) continue;
        if (e.kind === 'begin') this.current = { begin: e.message, records: [], digest: Buffer.alloc(0) };
        else if (e.kind === 'record') this.current!.records.push({ message: e.message, data: e.data ? Buffer.from(e.data) : null, chunks: [] });
        else if (e.kind === 'chunk') this.current!.records.at(-1)!.chunks.push(Buffer.from(e.data));
        else {
          this.current!.digest = e.digest;
          this.transactions.push(this.current!);
          this.current = null;
        }
      }
    } catch (e) {
      this.error = e as Error;
      this.fault = this.explain(e);
    }
  }

  private explain(e: unknown): { id: string; why: string } {
    const message = e instanceof Error ? e.message : String(e);
    if (!(e instanceof ZrsError) || e.code !== 'ERR_CHECKSUM') return { id: streamFault(e), why: message };
    const digest = /received ([0-9a-f]{32})/.exec(message)?.[1];
    if (!digest) return { id: 'WIRE-MSG-3', why: `a C without digest: ${message}` };
    const fault = digestFault(this.startTid, this.protocol, this.sent, Buffer.from(digest, 'hex'));
    return { id: fault.id, why: `${message}: ${fault.why}` };
  }

  /**
   * Checks that everything received so far decoded, in the grammar, with right digests: a
   * failure blames the requirement the primary broke ({@link fault}).
   */
  verify(): void {
    if (!this.error) return;
    const { id, why } = this.fault!;
    check(id, () => {
      throw new Error(`what the primary sent does not decode: ${why}`);
    });
  }

  /** True when the bytes so far end on a transaction boundary. */
  get atBoundary(): boolean {
    return this.frames.idle && this.current === null && (this.stream?.inTransaction ?? null) === null;
  }

  /** Stops or resumes reading from the socket (a slow or stalled secondary). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Waits until `n` whole transactions arrived (or an error, or the close). */
  async waitForTransactions(n: number, timeoutMs = 20_000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.transactions.length < n && !this.error && !this.closed && Date.now() < until) await sleep(10);
    return this.transactions.length >= n;
  }

  /** Waits up to `timeoutMs` for the primary to close; true when it did. */
  async waitForClose(timeoutMs: number): Promise<boolean> {
    await Promise.race([this.closedAt, sleep(timeoutMs)]);
    return this.closed;
  }

  /** Waits until nothing new arrived for `quietMs`. */
  async settle(quietMs = 150, timeoutMs = 20_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last = -1;
    while (Date.now() < until) {
      const n = this.chunks.length;
      if (n === last) return;
      last = n;
      await sleep(quietMs);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
