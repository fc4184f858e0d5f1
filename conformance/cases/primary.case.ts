// Conformance of a primary, judged by a fake secondary.
import { describe, expect, it } from 'vitest';
import { encodeFrame, frameHeader } from '../../reference/framing.ts';
import { Z64 } from '../../reference/timestamp.ts';
import { primaryIut, requires, startPrimary } from '../context.ts';
import { check } from '../checks.ts';
import { checkTransactions, expectedTransactions } from '../expected.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';

const iut = primaryIut();
const tid = (h: string) => Buffer.from(h, 'hex');
const small = expectedTransactions('small');

describe(`primary: ${iut.name}`, () => {
  it.for(['zrs2.0', 'zrs2.1'])(
    '[WIRE-HS-7] [WIRE-POS-1] [WIRE-TXN-1] [WIRE-TXN-3] [WIRE-TXN-6] [WIRE-DATA-2] [WIRE-SUM-1] [WIRE-SUM-2] [WIRE-SUM-3] [WIRE-SUM-4] %s from z64: every transaction of the file, in order, with valid digests',
    async (protocol, ctx) => {
      requires(ctx, iut, 'primary');
      const p = await startPrimary({ store: 'small' });
      const s = await FakeSecondary.connect(p.address);
      s.handshake(protocol, Z64);
      await s.waitForTransactions(small.length);
      if (protocol === 'zrs2.1') check('WIRE-HS-7', () => expect(s.received.length, 'nothing was sent after a zrs2.1 handshake').toBeGreaterThan(0));
      s.verify();
      // every C of the file was accepted: the running checksum is right
      check(['WIRE-SUM-1', 'WIRE-SUM-2', 'WIRE-SUM-3', 'WIRE-SUM-4'], () => expect(s.transactions.length).toBe(small.length));
      checkTransactions(s.transactions, small, { first: 'WIRE-POS-1' });
      await s.settle();
      check('WIRE-TXN-1', () => expect(s.atBoundary, 'the stream stopped inside a transaction').toBe(true));
      check('WIRE-TXN-3', () => expect(s.closed, 'the primary ended the stream by itself').toBe(false));
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
    s.verify();
    check('WIRE-SUM-1', () => expect(s.transactions.length).toBe(small.length - skip));
    checkTransactions(s.transactions, small.slice(skip), { first: 'WIRE-POS-2' });
    check('WIRE-POS-2', () => expect(s.closed, 'the primary closed the connection').toBe(false));
    s.close();
  });

  it.for([
    ['[WIRE-HS-9] an empty protocol id (a keep-alive in the handshake)', 'WIRE-HS-9', [encodeFrame(Buffer.alloc(0)), encodeFrame(Z64)]],
    ['[WIRE-HS-9] an unknown protocol id', 'WIRE-HS-9', [encodeFrame(Buffer.from('zrs2.2')), encodeFrame(Z64)]],
    ['[WIRE-HS-9] a protocol id of the right length and the wrong case', 'WIRE-HS-9', [encodeFrame(Buffer.from('ZRS2.0')), encodeFrame(Z64)]],
    ['[WIRE-HS-9] a protocol id with a known one as its prefix', 'WIRE-HS-9', [encodeFrame(Buffer.from('zrs2.0x')), encodeFrame(Z64)]],
    ['[WIRE-HS-9] a protocol id that is a prefix of a known one', 'WIRE-HS-9', [encodeFrame(Buffer.from('zrs2.')), encodeFrame(Z64)]],
    ['[WIRE-FRAME-5] a protocol id over 8 bytes, header only', 'WIRE-FRAME-5', [frameHeader(9)]],
    ['[WIRE-HS-10] a 7-byte start tid', 'WIRE-HS-10', [encodeFrame(Buffer.from('zrs2.0')), encodeFrame(Buffer.alloc(7))]],
    ['[WIRE-HS-10] an empty start tid', 'WIRE-HS-10', [encodeFrame(Buffer.from('zrs2.0')), encodeFrame(Buffer.alloc(0))]],
    ['[WIRE-POS-3] a start tid above every tid', 'WIRE-POS-3', [encodeFrame(Buffer.from('zrs2.0')), encodeFrame(tid('7fffffffffffffff'))]],
  ] as const)('[WIRE-HS-12] [WIRE-HS-15] %s: the primary closes at once and sends nothing', async ([, refusal, frames], ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.send(Buffer.concat(frames));
    const closed = await s.waitForClose(5000);
    check(refusal, () => expect(closed || s.received.length > 0, 'the primary neither refused nor answered within 5 s').toBe(true));
    check(refusal, () => expect(s.received.length > 0 && !closed, 'the primary accepted the handshake and streams').toBe(false));
    check(['WIRE-HS-12', 'WIRE-HS-15'], () => expect(s.received, 'bytes sent before the refusal').toHaveLength(0));
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
    check('WIRE-HS-7', () => expect(s.received.length, 'nothing was sent after a zrs2.1 handshake').toBeGreaterThan(0));
    s.verify();
    checkTransactions(s.transactions, expected);
    const blobs = s.transactions.flatMap((t) => t.records).filter((r) => r.message.type === 'B');
    // the store holds more than five blob records whose files the primary has
    check(['WIRE-BLOB-1', 'WIRE-BLOB-2'], () => expect(blobs.length, 'blob records sent as B').toBeGreaterThan(5));
    check('WIRE-BLOB-3', () => {
      for (const b of blobs) {
        expect(b.chunks).toHaveLength((b.message as { blocks: number }).blocks);
        b.chunks.slice(0, -1).forEach((c) => expect(c.length).toBe(65536));
        if (b.chunks.length) expect(b.chunks.at(-1)!.length).toBeGreaterThan(0);
      }
    });
    s.close();
  });

  it('[WIRE-TXN-5] a transaction with status u is never sent, and does not stop the stream', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small', markUndone: 3 });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    const expected = small.filter((_, i) => i !== 3);
    await s.waitForTransactions(expected.length, 10_000);
    await s.settle();
    s.verify();
    checkTransactions(s.transactions, expected, { order: 'WIRE-TXN-5' });
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
    s.verify();
    checkTransactions(s.transactions, small, { order: 'WIRE-HS-13' });
    expect(s.closed).toBe(false);
    s.close();
  });

  it.for([
    ['a non-empty frame', encodeFrame(Buffer.from('Hi'))],
    ['a header over 8 bytes', frameHeader(15)],
  ] as const)('[WIRE-HS-14] [WIRE-CLOSE-3] after the handshake, %s: catch up, then close after a C', async ([, extra], ctx) => {
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
    const closed = await s.waitForClose(10_000);
    s.verify();
    check('WIRE-HS-14', () => expect(closed, 'the primary did not close on the protocol error').toBe(true));
    check('WIRE-HS-14', () => expect(s.transactions.map((t) => Buffer.from(t.begin.tid).toString('hex')), 'what it sent before closing').toEqual(expected.map((t) => t.tid)));
    check('WIRE-CLOSE-3', () => expect(s.atBoundary, 'the connection ended inside a transaction').toBe(true));
  });

  it('[WIRE-TXN-3] [CONF-CTL-6] a transaction committed while connected is sent at once', async (ctx) => {
    requires(ctx, iut, 'primary', 'control');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', tid(small.at(-1)!.tid));
    await sleep(100);
    const r = await p.node.request('commit', { records: [{ oid: '00000000000000aa', data: '80034e2e' }], description: 'live' });
    check('CONF-CTL-6', () => expect(r, 'the commit response').toMatchObject({ ok: true }));
    const arrived = await s.waitForTransactions(1, 5000);
    s.verify();
    check('WIRE-TXN-3', () => expect(arrived, 'the new transaction was not sent within 5 s').toBe(true));
    check('WIRE-TXN-3', () => expect(Buffer.from(s.transactions[0]!.begin.tid).toString('hex')).toBe(r.tid));
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
    // a store larger than the socket buffers, and a secondary that is not reading when the
    // signal comes: the primary has transactions left to send, which it must send before it closes
    const blobs = iut.features.has('blobs');
    const p = await startPrimary({ store: 'blobs', blobs });
    const expected: { tid: string }[] = expectedTransactions('blobs');
    if (iut.features.has('control')) {
      for (let i = 0; i < 8; i++) {
        const r = await p.node.request('commit', { records: [{ oid: '00000000000000bb', data: Buffer.alloc(1 << 20, i).toString('hex') }] });
        expected.push({ tid: r.tid as string });
      }
    }
    const s = await FakeSecondary.connect(p.address);
    s.pause();
    s.handshake(blobs ? 'zrs2.1' : 'zrs2.0', Z64);
    await sleep(300);
    const exit = p.node.stop(20_000);
    await sleep(300);
    s.resume();
    const closed = await s.waitForClose(15_000);
    s.verify();
    check('WIRE-SHUT-1', () => expect(s.transactions.map((t) => Buffer.from(t.begin.tid).toString('hex')), 'what the secondary got before the close').toEqual(expected.map((t) => t.tid)));
    check('WIRE-CLOSE-3', () => expect(s.atBoundary, 'the connection ended inside a transaction').toBe(true));
    check('WIRE-SHUT-2', () => expect(closed, 'the connection did not end within 15 s of the catch-up').toBe(true));
    await check('CONF-PROC-2', async () => expect(await exit).toEqual({ code: 0, signal: null }));
  });
});
