// Conformance of a primary's connection limits (wire-protocol §9.7): whatever time limit it puts
// on the handshake, its default configuration allows a slow handshake of under 5 seconds.
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
});
