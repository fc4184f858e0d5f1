/**
 * A fake secondary, to test primaries: it connects, sends whatever handshake a case scripts
 * (right or wrong), can stop reading for a while, and records, decodes and checks everything
 * the primary sends.
 * @module
 */
import net from 'node:net';
import { type Address } from '../../reference/net/address.ts';
import { encodeFrame } from '../../reference/framing.ts';
import { check } from '../checks.ts';
import { ReceivedStream, type ReceivedTransaction, type StreamFault } from './received-stream.ts';

export type { ReceivedTransaction } from './received-stream.ts';

export class FakeSecondary {
  private readonly chunks: Buffer[] = [];
  /** What the primary sent after the handshake, decoded (null before a handshake was scripted). */
  private stream: ReceivedStream | null = null;
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
    this.protocol = Buffer.from(protocol, 'latin1');
    this.expectStream(startTid);
    this.send(Buffer.concat([encodeFrame(Buffer.from(protocol, 'latin1')), encodeFrame(startTid)]));
  }

  /** Decode what arrives as a stream after `startTid` (for handshakes sent with `send`). */
  expectStream(startTid: Buffer): void {
    this.stream = new ReceivedStream(startTid, this.protocol);
  }

  private receive(d: Buffer): void {
    this.chunks.push(d);
    this.stream?.push(d);
  }

  /** Whole transactions received so far. */
  get transactions(): ReceivedTransaction[] {
    return this.stream?.transactions ?? [];
  }

  /** The first decoding or checksum error, if any (the stream is not read further). */
  get error(): Error | null {
    return this.stream?.error ?? null;
  }

  /** The requirement of the primary's that {@link error} shows broken, and how. */
  get fault(): StreamFault | null {
    return this.stream?.fault ?? null;
  }

  /**
   * Checks that everything received so far decoded, in the grammar, with right digests: a
   * failure blames the requirement the primary broke ({@link fault}).
   */
  verify(): void {
    const fault = this.fault;
    if (!fault) return;
    check(fault.id, () => {
      throw new Error(fault.why);
    });
  }

  /** True when the bytes so far end on a transaction boundary. */
  get atBoundary(): boolean {
    return this.stream?.atBoundary ?? true;
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
