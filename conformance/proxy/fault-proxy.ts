/**
 * A TCP fault proxy between two peers (secondary → proxy → primary), with faults per
 * direction that can be switched while connections are live, all deterministic from a seed:
 * partition (nothing gets through while both sockets stay open; as with TCP across a real
 * partition, what was sent is delivered once it heals), reset, close after N bytes, latency
 * with jitter, a bandwidth cap, slicing into small writes, and an idle-timeout middlebox that
 * kills connections silent for longer than T (what keep-alives exist for).
 * @module
 */
import net from 'node:net';
import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import { Prng } from '../../fixtures/lib/prng.ts';
import type { Address } from '../../reference/net/address.ts';

/** A deterministic pseudo-random generator of numbers in [0, 1) (mulberry32, as the fixtures). */
export function prng(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.u32() / 2 ** 32;
}

/** Faults of one direction. */
export interface DirectionFaults {
  /** Let nothing through (both sockets stay open, the sender is not read). */
  partition?: boolean;
  /** Delay each chunk by `ms` plus up to `jitter` ms (order is kept). */
  latency?: { ms: number; jitter?: number };
  /** At most this many bytes a second. */
  bandwidth?: number;
  /** Split into writes of 1..maxBytes bytes. */
  slice?: { maxBytes: number };
  /** Close the connection once this many bytes went through in this direction. */
  closeAfterBytes?: number;
}

export type Direction = 'up' | 'down';

export interface ProxyFaults {
  /** Secondary to primary. */
  up: DirectionFaults;
  /** Primary to secondary. */
  down: DirectionFaults;
  /** Kill a connection when no byte went either way for this many ms. */
  idleTimeoutMs?: number;
}

/** One direction of a {@link Link}: applies that direction's faults to what it forwards. */
export class Pipe {
  private queue = Promise.resolve();
  bytes = 0;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly direction: Direction,
    private readonly to: net.Socket,
    private readonly link: Link,
  ) {}

  push(chunk: Buffer): void {
    this.proxy.record(this.direction, chunk, this.link);
    this.queue = this.queue.then(() => this.deliver(chunk));
  }

  private async deliver(chunk: Buffer): Promise<void> {
    while (this.proxy.faults[this.direction].partition && !this.link.closed) await delay(10);
    this.link.touch();
    const f = this.proxy.faults[this.direction];
    const rnd = this.proxy.random;
    if (f.latency) await delay(f.latency.ms + (f.latency.jitter ? rnd() * f.latency.jitter : 0));
    const pieces: Buffer[] = [];
    if (f.slice) {
      for (let at = 0; at < chunk.length; ) {
        const n = 1 + Math.floor(rnd() * f.slice.maxBytes);
        pieces.push(chunk.subarray(at, at + n));
        at += n;
      }
    } else pieces.push(chunk);
    for (let piece of pieces) {
      if (this.to.destroyed) return;
      if (f.closeAfterBytes !== undefined) {
        const room = f.closeAfterBytes - this.bytes;
        if (room <= 0) return this.link.close();
        if (piece.length > room) piece = piece.subarray(0, room);
      }
      if (f.bandwidth) await delay((piece.length / f.bandwidth) * 1000);
      this.bytes += piece.length;
      if (!this.to.write(piece)) await new Promise((r) => this.to.once('drain', r));
      // a pause after each piece, so that the receiver reads it apart; a chunk cut into very
      // many pieces gets a turn of the event loop instead, so that it still arrives in bounded time
      if (f.slice) await (pieces.length > SLOW_PIECES ? setImmediatePromise() : delay(0));
      if (f.closeAfterBytes !== undefined && this.bytes >= f.closeAfterBytes) return this.link.close();
    }
  }
}

/** One proxied connection. */
export class Link {
  private lastActivity = Date.now();
  private timer: NodeJS.Timeout;
  closed = false;
  /** What this connection carried each way, in order (within the proxy's transcript bound). */
  readonly transcript: Record<Direction, Buffer[]> = { up: [], down: [] };
  readonly up: Pipe;
  readonly down: Pipe;

