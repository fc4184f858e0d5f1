// Conformance of a primary, judged by fake secondaries: byte identity with what real zc.zrs
// sent, addresses, concurrent sessions, and what it does with files the harness prepared
// (FS21, unfinished and obsolete transactions, backpointer chains, odd tids and metadata,
// tids that do not increase, blob records and blob directories).
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { FileStorageWriter, type RecordToWrite } from '../../reference/filestorage/writer.ts';
import { encodeFrame, frameHeader } from '../../reference/framing.ts';
import { type Address } from '../../reference/net/address.ts';
import { pickleToManifestJson } from '../../reference/pickle/json.ts';
import { Op } from '../../reference/pickle/opcodes.ts';
import { StreamDecoder } from '../../reference/stream.ts';
import { tidFromParts, Z64 } from '../../reference/timestamp.ts';
import { check, HarnessError, independently } from '../checks.ts';
import { commitOn, loopback, markUndone, primaryIut, requires, setStatus, startPrimary, workdir } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { checkTransactions, expectedTransactions, firstDifference } from '../expected.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';
import { blobDirFiles, blobPlace } from '../blob-places.ts';
import { after, hex, LATER, oid, tidOf, tids } from '../tids.ts';
import * as floors from '../pickle-limits.ts';
import type { PyDict } from '../../reference/pickle/values.ts';

const iut = primaryIut();
const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
const transcript = (name: string) => fixture('transcripts', `${name}.zrs`);
const small = expectedTransactions('small');
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

type Appended = Parameters<typeof append>[1][number];

/** A transaction whose one record, of oid `n`, holds DATA(`text`); `fields` as for append. */
const oneRecord = (tid: Buffer, n: number, text: string, fields: Omit<Appended, 'tid' | 'records'> = {}): Appended => ({ tid, ...fields, records: [{ oid: oid(n), serial: tid, data: DATA(text) }] });

/** A copy of the small store with `txns` appended. */
const smallWith = (txns: Appended[]) => prepared(fixture('small', 'Data.fs'), (fs) => append(fs, txns));

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

/**
 * Swaps the tids of the `k`-th and `k+1`-th transactions of a file, in their headers and in
 * their data records (DEV-TIDORDER-3's fixture): the file's tids then do not increase.
 */
