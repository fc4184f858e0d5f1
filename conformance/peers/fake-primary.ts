/**
 * A fake primary, to test secondaries: it accepts connections, records each handshake and
 * every keep-alive with its arrival time, and answers with whatever a case scripts — a
 * fixture store streamed correctly, or damaged on purpose.
 * @module
 */
import net from 'node:net';
import type { BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { RunningChecksum } from '../../reference/checksum.ts';
import { encodeFrame, FrameDecoder } from '../../reference/framing.ts';
import type { Address } from '../../reference/net/address.ts';
import { type Frame, transactionFrames } from '../../reference/primary/frames.ts';
import { decodeMessage, encodeMessage, type Message, type TransactionMessage } from '../../reference/messages.ts';
import { PyDict } from '../../reference/pickle/values.ts';
import { type OutgoingRecord, StreamEncoder } from '../../reference/stream.ts';
import { compareTids } from '../../reference/timestamp.ts';
import { sleep } from './fake-secondary.ts';
import { until } from '../wait.ts';
import { after, oid as oidOf } from '../tids.ts';

/** One connection from the secondary under test. */
export class FakeConnection {
  /** Frames the secondary sent, with their arrival time (ms, performance.now()). */
  readonly frames: { at: number; payload: Buffer }[] = [];
  closed = false;
  /** When the connection was accepted, and when it closed (ms, performance.now()). */
  readonly openedAt = performance.now();
  closedAt: number | null = null;
  readonly handshake: Promise<{ protocol: string; startTid: Buffer; at: number }>;

  constructor(readonly socket: net.Socket) {
    const decoder = new FrameDecoder();
    let resolve!: (h: { protocol: string; startTid: Buffer; at: number }) => void;
    this.handshake = new Promise((r) => (resolve = r));
    socket.on('data', (d) => {
      const now = performance.now();
      try {
        for (const payload of decoder.push(d)) {
          this.frames.push({ at: now, payload: Buffer.from(payload) });
          if (this.frames.length === 2) resolve({ protocol: this.frames[0]!.payload.toString('latin1'), startTid: payload, at: now });
        }
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.closedAt = performance.now();
    });
  }

  /** The handshake, once both of its frames have arrived; fails after `ms` without them. */
  async handshakeWithin(ms = 20_000): Promise<{ protocol: string; startTid: Buffer; at: number }> {
    await until('the handshake of the secondary (two frames)', () => this.frames.length >= 2, { timeoutMs: ms, everyMs: 10, seen: () => `${this.frames.length} frame(s)` });
    return this.handshake;
  }

  /** Empty frames received after the handshake: their arrival times. */
  get keepAlives(): number[] {
    return this.frames.slice(2).filter((f) => f.payload.length === 0).map((f) => f.at);
  }

  /** Sends raw bytes (frames with their headers). */
  send(bytes: Uint8Array | Uint8Array[]): void {
    if (!this.socket.destroyed) this.socket.write(Array.isArray(bytes) ? Buffer.concat(bytes) : bytes);
  }

  /** Waits up to `ms` for the secondary to close the connection; true when it did. */
  async waitForClose(ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    while (!this.closed && Date.now() < until) await sleep(10);
    return this.closed;
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The frames a correct primary sends for `store` after `startTid`, transaction by transaction. */
export function storeFrames(store: string, startTid: Buffer, blobs: BlobDirectory | null = null): Frame[][] {
  const reader = FileStorageReader.open(store);
  const encoder = new StreamEncoder(startTid);
  try {
    return [...reader.transactions()]
      .filter((t) => t.status !== 'u' && compareTids(t.tid, startTid) > 0)
      .map((t) => [...transactionFrames(reader, t, encoder, blobs)].map(([h, p]) => [h, Buffer.from(p)] as Frame));
  } finally {
    reader.close();
  }
}

/** The bytes of transactions' frames, headers and payloads, in order. */
export const flat = (frames: Frame[][]): Uint8Array[] => frames.flat(2);

/** The payloads of transactions' frames (without their headers), in order. */
export const payloadsOf = (frames: Frame[][]): Uint8Array[] => frames.flat().map(([, p]) => p);

/** A transaction to send: its `T` and its records. */
export interface Transaction {
  t: TransactionMessage;
  records: OutgoingRecord[];
}

/** The payloads of one transaction; its `C` carries no real digest ({@link restream} gives it one). */
export function transactionPayloads({ t, records }: Transaction): Uint8Array[] {
  const out: Uint8Array[] = [encodeMessage(t)];
  for (const r of records) out.push(encodeMessage(r.message), r.data ?? Buffer.alloc(0), ...(r.chunks ?? []));
  out.push(encodeMessage({ type: 'C', checksum: Buffer.alloc(16) }));
  return out;
}

/** A payload to send, or a `C` the caller writes itself from the digest of everything sent before it. */
export type Sent = Uint8Array | ((digest: Buffer) => Uint8Array);

/** The frames of `payloads` sent in order on a connection from `startTid`, hashed exactly as they are sent. */
export function framesAsSent(startTid: Uint8Array, payloads: Sent[]): Uint8Array[] {
  const sum = new RunningChecksum(startTid);
  return payloads.map((p) => {
    const payload = typeof p === 'function' ? p(sum.digest()) : p;
    sum.update(payload);
    return encodeFrame(payload);
  });
}

/** A `C` carrying the digest of what was sent before it (in {@link framesAsSent}). */
export const commitOf = (checksum: Buffer): Uint8Array => encodeMessage({ type: 'C', checksum });

/**
 * The frames of a stream of payloads sent on a connection from `startTid`: each control
 * message is passed through `rewrite` (which may return other bytes for it), and every `C`
 * gets the digest of what was actually sent before it.
 */
export function restream(payloads: Uint8Array[], startTid: Uint8Array, rewrite: (m: Message, payload: Uint8Array) => Uint8Array | null = () => null): Uint8Array[] {
  const sent: Sent[] = [];
  let raw = 0; // data and chunk frames still to come after the last S or B
  for (const p of payloads) {
    if (raw > 0) {
      sent.push(p);
      raw--;
      continue;
    }
    const m = decodeMessage(p);
    sent.push(m.type === 'C' ? commitOf : (rewrite(m, p) ?? p));
    raw = m.type === 'S' ? 1 : m.type === 'B' ? 1 + m.blocks : 0;
  }
  return framesAsSent(startTid, sent);
}

/**
 * A script that serves `store` correctly (its blobs from `blobs`), then the transactions of
 * `extra` later than the start tid, to every connection from the start tid it sends.
 */
export function serveStore(store: string, blobs: BlobDirectory | null = null, extra: Transaction[] = []): (c: FakeConnection) => Promise<void> {
  return async (c) => {
    const { startTid } = await c.handshake;
    const payloads = payloadsOf(storeFrames(store, startTid, blobs));
    for (const x of extra) if (compareTids(x.t.tid, startTid) > 0) payloads.push(...transactionPayloads(x));
    c.send(restream(payloads, startTid));
  };
}

/**
 * A fake primary whose first connection gets a damaged stream and every later one a correct
 * stream, each for the start tid its connection sent. A later connection waits, after its
 * handshake, until the case calls `release()`: what the case looks at between the two is not
 * changed by the next connection. `then` runs on the first connection once its stream is sent
 * (to wait for the secondary to close it, or to end it).
 */
export async function damagedOnce(o: {
  damaged: (startTid: Buffer) => Uint8Array[];
  correct: (startTid: Buffer) => Uint8Array[];
  then?: (c: FakeConnection) => Promise<void>;
}): Promise<{ primary: FakePrimary; release: () => void }> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const primary = await FakePrimary.listen(async (c, n) => {
    const { startTid } = await c.handshake;
    if (n > 0) {
      await released;
      return c.send(o.correct(startTid));
    }
    c.send(o.damaged(startTid));
    await o.then?.(c);
  });
  return { primary, release };
}

/**
 * The `n`-th (from 1) of a series of small generated transactions after `base`: tid `base` +
 * `n` × 1000 (as a u64), one record of oid 0x200 + n mod 5 whose data are two pickles.
 */
export function generatedTransaction(base: Uint8Array, n: number): { t: TransactionMessage; records: OutgoingRecord[] } {
  const tid = after(base, n * 1000);
  const oid = oidOf(0x200 + (n % 5));
  const text = Buffer.from(`generated ${n}`);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(text.length);
  const data = Buffer.concat([Buffer.from('80034e2e8003', 'hex'), Buffer.from('X'), length, text, Buffer.from('.')]);
  const t: TransactionMessage = { type: 'T', tid, status: ' ', user: Buffer.alloc(0), description: text, extension: new PyDict() };
  return { t, records: [{ message: { type: 'S', oid, tid, version: '', dataTxn: null }, data }] };
}

/**
 * Keeps a connection busy: sends one generated transaction (after its start tid) every
 * `everyMs`, until the connection closes or `stop()` is called. `sent` counts them.
 */
export function streamContinuously(c: FakeConnection, startTid: Uint8Array, everyMs = 20): { readonly sent: number; stop(): void } {
  const encoder = new StreamEncoder(startTid);
  let n = 0;
  const timer = setInterval(() => {
    if (c.closed || c.socket.destroyed) return clearInterval(timer);
    const g = generatedTransaction(startTid, ++n);
    c.send(encoder.transaction(g.t, g.records));
  }, everyMs);
  return {
    get sent() {
      return n;
    },
    stop: () => clearInterval(timer),
  };
}

export class FakePrimary {
  readonly connections: FakeConnection[] = [];
  private waiting: ((c: FakeConnection) => void)[] = [];

  private constructor(
    private readonly server: net.Server,
    readonly address: Address,
    private readonly script: (c: FakeConnection, n: number) => void | Promise<void>,
  ) {}

  /** Listens on a free loopback port; each connection (numbered from 0) runs `script`. */
  static async listen(script: (c: FakeConnection, n: number) => void | Promise<void>): Promise<FakePrimary> {
    let self!: FakePrimary;
    const server = net.createServer((socket) => {
      const c = new FakeConnection(socket);
      const n = self.connections.push(c) - 1;
      self.waiting.splice(0).forEach((w) => w(c));
      void Promise.resolve(self.script(c, n)).catch(() => c.destroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    self = new FakePrimary(server, { kind: 'tcp', host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, script);
    return self;
  }

  /** Waits for connection number `n` (0-based). */
  connection(n: number, timeoutMs = 20_000): Promise<FakeConnection> {
    return until(`connection #${n + 1} of the secondary`, () => this.connections[n], { timeoutMs, everyMs: 10 });
  }

  close(): void {
    for (const c of this.connections) c.destroy();
    this.server.close();
  }
}