  constructor(
    private readonly proxy: FaultProxy,
    readonly client: net.Socket,
    readonly server: net.Socket,
  ) {
    this.up = new Pipe(proxy, 'up', server, this);
    this.down = new Pipe(proxy, 'down', client, this);
    client.on('data', (d: Buffer) => this.up.push(d));
    server.on('data', (d: Buffer) => this.down.push(d));
    for (const s of [client, server]) {
      s.on('error', () => undefined);
      s.on('close', () => this.close());
    }
    this.timer = setInterval(() => {
      const t = proxy.faults.idleTimeoutMs;
      if (t !== undefined && Date.now() - this.lastActivity > t) this.close();
    }, 10);
  }

  touch(): void {
    this.lastActivity = Date.now();
  }

  /** Stops reading a side whose direction is partitioned, so that TCP holds its data back. */
  follow(): void {
    const f = this.proxy.faults;
    if (f.up.partition) this.client.pause();
    else this.client.resume();
    if (f.down.partition) this.server.pause();
    else this.server.resume();
  }

  /** Ends both sides (FIN). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.client.destroy();
    this.server.destroy();
    this.proxy.forget(this);
  }

  /** Ends both sides with a TCP reset. */
  reset(): void {
    if (this.closed) return;
    this.client.resetAndDestroy();
    this.server.resetAndDestroy();
    this.close();
  }
}

export class FaultProxy<A extends Address = Address> {
  readonly links = new Set<Link>();
  /** Every connection accepted since the start, in order, open or closed. */
  readonly history: Link[] = [];
  /** Connections accepted since the start. */
  accepted = 0;
  faults: ProxyFaults = { up: {}, down: {} };
  readonly random: () => number;

  private constructor(
    private readonly server: net.Server,
    readonly address: A,
    seed: number,
  ) {
    this.random = prng(seed);
  }

  /** Listens on a free loopback port (or on the Unix socket `at.path`) and forwards to `target`. */
  static async start(target: Address, seed: number): Promise<FaultProxy<Extract<Address, { kind: 'tcp' }>>>;
  static async start(target: Address, seed: number, at: { path: string }): Promise<FaultProxy<Extract<Address, { kind: 'unix' }>>>;
  static async start(target: Address, seed: number, at?: { path: string }): Promise<FaultProxy<Address>> {
    let self!: FaultProxy<Address>;
    const server = net.createServer((client) => {
      self.accepted++;
      const upstream = target.kind === 'unix' ? net.connect(target.path) : net.connect({ host: target.host || '127.0.0.1', port: target.port });
      client.pause();
      const link = new Link(self, client, upstream);
      self.links.add(link);
      self.history.push(link);
      upstream.once('connect', () => link.follow());
    });
    if (at) {
      await new Promise<void>((r) => server.listen(at.path, r));
      return (self = new FaultProxy(server, { kind: 'unix', path: at.path }, seed));
    }
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (self = new FaultProxy(server, { kind: 'tcp', host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, seed));
  }

  /** Replaces the faults; live connections follow them from now on. */
  set(faults: Partial<ProxyFaults>): void {
    this.faults = { up: {}, down: {}, ...faults };
    for (const l of this.links) l.follow();
  }

  /** Heals everything. */
  heal(): void {
    this.set({});
  }

  /** Resets every live connection (RST). */
  resetAll(): void {
    for (const l of [...this.links]) l.reset();
  }

  /** Closes every live connection (FIN). */
  closeAll(): void {
    for (const l of [...this.links]) l.close();
  }

  /** What each direction carried (all connections, in order), kept for failure transcripts. */
  readonly transcript: Record<Direction, Buffer[]> = { up: [], down: [] };
  private recorded = 0;

  /** Records a chunk (also in the transcript of the connection that carried it), up to 64 MiB in all. */
  record(direction: Direction, chunk: Buffer, link?: Link): void {
    if (this.recorded > 64 << 20) return;
    this.recorded += chunk.length;
    const copy = Buffer.from(chunk);
    this.transcript[direction].push(copy);
    link?.transcript[direction].push(copy);
  }

  forget(l: Link): void {
    this.links.delete(l);
  }

  async stop(): Promise<void> {
    this.closeAll();
    await new Promise((r) => this.server.close(r));
  }
}

const delay = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A chunk sliced into more pieces than this is paced by event-loop turns, not milliseconds. */
const SLOW_PIECES = 256;
