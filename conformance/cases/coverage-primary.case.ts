// Conformance of a primary, judged by fake secondaries: byte identity with what real zc.zrs
// sent, addresses, concurrent sessions, and what it does with files the harness prepared
// (FS21, unfinished and obsolete transactions, backpointer chains, odd tids and metadata,
// blob records and blob directories).
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { blobRepr, BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { FileStorageWriter, type RecordToWrite } from '../../reference/filestorage/writer.ts';
import { encodeFrame, frameHeader } from '../../reference/framing.ts';
import { type Address } from '../../reference/net/address.ts';
import { tidFromParts, Z64 } from '../../reference/timestamp.ts';
import { loopback, markUndone, primaryIut, requires, startPrimary, workdir } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { expectedTransactions, firstDifference } from '../expected.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';

const iut = primaryIut();
const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
const transcript = (name: string) => fixture('transcripts', `${name}.zrs`);
const small = expectedTransactions('small');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const oid = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
const tidOf = (h: string) => Buffer.from(h, 'hex');
/** The tid `n` units after `t` (low word arithmetic, no carry needed for the values used). */
const after = (t: Uint8Array, n: number) => {
  const b = Buffer.from(t);
  b.writeBigUInt64BE(b.readBigUInt64BE(0) + BigInt(n));
  return b;
};
/** Tids after every tid of the fixtures (which are of 2026-11-26). */
const LATER = tidFromParts({ year: 2026, month: 11, day: 27, hour: 9, minute: 0, second: 0 });
/** Record data: two protocol-3 pickles (`None`, then a text), as opaque to ZRS as any other. */
const DATA = (text: string) => Buffer.concat([Buffer.from('80034e2e8003', 'hex'), pickleText(text)]);
function pickleText(text: string): Buffer {
  const u = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(u.length);
  return Buffer.concat([Buffer.from('X', 'latin1'), len, u, Buffer.from('.', 'latin1')]);
}

/**
 * A folder holding a `Data.fs` copied from `from` (or none) and changed by `build`, named so
 * that `startPrimary({ store })` serves a copy of it (stores are folders under FIXTURES).
 */
function prepared(from: string | null, build?: (fs: string, dir: string) => void): string {
  const dir = workdir();
  const fs = path.join(dir, 'Data.fs');
  if (from) cpSync(from, fs);
  build?.(fs, dir);
  return path.relative(FIXTURES, dir);
}

/** Appends whole transactions (status ' ') with the reference writer; returns their offsets. */
function append(fs: string, txns: { tid: Buffer; user?: Buffer; description?: Buffer; extension?: Buffer; records: RecordToWrite[] }[]): number[] {
  const w = FileStorageWriter.open(fs);
  try {
    return txns.map((t) =>
      w.commit(
        { tid: t.tid, status: ' ', user: t.user ?? Buffer.alloc(0), description: t.description ?? Buffer.alloc(0), extension: t.extension ?? Buffer.alloc(0) },
        t.records,
      ),
    );
  } finally {
    w.close();
  }
}

/** Offsets of the data records of the transaction at `tpos`. */
function recordOffsets(fs: string, tpos: number): number[] {
  const r = FileStorageReader.open(fs);
  try {
    const s = r.scan(tpos);
    if (s.kind !== 'transaction') throw new Error(`no transaction at ${tpos}`);
    return [...r.records(s.txn)].map((x) => x.offset);
  } finally {
    r.close();
  }
}

/** The frames of a byte stream, as payloads (a trailing partial frame is left out). */
function payloads(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at + 4 <= bytes.length) {
    const n = bytes.readUInt32BE(at);
    if (at + 4 + n > bytes.length) break;
    out.push(bytes.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/** Waits until `n` bytes arrived (or the close, or the timeout), then for quiet. */
async function receive(s: FakeSecondary, n: number, timeoutMs = 20_000): Promise<Buffer> {
  const until = Date.now() + timeoutMs;
  while (s.received.length < n && !s.closed && Date.now() < until) await sleep(10);
  await s.settle(200);
  return s.received;
}

/** Where two buffers first differ (-1 when equal), for readable failures. */
function firstByteDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

/** Connects, retrying while the listener is not there yet (unix sockets, port readiness). */
async function connect(a: Address, timeoutMs = 10_000): Promise<FakeSecondary> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await FakeSecondary.connect(a);
    } catch (e) {
      if (Date.now() > until) throw e;
      await sleep(50);
    }
  }
}

