// The reference secondary against a scripted primary that misbehaves: the open transaction is
// aborted, the file stays as it was, and replication resumes after reconnecting.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { checkFile } from '../filestorage/checker.ts';
import { FileStorageReader } from '../filestorage/reader.ts';
import { encodeFrame, FrameDecoder } from '../framing.ts';
import { encodeMessage, type TransactionMessage } from '../messages.ts';
import { PyDict } from '../pickle/values.ts';
import { Secondary } from '../secondary/secondary.ts';
import { StreamEncoder } from '../stream.ts';
import { hex8, tidFromString } from '../timestamp.ts';
import { waitFor, workspace } from './helpers.ts';

const ws = workspace('secondary-faults');
afterAll(() => ws.cleanup());

/** A primary that answers the n-th connection with `script[n]` (the last one repeats). */
async function scriptedPrimary(script: ((startTid: Buffer) => Uint8Array[] | 'hang')[]) {
  const handshakes: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const d = new FrameDecoder(8);
    const frames: Buffer[] = [];
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      frames.push(...d.push(chunk));
      if (frames.length !== 2 || socket.writableEnded) return;
      handshakes.push(frames[1]!);
      const part = script[Math.min(handshakes.length - 1, script.length - 1)]!(frames[1]!);
      if (part === 'hang') return;
      socket.end(Buffer.concat(part));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    handshakes,
    close: () => {
      sockets.forEach((s) => s.destroy());
      server.close();
    },
  };
}

const tid = (n: number) => {
  const t = tidFromString('2026-11-26 10:00:00');
  t.writeUInt32BE(n, 4);
  return t;
};
const txn = (n: number): TransactionMessage => ({ type: 'T', tid: tid(n), status: ' ', user: Buffer.alloc(0), description: Buffer.from(`t${n}`), extension: new PyDict() });
const rec = (n: number) => ({
  message: { type: 'S' as const, oid: Buffer.alloc(8, n), tid: tid(n), version: '', dataTxn: null },
  data: Buffer.from(`data ${n}`),
});

/** The frames of transactions `from..to` for a stream that started at `start`. */
function stream(start: Buffer, ns: number[]): Uint8Array[] {
  const e = new StreamEncoder(start);
  return ns.flatMap((n) => e.transaction(txn(n), [rec(n)]));
}

async function secondaryAgainst(
  script: Parameters<typeof scriptedPrimary>[0],
  until: (s: Secondary, p: Awaited<ReturnType<typeof scriptedPrimary>>) => boolean,
  fs = ws.file('s.fs'),
) {
  const p = await scriptedPrimary(script);
  const s = await Secondary.start({ fs, from: { kind: 'tcp', host: '127.0.0.1', port: p.port }, reconnectDelay: 0.05 });
  await waitFor('the scenario', () => until(s, p));
  await s.close();
  p.close();
  return { fs, handshakes: p.handshakes.map(hex8) };
}

describe('a secondary facing a faulty primary', () => {
  it('[WIRE-CLOSE-6] [WIRE-TXN-14] a connection cut inside a transaction leaves nothing of it; it comes again whole', async () => {
    let cutFile: Buffer | null = null;
    const file = ws.file('s.fs');
    const { fs, handshakes } = await secondaryAgainst(
      [
        (start) => stream(start, [1, 2]).slice(0, -4), // t1 whole, t2 cut after its S (its data and C never come)
        (start) => {
          cutFile = readFileSync(file); // the secondary is back: what did it keep of t2?
          return stream(start, [2]);
        },
        () => 'hang',
      ],
      (s) => s.lastTid.equals(tid(2)),
      file,
    );
    expect(handshakes.slice(0, 2)).toEqual([hex8(Buffer.alloc(8)), hex8(tid(1))]); // resumes after t1
    expect(checkFile(fs).transactions).toBe(2);
    // when it reconnected, the file ended exactly after t1: nothing of t2 had been written
    const r = FileStorageReader.open(fs);
    const [t1] = r.transactions();
    r.close();
    expect(cutFile!.length).toBe(t1!.next);
  });

  it('[WIRE-SUM-6] [WIRE-SUM-7] a wrong digest: the transaction is not committed; it is asked for again', async () => {
    const bad = (start: Buffer) => {
      const frames = stream(start, [1]);
      frames[frames.length - 1] = encodeMessage({ type: 'C', checksum: Buffer.alloc(16) }); // wrong digest
      frames[frames.length - 2] = encodeFrame(frames[frames.length - 1]!).subarray(0, 4);
      return frames;
    };
    const { fs, handshakes } = await secondaryAgainst([bad, bad, (start) => stream(start, [1]), () => 'hang'], (s) => s.lastTid.equals(tid(1)));
    expect(handshakes.slice(0, 3)).toEqual([hex8(Buffer.alloc(8)), hex8(Buffer.alloc(8)), hex8(Buffer.alloc(8))]);
    expect(checkFile(fs)).toMatchObject({ ok: true, transactions: 1 });
  });

  it('[DEV-TIDORDER-1] a transaction not later than the last one is refused as a divergence, never written', async () => {
    const { fs, handshakes } = await secondaryAgainst(
      [(start) => stream(start, [5]), (start) => stream(start, [3]), () => 'hang'],
      (s, p) => p.handshakes.length >= 3,
    );
    const r = checkFile(fs);
    expect(r).toMatchObject({ ok: true, transactions: 1, lastTid: hex8(tid(5)) });
    expect(handshakes[2]).toBe(hex8(tid(5)));
  });

  it('[WIRE-MSG-4] garbage where a control message is due: abort, close, reconnect', async () => {
    const { fs, handshakes } = await secondaryAgainst(
      [
        (start) => [...stream(start, [1]), encodeFrame(Buffer.from('garbage'))],
        (start) => stream(start, [2]),
        () => 'hang',
      ],
      (s) => s.lastTid.equals(tid(2)),
    );
    expect(handshakes[1]).toBe(hex8(tid(1)));
    expect(checkFile(fs).transactions).toBe(2);
  });
});
