// Every handshake a secondary can send, right or wrong, against the reference primary, from a
// raw socket that records what comes back and whether the primary closes.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, frameHeader } from '../framing.ts';
import type { Address } from '../net/address.ts';
import { Primary } from '../primary/primary.ts';
import { StreamDecoder } from '../stream.ts';
import { Z64 } from '../timestamp.ts';
import { waitFor, workspace } from './helpers.ts';

const ws = workspace('handshake');
let primary: Primary;
let blobPrimary: Primary;
const LOOPBACK: Address = { kind: 'tcp', host: '127.0.0.1', port: 0 };

beforeAll(async () => {
  primary = await Primary.start({ fs: ws.file('p.fs'), listen: LOOPBACK });
  for (let i = 0; i < 3; i++) primary.commit({ records: [{ oid: Buffer.alloc(8, i), data: Buffer.from(`object ${i}`) }] });
  blobPrimary = await Primary.start({ fs: ws.file('b.fs'), listen: LOOPBACK, blobDir: ws.file('blobs') });
});
afterAll(async () => {
  await primary.close(1000);
  await blobPrimary.close(1000);
  ws.cleanup();
});

/** A raw client: sends `parts` (with `gap` ms between them) and records everything received. */
async function session(target: Primary, parts: Buffer[], options: { gap?: number; wait?: number; then?: () => void } = {}) {
  const a = target.address as Extract<Address, { kind: 'tcp' }>;
  const socket = net.connect({ host: '127.0.0.1', port: a.port });
  const received: Buffer[] = [];
  let closed = false;
  socket.on('data', (d) => received.push(d));
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  for (const p of parts) {
    socket.write(p);
    if (options.gap) await new Promise((r) => setTimeout(r, options.gap));
  }
  await new Promise((r) => setTimeout(r, options.wait ?? 150));
  options.then?.();
  if (options.then) await new Promise((r) => setTimeout(r, options.wait ?? 150));
  const result = { bytes: Buffer.concat(received), closed };
  socket.destroy();
  return result;
}

/** Whole transactions in what a primary sent after a handshake with `start`. */
function transactions(bytes: Buffer, start = Z64): { commits: number; endsClean: boolean } {
  const frames = new FrameDecoder();
  const stream = new StreamDecoder(start);
  let commits = 0;
  for (const f of frames.push(bytes)) if (stream.push(f)?.kind === 'commit') commits++;
  return { commits, endsClean: frames.idle && stream.inTransaction === null };
}

const hello = (id: string, tid: Buffer = Z64) => Buffer.concat([encodeFrame(Buffer.from(id, 'latin1')), encodeFrame(tid)]);

describe('the primary handshake', () => {
  it('[WIRE-HS-1] [WIRE-HS-7] [WIRE-HS-13] zrs2.0 and zrs2.1 are served; the connection stays open, keep-alives are ignored', async () => {
    for (const id of ['zrs2.0', 'zrs2.1']) {
      const r = await session(primary, [hello(id), frameHeader(0), frameHeader(0)]);
      expect(transactions(r.bytes)).toEqual({ commits: 3, endsClean: true });
      expect(r.closed).toBe(false);
    }
  });

  it('[WIRE-FRAME-3] a handshake written one byte at a time works', async () => {
    const bytes = hello('zrs2.0');
    const r = await session(primary, [...bytes].map((b) => Buffer.of(b)), { gap: 2 });
    expect(transactions(r.bytes).commits).toBe(3);
  });

  it.each([
    ['[WIRE-HS-8] zrs2.0 to a primary that serves blobs', () => blobPrimary, hello('zrs2.0')],
    ['[WIRE-HS-9] an empty protocol id (a keep-alive inside the handshake)', () => primary, hello('')],
    ['[WIRE-HS-9] zrs2.2', () => primary, hello('zrs2.2')],
    ['[WIRE-HS-9] ZRS2.0', () => primary, hello('ZRS2.0')],
    ['[WIRE-HS-9] zrs2.0 with a trailing byte', () => primary, hello('zrs2.0x')],
    ['[WIRE-HS-10] a 7-byte start tid', () => primary, hello('zrs2.0', Buffer.alloc(7))],
    ['[WIRE-HS-10] an empty start tid', () => primary, hello('zrs2.0', Buffer.alloc(0))],
    ['[WIRE-POS-3] a start tid above every tid', () => primary, hello('zrs2.0', Buffer.from('7fffffffffffffff', 'hex'))],
  ])('[WIRE-HS-12] %s: closed at once, nothing sent', async (_name, target, bytes) => {
    const r = await session(target(), [bytes]);
    expect(r.bytes).toHaveLength(0);
    expect(r.closed).toBe(true);
  });

  it('[WIRE-FRAME-5] a header announcing more than 8 bytes closes the connection before any body arrives', async () => {
    const r = await session(primary, [frameHeader(9)]);
    expect([r.bytes.length, r.closed]).toEqual([0, true]);
  });

  it.each([
    ['a non-empty frame', encodeFrame(Buffer.from('Hi'))],
    ['a header over 8 bytes', frameHeader(15)],
  ])('[WIRE-HS-14] [WIRE-CLOSE-2] [WIRE-CLOSE-3] after the handshake, %s: catch up, then close after a C', async (_name, extra) => {
    const r = await session(primary, [hello('zrs2.0'), extra]);
    expect(transactions(r.bytes)).toEqual({ commits: 3, endsClean: true });
    expect(r.closed).toBe(true);
  });

  it('[WIRE-TXN-3] [WIRE-POS-2] a secondary that has everything gets nothing, then each new commit', async () => {
    const last = primary.lastTid;
    const r = await session(primary, [hello('zrs2.0', last)], {
      then: () => primary.commit({ records: [{ oid: Buffer.alloc(8, 9), data: Buffer.from('new') }] }),
    });
    expect(transactions(r.bytes, last)).toEqual({ commits: 1, endsClean: true });
  });

  it('[WIRE-CLOSE-4] a secondary that disconnects is forgotten', async () => {
    await session(primary, [hello('zrs2.0')]);
    await waitFor('the connection to be released', () => primary.connections.size === 0);
  });
});