const tids = (s: FakeSecondary) => s.transactions.map((t) => hex(t.begin.tid));

describe(`primary: ${iut.name}`, () => {
  const transcripts = [
    ['small-from-z64', 'small', false],
    ['small-after-txn9', 'small', false],
    ['small-zrs21-from-z64', 'small', false],
    ['undo-from-z64', 'undo', false],
    ['packed-from-z64', 'packed', false],
    ['blobs-from-z64', 'blobs', true],
  ] as const;
  it.for(transcripts)(
    '[WIRE-MSG-1] [WIRE-MSG-2] [WIRE-MSG-3] [WIRE-PICKLE-1] [WIRE-PICKLE-2] [WIRE-PICKLE-3] [WIRE-DATA-1] [WIRE-DATA-3] [WIRE-DATA-4] [FS-BACK-2] [FS-BACK-4] [WIRE-FRAME-1] [WIRE-ADDR-1] [FS-INDEX-2] %s: the stream is byte for byte the one real zc.zrs sent',
    async ([name, store, blobs], ctx) => {
      requires(ctx, iut, 'primary', ...(blobs ? (['blobs'] as const) : []));
      expect(existsSync(fixture(store, 'Data.fs.index'))).toBe(false); // served without an index file
      const want = readFileSync(transcript(name));
      const sent = readFileSync(`${transcript(name)}.sent`);
      const p = await startPrimary({ store, blobs });
      const s = await FakeSecondary.connect(p.address);
      s.expectStream(sent.subarray(14, 22));
      s.send(sent);
      const got = await receive(s, want.length);
      expect(s.error).toBeNull();
      expect(firstByteDifference(got, want), `first differing byte of ${got.length} (want ${want.length})`).toBe(-1);
      expect(s.closed).toBe(false);
      s.close();
    },
  );

  it('[FS-MAGIC-2] an FS21 file is served exactly as the same file with the FS30 magic', async (ctx) => {
    requires(ctx, iut, 'primary');
    const want = readFileSync(transcript('small-from-z64'));
    const p = await startPrimary({ store: prepared(fixture('fs21', 'small-as-fs21.fs')) });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    const got = await receive(s, want.length);
    expect(firstByteDifference(got, want)).toBe(-1);
    s.close();
  });

  it('[WIRE-ADDR-5] concurrent sessions each get their own handshake, position and checksum', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const sessions = ['small-from-z64', 'small-after-txn9', 'small-zrs21-from-z64', 'small-from-z64'].map((name) => ({
      want: readFileSync(transcript(name)),
      sent: readFileSync(`${transcript(name)}.sent`),
    }));
    const peers = await Promise.all(sessions.map(() => FakeSecondary.connect(p.address)));
    // a connection that never finishes its handshake, and one that is refused
    const idle = await FakeSecondary.connect(p.address);
    idle.send(encodeFrame(Buffer.from('zrs2.0')));
    const refused = await FakeSecondary.connect(p.address);
    peers[2]!.pause(); // a slow reader must not hold the others back
    // interleave the handshakes byte by byte
    for (let i = 0; i < 22; i++) peers.forEach((s, j) => s.send(sessions[j]!.sent.subarray(i, i + 1)));
    refused.send(encodeFrame(Buffer.from('zrs2.9')));
    const fast = [0, 1, 3];
    await Promise.all(fast.map((j) => receive(peers[j]!, sessions[j]!.want.length)));
    for (const j of fast) expect(firstByteDifference(peers[j]!.received, sessions[j]!.want), `session ${j}`).toBe(-1);
    peers[2]!.resume();
    await receive(peers[2]!, sessions[2]!.want.length);
    expect(firstByteDifference(peers[2]!.received, sessions[2]!.want)).toBe(-1);
    expect(await refused.waitForClose(3000)).toBe(true);
    expect(refused.received).toHaveLength(0);
    expect(idle.received).toHaveLength(0);
    expect(idle.closed).toBe(false);
    for (const s of [...peers, idle]) s.close();
  });

  it('[WIRE-HS-6] [WIRE-CLOSE-1] [WIRE-FRAME-2] nothing is sent before both handshake frames; a refusal closes at once, an empty frame as soon as its header arrives', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    await sleep(300);
    expect(s.received).toHaveLength(0);
    s.send(encodeFrame(Buffer.from('zrs2.0')));
    s.send(frameHeader(8));
    s.send(Buffer.alloc(7)); // all but the last byte of the start tid
    await sleep(300);
    expect(s.received).toHaveLength(0);
    expect(s.closed).toBe(false);
    s.expectStream(Z64);
    s.send(Buffer.alloc(1));
    expect(await s.waitForTransactions(small.length)).toBe(true);
    s.close();

    // an empty protocol id, and an empty start tid, with nothing after their headers
    for (const frames of [[frameHeader(0)], [encodeFrame(Buffer.from('zrs2.0')), frameHeader(0)]]) {
      const e = await FakeSecondary.connect(p.address);
      e.send(Buffer.concat(frames));
      expect(await e.waitForClose(3000)).toBe(true);
      expect(e.received).toHaveLength(0);
    }
    // refused while positioning: a start tid above every tid
    const high = await FakeSecondary.connect(p.address);
    high.send(Buffer.concat([encodeFrame(Buffer.from('zrs2.0')), encodeFrame(after(tidOf(small.at(-1)!.tid), 1))]));
    expect(await high.waitForClose(3000)).toBe(true);
    expect(high.received).toHaveLength(0);
  });

  it('[WIRE-LIFE-1] one connection through the states of the first table: handshake, positioning, streaming, keep-alives, draining', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    // AWAIT_ID: a header over 8 bytes closes at once
    const big = await FakeSecondary.connect(p.address);
    big.send(frameHeader(9));
    expect(await big.waitForClose(3000)).toBe(true);
    expect(big.received).toHaveLength(0);
    // AWAIT_TID: a 9-byte start tid header closes at once
    const bigTid = await FakeSecondary.connect(p.address);
    bigTid.send(Buffer.concat([encodeFrame(Buffer.from('zrs2.1')), frameHeader(9)]));
    expect(await bigTid.waitForClose(3000)).toBe(true);
    expect(bigTid.received).toHaveLength(0);

    const s = await FakeSecondary.connect(p.address);
    s.send(encodeFrame(Buffer.from('zrs2.1')));
    await sleep(200);
    expect(s.received).toHaveLength(0); // AWAIT_TID
    s.expectStream(tidOf(small[4]!.tid));
    s.send(encodeFrame(tidOf(small[4]!.tid)));
    s.send(frameHeader(0)); // an empty frame while positioning: ignored
    expect(await s.waitForTransactions(small.length - 5)).toBe(true); // STREAMING
    expect(firstDifference(s.transactions, small.slice(5))).toBeNull();
    for (let i = 0; i < 3; i++) s.send(frameHeader(0)); // STREAMING: empty frames ignored
    await s.settle(300);
    expect(s.closed).toBe(false);
    expect(s.transactions).toHaveLength(small.length - 5);
    const want = small.slice(5).map((t) => t.tid);
    if (iut.features.has('control')) {
      const r = await p.node.request('commit', { records: [{ oid: '00000000000000a0', data: '80034e2e' }] });
      want.push(r.tid as string);
      expect(await s.waitForTransactions(want.length, 5000)).toBe(true);
    }
    s.send(encodeFrame(Buffer.from('x'))); // STREAMING → DRAINING → CLOSED
    expect(await s.waitForClose(5000)).toBe(true);
    expect(s.error).toBeNull();
    expect(tids(s)).toEqual(want);
    expect(s.atBoundary).toBe(true);
  });

  it('[WIRE-HS-11] [FS-TID-6] tids of dates that do not exist are served, and accepted as start tids', async (ctx) => {
    requires(ctx, iut, 'primary');
    const nov31 = tidFromParts({ year: 2026, month: 11, day: 31, hour: 10, minute: 0, second: 0 });
    const feb30 = tidFromParts({ year: 2027, month: 2, day: 30, hour: 10, minute: 0, second: 0 });
    const mar1 = tidFromParts({ year: 2027, month: 3, day: 1, hour: 10, minute: 0, second: 0 });
    const store = prepared(fixture('small', 'Data.fs'), (fs) =>
      append(fs, [nov31, feb30, mar1].map((tid, i) => ({ tid, records: [{ oid: oid(0x40 + i), serial: tid, data: DATA(`odd date ${i}`) }] }))),
    );
    const p = await startPrimary({ store });
    const all = await FakeSecondary.connect(p.address);
    all.handshake('zrs2.0', Z64);
    expect(await all.waitForTransactions(small.length + 3)).toBe(true);
    expect(tids(all).slice(-3)).toEqual([nov31, feb30, mar1].map(hex));
    const mid = await FakeSecondary.connect(p.address);
    mid.handshake('zrs2.0', nov31);
    expect(await mid.waitForTransactions(2)).toBe(true);
    await mid.settle();
    expect(tids(mid)).toEqual([feb30, mar1].map(hex));
    expect(mid.error).toBeNull();
    all.close();
    mid.close();
  });

  it('[WIRE-TXN-2] a transaction without data records goes out as T directly followed by C', async (ctx) => {
    requires(ctx, iut, 'primary');
    const empty = LATER;
    const next = after(LATER, 1000);
    const store = prepared(fixture('small', 'Data.fs'), (fs) =>
      append(fs, [
        { tid: empty, description: Buffer.from('nothing'), records: [] },
        { tid: next, records: [{ oid: oid(0x41), serial: next, data: DATA('after the empty one') }] },
      ]),
    );
    const p = await startPrimary({ store });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', tidOf(small.at(-1)!.tid));
    expect(await s.waitForTransactions(2)).toBe(true);
    await s.settle();
    expect(s.error).toBeNull();
    expect(tids(s)).toEqual([hex(empty), hex(next)]);
    const frames = payloads(s.received);
    // T, C, then T S data C
    expect(frames).toHaveLength(6);
    expect(frames[0]!.subarray(0, 7).toString('latin1')).toBe('(X\x01\x00\x00\x00T');
    expect(frames[1]!.subarray(0, 7).toString('latin1')).toBe('(X\x01\x00\x00\x00C');
    expect(Buffer.from(s.transactions[0]!.begin.description).toString()).toBe('nothing');
    s.close();
  });

  it('[FS-TXN-6] user and description that are not UTF-8 are served verbatim; an extension that cannot be unpickled leaves the transactions before it readable', async (ctx) => {
    requires(ctx, iut, 'primary');
    const odd = LATER;
    const bad = after(LATER, 1000);
    const user = Buffer.from('ff fe 80 2f 20 c3'.replace(/ /g, ''), 'hex');
    const description = Buffer.from('c328a0a1e28228', 'hex');
    const store = prepared(fixture('small', 'Data.fs'), (fs) =>
      append(fs, [
        { tid: odd, user, description, records: [{ oid: oid(0x42), serial: odd, data: DATA('odd metadata') }] },
        { tid: bad, extension: Buffer.from('not a pickle at all'), records: [{ oid: oid(0x43), serial: bad, data: DATA('unreadable extension') }] },
      ]),
    );
    const p = await startPrimary({ store });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    expect(await s.waitForTransactions(small.length + 1)).toBe(true);
    await s.settle(300);
    expect(s.error).toBeNull();
    expect(firstDifference(s.transactions.slice(0, small.length), small)).toBeNull();
    const t = s.transactions[small.length]!.begin;
    expect(hex(t.tid)).toBe(hex(odd));
    expect(hex(t.user)).toBe(hex(user));
    expect(hex(t.description)).toBe(hex(description));
    s.close();
  });

  it('[DEV-STATUS-1] [WIRE-TXN-4] [FS-COMMIT-5] [FS-STATUS-5] a file ending with an unfinished transaction, and holding a u one: neither is ever sent', async (ctx) => {
    requires(ctx, iut, 'primary');
    const store = prepared(fixture('incomplete', 'checkpoint.fs'), (fs) => markUndone(fs, 3));
    const p = await startPrimary({ store });
    const want = small.slice(0, 19).filter((_, i) => i !== 3);
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    expect(await s.waitForTransactions(want.length)).toBe(true);
    await s.settle(500);
    expect(s.error).toBeNull();
    expect(firstDifference(s.transactions, want)).toBeNull();
    expect(s.transactions.every((t) => t.begin.status === ' ')).toBe(true);
    expect(s.transactions.flatMap((t) => t.records).some((r) => hex(r.message.tid) === small[3]!.tid)).toBe(false);
    expect(s.atBoundary).toBe(true);
    s.close();
  });

  it.for(['checkpoint.fs', 'truncated-mid.fs'])(
    '[FS-RECOVER-2] [FS-RECOVER-4] [WIRE-TXN-4] a primary opening %s saves the damaged tail to Data.fs.tr0, serves the whole transactions, and commits the next one at the cut',
    async (name, ctx) => {
      requires(ctx, iut, 'primary');
      const original = readFileSync(fixture('incomplete', name));
      const r = FileStorageReader.open(fixture('incomplete', name));
      const whole = [...r.transactions()];
      r.close();
      const tpos = whole.at(-1)!.next;
      const p = await startPrimary({ store: prepared(fixture('incomplete', name)) });
      const s = await FakeSecondary.connect(p.address);
      s.handshake('zrs2.0', Z64);
      expect(await s.waitForTransactions(19)).toBe(true);
      await s.settle(300);
      expect(firstDifference(s.transactions, small.slice(0, 19))).toBeNull();
      const saved = `${p.fs}.tr0`;
      expect(existsSync(saved)).toBe(true);
      expect(readFileSync(saved).equals(original.subarray(tpos))).toBe(true);
      expect(statSync(p.fs).size).toBe(tpos);
      if (iut.features.has('control')) {
        const c = await p.node.request('commit', { records: [{ oid: '00000000000000a1', data: '80034e2e' }] });
        expect(c.ok).toBe(true);
        expect(await s.waitForTransactions(20, 5000)).toBe(true);
        expect(hex(s.transactions[19]!.begin.tid)).toBe(c.tid);
        const after_ = FileStorageReader.open(p.fs);
        const txns = [...after_.transactions()];
        after_.close();
        expect(txns).toHaveLength(20);
        expect(txns[19]!.offset).toBe(tpos);
      }
      s.close();
    },
  );

  it('[FS-BACK-2] [FS-BACK-4] [WIRE-DATA-3] [WIRE-DATA-4] backpointer chains: the data comes from the end of the chain, data_txn from one hop', async (ctx) => {
    requires(ctx, iut, 'primary');
    const t = [0, 1, 2, 3, 4, 5].map((i) => after(LATER, 1000 * (i + 1)));
    const d1 = DATA('first revision');
    let offsets: Record<string, number> = {};
    const store = prepared(fixture('small', 'Data.fs'), (fs) => {
      const at = (tpos: number) => recordOffsets(fs, tpos)[0]!;
      const [a] = append(fs, [{ tid: t[0]!, records: [{ oid: oid(0x50), serial: t[0]!, data: d1 }] }]);
      const [b] = append(fs, [{ tid: t[1]!, records: [{ oid: oid(0x50), serial: t[1]!, data: null, back: at(a!) }] }]);
      const [c] = append(fs, [{ tid: t[2]!, records: [{ oid: oid(0x50), serial: t[2]!, data: null, back: at(b!) }] }]);
      const [d] = append(fs, [{ tid: t[3]!, records: [{ oid: oid(0x51), serial: t[3]!, data: DATA('to be deleted') }] }]);
      const [e] = append(fs, [{ tid: t[4]!, records: [{ oid: oid(0x51), serial: t[4]!, data: null, back: 0 }] }]);
      append(fs, [{ tid: t[5]!, records: [{ oid: oid(0x51), serial: t[5]!, data: null, back: at(e!) }] }]);
      offsets = { a: a!, b: b!, c: c!, d: d! };
    });
    expect(Object.keys(offsets)).toHaveLength(4);
    const p = await startPrimary({ store });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', tidOf(small.at(-1)!.tid));
    expect(await s.waitForTransactions(6)).toBe(true);
    await s.settle();
    expect(s.error).toBeNull();
    const rec = (i: number) => {
      const r = s.transactions[i]!.records[0]!;
      return { type: r.message.type, dataTxn: r.message.dataTxn ? hex(r.message.dataTxn) : null, data: r.data ? hex(r.data) : null };
    };
    expect(rec(0)).toEqual({ type: 'S', dataTxn: null, data: hex(d1) });
    expect(rec(1)).toEqual({ type: 'S', dataTxn: hex(t[0]!), data: hex(d1) });
    // one hop: the tid of the record the backpointer names (itself a backpointer), not the chain's end
    expect(rec(2)).toEqual({ type: 'S', dataTxn: hex(t[1]!), data: hex(d1) });
    expect(rec(4)).toEqual({ type: 'S', dataTxn: null, data: null });
    // a backpointer to a record without data: an empty data frame, and the one-hop tid
    expect(rec(5)).toEqual({ type: 'S', dataTxn: hex(t[4]!), data: null });
    s.close();
  });

  it('[DEV-TIMEOUT-4] [WIRE-KA-5] a secondary that sends no keep-alives is not dropped, and an idle primary sends nothing, keep-alives included', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    expect(await s.waitForTransactions(small.length)).toBe(true);
    await s.settle(200);
    const before = s.received.length;
    await sleep(2000);
    expect(s.received.length).toBe(before);
    expect(s.closed).toBe(false);
    if (iut.features.has('control')) {
      const r = await p.node.request('commit', { records: [{ oid: '00000000000000a2', data: '80034e2e' }] });
      expect(await s.waitForTransactions(small.length + 1, 5000)).toBe(true);
      expect(hex(s.transactions.at(-1)!.begin.tid)).toBe(r.tid);
    }
    expect(s.error).toBeNull();
    s.close();
  });

  it('[WIRE-ADDR-2] [WIRE-ADDR-3] a bare PORT listens on every interface', async (ctx) => {
    requires(ctx, iut, 'primary');
    const { port } = await loopback();
    const p = await startPrimary({ store: 'small', listen: { kind: 'tcp', host: '', port } });
    const hosts = ['127.0.0.1', '127.0.0.2', ...Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).filter((a) => a.family === 'IPv4' && !a.internal).map((a) => a.address))];
    for (const host of hosts) {
      const s = await connect({ kind: 'tcp', host, port });
      s.handshake('zrs2.0', tidOf(small.at(-2)!.tid));
      expect(await s.waitForTransactions(1), `via ${host}`).toBe(true);
      expect(hex(s.transactions[0]!.begin.tid)).toBe(small.at(-1)!.tid);
      s.close();
    }
    expect(p.node.proc.exitCode).toBeNull();
  });

  it('[WIRE-ADDR-2] an [IPV6-ADDRESS]:PORT address', async (ctx) => {
    requires(ctx, iut, 'primary');
    const probe = net.createServer();
    const v6 = await new Promise<boolean>((resolve) => probe.once('error', () => resolve(false)).listen(0, '::1', () => resolve(true)));
    probe.close();
    if (!v6) ctx.skip('no IPv6 loopback on this host');
    // readiness by port is checked over IPv4; over IPv6 only the control channel can say
    if (iut.primary?.ready.kind !== 'control') ctx.skip(`unsupported: ${iut.name} reports readiness only by an IPv4 port`);
    const { port } = await loopback();
    const address: Address = { kind: 'tcp', host: '::1', port };
    const p = await startPrimary({ store: 'small', listen: address });
    expect(p.node.ready?.listen).toBe(`[::1]:${port}`);
    const s = await connect(address);
    s.handshake('zrs2.0', Z64);
    expect(await s.waitForTransactions(small.length)).toBe(true);
    s.close();
  });

  it('[WIRE-ADDR-1] [WIRE-ADDR-2] a path is a Unix domain socket, carrying the same stream', async (ctx) => {
    requires(ctx, iut, 'primary', 'unix');
    const address: Address = { kind: 'unix', path: path.join(workdir(), 'primary.sock') };
    await startPrimary({ store: 'small', listen: address });
    const want = readFileSync(transcript('small-from-z64'));
    const s = await connect(address);
    s.handshake('zrs2.0', Z64);
    expect(firstByteDifference(await receive(s, want.length), want)).toBe(-1);
    s.close();
  });

  it('[FS-MAGIC-6] [FS-MAGIC-3] a primary on an empty file writes the magic FS30 into it, and so does one on a new file', async (ctx) => {
    requires(ctx, iut, 'primary');
    for (const build of [(fs: string) => writeFileSync(fs, Buffer.alloc(0)), null]) {
      const p = await startPrimary({ store: build ? prepared(null, build) : null });
      const s = await FakeSecondary.connect(p.address);
      s.handshake('zrs2.0', Z64); // waits for a first transaction; proves the file was opened
      await sleep(200);
      expect(readFileSync(p.fs).subarray(0, 4).toString('latin1')).toBe('FS30');
      if (iut.features.has('control')) {
        await p.node.request('commit', { records: [{ oid: '0000000000000000', data: '80034e2e' }] });
        expect(await s.waitForTransactions(1, 5000)).toBe(true);
        expect(readFileSync(p.fs).subarray(0, 4).toString('latin1')).toBe('FS30');
      } else {
        expect(readFileSync(p.fs)).toHaveLength(4);
      }
      s.close();
      await p.node.stop();
    }
  });
});

