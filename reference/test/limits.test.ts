// A primary's connection limits (wire-protocol §9.7) against real sockets and processes: the
// handshake timeout and the bound on open connections.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { encodeFrame } from '../framing.ts';
import type { Logger } from '../net/log.ts';
import { DropLog } from '../primary/limits.ts';
import { Z64 } from '../timestamp.ts';
import { waitFor } from './helpers.ts';
import { type NodeProcess, nodeSession, records } from './processes.ts';

const { ws, start } = nodeSession('limits');

async function commit(p: NodeProcess, seed: number): Promise<string> {
  const r = await p.request('commit', { records: records(1, 10, seed) });
  expect(r.ok, JSON.stringify(r)).toBe(true);
  return r.tid as string;
}

/** A raw client of the primary `p`: counts the bytes it receives and notes when the primary closes. */
async function connect(p: NodeProcess & { ready: Record<string, unknown> }) {
  const [host, port] = (p.ready.listen as string).split(':');
  const socket = net.connect({ host, port: Number(port) });
  const c = { socket, bytes: 0, closed: false, port: 0, closing: new Promise<void>((r) => socket.once('close', () => r())) };
  socket.on('data', (d) => (c.bytes += d.length));
  socket.on('close', () => (c.closed = true));
  socket.on('error', () => undefined);
  await new Promise((r) => socket.once('connect', r));
  c.port = socket.localPort!;
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lines = (p: NodeProcess, event: string) => p.stderr.split('\n').filter((l) => l.includes(` ${event}: `));

describe('the handshake timeout', () => {
  it('[WIRE-LIMIT-1] a connection without a complete handshake is closed after --handshake-timeout, sending nothing, logged once naming the peer', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--handshake-timeout', '0.5']);
    await commit(p, 1);
    const silent = await connect(p);
    const half = await connect(p);
    half.socket.write(encodeFrame(Buffer.from('zrs2.0')));
    const t0 = Date.now();
    await Promise.all([silent.closing, half.closing]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect([silent.bytes, half.bytes]).toEqual([0, 0]);
    await waitFor('two log lines', () => lines(p, 'handshake-timeout').length === 2);
    for (const c of [silent, half]) {
      const logged = lines(p, 'handshake-timeout').filter((l) => l.includes(`peer=127.0.0.1:${c.port} `));
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatch(/INFO .*no handshake within 0\.5 s .*code=ERR_HANDSHAKE_TIMEOUT/);
    }
  });

  it('[WIRE-LIMIT-2] a slow handshake within the timeout is served, and the timeout no longer applies once it is complete', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--handshake-timeout', '1.5']);
    await commit(p, 1);
    const c = await connect(p);
    c.socket.write(encodeFrame(Buffer.from('zrs2.0')));
    await sleep(800);
    c.socket.write(encodeFrame(Z64));
    await waitFor('the first transaction', () => c.bytes > 0);
    await sleep(2000); // idle past the timeout
    const before = c.bytes;
    await commit(p, 2);
    await waitFor('the second transaction', () => c.bytes > before);
    expect(c.closed).toBe(false);
    expect(lines(p, 'handshake-timeout')).toEqual([]);
    c.socket.destroy();
  });
});

describe('the bound on connections', () => {
  it('[WIRE-LIMIT-3] [WIRE-LIMIT-4] beyond --max-connections a new connection is closed at once and logged once per burst; a real secondary is served once a slot frees', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--max-connections', '3', '--handshake-timeout', '0']);
    const t1 = await commit(p, 1);
    const s1 = await start(['secondary', '--fs', ws.file('s1.fs'), '--from', p.ready.listen as string, '--reconnect-delay', '0.2']);
    await s1.committed(t1);
    const idle = [await connect(p), await connect(p)];
    await waitFor('three connections', () => lines(p, 'connected').length === 3);
    const extra = await Promise.all(Array.from({ length: 5 }, () => connect(p)));
    await Promise.all(extra.map((c) => c.closing));
    expect(extra.map((c) => c.bytes)).toEqual([0, 0, 0, 0, 0]);
    expect(lines(p, 'connected')).toHaveLength(3);
    // a secondary started now is closed at every attempt, and tries again after its delay
    const s2 = await start(['secondary', '--fs', ws.file('s2.fs'), '--from', p.ready.listen as string, '--reconnect-delay', '0.2']);
    const t2 = await commit(p, 2);
    await s1.committed(t2);
    await sleep(600);
    expect((await s2.request('last-tid')).tid).toBe('0000000000000000');
    expect(idle.some((c) => c.closed)).toBe(false);
    idle[0]!.socket.destroy();
    await s2.committed(t2);
    const logged = lines(p, 'connection-limit');
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(new RegExp(`WARN .*1 new connection\\(s\\) closed: 3 connections open peer=127\\.0\\.0\\.1:${extra[0]!.port} closed=1 code=ERR_CONNECTION_LIMIT`));
    idle[1]!.socket.destroy();
  });

  it('[WIRE-LIMIT-4] the log of closed connections: the first at once, then one line per period with the count, nothing once the burst ends', async () => {
    const logged: { message: string; fields: Record<string, unknown> }[] = [];
    const logger: Logger = { log: (_level, _event, message, fields = {}) => logged.push({ message, fields }) };
    const drops = new DropLog(logger, 7, 100);
    drops.dropped('a:1');
    for (let i = 2; i <= 6; i++) drops.dropped(`a:${i}`);
    expect(logged).toEqual([{ message: '1 new connection(s) closed: 7 connections open', fields: expect.objectContaining({ peer: 'a:1', closed: 1 }) }]);
    await sleep(150);
    expect(logged[1]).toEqual({ message: '5 new connection(s) closed: 7 connections open', fields: expect.objectContaining({ peer: 'a:6', closed: 5 }) });
    await sleep(250);
    expect(logged).toHaveLength(2);
    drops.dropped('b:1');
    drops.dropped('b:2');
    drops.close();
    expect(logged.slice(2).map((l) => l.fields.closed)).toEqual([1, 1]);
  });
});
