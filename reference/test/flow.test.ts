// Keep-alive timing and back-pressure, measured on real sockets.
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder } from '../framing.ts';
import type { Address } from '../net/address.ts';
import { Primary } from '../primary/primary.ts';
import { Secondary } from '../secondary/secondary.ts';
import { Z64 } from '../timestamp.ts';
import { waitFor, workspace } from './helpers.ts';

const ws = workspace('flow');
afterAll(() => ws.cleanup());
const LOOPBACK: Address = { kind: 'tcp', host: '127.0.0.1', port: 0 };

/** A fake primary that records every frame a secondary sends, with its arrival time. */
async function recordingPrimary(): Promise<{ port: number; frames: { at: number; length: number }[]; close: () => void }> {
  const frames: { at: number; length: number }[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    const d = new FrameDecoder();
    s.on('data', (chunk) => {
      for (const f of d.push(chunk)) frames.push({ at: performance.now(), length: f.length });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { port, frames, close: () => (sockets.forEach((s) => s.destroy()), server.close()) };
}

describe('keep-alive', () => {
  it('[WIRE-KA-1] [WIRE-KA-2] [WIRE-KA-4] empty frames, the first one delay after the handshake, then every delay (±40%)', async () => {
    const fake = await recordingPrimary();
    const delay = 0.2;
    const s = await Secondary.start({ fs: ws.file('s.fs'), from: { kind: 'tcp', host: '127.0.0.1', port: fake.port }, keepAliveDelay: delay });
    await new Promise((r) => setTimeout(r, 1100));
    await s.close();
    fake.close();
    const [id, tid, ...rest] = fake.frames;
    expect([id!.length, tid!.length]).toEqual([6, 8]);
    expect(rest.length).toBeGreaterThanOrEqual(4);
    expect(rest.length).toBeLessThanOrEqual(6);
    expect(rest.every((f) => f.length === 0)).toBe(true);
    const gaps = [rest[0]!.at - tid!.at, ...rest.slice(1).map((f, i) => f.at - rest[i]!.at)];
    for (const g of gaps) {
      expect(g).toBeGreaterThan(delay * 1000 * 0.6);
      expect(g).toBeLessThan(delay * 1000 * 1.4);
    }
  });

  it('[WIRE-KA-3] a delay of 0 sends none', async () => {
    const fake = await recordingPrimary();
    const s = await Secondary.start({ fs: ws.file('s.fs'), from: { kind: 'tcp', host: '127.0.0.1', port: fake.port }, keepAliveDelay: 0 });
    await new Promise((r) => setTimeout(r, 500));
    await s.close();
    fake.close();
    expect(fake.frames.map((f) => f.length)).toEqual([6, 8]);
  });
});

describe('back-pressure', () => {
  it.each([
    ['40 transactions of one 1 MiB record', 40, 1, 1 << 20],
    ['1000 transactions of ten 4 KiB records (small frames, gathered)', 1000, 10, 4 << 10],
  ])('a secondary that stops reading holds back neither the primary nor the others, and its buffer stays bounded: %s', async (_, transactions, perTxn, size) => {
    const primary = await Primary.start({ fs: ws.file('p.fs'), listen: LOOPBACK });
    const record = Buffer.alloc(size, 7);
    for (let i = 0; i < transactions; i++) primary.commit({ records: Array.from({ length: perTxn }, (_, j) => ({ oid: Buffer.alloc(8, (i * perTxn + j) % 50), data: record })) });
    const port = (primary.address as Extract<Address, { kind: 'tcp' }>).port;
    const stalled = net.connect({ host: '127.0.0.1', port });
    stalled.pause(); // reads nothing, ever
    stalled.write(Buffer.concat([encodeFrame(Buffer.from('zrs2.0')), encodeFrame(Z64)]));
    await waitFor('the stalled connection', () => primary.connections.size === 1);
    const secondaries = await Promise.all(
      Array.from({ length: 5 }, (_, i) => Secondary.start({ fs: ws.file(`s${i}.fs`), from: primary.address, reconnectDelay: 0.1 })),
    );
    for (const s of secondaries) await waitFor('catch-up', () => s.lastTid.equals(primary.lastTid), 60_000);
    const stalledConnection = [...primary.connections].find((c) => c.sentTransactions < transactions)!;
    expect(stalledConnection).toBeDefined();
    // 40 MiB were committed; the stalled connection holds at most about one record (or 64 KiB of small frames) beyond the socket's buffer.
    expect(stalledConnection.bufferedBytes).toBeLessThan(3 << 20);
    stalled.destroy();
    await Promise.all(secondaries.map((s) => s.close()));
    await primary.close(1000);
  });

  it('a secondary that goes away while its stream waits for the drain: the connection ends and the primary goes on serving', async () => {
    const primary = await Primary.start({ fs: ws.file('p.fs'), listen: LOOPBACK });
    const record = Buffer.alloc(1 << 20, 7);
    // transactions of over 1 MiB: their records are read from the file one at a time, as they are sent
    for (let i = 0; i < 12; i++) primary.commit({ records: [1, 2, 3].map((n) => ({ oid: Buffer.alloc(8, n), data: record })) });
    const port = (primary.address as Extract<Address, { kind: 'tcp' }>).port;
    const stalled = net.connect({ host: '127.0.0.1', port });
    stalled.pause();
    stalled.write(Buffer.concat([encodeFrame(Buffer.from('zrs2.0')), encodeFrame(Z64)]));
    await waitFor('the stream to wait for the drain', () => [...primary.connections].some((c) => c.bufferedBytes > 0));
    stalled.destroy();
    await waitFor('the connection to end', () => primary.connections.size === 0);
    const s = await Secondary.start({ fs: ws.file('after.fs'), from: primary.address, reconnectDelay: 0.1 });
    await waitFor('catch-up', () => s.lastTid.equals(primary.lastTid), 30_000);
    await s.close();
    await primary.close(1000);
  });
});