describe(`primary with blobs: ${iut.name}`, () => {
  const blobsStore = fixture('blobs', 'Data.fs');

  /** A copy of the blobs store (file and blob directory) changed by `build`. */
  const blobStore = (build: (fs: string, blobDir: string) => void) =>
    prepared(blobsStore, (fs, dir) => {
      cpSync(fixture('blobs', 'blobs'), path.join(dir, 'blobs'), { recursive: true });
      build(fs, path.join(dir, 'blobs'));
    });

  it('[FS-BLOB-7] a record is a blob record exactly when its first pickle is the class ZODB.blob.Blob', async (ctx) => {
    requires(ctx, iut, 'primary', 'blobs');
    const cls = (module: string, name: string) => Buffer.from(`c${module}\n${name}\n`, 'latin1');
    const state = Buffer.from('80034e2e', 'hex');
    const short = (s: string) => Buffer.concat([Buffer.from([0x8c, s.length]), Buffer.from(s, 'latin1')]);
    const candidates: [string, Buffer, boolean][] = [
      ['protocol 3, as ZODB writes it', Buffer.concat([Buffer.from('8003', 'hex'), cls('ZODB.blob', 'Blob'), Buffer.from('q\x00.', 'latin1'), state]), true],
      ['protocol 1, no PROTO', Buffer.concat([cls('ZODB.blob', 'Blob'), Buffer.from('.', 'latin1'), state]), true],
      ['protocol 4, STACK_GLOBAL', Buffer.concat([Buffer.from('8004', 'hex'), short('ZODB.blob'), short('Blob'), Buffer.from([0x93, 0x2e]), state]), true],
      ['another class of ZODB.blob', Buffer.concat([Buffer.from('8003', 'hex'), cls('ZODB.blob', 'BlobFile'), Buffer.from('q\x00.', 'latin1'), state]), false],
      ['another module', Buffer.concat([Buffer.from('8003', 'hex'), cls('ZODB.blobs', 'Blob'), Buffer.from('q\x00.', 'latin1'), state]), false],
      ['ZODB.blob only later in the data', Buffer.concat([Buffer.from('8003', 'hex'), cls('persistent.mapping', 'PersistentMapping'), Buffer.from('q\x00.', 'latin1'), Buffer.from('8003', 'hex'), pickleText('ZODB.blob\nBlob\n')]), false],
    ];
    const tid = LATER;
    const store = blobStore((fs, blobDir) => {
      const dir = new BlobDirectory(blobDir);
      candidates.forEach((_, i) => {
        const file = dir.blobPath(oid(0x60 + i), tid);
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, `blob content ${i}`);
      });
      append(fs, [{ tid, records: candidates.map(([, data], i) => ({ oid: oid(0x60 + i), serial: tid, data })) }]);
    });
    const p = await startPrimary({ store, blobs: true });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.1', tidOf(expectedTransactions('blobs').at(-1)!.tid));
    expect(await s.waitForTransactions(1)).toBe(true);
    expect(s.error).toBeNull();
    const records = s.transactions[0]!.records;
    expect(records).toHaveLength(candidates.length);
    candidates.forEach(([what, data, blob], i) => {
      const r = records[i]!;
      expect(r.message.type, what).toBe(blob ? 'B' : 'S');
      expect(hex(r.data!), what).toBe(hex(data));
      if (blob) expect(Buffer.concat(r.chunks).toString(), what).toBe(`blob content ${i}`);
    });
    s.close();
  });

  it('[WIRE-BLOB-4] [DEV-BLOBSRC-1] a blob file the primary lacks: the record goes out as a plain S with its data, never as a B of 0 blocks', async (ctx) => {
    requires(ctx, iut, 'primary', 'blobs');
    const expected = expectedTransactions('blobs');
    // the 100-byte blob of oid 4, first revision
    const missing = { oid: oid(4), tid: tidOf('040d453df9802e11') };
    const store = blobStore((_, blobDir) => rmSync(new BlobDirectory(blobDir).blobPath(missing.oid, missing.tid)));
    const p = await startPrimary({ store, blobs: true });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.1', Z64);
    expect(await s.waitForTransactions(expected.length)).toBe(true);
    await s.settle();
    expect(s.error).toBeNull();
    expect(firstDifference(s.transactions, expected)).toBeNull();
    const records = s.transactions.flatMap((t) => t.records);
    const lacking = records.find((r) => hex(r.message.oid) === hex(missing.oid) && hex(r.message.tid) === hex(missing.tid))!;
    expect(lacking.message.type).toBe('S');
    expect(lacking.data).not.toBeNull();
    // the only B of 0 blocks is the real empty blob (oid 2)
    const zero = records.filter((r) => r.message.type === 'B' && (r.message as { blocks: number }).blocks === 0);
    expect(zero.map((r) => hex(r.message.oid))).toEqual(['0000000000000002']);
    s.close();
  });

  it('[FS-BLOB-2] [FS-BLOB-5] [FS-BLOB-6] a blob directory in the lawn layout (.layout with white space around the word) is served byte for byte as the bushy one', async (ctx) => {
    requires(ctx, iut, 'primary', 'blobs');
    const store = blobStore((_, blobDir) => {
      const bushy = new BlobDirectory(blobDir);
      const files: { from: string; oid: string; tid: string }[] = [];
      const walk = (d: string) => {
        for (const e of readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          if (e.isDirectory() && e.name !== 'tmp') walk(p);
          else if (e.name.endsWith('.blob')) {
            const rel = path.relative(blobDir, p).split(path.sep);
            files.push({ from: p, oid: rel.slice(0, 8).map((x) => x.slice(2)).join(''), tid: e.name.slice(2, -5).padStart(16, '0') });
          }
        }
      };
      walk(blobDir);
      expect(files.length).toBeGreaterThan(5);
      expect(bushy.layout).toBe('bushy');
      for (const f of files) {
        const to = path.join(blobDir, blobRepr(Buffer.from(f.oid, 'hex')), `${blobRepr(Buffer.from(f.tid, 'hex'))}.blob`);
        mkdirSync(path.dirname(to), { recursive: true });
        renameSync(f.from, to);
      }
      rmSync(path.join(blobDir, '0x00'), { recursive: true });
      writeFileSync(path.join(blobDir, '.layout'), '  lawn\n');
    });
    const want = readFileSync(transcript('blobs-from-z64'));
    const p = await startPrimary({ store, blobs: true });
    expect(existsSync(path.join(p.blobDir!, '0x02'))).toBe(true);
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.1', Z64);
    expect(firstByteDifference(await receive(s, want.length), want)).toBe(-1);
    s.close();
  });
});
