// Conformance of a primary's connection limits (wire-protocol §9.7): whatever time limit it puts
// on the handshake, its default configuration allows a slow handshake of under 5 seconds; and
// the limits the descriptor declares hold just over them.
import { describe, expect, it } from 'vitest';
import { encodeFrame } from '../../reference/framing.ts';
import { Z64 } from '../../reference/timestamp.ts';
import { check } from '../checks.ts';
import { primaryIut, requires, startPrimary } from '../context.ts';
import { checkTransactions, expectedTransactions } from '../expected.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';

const iut = primaryIut();
const small = expectedTransactions('small');

describe(`primary limits: ${iut.name}`, () => {
  it('[WIRE-LIMIT-2] a handshake sent slowly, but complete 4.5 seconds after the connection, is served, and the connection stays open', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    await sleep(2500);
    s.send(encodeFrame(Buffer.from('zrs2.0', 'latin1')));
    await sleep(2000);
    check('WIRE-LIMIT-2', () => expect(s.closed, 'the primary closed the connection before its handshake was complete, within 5 seconds').toBe(false));
    s.expectStream(Z64);
    s.send(encodeFrame(Z64));
    await s.waitForTransactions(small.length);
    await s.settle();
    s.verify();
    checkTransactions(s.transactions, small);
    await sleep(1000);
    check('WIRE-LIMIT-2', () => expect(s.closed, 'the primary closed the connection after the handshake').toBe(false));
    s.close();
  });

  it('[WIRE-LIMIT-1] a connection that sends no handshake is open half a second before the declared handshake timeout, and closed, without a byte, 3 seconds after it', async (ctx) => {
    requires(ctx, iut, 'primary');
    const timeout = iut.limits.handshakeTimeout;
    if (timeout === undefined) ctx.skip(`unsupported: ${iut.name} declares no handshakeTimeout`);
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    await sleep(timeout! * 1000 - 500);
    const early = s.closed;
    const closed = await s.waitForClose(3500);
    check('WIRE-LIMIT-1', () => {
      expect(early, `closed before its declared handshake timeout of ${timeout} s`).toBe(false);
      expect(closed, `still open ${timeout! + 3} s after the connection, without a handshake`).toBe(true);
      expect(s.received.length, 'bytes sent to a connection without a handshake').toBe(0);
    });
  }, 120_000);

  it('[WIRE-LIMIT-3] with the declared maxConnections open, one more is closed at once without a byte, and those held stay open', async (ctx) => {
    requires(ctx, iut, 'primary');
    const max = iut.limits.maxConnections;
    if (max === undefined) ctx.skip(`unsupported: ${iut.name} declares no maxConnections`);
    const p = await startPrimary({ store: 'small' });
    const held: FakeSecondary[] = [];
    try {
      for (let i = 0; i < max!; i++) {
        const s = await FakeSecondary.connect(p.address);
        s.handshake('zrs2.0', Z64); // served secondaries: no handshake timeout applies
        held.push(s);
      }
      await sleep(500);
      const extra = await FakeSecondary.connect(p.address);
      held.push(extra);
      const closed = await extra.waitForClose(2000);
      check('WIRE-LIMIT-3', () => {
        expect(closed, `connection ${max! + 1} still open 2 s after it was accepted, with ${max} open`).toBe(true);
        expect(extra.received.length, 'bytes sent to the connection beyond the bound').toBe(0);
        expect(held.slice(0, -1).filter((s) => s.closed).length, 'connections within the bound that were closed').toBe(0);
      });
    } finally {
      for (const s of held) s.close();
    }
  }, 120_000);
});
