import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy, prng } from '../proxy/fault-proxy.ts';
import type { Address } from '../../reference/net/address.ts';

/** An echo server that also records what it received. */
async function echo(): Promise<{ port: number; received: () => Buffer; close: () => void }> {
  const chunks: Buffer[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    s.on('data', (d) => {
      chunks.push(d);
      s.write(d);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    received: () => Buffer.concat(chunks),
    close: () => (sockets.forEach((s) => s.destroy()), server.close()),
  };
}

async function client(p: FaultProxy<Extract<Address, { kind: 'tcp' }>>) {
  const s = net.connect({ host: '127.0.0.1', port: p.address.port });
  const got: Buffer[] = [];
  let closed = false;
  let error: string | null = null;
  s.on('data', (d) => got.push(d));
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  s.on('close', () => (closed = true));
  await new Promise((r) => s.once('connect', r));
  return { s, got: () => Buffer.concat(got), closed: () => closed, error: () => error };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

describe('the fault proxy', () => {
  it('forwards every byte in order, through latency, jitter and slicing', async () => {
    const e = await echo();
    const p = await FaultProxy.start({ kind: 'tcp', host: '127.0.0.1', port: e.port }, 7);
    cleanup.push(e.close, () => p.stop());
    p.set({ up: { slice: { maxBytes: 3 }, latency: { ms: 1, jitter: 3 } }, down: { slice: { maxBytes: 5 } } });
    const c = await client(p);
    const data = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 256));
    c.s.write(data);
    while (c.got().length < data.length) await wait(10);
    expect(e.received().equals(data)).toBe(true);
    expect(c.got().equals(data)).toBe(true);
    c.s.destroy();
  });

  it('a partition lets nothing through but keeps both sockets open; once healed, what was sent arrives', async () => {
    const e = await echo();
    const p = await FaultProxy.start({ kind: 'tcp', host: '127.0.0.1', port: e.port }, 1);
    cleanup.push(e.close, () => p.stop());
    const c = await client(p);
    p.set({ up: { partition: true }, down: { partition: true } });
    c.s.write('held');
    await wait(100);
    expect(e.received()).toHaveLength(0);
    expect(c.closed()).toBe(false);
    p.heal();
    c.s.write('+more');
    while (c.got().length < 9) await wait(10);
    expect(c.got().toString()).toBe('held+more');
    c.s.destroy();
  });

  it('closes after exactly N bytes in one direction', async () => {
    const e = await echo();
    const p = await FaultProxy.start({ kind: 'tcp', host: '127.0.0.1', port: e.port }, 1);
    cleanup.push(e.close, () => p.stop());
    p.set({ up: { closeAfterBytes: 10 }, down: {} });
    const c = await client(p);
    c.s.write(Buffer.alloc(25, 1));
    while (!c.closed()) await wait(10);
    await wait(50);
    expect(e.received()).toHaveLength(10);
  });

  it('resets connections with a TCP RST', async () => {
    const e = await echo();
    const p = await FaultProxy.start({ kind: 'tcp', host: '127.0.0.1', port: e.port }, 1);
    cleanup.push(e.close, () => p.stop());
    const c = await client(p);
    await wait(50);
    p.resetAll();
    while (!c.closed()) await wait(10);
    expect(c.error()).toBe('ECONNRESET');
  });

  it('an idle-timeout middlebox kills silent connections and spares busy ones', async () => {
    const e = await echo();
    const p = await FaultProxy.start({ kind: 'tcp', host: '127.0.0.1', port: e.port }, 1);
    cleanup.push(e.close, () => p.stop());
    p.set({ idleTimeoutMs: 150 });
    const busy = await client(p);
    const quiet = await client(p);
    for (let i = 0; i < 8; i++) {
      busy.s.write('.');
      await wait(50);
    }
    expect(busy.closed()).toBe(false);
    expect(quiet.closed()).toBe(true);
    busy.s.destroy();
  });

  it('its randomness is deterministic from the seed', () => {
    const a = prng(42);
    const b = prng(42);
    expect(Array.from({ length: 5 }, a)).toEqual(Array.from({ length: 5 }, b));
    expect(prng(43)()).not.toBe(prng(42)());
  });
});
