// Conformance of a primary, judged by a fake secondary.
import { describe, expect, it } from 'vitest';
import { encodeFrame, frameHeader } from '../../reference/framing.ts';
import { Z64 } from '../../reference/timestamp.ts';
import { primaryIut, requires, startPrimary } from '../context.ts';
import { expectedTransactions, firstDifference } from '../expected.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';

const iut = primaryIut();
const tid = (h: string) => Buffer.from(h, 'hex');
const small = expectedTransactions('small');

describe(`primary: ${iut.name}`, () => {
  it.for(['zrs2.0', 'zrs2.1'])(
    '[WIRE-HS-1] [WIRE-HS-7] [WIRE-POS-1] [WIRE-TXN-1] [WIRE-TXN-6] [WIRE-DATA-2] [WIRE-SUM-1] [WIRE-SUM-2] [WIRE-SUM-3] [WIRE-SUM-4] %s from z64: every transaction of the file, in order, with valid digests',
    async (protocol, ctx) => {
      requires(ctx, iut, 'primary');
      const p = await startPrimary({ store: 'small' });
      const s = await FakeSecondary.connect(p.address);
      s.handshake(protocol, Z64);
      await s.waitForTransactions(small.length);
      expect(s.error).toBeNull();
      expect(firstDifference(s.transactions, small)).toBeNull();
      await s.settle();
      expect(s.atBoundary).toBe(true);
      expect(s.closed).toBe(false); // WIRE-TXN-3: no end of stream
      s.close();
    },
  );

  it.for([
    ['the tid of the 10th transaction', small[9]!.tid, 10],
    ['a tid between the 10th and 11th', small[9]!.tid.slice(0, 15) + 'f', 10],
    ['a tid below the first', '0000000000000001', 0],
    ['the last tid', small.at(-1)!.tid, small.length],
  ] as const)('[WIRE-POS-2] [WIRE-SUM-1] start after %s', async ([, start, skip], ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', tid(start));
    await s.waitForTransactions(small.length - skip);
    await s.settle();
    expect(s.error).toBeNull();
    expect(firstDifference(s.transactions, small.slice(skip))).toBeNull();
    expect(s.closed).toBe(false);
    s.close();
  });

  it.for([
    ['[WIRE-HS-9] an empty protocol id (a keep-alive in the handshake)', [encodeFrame(Buffer.alloc(0)), encodeFrame(Z64)]],
    ['[WIRE-HS-9] an unknown protocol id', [encodeFrame(Buffer.from('zrs2.2')), encodeFrame(Z64)]],
    ['[WIRE-HS-9] [WIRE-FRAME-5] a protocol id over 8 bytes, header only', [frameHeader(9)]],
    ['[WIRE-HS-10] a 7-byte start tid', [encodeFrame(Buffer.from('zrs2.0')), encodeFrame(Buffer.alloc(7))]],
    ['[WIRE-HS-10] an empty start tid', [encodeFrame(Buffer.from('zrs2.0')), encodeFrame(Buffer.alloc(0))]],
    ['[WIRE-POS-3] a start tid above every tid', [encodeFrame(Buffer.from('zrs2.0')), encodeFrame(tid('7fffffffffffffff'))]],
  ] as const)('[WIRE-HS-12] [WIRE-HS-15] %s: the primary closes at once and sends nothing', async ([, frames], ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.send(Buffer.concat(frames));
    expect(await s.waitForClose(5000)).toBe(true);
    expect(s.received).toHaveLength(0);
  });

  it('[WIRE-HS-8] a primary that serves blobs refuses zrs2.0 and sends nothing', async (ctx) => {
    requires(ctx, iut, 'primary', 'blobs');
    const p = await startPrimary({ store: 'blobs', blobs: true });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    expect(await s.waitForClose(5000)).toBe(true);
    expect(s.received).toHaveLength(0);
  });

  it('[WIRE-BLOB-1] [WIRE-BLOB-2] [WIRE-BLOB-3] [WIRE-HS-7] blobs go out as B, data, and 65536-byte chunks', async (ctx) => {
    requires(ctx, iut, 'primary', 'blobs');
    const p = await startPrimary({ store: 'blobs', blobs: true });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.1', Z64);
    const expected = expectedTransactions('blobs');
    await s.waitForTransactions(expected.length);
    expect(firstDifference(s.transactions, expected)).toBeNull();
    const blobs = s.transactions.flatMap((t) => t.records).filter((r) => r.message.type === 'B');
    expect(blobs.length).toBeGreaterThan(5);
    for (const b of blobs) {
      expect(b.chunks).toHaveLength((b.message as { blocks: number }).blocks);
      b.chunks.slice(0, -1).forEach((c) => expect(c.length).toBe(65536));
      if (b.chunks.length) expect(b.chunks.at(-1)!.length).toBeGreaterThan(0);
    }
    s.close();
  });

  it('[WIRE-TXN-5] a transaction with status u is never sent, and does not stop the stream', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small', markUndone: 3 });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    const expected = small.filter((_, i) => i !== 3);
    await s.waitForTransactions(expected.length);
    await s.settle();
    expect(firstDifference(s.transactions, expected)).toBeNull();
    s.close();
  });

  it('[WIRE-HS-13] keep-alives after the handshake change nothing', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    for (let i = 0; i < 5; i++) s.send(frameHeader(0));
    await s.waitForTransactions(small.length);
    await s.settle();
    expect(firstDifference(s.transactions, small)).toBeNull();
    expect(s.closed).toBe(false);
    s.close();
  });

  it.for([
    ['a non-empty frame', encodeFrame(Buffer.from('Hi'))],
    ['a header over 8 bytes', frameHeader(15)],
  ] as const)('[WIRE-HS-14] [WIRE-CLOSE-2] [WIRE-CLOSE-3] after the handshake, %s: catch up, then close after a C', async ([, extra], ctx) => {
    requires(ctx, iut, 'primary');
    // a store larger than the socket buffers, read by a secondary that pauses: the primary
    // still has transactions to send when the offending frame arrives
    const blobs = iut.features.has('blobs');
    const p = await startPrimary({ store: 'blobs', blobs });
    const expected: { tid: string }[] = expectedTransactions('blobs');
    if (iut.features.has('control')) {
      // more than loopback socket buffers hold
      for (let i = 0; i < 12; i++) {
        const r = await p.node.request('commit', { records: [{ oid: '00000000000000cc', data: Buffer.alloc(1 << 20, i).toString('hex') }] });
        expected.push({ tid: r.tid as string });
      }
    }
    const s = await FakeSecondary.connect(p.address);
    s.pause();
    s.handshake(blobs ? 'zrs2.1' : 'zrs2.0', Z64);
    await sleep(300);
    s.send(extra);
    await sleep(100);
    s.resume();
    expect(await s.waitForClose(10_000)).toBe(true);
    expect(s.error).toBeNull();
    expect(s.transactions.map((t) => Buffer.from(t.begin.tid).toString('hex'))).toEqual(expected.map((t) => t.tid));
    expect(s.atBoundary).toBe(true);
  });

  it('[WIRE-TXN-3] [CONF-CTL-6] a transaction committed while connected is sent at once', async (ctx) => {
    requires(ctx, iut, 'primary', 'control');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', tid(small.at(-1)!.tid));
    await sleep(100);
    const r = await p.node.request('commit', { records: [{ oid: '00000000000000aa', data: '80034e2e' }], description: 'live' });
    expect(r.ok).toBe(true);
    expect(await s.waitForTransactions(1, 5000)).toBe(true);
    expect(Buffer.from(s.transactions[0]!.begin.tid).toString('hex')).toBe(r.tid);
    s.close();
  });

  it('[WIRE-CLOSE-4] a secondary that reads slowly still gets every byte, in order', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'blobs', blobs: iut.features.has('blobs') });
    const expected = expectedTransactions('blobs');
    const s = await FakeSecondary.connect(p.address);
    s.pause();
    s.handshake(iut.features.has('blobs') ? 'zrs2.1' : 'zrs2.0', Z64);
    for (let i = 0; i < 10; i++) {
      await sleep(40);
      s.resume();
      await sleep(5);
      s.pause();
    }
    s.resume();
    await s.waitForTransactions(expected.length);
    expect(s.error).toBeNull();
    expect(s.transactions).toHaveLength(expected.length);
    s.close();
  });

  it('[WIRE-SHUT-1] [WIRE-SHUT-2] [CONF-PROC-2] SIGTERM: connected secondaries get what is committed, then the connection ends', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await s.waitForTransactions(small.length);
    const expected = [...small];
    if (iut.features.has('control')) {
      // commits the secondary has not received yet when the signal comes
      for (let i = 0; i < 5; i++) {
        const r = await p.node.request('commit', { records: [{ oid: '00000000000000bb', data: Buffer.alloc(100_000, i).toString('hex') }] });
        expected.push({ tid: r.tid as string } as (typeof small)[number]);
      }
    }
    const exit = await p.node.stop(20_000);
    expect(await s.waitForClose(5000)).toBe(true);
    expect(s.transactions.map((t) => Buffer.from(t.begin.tid).toString('hex'))).toEqual(expected.map((t) => t.tid));
    expect(s.atBoundary).toBe(true);
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