function swapTids(fs: string, k: number): void {
  const r = FileStorageReader.open(fs);
  const txns = [...r.transactions()].slice(k, k + 2).map((t) => ({ offset: t.offset, tid: Buffer.from(t.tid), records: [...r.records(t)].map((d) => d.offset) }));
  r.close();
  const bytes = readFileSync(fs);
  const [a, b] = txns as [(typeof txns)[0], (typeof txns)[0]];
  for (const [t, tid] of [[a, b.tid], [b, a.tid]] as const) {
    tid.copy(bytes, t.offset); // the transaction header starts with its tid
    for (const d of t.records) tid.copy(bytes, d + 8); // a data record: oid, then tid
  }
  writeFileSync(fs, bytes);
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

/** How many bytes of `bytes` are whole frames. */
function framedLength(bytes: Buffer): number {
  return payloads(bytes).reduce((n, p) => n + 4 + p.length, 0);
}

/** Waits until `n` bytes arrived (or the close, or the timeout), then for quiet. */
async function receive(s: FakeSecondary, n: number, timeoutMs = 20_000): Promise<Buffer> {
  const until = Date.now() + timeoutMs;
  while (s.received.length < n && !s.closed && Date.now() < until) await sleep(10);
  await s.settle(200);
  return s.received;
}

/**
 * A fake secondary that sent the handshake (`protocol`, zrs2.0 unless said, and `start`) to the
 * primary at `a`, waited for `n` transactions (at most `timeoutMs`) and for quiet, and verified
 * what came.
 */
async function streamed(a: Address, start: Buffer, n: number, o: { protocol?: string; timeoutMs?: number } = {}): Promise<FakeSecondary> {
  const s = await FakeSecondary.connect(a);
  s.handshake(o.protocol ?? 'zrs2.0', start);
  await s.waitForTransactions(n, o.timeoutMs);
  await s.settle();
  s.verify();
  return s;
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

// ---- byte identity, and which rule a difference breaks ----

/** Argument of each pickle opcode that has one: a fixed size, a length prefix, or lines. */
const ARGUMENT: Record<number, number | 'len1' | 'len4' | 'len8' | 'line' | 'line2'> = {
  [Op.BININT1]: 1, [Op.BINGET]: 1, [Op.BINPUT]: 1, [Op.PROTO]: 1, 0x82: 1,
  [Op.BININT2]: 2, 0x83: 2,
  [Op.BININT]: 4, [Op.LONG_BINGET]: 4, [Op.LONG_BINPUT]: 4, 0x84: 4,
  [Op.BINFLOAT]: 8, [Op.FRAME]: 8,
  [Op.SHORT_BINSTRING]: 'len1', [Op.SHORT_BINBYTES]: 'len1', [Op.SHORT_BINUNICODE]: 'len1', [Op.LONG1]: 'len1',
  [Op.BINSTRING]: 'len4', [Op.BINUNICODE]: 'len4', [Op.BINBYTES]: 'len4', [Op.LONG4]: 'len4',
  [Op.BINUNICODE8]: 'len8', [Op.BINBYTES8]: 'len8', 0x96: 'len8',
  [Op.FLOAT]: 'line', [Op.INT]: 'line', [Op.LONG]: 'line', [Op.PERSID]: 'line', [Op.STRING]: 'line', [Op.UNICODE]: 'line', [Op.GET]: 'line', [Op.PUT]: 'line',
  [Op.GLOBAL]: 'line2', [Op.INST]: 'line2',
};

/** The opcodes of a pickle, each with its bytes, up to its STOP; `rest` counts the bytes after it. */
function pickleOps(b: Buffer): { ops: { op: number; bytes: Buffer }[]; rest: number } {
  const ops: { op: number; bytes: Buffer }[] = [];
  let at = 0;
  while (at < b.length) {
    const op = b[at]!;
    const arg = ARGUMENT[op];
    let end = at + 1;
    if (typeof arg === 'number') end += arg;
    else if (arg === 'len1') end += 1 + (b[at + 1] ?? 0);
    else if (arg === 'len4') end += 4 + (at + 5 <= b.length ? b.readUInt32LE(at + 1) : 0);
    else if (arg === 'len8') end += 8 + (at + 9 <= b.length ? Number(b.readBigUInt64LE(at + 1)) : 0);
    else if (arg === 'line' || arg === 'line2') {
      for (let lines = arg === 'line' ? 1 : 2; lines > 0 && end < b.length; end++) if (b[end] === 0x0a) lines--;
    }
    ops.push({ op, bytes: b.subarray(at, Math.min(end, b.length)) });
    at = end;
    if (op === Op.STOP) break;
  }
  return { ops, rest: Math.max(0, b.length - at) };
}

const NOT_PROTOCOL_1 = new Set<number>([Op.PROTO, Op.FRAME, Op.MEMOIZE, Op.PUT, Op.BINPUT, Op.LONG_BINPUT, Op.GET, Op.BINGET, Op.LONG_BINGET]);
const CONTAINER = new Set<number>([Op.MARK, Op.EMPTY_TUPLE, Op.TUPLE, Op.TUPLE1, Op.TUPLE2, Op.TUPLE3, Op.EMPTY_LIST, Op.APPEND, Op.APPENDS, Op.LIST, Op.EMPTY_DICT, Op.SETITEM, Op.SETITEMS, Op.DICT]);

/**
 * The rule a control message breaks when it decodes to what real zc.zrs sent but its bytes
 * differ: the pickle's form (WIRE-PICKLE-1), a container's encoding (WIRE-PICKLE-3), or a
 * value's (WIRE-PICKLE-2).
 */
function encodingFault(got: Buffer, want: Buffer): { id: string; why: string } {
  const g = pickleOps(got);
  const w = pickleOps(want);
  const odd = g.ops.find((o) => NOT_PROTOCOL_1.has(o.op));
  if (odd) return { id: 'WIRE-PICKLE-1', why: `opcode 0x${odd.op.toString(16)} has no place in a standalone protocol-1 pickle` };
  if (g.rest) return { id: 'WIRE-PICKLE-1', why: `${g.rest} bytes after STOP` };
  let i = 0;
  while (i < g.ops.length && i < w.ops.length && g.ops[i]!.bytes.equals(w.ops[i]!.bytes)) i++;
  const a = g.ops[i];
  const b = w.ops[i];
  const why = `opcode #${i}: ${a ? a.bytes.toString('hex') : 'nothing'}, where zc.zrs writes ${b ? b.bytes.toString('hex') : 'nothing'}`;
  return { id: (a && CONTAINER.has(a.op)) || (b && CONTAINER.has(b.op)) ? 'WIRE-PICKLE-3' : 'WIRE-PICKLE-2', why };
}

/**
 * Checks, frame by frame, that `got` is `want` (both streams after the handshake with start tid
 * `startTid`, whose content was already compared): the first frame that differs blames the
 * rule for its kind.
 */
function checkSameFrames(got: Buffer, want: Buffer, startTid: Buffer): void {
  const g = payloads(got);
  const w = payloads(want);
  const decoder = new StreamDecoder(startTid, { checkChecksums: false });
  for (let i = 0; i < Math.max(g.length, w.length); i++) {
    const kind = i < w.length ? decoder.expecting : 'message';
    if (i < w.length) decoder.push(w[i]!);
    const a = g[i];
    const b = w[i];
    if (a && b && a.equals(b)) continue;
    const where = `frame #${i} (a ${kind} frame)`;
    if (!a || !b) check('WIRE-MSG-1', () => expect(g.length, `${where}: the stream has ${g.length} frames where zc.zrs sent ${w.length}`).toBe(w.length));
    else if (kind === 'message') {
      const f = encodingFault(a, b);
      check(f.id, () => expect.fail(`${where}: ${f.why}`));
    } else check(kind === 'chunk' ? 'WIRE-BLOB-3' : 'WIRE-DATA-1', () => expect(a.toString('hex'), where).toBe(b.toString('hex')));
  }
}

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
    '[WIRE-PICKLE-1] [WIRE-PICKLE-2] [WIRE-PICKLE-3] [WIRE-MSG-1] [WIRE-MSG-2] [WIRE-MSG-3] [WIRE-DATA-1] [WIRE-DATA-3] [WIRE-DATA-4] [WIRE-FRAME-1] [FS-INDEX-2] %s: the stream is byte for byte the one real zc.zrs sent',
    async ([name, store, blobs], ctx) => {
      requires(ctx, iut, 'primary', ...(blobs ? (['blobs'] as const) : []));
      if (existsSync(fixture(store, 'Data.fs.index'))) throw new HarnessError(`${store} must be served without an index file`);
      const want = readFileSync(transcript(name));
      const sent = readFileSync(`${transcript(name)}.sent`);
      const startTid = sent.subarray(14, 22);
      // the store has no index file: a primary that needs one cannot start
      const p = await startPrimary({ store, blobs, startFailure: 'FS-INDEX-2' });
      const s = await FakeSecondary.connect(p.address);
      s.expectStream(startTid);
      s.send(sent);
      const got = await receive(s, want.length);
      s.verify(); // what does not decode, in the grammar, with right digests, blames its own rule
      checkTransactions(s.transactions, expectedTransactions(store, hex(startTid)));
      check('WIRE-FRAME-1', () => expect(framedLength(got), 'bytes that are whole frames').toBe(got.length));
      checkSameFrames(got, want, startTid);
      // proved above: verify() decoded every message in the grammar, and checkSameFrames found
      // every frame, each control message's pickle included, to be zc.zrs's to the byte
      for (const id of ['WIRE-MSG-1', 'WIRE-MSG-2', 'WIRE-MSG-3', 'WIRE-PICKLE-1', 'WIRE-PICKLE-2', 'WIRE-PICKLE-3']) check(id, () => undefined);
      check('WIRE-TXN-3', () => expect(s.closed, 'the primary ended the stream by itself').toBe(false));
      s.close();
    },
  );

  it('[FS-MAGIC-2] an FS21 file is served exactly as the same file with the FS30 magic', async (ctx) => {
    requires(ctx, iut, 'primary');
    // a refusal of the FS21 file is FS-MAGIC-2's failure; one of the FS30 file is not
    const fs21 = await startPrimary({ store: prepared(fixture('fs21', 'small-as-fs21.fs')), startFailure: 'FS-MAGIC-2' });
    const fs30 = await startPrimary({ store: 'small', startFailure: 'CONF-PROC-5' });
    const stream = async (a: Address, n: number) => {
      const s = await FakeSecondary.connect(a);
      s.handshake('zrs2.0', Z64);
      await s.waitForTransactions(small.length);
      const got = await receive(s, n);
      // the FS30 stream is the baseline: it must itself be right (its faults are the primary's own)
      if (a === fs30.address) {
        s.verify();
        checkTransactions(s.transactions, small);
      }
      s.close();
      return got;
    };
    const want = await stream(fs30.address, 0);
    const got = await stream(fs21.address, want.length);
    expect(firstByteDifference(got, want), `first differing byte of ${got.length} (the FS30 file gave ${want.length})`).toBe(-1);
  });

  it('[WIRE-ADDR-5] concurrent sessions each get their own handshake, position and checksum', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const names = ['small-from-z64', 'small-after-txn9', 'small-zrs21-from-z64', 'small-from-z64'];
    const handshakes = names.map((name) => readFileSync(`${transcript(name)}.sent`));
    // what this primary sends for each handshake on a connection of its own: the baselines, each
    // checked against what it must send (their faults are the primary's own, not WIRE-ADDR-5's)
    const baseline = new Map<string, Buffer>();
    for (const [i, name] of names.entries()) {
      if (baseline.has(name)) continue;
      const sent = handshakes[i]!;
      const want = expectedTransactions('small', hex(sent.subarray(14, 22)));
      const s = await FakeSecondary.connect(p.address);
      s.expectStream(sent.subarray(14, 22));
      s.send(sent);
      await s.waitForTransactions(want.length);
      baseline.set(name, await receive(s, 0));
      s.verify();
      checkTransactions(s.transactions, want);
      s.close();
    }
    const alone = names.map((name) => baseline.get(name)!);
    const peers = await Promise.all(names.map(() => FakeSecondary.connect(p.address)));
    // a connection that never finishes its handshake, and one that is refused
    const idle = await FakeSecondary.connect(p.address);
    idle.send(encodeFrame(Buffer.from('zrs2.0')));
    const refused = await FakeSecondary.connect(p.address);
    peers[2]!.pause(); // a slow reader must not hold the others back
    // interleave the handshakes byte by byte
    for (let i = 0; i < 22; i++) peers.forEach((s, j) => s.send(handshakes[j]!.subarray(i, i + 1)));
    refused.send(encodeFrame(Buffer.from('zrs2.9')));
    const fast = [0, 1, 3];
    await Promise.all(fast.map((j) => receive(peers[j]!, alone[j]!.length)));
    for (const j of fast) expect(firstByteDifference(peers[j]!.received, alone[j]!), `session ${j}, as on a connection of its own`).toBe(-1);
    peers[2]!.resume();
    await receive(peers[2]!, alone[2]!.length);
    expect(firstByteDifference(peers[2]!.received, alone[2]!), 'the slow session, as on a connection of its own').toBe(-1);
    expect(await refused.waitForClose(3000)).toBe(true);
    expect(refused.received).toHaveLength(0);
    expect(idle.received).toHaveLength(0);
    expect(idle.closed).toBe(false);
    for (const s of [...peers, idle]) s.close();
  });

  it('[WIRE-HS-6] [WIRE-FRAME-2] [WIRE-CLOSE-1] nothing is sent before both handshake frames; an empty frame acts as soon as its header arrives; a refusal closes at once', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await FakeSecondary.connect(p.address);
    await sleep(300);
    check('WIRE-HS-6', () => expect(s.received, 'bytes sent before any handshake frame').toHaveLength(0));
    s.send(encodeFrame(Buffer.from('zrs2.0')));
    s.send(frameHeader(8));
    s.send(Buffer.alloc(7)); // all but the last byte of the start tid
    await sleep(300);
    check('WIRE-HS-6', () => expect(s.received, 'bytes sent before the start tid was whole').toHaveLength(0));
    check('WIRE-HS-6', () => expect(s.closed, 'closed while the start tid was arriving').toBe(false));
    s.expectStream(Z64);
    s.send(Buffer.alloc(1));
    const streamed = await s.waitForTransactions(small.length);
    s.verify();
    check('WIRE-POS-1', () => expect(streamed, 'the stream after a start tid that came in two parts').toBe(true));
    s.close();

    // an empty protocol id, and an empty start tid, with nothing after their headers
    for (const [what, frames] of [
      ['an empty protocol id, header only', [frameHeader(0)]],
      ['an empty start tid, header only', [encodeFrame(Buffer.from('zrs2.0')), frameHeader(0)]],
    ] as const) {
      const e = await FakeSecondary.connect(p.address);
      e.send(Buffer.concat(frames));
      const closed = await e.waitForClose(3000);
      check('WIRE-FRAME-2', () => expect(closed, `${what}: not refused within 3 s`).toBe(true));
      check('WIRE-HS-12', () => expect(e.received, `${what}: bytes sent before the refusal`).toHaveLength(0));
    }
    // refused while positioning: a start tid above every tid
    const high = await FakeSecondary.connect(p.address);
    high.send(Buffer.concat([encodeFrame(Buffer.from('zrs2.0')), encodeFrame(after(tidOf(small.at(-1)!.tid), 1))]));
    const closed = await high.waitForClose(3000);
    check('WIRE-CLOSE-1', () => expect(closed, 'a start tid above every tid: not refused within 3 s').toBe(true));
    check('WIRE-CLOSE-1', () => expect(high.received, 'bytes sent before the refusal').toHaveLength(0));
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
    s.verify();
    expect(firstDifference(s.transactions, small.slice(5))).toBeNull();
    for (let i = 0; i < 3; i++) s.send(frameHeader(0)); // STREAMING: empty frames ignored
    await s.settle(300);
    expect(s.closed).toBe(false);
    expect(s.transactions).toHaveLength(small.length - 5);
    const want = small.slice(5).map((t) => t.tid);
    if (iut.features.has('control')) {
      want.push(await commitOn(p.node, { records: [{ oid: '00000000000000a0', data: '80034e2e' }] }));
      expect(await s.waitForTransactions(want.length, 5000)).toBe(true);
    }
    s.send(encodeFrame(Buffer.from('x'))); // STREAMING → DRAINING → CLOSED
    expect(await s.waitForClose(5000)).toBe(true);
    s.verify();
    expect(tids(s)).toEqual(want);
    expect(s.atBoundary).toBe(true);
  });

  it('[WIRE-HS-11] [FS-TID-6] tids of dates that do not exist are served, and accepted as start tids', async (ctx) => {
    requires(ctx, iut, 'primary');
    const nov31 = tidFromParts({ year: 2026, month: 11, day: 31, hour: 10, minute: 0, second: 0 });
    const feb30 = tidFromParts({ year: 2027, month: 2, day: 30, hour: 10, minute: 0, second: 0 });
    const mar1 = tidFromParts({ year: 2027, month: 3, day: 1, hour: 10, minute: 0, second: 0 });
    const store = smallWith([nov31, feb30, mar1].map((tid, i) => oneRecord(tid, 0x40 + i, `odd date ${i}`)));
    const p = await startPrimary({ store, startFailure: 'FS-TID-6' });
    const all = await streamed(p.address, Z64, small.length + 3);
    check('FS-TID-6', () => expect(tids(all), 'the file, whose last three tids are of dates that do not exist').toEqual([...small.map((t) => t.tid), ...[nov31, feb30, mar1].map(hex)]));
    const mid = await streamed(p.address, nov31, 2);
    check('WIRE-HS-11', () => expect(tids(mid), 'after the start tid of November 31').toEqual([feb30, mar1].map(hex)));
    all.close();
    mid.close();
  });

  it('[DEV-BLOBID-1] a record whose first pickle calls os.mkdir is served as it is, and nothing is called', async (ctx) => {
    requires(ctx, iut, 'primary');
    const target = path.join(workdir(), 'made-by-the-primary');
    const tid = LATER;
    // the first pickle is os.mkdir(target), the second the state: what a blob test that unpickles runs
    const data = Buffer.concat([Buffer.from('cos\nmkdir\n(', 'latin1'), pickleText(target).subarray(0, -1), Buffer.from('tR.N.', 'latin1')]);
    const p = await startPrimary({ store: smallWith([{ tid, records: [{ oid: oid(0x44), serial: tid, data }] }]) });
    const s = await streamed(p.address, tidOf(small.at(-1)!.tid), 1);
    s.close();
    check('DEV-BLOBID-1', () => expect(existsSync(target), `${target}, which the record's first pickle makes, exists`).toBe(false));
    const sent = s.transactions[0]!.records[0]!;
    expect([sent.message.type, hex(sent.data ?? Buffer.alloc(0))], 'the record sent').toEqual(['S', hex(data)]);
  });

  it('[WIRE-TXN-2] a transaction without data records goes out as T directly followed by C', async (ctx) => {
    requires(ctx, iut, 'primary');
    const empty = LATER;
    const next = after(LATER, 1000);
    const p = await startPrimary({ store: smallWith([{ tid: empty, description: Buffer.from('nothing'), records: [] }, oneRecord(next, 0x41, 'after the empty one')]) });
    const s = await streamed(p.address, tidOf(small.at(-1)!.tid), 2);
    expect(tids(s)).toEqual([hex(empty), hex(next)]);
    const frames = payloads(s.received);
    // T, C, then T S data C
    expect(frames).toHaveLength(6);
    expect(frames[0]!.subarray(0, 7).toString('latin1')).toBe('(X\x01\x00\x00\x00T');
    expect(frames[1]!.subarray(0, 7).toString('latin1')).toBe('(X\x01\x00\x00\x00C');
    expect(Buffer.from(s.transactions[0]!.begin.description).toString()).toBe('nothing');
    s.close();
  });

  it('[FS-TXN-6] [DEV-EXTASCII-2] user and description that are not UTF-8 are served verbatim; an extension that cannot be unpickled leaves the transactions before it readable, and the connection closes before its T', async (ctx) => {
    requires(ctx, iut, 'primary');
    const odd = LATER;
    const bad = after(LATER, 1000);
    const user = Buffer.from('ff fe 80 2f 20 c3'.replace(/ /g, ''), 'hex');
    const description = Buffer.from('c328a0a1e28228', 'hex');
    const store = smallWith([oneRecord(odd, 0x42, 'odd metadata', { user, description }), oneRecord(bad, 0x43, 'unreadable extension', { extension: Buffer.from('not a pickle at all') })]);
    const p = await startPrimary({ store, startFailure: 'FS-TXN-6' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await s.waitForTransactions(small.length + 1);
    const closed = await s.waitForClose(5000);
    await s.settle();
    if (s.transactions.length <= small.length) s.verify(); // a fault before the transaction in question is its own
    check('FS-TXN-6', () => expect(tids(s).slice(0, small.length + 1), 'the transactions before the one whose extension cannot be unpickled').toEqual([...small.map((t) => t.tid), hex(odd)]));
    checkTransactions(s.transactions.slice(0, small.length), small);
    const t = s.transactions[small.length]!.begin;
    check('WIRE-TXN-6', () => expect([hex(t.user), hex(t.description)], 'user and description that are not UTF-8').toEqual([hex(user), hex(description)]));
    check('DEV-EXTASCII-2', () => {
      expect(s.error?.message ?? null, 'what the primary sent for the transaction whose extension cannot be unpickled').toBeNull();
      expect(tids(s), 'the transaction whose extension cannot be unpickled was sent').not.toContain(hex(bad));
      expect(closed, 'the connection was still open 5 s after the transaction before it').toBe(true);
    });
  });

  it('[DEV-EXTASCII-3] an extension that unpickles to a list, or to a number: the connection closes before its T', async (ctx) => {
    requires(ctx, iut, 'primary');
    const list = LATER;
    const number = after(LATER, 1000);
    const store = smallWith([
      oneRecord(list, 0x44, 'extension [1]', { extension: Buffer.from('80035d71004b01612e', 'hex') }), // [1]
      oneRecord(number, 0x45, 'extension 5', { extension: Buffer.from('80034b052e', 'hex') }), // 5
    ]);
    const p = await startPrimary({ store });
    for (const [what, start] of [['[1]', tidOf(small.at(-1)!.tid)], ['5', list]] as const) {
      const s = await FakeSecondary.connect(p.address);
      s.handshake('zrs2.0', start);
      const closed = await s.waitForClose(5000);
      await s.settle();
      expect(s.error?.message ?? null, `the primary sent a T with the extension ${what} in the place of a dict`).toBeNull();
      expect(tids(s), `transactions sent before the one whose extension is ${what}`).toEqual([]);
      expect(closed, `the connection was still open 5 s after reaching the extension ${what}`).toBe(true);
      s.close();
    }
  });

  it('[DEV-EXTASCII-1] [DEV-EXTASCII-4] Python 2 8-bit strings in a stored extension are decoded: text when they are ASCII, bytes otherwise', async (ctx) => {
    requires(ctx, iut, 'primary');
    const ascii = LATER;
    const latin = after(LATER, 1000);
    // protocol-1 pickles of {'k': 'a'} and {'k': '\xe9'}, both strings as SHORT_BINSTRING (Python 2 str)
    const store = smallWith([
      oneRecord(ascii, 0x46, 'ascii 8-bit string', { extension: Buffer.from('7d55016b550161732e', 'hex') }),
      oneRecord(latin, 0x47, '8-bit string with e9', { extension: Buffer.from('7d55016b5501e9732e', 'hex') }),
    ]);
    const p = await startPrimary({ store });
    const s = await streamed(p.address, tidOf(small.at(-1)!.tid), 2, { timeoutMs: 5000 });
    check('DEV-EXTASCII-1', () => expect(tids(s), 'the transactions with Python 2 strings in their extension that were sent').toEqual([ascii, latin].map(hex)));
    const extension = (i: number) => JSON.stringify(pickleToManifestJson(s.transactions[i]!.begin.extension));
    check('DEV-EXTASCII-4', () => {
      expect(extension(0), "the extension {'k': 'a'} stored with a Python 2 string").toBe(JSON.stringify({ dict: [['k', 'a']] }));
      expect(extension(1), "the extension {'k': '\\xe9'} stored with a Python 2 string").toBe(JSON.stringify({ dict: [['k', { bytes: 'e9' }]] }));
    });
    s.close();
  });

  it('[WIRE-PICKLE-16] [WIRE-PICKLE-17] [WIRE-PICKLE-18] stored extensions at the decoding floors (lists 400 deep, a 4300-digit integer, 449 memo fetches of a 1000-item list) are sent', async (ctx) => {
    requires(ctx, iut, 'primary');
    const cases = [
      { id: 'WIRE-PICKLE-16', stored: floors.storedExtension.depth(), sent: (e: PyDict) => expect(floors.listDepth(e.get('d')), 'depth of the nested lists sent').toBe(floors.DEPTH) },
      { id: 'WIRE-PICKLE-17', stored: floors.storedExtension.integer(), sent: (e: PyDict) => expect(e.get('i') === floors.BIG, 'the 4300-digit integer sent').toBe(true) },
      { id: 'WIRE-PICKLE-18', stored: floors.storedExtension.shared(), sent: (e: PyDict) => expect(floors.isSharedLists(e.get('e')), 'the shared lists sent, each whole').toBe(true) },
    ];
    const steps = cases.map(({ id, stored, sent }) => async () => {
      const p = await startPrimary({ store: smallWith([oneRecord(LATER, 0x48, id, { extension: stored })]) });
      const s = await streamed(p.address, tidOf(small.at(-1)!.tid), 1, { timeoutMs: 20_000 });
      try {
        check(id, () => {
          expect(tids(s), 'the transaction with the extension at the floor was sent').toEqual([hex(LATER)]);
          sent(s.transactions[0]!.begin.extension);
        });
      } finally {
        s.close();
        await p.node.stop();
      }
    });
    await independently(...steps);
  });

  it('[WIRE-TXN-7] a stored extension that calls a function is not run by the primary', async (ctx) => {
    requires(ctx, iut, 'primary');
    const probe = path.join(workdir(), 'made-by-the-primary');
    const tid = LATER;
    const text = (t: string) => pickleText(t).subarray(0, -1); // BINUNICODE, without the STOP
    // {'probe': os.mkdir(probe)}, at protocol 1: EMPTY_DICT, key, GLOBAL, MARK, path, TUPLE, REDUCE, SETITEM, STOP
    const extension = Buffer.concat([Buffer.from('}', 'latin1'), text('probe'), Buffer.from('cos\nmkdir\n(', 'latin1'), text(probe), Buffer.from('tRs.', 'latin1')]);
    const store = smallWith([oneRecord(tid, 0x48, 'an extension that calls os.mkdir', { extension })]);
    const p = await startPrimary({ store });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', tidOf(small.at(-1)!.tid));
    await s.waitForTransactions(1, 5000);
    await s.settle();
    expect(existsSync(probe), `the primary ran os.mkdir(${JSON.stringify(probe)}) from the stored extension`).toBe(false);
    // and it did decode it: the transaction went out, its extension kept as an inert tree
    s.verify();
    expect(tids(s), 'the transaction whose extension calls a function was not sent').toEqual([hex(tid)]);
    s.close();
  });

  it('[DEV-TRAILER-1] a transaction whose trailing length differs from its header, damaged after the primary opened the file: the transactions before it go out, then the connection closes', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    // the trailing length of the 10th transaction, overwritten in place
    const r = FileStorageReader.open(p.fs);
    const t = [...r.transactions()][9]!;
    r.close();
    const bytes = readFileSync(p.fs);
    bytes.writeBigUInt64BE(BigInt(t.tlen + 1), t.offset + t.tlen);
    writeFileSync(p.fs, bytes);
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await s.waitForTransactions(9);
    const closed = await s.waitForClose(5000);
    s.verify();
    expect(tids(s), 'what was sent').toEqual(small.slice(0, 9).map((x) => x.tid));
    expect(closed, 'the connection was still open 5 s after the damaged transaction was reached').toBe(true);
  });

  /**
   * A primary serving a copy of `incomplete/checkpoint.fs` (changed by `build`) as it is, its
   * unfinished last transaction included: read-only where the implementation is started from a
   * configuration, as a follower where it can follow a file. Null when it cut the tail anyway.
   */
  async function servedAsItIs(build?: (fs: string) => void) {
    const store = prepared(fixture('incomplete', 'checkpoint.fs'), build);
    const original = readFileSync(fixture(store, 'Data.fs'));
    const p = await startPrimary({ store, readOnly: true, follow: iut.features.has('follow') });
    return readFileSync(p.fs).equals(original) ? p : null;
  }
  const NO_AS_IT_IS = `unsupported: ${iut.name} cut the unfinished transaction when it opened the file, and serves a file neither read-only nor as a follower`;

  it('[DEV-STATUS-1] [FS-STATUS-5] [FS-COMMIT-5] a file ending with an unfinished transaction, and holding a u one, served as it is: neither is ever sent, nor the records of the u one', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await servedAsItIs((fs) => markUndone(fs, 3));
    if (!p) return ctx.skip(NO_AS_IT_IS);
    const want = small.slice(0, 19).filter((_, i) => i !== 3);
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await s.waitForTransactions(want.length, 5000);
    await s.settle(500);
    const got = tids(s);
    // a primary that stops at the u transaction may hold every lock it has: kill it by its pid
    if (got.length < want.length) await p.node.kill();
    s.verify();
    check('DEV-STATUS-1', () => expect(s.transactions.filter((t) => t.begin.status === 'c' || t.begin.status === 'u').map((t) => hex(t.begin.tid)), 'transactions sent with status c or u').toEqual([]));
    check('FS-STATUS-5', () => expect(s.transactions.flatMap((t) => t.records).filter((r) => hex(r.message.tid) === small[3]!.tid).length, 'records of the u transaction sent').toBe(0));
    // the unfinished transaction (the file's 20th, status c) sent as a committed one; only a
    // primary that got past every transaction before it can show whether it does
    if (got.length >= want.length) check('FS-COMMIT-5', () => expect(got, 'the unfinished transaction was sent').not.toContain(small[19]!.tid));
    checkTransactions(s.transactions, want.slice(0, got.length));
    check('DEV-STATUS-5', () => expect(got.length, `the stream stopped at the u transaction: ${got.length} of ${want.length} sent`).toBe(want.length));
    s.close();
  });

  it('[DEV-STATUS-4] a transaction whose status byte is above 0x7f (0xe9, the tenth of small): the nine before it are sent, then the connection closes before its T', async (ctx) => {
    requires(ctx, iut, 'primary');
    const store = prepared(fixture('small', 'Data.fs'), (fs) => setStatus(fs, 9, 0xe9));
    // ZODB cannot open such a file (it decodes each status as ASCII): a primary that refuses to start fails too
    const p = await startPrimary({ store, readOnly: true, follow: iut.features.has('follow'), startFailure: 'DEV-STATUS-4' });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    const closed = await s.waitForClose(10_000);
    await s.settle(200);
    s.verify();
    check('DEV-STATUS-4', () => {
      expect(tids(s), 'transactions sent').toEqual(small.slice(0, 9).map((t) => t.tid));
      expect(closed, 'the connection closed within 10 s').toBe(true);
    });
  });

  it('[WIRE-TXN-4] [DEV-CTAIL-1] a file ending with an unfinished transaction, served as it is: the primary waits at it, neither sending, skipping nor closing; positioning that reaches it waits too', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await servedAsItIs();
    if (!p) return ctx.skip(NO_AS_IT_IS);
    const want = small.slice(0, 19).map((t) => t.tid);
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await s.waitForTransactions(want.length, 5000);
    await sleep(1500);
    s.verify();
    check('WIRE-TXN-4', () => expect({ sent: tids(s), closed: s.closed }, 'at the unfinished transaction, 1.5 s after the ones before it').toEqual({ sent: want, closed: false }));
    // a start tid after every finished transaction, below the unfinished one: the answer
    // depends on how that transaction ends, so the primary waits (DEV-CTAIL-1)
    const between = await FakeSecondary.connect(p.address);
    between.handshake('zrs2.0', after(tidOf(small[18]!.tid), 1));
    const closed = await between.waitForClose(3000);
    check('DEV-CTAIL-1', () => expect({ closed, received: between.received.length }, 'a start tid between the last finished transaction and the unfinished one, 3 s later').toEqual({ closed: false, received: 0 }));
    s.close();
    between.close();
  });

  it('[DEV-TIDORDER-3] a tid that does not increase, in the file: the transactions before it go out, then the connection closes before its T', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: prepared(fixture('small', 'Data.fs'), (fs) => swapTids(fs, 16)) });
    // in file order: ..., 16th, then the 18th's tid, then the 17th's (lower), 19th, 20th
    const before = [...small.slice(0, 16), small[17]!].map((t) => t.tid);
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await s.waitForTransactions(before.length);
    const closed = await s.waitForClose(5000);
    s.verify();
    expect(tids(s), 'what was sent, in file order').toEqual(before);
    expect(closed, 'the connection was still open 5 s after the tid that does not increase').toBe(true);
  });

  it('[DEV-TIDORDER-5] in a file whose tids do not increase, a connection starts at the first transaction, in file order, whose tid is greater than the start tid', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: prepared(fixture('small', 'Data.fs'), (fs) => swapTids(fs, 16)) });
    // the start tid is the lower of the two swapped ones, now the tid of the 18th transaction:
    // the 17th, before it in the file, has a greater tid
    const s = await streamed(p.address, tidOf(small[16]!.tid), 1, { timeoutMs: 5000 });
    expect(tids(s)[0], 'the first transaction sent').toBe(small[17]!.tid);
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
      const s = await streamed(p.address, Z64, 19);
      checkTransactions(s.transactions.slice(0, 19), small.slice(0, 19));
      check('WIRE-TXN-4', () => expect(tids(s), 'what was sent: the whole transactions, nothing of the damaged tail').toEqual(small.slice(0, 19).map((t) => t.tid)));
      const saved = `${p.fs}.tr0`;
      check('FS-RECOVER-2', () => expect(existsSync(saved) && readFileSync(saved).equals(original.subarray(tpos)), `${path.basename(saved)} holds the damaged tail`).toBe(true));
      check('FS-RECOVER-4', () => expect(statSync(p.fs).size, 'the size of the file once opened').toBe(tpos));
      if (iut.features.has('control')) {
        const c = await commitOn(p.node, { records: [{ oid: '00000000000000a1', data: '80034e2e' }] });
        await s.waitForTransactions(20, 5000);
        check('WIRE-TXN-3', () => expect(tids(s)[19], 'the transaction committed after the recovery').toBe(c));
        const after_ = FileStorageReader.open(p.fs);
        const txns = [...after_.transactions()];
        after_.close();
        check('FS-RECOVER-4', () => expect(txns.map((t) => t.offset).slice(19), 'where the next commit is appended').toEqual([tpos]));
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
    if (Object.keys(offsets).length !== 4) throw new HarnessError('the backpointer fixture was not built');
    const p = await startPrimary({ store });
    const s = await streamed(p.address, tidOf(small.at(-1)!.tid), 6);
    check('WIRE-TXN-1', () => expect(tids(s)).toEqual(t.map(hex)));
    const rec = (i: number) => {
      const r = s.transactions[i]!.records[0]!;
      return { type: r.message.type, dataTxn: r.message.dataTxn ? hex(r.message.dataTxn) : null, data: r.data ? hex(r.data) : null };
    };
    check('WIRE-DATA-2', () => expect(rec(0), 'a record holding its data').toEqual({ type: 'S', dataTxn: null, data: hex(d1) }));
    check('WIRE-DATA-4', () => expect(rec(1), 'a backpointer to a record holding data').toEqual({ type: 'S', dataTxn: hex(t[0]!), data: hex(d1) }));
    check('WIRE-DATA-3', () => expect(rec(4), 'a record whose backpointer is 0').toEqual({ type: 'S', dataTxn: null, data: null }));
    // a chain of two: the data from its end, data_txn from one hop (a record itself a backpointer)
    check('FS-BACK-2', () => expect(rec(2).data, 'the data at the end of a chain of two backpointers').toBe(hex(d1)));
    check('FS-BACK-4', () => expect(rec(2).dataTxn, 'data_txn of a backpointer to a backpointer').toBe(hex(t[1]!)));
    // a backpointer to a record whose backpointer is 0: no data, and the one-hop tid
    check('FS-BACK-2', () => expect(rec(5).data, 'a chain that ends at a backpointer of 0').toBeNull());
    check('FS-BACK-4', () => expect(rec(5).dataTxn, 'data_txn of a backpointer to a record whose backpointer is 0').toBe(hex(t[4]!)));
    s.close();
  });

  it('[DEV-TIMEOUT-4] [WIRE-KA-5] a secondary that sends no keep-alives is not dropped, and an idle primary sends nothing, keep-alives included', async (ctx) => {
    requires(ctx, iut, 'primary');
    const p = await startPrimary({ store: 'small' });
    const s = await streamed(p.address, Z64, small.length);
    checkTransactions(s.transactions, small);
    const before = s.received.length;
    await sleep(2000);
    check('WIRE-KA-5', () => expect(s.received.length - before, 'bytes sent by an idle primary').toBe(0));
    check('DEV-TIMEOUT-4', () => expect(s.closed, 'the primary closed a connection that sends no keep-alives').toBe(false));
    if (iut.features.has('control')) {
      const committed = await commitOn(p.node, { records: [{ oid: '00000000000000a2', data: '80034e2e' }] });
      await s.waitForTransactions(small.length + 1, 5000);
      check('DEV-TIMEOUT-4', () => expect(s.closed, 'the primary closed a connection that sends no keep-alives').toBe(false));
      check('WIRE-TXN-3', () => expect(tids(s).at(-1), 'the transaction committed after the silence').toBe(committed));
    }
    s.verify();
    s.close();
  });

  it('[WIRE-ADDR-2] [WIRE-ADDR-3] a bare PORT listens on every interface', async (ctx) => {
    requires(ctx, iut, 'primary');
    const { port } = await loopback();
    const p = await startPrimary({ store: 'small', listen: { kind: 'tcp', host: '', port }, startFailure: 'WIRE-ADDR-2' });
    const hosts = ['127.0.0.1', '127.0.0.2', ...Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).filter((a) => a.family === 'IPv4' && !a.internal).map((a) => a.address))];
    for (const host of hosts) {
      const s = await check('WIRE-ADDR-3', () => connect({ kind: 'tcp', host, port }));
      s.handshake('zrs2.0', tidOf(small.at(-2)!.tid));
      await s.waitForTransactions(1);
      s.verify();
      check('WIRE-ADDR-3', () => expect(tids(s), `via ${host}`).toEqual([small.at(-1)!.tid]));
      s.close();
    }
    check('WIRE-ADDR-3', () => expect(p.node.proc.exitCode).toBeNull());
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
    await s.waitForTransactions(small.length);
    s.verify();
    expect(tids(s)).toEqual(small.map((t) => t.tid));
    s.close();
  });

  it('[WIRE-ADDR-1] [WIRE-ADDR-2] a path is a Unix domain socket, carrying the same stream', async (ctx) => {
    requires(ctx, iut, 'primary', 'unix');
    const address: Address = { kind: 'unix', path: path.join(workdir(), 'primary.sock') };
    await startPrimary({ store: 'small', listen: address, startFailure: 'WIRE-ADDR-2' });
    const s = await check('WIRE-ADDR-2', () => connect(address));
    s.handshake('zrs2.0', Z64);
    await s.waitForTransactions(small.length);
    await s.settle();
    s.verify();
    checkTransactions(s.transactions, small);
    check('WIRE-ADDR-1', () => expect(tids(s), 'the stream over a Unix domain socket').toEqual(small.map((t) => t.tid)));
    s.close();
  });

  it('[FS-MAGIC-6] [FS-MAGIC-3] a primary on an empty file writes the magic FS30 into it, and so does one on a new file', async (ctx) => {
    requires(ctx, iut, 'primary');
    for (const [id, build] of [
      ['FS-MAGIC-6', (fs: string) => writeFileSync(fs, Buffer.alloc(0))],
      ['FS-MAGIC-3', null],
    ] as const) {
      // a primary that refuses the empty file, or cannot create the file, breaks the rule itself
      const p = await startPrimary({ store: build ? prepared(null, build) : null, startFailure: id });
      const what = id === 'FS-MAGIC-6' ? 'an empty file' : 'a new file';
      const magic = () => (existsSync(p.fs) ? readFileSync(p.fs).subarray(0, 4).toString('latin1') : '(no file)');
      const s = await FakeSecondary.connect(p.address);
      s.handshake('zrs2.0', Z64); // the storage has no transaction: nothing to send yet
      let committed: string | null = null;
      if (iut.features.has('control')) {
        // ZODB keeps the magic of an empty file in its buffer until the first commit (or the close)
        committed = await commitOn(p.node, { records: [{ oid: '0000000000000000', data: '80034e2e' }] });
        await s.waitForTransactions(1, 5000);
        for (let i = 0; i < 50 && magic() !== 'FS30'; i++) await sleep(100);
        check(id, () => expect(magic(), `the first 4 bytes of ${what} once a transaction is committed`).toBe('FS30'));
      }
      s.close();
      // what it writes at its close is seen only once it stopped as SIGTERM asks
      const exit = await p.node.stop();
      check('CONF-PROC-2', () => expect(exit.signal, 'the node did not stop within 10 s of SIGTERM, and was killed').not.toBe('SIGKILL'));
      check(id, () => {
        const r = FileStorageReader.open(p.fs);
        const offsets = [...r.transactions()].map((t) => t.offset);
        r.close();
        expect(magic(), `the first 4 bytes of ${what} once the node stopped`).toBe('FS30');
        expect(offsets, `where the transactions of ${what} start`).toEqual(committed ? [4] : []);
      });
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

  /** The blob files of the blobs store (bushy): where each is, and its oid and tid, in hex. */
  const blobFiles = blobDirFiles(fixture('blobs', 'blobs'))
    .filter((f) => f.endsWith('.blob') && !f.startsWith(`tmp${path.sep}`))
    .map((f) => {
      const parts = f.split(path.sep);
      return { from: fixture('blobs', 'blobs', f), oid: parts.slice(0, 8).map((x) => x.slice(2)).join(''), tid: parts[8]!.slice(2, -5).padStart(16, '0') };
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
      candidates.forEach((_, i) => {
        const file = path.join(blobDir, blobPlace('bushy', oid(0x60 + i), tid));
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, `blob content ${i}`);
      });
      append(fs, [{ tid, records: candidates.map(([, data], i) => ({ oid: oid(0x60 + i), serial: tid, data })) }]);
    });
    const p = await startPrimary({ store, blobs: true });
    const s = await streamed(p.address, tidOf(expectedTransactions('blobs').at(-1)!.tid), 1, { protocol: 'zrs2.1' });
    const records = s.transactions[0]?.records ?? [];
    expect(records, 'the records of the transaction after the blobs store').toHaveLength(candidates.length);
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
    const store = blobStore((_, blobDir) => rmSync(path.join(blobDir, blobPlace('bushy', missing.oid, missing.tid))));
    const p = await startPrimary({ store, blobs: true });
    const s = await streamed(p.address, Z64, expected.length, { protocol: 'zrs2.1' });
    const records = s.transactions.flatMap((t) => t.records);
    // the only B of 0 blocks is the real empty blob (oid 2)
    const zero = records.filter((r) => r.message.type === 'B' && (r.message as { blocks: number }).blocks === 0);
    check('DEV-BLOBSRC-1', () => expect(zero.map((r) => hex(r.message.oid)), 'oids sent as a B of 0 blocks').toEqual(['0000000000000002']));
    const lacking = records.find((r) => hex(r.message.oid) === hex(missing.oid) && hex(r.message.tid) === hex(missing.tid));
    check('WIRE-BLOB-4', () => expect(lacking && { type: lacking.message.type, data: lacking.data !== null }, 'the record whose blob file is missing').toEqual({ type: 'S', data: true }));
    checkTransactions(s.transactions, expected);
    s.close();
  });

  it('[FS-BLOB-5] [FS-BLOB-6] [FS-BLOB-2] a blob directory in the lawn layout is served as the bushy one, also when .layout holds white space around the word', async (ctx) => {
    requires(ctx, iut, 'primary', 'blobs');
    if (blobFiles.length <= 5) throw new HarnessError('the blobs store has too few blob files');
    const lawn = (layout: string) =>
      blobStore((_, blobDir) => {
        for (const f of blobFiles) {
          const from = path.join(blobDir, path.relative(fixture('blobs', 'blobs'), f.from));
          const to = path.join(blobDir, blobPlace('lawn', f.oid, f.tid));
          mkdirSync(path.dirname(to), { recursive: true });
          renameSync(from, to);
        }
        rmSync(path.join(blobDir, '0x00'), { recursive: true });
        writeFileSync(path.join(blobDir, '.layout'), layout);
      });
    const expected = expectedTransactions('blobs');
    for (const [ids, layout] of [
      [['FS-BLOB-5', 'FS-BLOB-6'], 'lawn'],
      [['FS-BLOB-2'], '  lawn\n'],
    ] as const) {
      const p = await startPrimary({ store: lawn(layout), blobs: true, startFailure: ids[0] });
      if (!existsSync(path.join(p.blobDir!, '0x02'))) throw new HarnessError('the lawn blob directory was not built');
      const s = await streamed(p.address, Z64, expected.length, { protocol: 'zrs2.1' });
      checkTransactions(s.transactions, expected);
      const records = s.transactions.flatMap((t) => t.records);
      check([...ids], () => {
        for (const f of blobFiles) {
          const r = records.find((x) => hex(x.message.oid) === f.oid && hex(x.message.tid) === f.tid);
          const what = `the blob of oid ${f.oid}, tid ${f.tid}, with .layout ${JSON.stringify(layout)}`;
          expect(r?.message.type, what).toBe('B');
          expect(Buffer.concat(r!.chunks).equals(readFileSync(f.from)), `${what}: its content`).toBe(true);
        }
      });
      s.close();
    }
  });
});
