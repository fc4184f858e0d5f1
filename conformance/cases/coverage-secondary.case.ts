// Conformance of a secondary, judged by fake primaries and by the files it writes: every
// validity rule of its file, the magic, recovery of a damaged tail, the pickle profile of
// its decoder (accepted opcodes, protocol errors, inert objects), framing, addresses,
// connections and keep-alives, and its blob directory.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { blobRepr, BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { RunningChecksum } from '../../reference/checksum.ts';
import { checkFile } from '../../reference/filestorage/checker.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { encodeFrame } from '../../reference/framing.ts';
import { decodeMessage, encodeMessage, type Message, type TransactionMessage } from '../../reference/messages.ts';
import { type Address, formatAddress } from '../../reference/net/address.ts';
import { type Json, pickleToJson } from '../../reference/pickle/json.ts';
import { PyDict } from '../../reference/pickle/values.ts';
import { type OutgoingRecord, StreamEncoder } from '../../reference/stream.ts';
import { hex8, tidFromParts, Z64 } from '../../reference/timestamp.ts';
import { lastTidOf, reaches, requires, secondaryIut, SEED, startSecondary, workdir, writeZrsConfig } from '../context.ts';
import { until } from '../wait.ts';
import { FIXTURES } from '../env.ts';
import { IutNode } from '../iut/node.ts';
import { freePort } from '../../reference/net/ports.ts';
import { FakeConnection, FakePrimary, storeFrames } from '../peers/fake-primary.ts';
import { sleep } from '../peers/fake-secondary.ts';
import { prng } from '../proxy/fault-proxy.ts';
import { byValue, extensionJson, prevPointers } from '../file-checks.ts';

const iut = secondaryIut();
const store = (name: string) => path.join(FIXTURES, name, 'Data.fs');
const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
const small = fileContent(store('small'));
const tidOf = (h: string) => Buffer.from(h, 'hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const after = (t: Uint8Array, n: number) => {
  const b = Buffer.from(t);
  b.writeBigUInt64BE(b.readBigUInt64BE(0) + BigInt(n));
  return b;
};
const oid = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};
/** Later than every tid of the fixtures (2026-11-26). */
const LATER = tidFromParts({ year: 2026, month: 11, day: 27, hour: 9, minute: 0, second: 0 });
const keepAliveDelay = iut.features.has('fractionalDelays') ? 0.3 : 1;

// ---- pickles written by hand, for messages in forms the reference encoder never writes ----
const B = (s: string) => Buffer.from(s, 'latin1');
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const pk = {
  text: (s: string) => {
    const u = Buffer.from(s, 'utf8');
    return Buffer.concat([B('X'), u32(u.length), u]);
  },
  /** Bytes as Python 3 zc.zrs pickles them (`_codecs.encode`, or `__builtin__.bytes()`). */
  bytes: (b: Uint8Array) =>
    b.length === 0 ? B('c__builtin__\nbytes\n)R') : Buffer.concat([B('c_codecs\nencode\n('), pk.text(Buffer.from(b).toString('latin1')), pk.text('latin1'), B('tR')]),
  /** A Python 2 8-bit string (`SHORT_BINSTRING`). */
  short: (b: Buffer | string) => {
    const x = typeof b === 'string' ? B(b) : b;
    return Buffer.concat([Buffer.from([0x55, x.length]), x]);
  },
  binstring: (b: Buffer | string) => {
    const x = typeof b === 'string' ? B(b) : b;
    return Buffer.concat([B('T'), u32(x.length), x]);
  },
};
/** A control message: `(type, (fields...))`. */
const message = (type: Buffer, ...fields: Buffer[]) => Buffer.concat([B('('), type, B('('), ...fields, B('tt.')]);
/** A standard `T` payload with the given extension pickle. */
const tPayload = (tid: Uint8Array, ext: Buffer, o: { user?: Buffer; description?: Buffer; status?: Buffer } = {}) =>
  message(pk.text('T'), pk.bytes(tid), o.status ?? pk.text(' '), o.user ?? pk.bytes(Buffer.alloc(0)), o.description ?? pk.bytes(Buffer.alloc(0)), ext);
/** Record data: two protocol-3 pickles, opaque to ZRS. */
const DATA = (text: string) => Buffer.concat([Buffer.from('80034e2e8003', 'hex'), pk.text(text), B('.')]);

/** The frames of one transaction whose `T` payload is given as bytes. */
function rawTransaction(e: StreamEncoder, t: Buffer, records: { oid: Buffer; tid: Buffer; data: Buffer | null }[]): Uint8Array[] {
  const out: Uint8Array[] = [...e.frame(t)];
  for (const r of records) out.push(...e.message({ type: 'S', oid: r.oid, tid: r.tid, version: '', dataTxn: null }), ...e.frame(r.data ?? Buffer.alloc(0)));
  out.push(...e.commit());
  return out;
}

/** A plain transaction message. */
const txn = (tid: Uint8Array, description = ''): TransactionMessage => ({
  type: 'T',
  tid,
  status: ' ',
  user: Buffer.alloc(0),
  description: Buffer.from(description),
  extension: new PyDict(),
});
const record = (o: number, tid: Uint8Array, data: Buffer): OutgoingRecord => ({ message: { type: 'S', oid: oid(o), tid, version: '', dataTxn: null }, data });

/**
 * Frames (header, payload, ...) of a stream of payloads re-encoded for `startTid`, each control message passed through
 * `rewrite` (which may return other bytes for it), and every `C` given the digest of what was
 * actually sent.
 */
function restream(frames: Uint8Array[], startTid: Uint8Array, rewrite: (m: Message, payload: Uint8Array) => Uint8Array | null): Uint8Array[] {
  const e = new StreamEncoder(startTid);
  const out: Uint8Array[] = [];
  let raw = 0;
  for (const p of frames) {
    if (raw > 0) {
      out.push(...e.frame(p));
      raw--;
      continue;
    }
    const m = decodeMessage(p);
    if (m.type === 'C') {
      out.push(...e.commit());
      continue;
    }
    out.push(...e.frame(rewrite(m, p) ?? p));
    raw = m.type === 'S' ? 1 : m.type === 'B' ? 1 + m.blocks : 0;
  }
  return out;
}

const flat = (frames: [Buffer, Uint8Array][][]) => frames.flat(2);
const payloadsOf = (frames: [Buffer, Uint8Array][][]) => frames.flat().map(([, p]) => p);

// ---- fake primaries and servers, closed after each case ----
const servers: { close(): unknown }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function fake(script: (c: FakeConnection, n: number) => void | Promise<void>): Promise<FakePrimary> {
  const p = await FakePrimary.listen(script);
  servers.push(p);
  return p;
}

/** Serves `name` correctly (and `extra` after it) to every connection, from its start tid. */
function serving(name: string, blobs = false, extra: { t: TransactionMessage; records: OutgoingRecord[] }[] = []): Promise<FakePrimary> {
  const dir = blobs ? new BlobDirectory(fixture(name, 'blobs')) : null;
  return fake(async (c) => {
    const { startTid } = await c.handshake;
    const payloads = payloadsOf(storeFrames(store(name), startTid, dir));
    for (const x of extra) if (Buffer.compare(x.t.tid, startTid) > 0) payloads.push(...transactionPayloads(x.t, x.records));
    c.send(restream(payloads, startTid, () => null));
  });
}

/** Payloads of one transaction (its C digest is filled in by {@link restream}). */
function transactionPayloads(t: TransactionMessage, records: OutgoingRecord[]): Uint8Array[] {
  const out: Uint8Array[] = [encodeMessage(t)];
  for (const r of records) out.push(encodeMessage(r.message), r.data ?? Buffer.alloc(0), ...(r.chunks ?? []));
  out.push(encodeMessage({ type: 'C', checksum: Buffer.alloc(16) }));
  return out;
}

/** A server of our own on `address` whose connections run `script`. */
async function listenOn(address: Address, script: (c: FakeConnection) => void | Promise<void>): Promise<FakeConnection[]> {
  const connections: FakeConnection[] = [];
  const server = net.createServer((socket) => {
    const c = new FakeConnection(socket);
    connections.push(c);
    void Promise.resolve(script(c)).catch(() => c.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (address.kind === 'unix') server.listen(address.path, resolve);
    else server.listen(address.port, address.host, resolve);
  });
  servers.push({ close: () => (connections.forEach((c) => c.destroy()), server.close()) });
  return connections;
}

/** A transaction of a file, by tid. */
function transactionOf(fs: string, tid: Uint8Array) {
  return fileContent(fs).find((t) => t.tid === hex(tid));
}

describe(`secondary: ${iut.name}`, () => {
  it.for(['small', 'undo', 'packed'])(
    '[FS-MAGIC-1] [FS-MAGIC-3] [FS-TXN-1] [FS-TXN-2] [FS-TXN-3] [FS-DATA-1] [FS-DATA-2] [FS-DATA-3] [FS-DATA-4] [FS-DATA-5] [FS-DATA-6] [FS-BACK-1] [FS-BACK-5] [FS-STATUS-1] [FS-STATUS-2] [FS-STATUS-3] [FS-STATUS-4] [FS-TID-1] [FS-TID-2] [FS-TID-4] [FS-TID-7] [FS-CHECK-2] [FS-CHECK-3] [FS-CHECK-4] [FS-CHECK-5] [FS-CHECK-6] [FS-CHECK-7] [FS-CHECK-8] [FS-CHECK-9] [FS-CHECK-10] [FS-CHECK-11] [FS-CHECK-12] [FS-CHECK-13] [FS-CHECK-14] [FS-CHECK-15] [FS-CHECK-16] [FS-CHECK-17] [FS-CHECK-18] [FS-CHECK-19] [DEV-EXTBYTES-1] [DEV-VERSION-1] [WIRE-FRAME-2] %s: the file the secondary writes passes every validity rule, holds what was sent (extensions by value), and chains prev pointers',
    async (name, ctx) => {
      requires(ctx, iut, 'secondary');
      const p = await serving(name);
      const s = await startSecondary({ from: p.address });
      const want = fileContent(store(name));
      await reaches(s, want.at(-1)!.tid);
      expect((await s.node.stop()).code).toBe(0);
      expect(readFileSync(s.fs).subarray(0, 4).toString('latin1')).toBe('FS30');
      expect(checkFile(s.fs).violation).toBeNull();
      expect(byValue(fileContent(s.fs))).toEqual(byValue(want));
      expect(prevPointers(s.fs)).toEqual([]);
    },
  );

  it('[WIRE-HS-5] [WIRE-FRAME-1] while it replicates, a secondary sends only whole frames, and after the handshake only empty ones', async (ctx) => {
    requires(ctx, iut, 'secondary');
    let bytes = 0;
    const p = await fake(async (c) => {
      c.socket.on('data', (d: Buffer) => (bytes += d.length));
      const { startTid } = await c.handshake;
      c.send(flat(storeFrames(store('small'), startTid)));
    });
    const s = await startSecondary({ from: p.address, keepAliveDelay });
    await reaches(s, small.at(-1)!.tid);
    const c = await p.connection(0);
    await until('two keep-alives', () => c.keepAlives.length >= 2, { timeoutMs: keepAliveDelay * 4000 });
    await sleep(50);
    expect(c.closed).toBe(false);
    expect(c.frames.slice(2).every((f) => f.payload.length === 0)).toBe(true);
    expect(bytes).toBe(c.frames.reduce((n, f) => n + 4 + f.payload.length, 0));
    expect(p.connections).toHaveLength(1);
  });

  it.for([
    ['[FS-MAGIC-2] an FS21 file', 'fs21', 'small-as-fs21.fs', 'FS21'],
    ['[FS-MAGIC-4] an FS30 file', 'small', 'Data.fs', 'FS30'],
  ] as const)('%s: a secondary started on it resumes from its last transaction and keeps its magic', async ([, dir, name, magic], ctx) => {
    requires(ctx, iut, 'secondary');
    const fs = path.join(workdir(), 'Data.fs');
    const source = fixture(dir, name);
    const r = FileStorageReader.open(source);
    const cut = [...r.transactions()][10]!.offset;
    r.close();
    writeFileSync(fs, readFileSync(source).subarray(0, cut));
    const p = await serving('small');
    const s = await startSecondary({ from: p.address, fs });
    expect(hex((await (await p.connection(0)).handshake).startTid)).toBe(small[9]!.tid);
    await reaches(s, small.at(-1)!.tid);
    expect((await s.node.stop()).code).toBe(0);
    expect(readFileSync(fs).subarray(0, 4).toString('latin1')).toBe(magic);
    expect(checkFile(fs).violation).toBeNull();
    expect(byValue(fileContent(fs))).toEqual(byValue(small));
  });

  it('[FS-MAGIC-6] a secondary opening an empty file writes the magic FS30 into it before anything else', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, Buffer.alloc(0));
    let go!: () => void;
    const release = new Promise<void>((r) => (go = r));
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      await release;
      c.send(flat(storeFrames(store('small'), startTid)));
    });
    const s = await startSecondary({ from: p.address, fs });
    const h = await (await p.connection(0)).handshake;
    expect(hex(h.startTid)).toBe(hex8(Z64));
    await sleep(300);
    expect(readFileSync(fs).toString('latin1')).toBe('FS30');
    go();
    await reaches(s, small.at(-1)!.tid);
    await s.node.stop();
    expect(readFileSync(fs).subarray(0, 4).toString('latin1')).toBe('FS30');
    expect(checkFile(fs).violation).toBeNull();
  });

  it.for([
    ['checkpoint.fs', false],
    ['truncated-mid.fs', true],
    ['checkpoint-truncated.fs', false],
  ] as const)(
    '[FS-RECOVER-2] [FS-RECOVER-4] restarted on %s: the damaged tail is saved to the first free Data.fs.trN, and the next transaction is written where it was cut',
    async ([name, trTaken], ctx) => {
      requires(ctx, iut, 'secondary');
      const dir = workdir();
      const fs = path.join(dir, 'Data.fs');
      const original = readFileSync(fixture('incomplete', name));
      writeFileSync(fs, original);
      if (trTaken) writeFileSync(`${fs}.tr0`, 'taken');
      const r = FileStorageReader.open(fs);
      const whole = [...r.transactions()];
      r.close();
      const tpos = whole.at(-1)!.next;
      const extra = { t: txn(LATER, 'after the cut'), records: [record(0x70, LATER, DATA('after the cut'))] };
      const p = await serving('small', false, [extra]);
      const s = await startSecondary({ from: p.address, fs });
      await reaches(s, hex(LATER));
      expect((await s.node.stop()).code).toBe(0);
      const saved = `${fs}.tr${trTaken ? 1 : 0}`;
      expect(existsSync(saved)).toBe(true);
      expect(readFileSync(saved).equals(original.subarray(tpos))).toBe(true);
      if (trTaken) expect(readFileSync(`${fs}.tr0`, 'latin1')).toBe('taken');
      expect(checkFile(fs).violation).toBeNull();
      const after_ = FileStorageReader.open(fs);
      const txns = [...after_.transactions()];
      after_.close();
      expect(txns.slice(0, 19).map((t) => hex(t.tid))).toEqual(small.slice(0, 19).map((t) => t.tid));
      expect(txns[19]!.offset).toBe(tpos);
      expect(hex(txns.at(-1)!.tid)).toBe(hex(LATER));
    },
  );

  it('[FS-TID-6] tids of dates that do not exist (31 November, 30 February) are accepted and written unchanged', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const nov31 = tidFromParts({ year: 2026, month: 11, day: 31, hour: 10, minute: 0, second: 0 });
    const feb30 = tidFromParts({ year: 2027, month: 2, day: 30, hour: 10, minute: 0, second: 0 });
    const p = await serving('small', false, [nov31, feb30].map((t, i) => ({ t: txn(t, `odd date ${i}`), records: [record(0x71 + i, t, DATA(`odd ${i}`))] })));
    const s = await startSecondary({ from: p.address });
    await reaches(s, hex(feb30));
    await s.node.stop();
    expect(fileContent(s.fs).slice(-2).map((t) => t.tid)).toEqual([hex(nov31), hex(feb30)]);
    expect(checkFile(s.fs).violation).toBeNull();
  });

  it('[FS-TXN-4] a description or an extension longer than 65535 bytes is refused, never truncated; 65535 bytes are written whole', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const base = tidOf(small[2]!.tid);
    const longDescription = after(base, 1);
    const longExtension = after(base, 2);
    const fits = after(base, 3);
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      const payloads = n === 0 ? payloadsOf(storeFrames(store('small'), startTid).slice(0, 3)) : [];
      const t =
        n === 0
          ? { ...txn(longDescription), description: Buffer.alloc(65536, 0x64) }
          : n === 1
            ? { ...txn(longExtension), extension: new PyDict([['k', 'x'.repeat(66000)]]) }
            : { ...txn(fits), user: Buffer.alloc(65535, 0x75), description: Buffer.alloc(65535, 0x64) };
      if (Buffer.compare(t.tid, startTid) > 0) payloads.push(...transactionPayloads(t, [record(0x72, t.tid, DATA('long'))]));
      c.send(restream(payloads, startTid, () => null));
      if (n < 2) {
        await sleep(500);
        c.end();
      }
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    await reaches(s, hex(fits));
    await s.node.stop();
    const content = fileContent(s.fs);
    expect(content.map((t) => t.tid)).toEqual([...small.slice(0, 3).map((t) => t.tid), hex(fits)]);
    expect(content.at(-1)!.user.length / 2).toBe(65535);
    expect(content.at(-1)!.description.length / 2).toBe(65535);
    expect(checkFile(s.fs).violation).toBeNull();
  });

  it('[WIRE-ADDR-6] [DEV-TIMEOUT-2] one connection at a time, through refusals and errors; and silence between transactions never ends one', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const opened: number[] = [];
    const closedAt: number[] = [];
    const p = await fake(async (c, n) => {
      opened[n] = Date.now();
      c.socket.once('close', () => (closedAt[n] = Date.now()));
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      if (n === 0) return c.end(); // the primary goes away
      if (n === 1) return c.send([...flat(frames.slice(0, 2)), encodeFrame(B('garbage'))]); // a protocol error
      c.send(flat(frames)); // then silence
    });
    const s = await startSecondary({ from: p.address, keepAliveDelay, reconnectDelay: 0.2 });
    await reaches(s, small.at(-1)!.tid);
    const quiet = Math.max(keepAliveDelay * 3000, 1500);
    await sleep(quiet);
    expect(p.connections).toHaveLength(3);
    expect(p.connections[2]!.closed).toBe(false);
    for (let n = 1; n < opened.length; n++) {
      expect(closedAt[n - 1], `connection ${n - 1} still open when connection ${n} was made`).toBeLessThanOrEqual(opened[n]! + 50);
    }
  });

  it('[WIRE-FRAME-6] [WIRE-FRAME-4] a 5 MiB data frame, and data frames whose bytes are control messages, are stored as record data', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const tid = LATER;
    const big = Buffer.alloc(5 << 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
    big.write('8003', 0, 'hex');
    const lookAlikes = [encodeMessage(txn(after(tid, 1))), encodeMessage({ type: 'C', checksum: Buffer.alloc(16, 7) }), encodeMessage({ type: 'S', oid: oid(1), tid, version: '', dataTxn: null })];
    const records = [record(0x73, tid, big), ...lookAlikes.map((d, i) => record(0x74 + i, tid, d))];
    const p = await serving('small', false, [{ t: txn(tid, 'big'), records }]);
    const s = await startSecondary({ from: p.address });
    await reaches(s, hex(tid), 30_000);
    await s.node.stop();
    const t = transactionOf(s.fs, tid)!;
    expect(t.records.map((r) => r.data)).toEqual(records.map((r) => hex(r.data!)));
  });

  it('[WIRE-SUM-9] [WIRE-TXN-13] a C without digest (C0) is a protocol error: the transaction is not committed and the secondary closes', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const c0 = B('(X\x01\x00\x00\x00C)t.');
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      if (n > 0) return c.send(flat(frames));
      const fourth = frames[3]!;
      c.send([...flat(frames.slice(0, 3)), ...fourth.slice(0, -1).flat(), encodeFrame(c0)]);
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const first = await p.connection(0);
    expect(await first.waitForClose(10_000)).toBe(true);
    expect(await lastTidOf(s)).toBe(small[2]!.tid);
    expect(hex((await (await p.connection(1)).handshake).startTid)).toBe(small[2]!.tid);
    await reaches(s, small.at(-1)!.tid);
    await s.node.stop();
    expect(byValue(fileContent(s.fs))).toEqual(byValue(small));
  });

  it('[WIRE-PICKLE-4] control messages using every opcode of the profile: 8-bit strings for text fields, Python 3 and 2 names of bytes, and every integer, float and string form in the extension', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const tid = LATER;
    const i32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32LE(n);
      return b;
    };
    const ext = Buffer.concat([
      B('}('),
      pk.text('bi1'), B('K\x07'),
      pk.text('bi2'), B('M'), Buffer.from([0x2c, 0x01]),
      pk.text('bi'), B('J'), i32(-70000),
      pk.text('long'), B('L12345678901234L\n'),
      pk.text('long-no-L'), B('L99\n'),
      pk.text('int'), B('I42\n'),
      pk.text('true'), B('I01\n'),
      pk.text('false'), B('I00\n'),
      pk.text('binfloat'), B('G'), Buffer.from('3ff8000000000000', 'hex'),
      pk.text('float'), B('F2.25\n'),
      pk.text('string'), B("S'abc'\n"),
      pk.text('unicode'), B('Vuni\n'),
      pk.text('short'), pk.short('sb'),
      pk.text('binstring'), pk.binstring('bs'),
      pk.text('none'), B('N'),
      pk.text('list'), B(']('), B('K\x01K\x02'), B('e'),
      pk.text('list1'), B(']K\x03a'),
      pk.text('tuple'), B('(K\x01'), pk.text('a'), B('t'),
      pk.text('empty-tuple'), B(')'),
      pk.text('bytes'), pk.bytes(Buffer.from('00ff80', 'hex')),
      B('u'),
      pk.text('single'), B('}'), pk.text('k'), B('N'), B('s'),
      B('s'),
    ]);
    const t = message(pk.short('T'), pk.bytes(tid), pk.binstring(' '), B('cbuiltins\nbytes\n)R'), B('c__builtin__\nbytes\n)R'), ext);
    const s0 = message(pk.short('S'), pk.bytes(oid(0x77)), pk.bytes(tid), pk.short(''), B('N'));
    const want: Json = {
      bi1: 7, bi2: 300, bi: -70000, long: 12345678901234, 'long-no-L': 99, int: 42, true: true, false: false, binfloat: 1.5, float: 2.25,
      string: 'abc', unicode: 'uni', short: 'sb', binstring: 'bs', none: null, list: [1, 2], list1: [3], tuple: { $tuple: [1, 'a'] }, 'empty-tuple': { $tuple: [] },
      bytes: { $bytes: '00ff80' }, single: { k: null },
    };
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      const e = new StreamEncoder(startTid);
      c.send([...e.frame(t), ...e.frame(s0), ...e.frame(DATA('opcodes')), ...e.commit()]);
    });
    const s = await startSecondary({ from: p.address });
    await reaches(s, hex(tid));
    await s.node.stop();
    const stored = transactionOf(s.fs, tid)!;
    expect(stored.user).toBe('');
    expect(stored.description).toBe('');
    expect(stored.status).toBe(' ');
    expect(extensionJson(stored.extension)).toEqual(want);
    expect(stored.records).toEqual([{ oid: hex(oid(0x77)), tid: hex(tid), data: hex(DATA('opcodes')) }]);
  });

  it('[WIRE-PICKLE-6] both reductions that make bytes are read as bytes; a code point above 255 in one is a protocol error', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const good = LATER;
    const bad = after(LATER, 1);
    const latin = Buffer.from('e9ff00417f80', 'hex');
    const goodT = tPayload(good, Buffer.concat([B('}'), pk.text('b'), pk.bytes(latin), B('s')]), {
      user: B('cbuiltins\nbytes\n)R'),
      description: pk.bytes(Buffer.from('caf\xe9', 'latin1')),
    });
    const badT = tPayload(bad, B('}'), { description: Buffer.concat([B('c_codecs\nencode\n('), pk.text('\u0100'), pk.text('latin1'), B('tR')]) });
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      const e = new StreamEncoder(startTid);
      if (n === 0) c.send([...rawTransaction(e, goodT, [{ oid: oid(0x78), tid: good, data: DATA('good') }]), ...rawTransaction(e, badT, [{ oid: oid(0x79), tid: bad, data: DATA('bad') }])]);
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const first = await p.connection(0);
    expect(await first.waitForClose(10_000)).toBe(true);
    expect(hex((await (await p.connection(1)).handshake).startTid)).toBe(hex(good));
    await s.node.stop();
    const content = fileContent(s.fs);
    expect(content.map((t) => t.tid)).toEqual([hex(good)]);
    expect(content[0]!.user).toBe('');
    expect(content[0]!.description).toBe(hex(Buffer.from('caf\xe9', 'latin1')));
    expect(extensionJson(content[0]!.extension)).toEqual({ b: { $bytes: hex(latin) } });
  });

  it('[WIRE-PICKLE-7] blocks is read as a count whatever integer opcode carries it', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const forms = [
      (n: number) => Buffer.concat([B('M'), Buffer.from([n & 0xff, n >> 8])]),
      (n: number) => Buffer.concat([B('J'), u32(n)]),
      (n: number) => B(`L${n}L\n`),
      (n: number) => B(`L${n}\n`),
      (n: number) => B(`I${n}\n`),
    ];
    let k = 0;
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('blobs'), startTid, new BlobDirectory(fixture('blobs', 'blobs')));
      c.send(
        restream(payloadsOf(frames), startTid, (m) => {
          if (m.type !== 'B') return null;
          const form = forms[k++ % forms.length]!;
          return message(pk.text('B'), pk.bytes(m.oid), pk.bytes(m.tid), pk.text(''), m.dataTxn ? pk.bytes(m.dataTxn) : B('N'), form(m.blocks));
        }),
      );
    });
    const want = fileContent(store('blobs'));
    const s = await startSecondary({ from: p.address, blobs: true });
    await reaches(s, want.at(-1)!.tid);
    await s.node.stop();
    expect(k).toBeGreaterThan(forms.length);
    expect(byValue(fileContent(s.fs))).toEqual(byValue(want));
    const theirs = new BlobDirectory(fixture('blobs', 'blobs'));
    const ours = new BlobDirectory(s.blobDir!);
    for (const t of want) {
      for (const r of t.records) {
        const source = theirs.blobPath(tidOf(r.oid), tidOf(r.tid));
        if (!existsSync(source) || statSync(source).size === 0) continue;
        expect(readFileSync(ours.blobPath(tidOf(r.oid), tidOf(r.tid))).equals(readFileSync(source))).toBe(true);
      }
    }
  });

  it('[WIRE-PICKLE-8] messages in their Python 2 form: if the secondary accepts them, 8-bit strings are ASCII in text fields and raw in bytes fields; a byte above 127 in a text field is refused', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const base = tidOf(small[2]!.tid);
    const x = after(base, 1); // between small[2] and small[3]; its bytes include some above 0x7f
    expect([...x].some((b) => b > 0x7f)).toBe(true);
    expect(Buffer.compare(x, tidOf(small[3]!.tid))).toBeLessThan(0);
    const y = after(x, 1);
    const user = Buffer.from('e974e9', 'hex');
    const py2T = (tid: Buffer, status: Buffer) => message(pk.short('T'), pk.short(tid), pk.short(status), pk.short(user), pk.short('py2'), B('}'));
    const py2S = (tid: Buffer) => message(pk.short('S'), pk.short(oid(0x7a)), pk.short(tid), pk.short(''), B('N'));
    const py2C = (digest: Buffer) => message(pk.short('C'), pk.short(digest));
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      if (n > 0) return c.send(flat(frames)); // from x when it was committed, from small[2] otherwise: small[3] on
      // a running checksum over exactly the payloads sent
      const sum = new RunningChecksum(startTid);
      const out: Uint8Array[] = [];
      const send = (payload: Uint8Array) => {
        sum.update(payload);
        out.push(encodeFrame(payload));
      };
      payloadsOf(frames.slice(0, 3)).forEach(send);
      for (const [tid, status] of [[x, B(' ')], [y, Buffer.from([0xe9])]] as const) {
        send(py2T(tid, status));
        send(py2S(tid));
        send(DATA('py2'));
        send(py2C(sum.digest()));
      }
      c.send(out);
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    await p.connection(1);
    await reaches(s, small.at(-1)!.tid);
    await s.node.stop();
    const content = fileContent(s.fs);
    expect(content.some((t) => t.tid === hex(y))).toBe(false);
    const accepted = content.find((t) => t.tid === hex(x));
    if (accepted) {
      expect(accepted).toMatchObject({ status: ' ', user: hex(user), description: hex(B('py2')), extension: '' });
      expect(accepted.records).toEqual([{ oid: hex(oid(0x7a)), tid: hex(x), data: hex(DATA('py2')) }]);
    }
    expect(content.filter((t) => t.tid !== hex(x)).map((t) => t.tid)).toEqual(small.map((t) => t.tid));
  });

  it('[WIRE-PICKLE-9] a payload without STOP, an unknown opcode, a missing mark, too few items and a length past the end are protocol errors: the secondary closes, keeps nothing, and resumes', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const errors = [
      Buffer.from(storeFrames(store('small'), Z64)[3]![0]![1]).subarray(0, -1), // the 4th T without its STOP
      B('(X\x01\x00\x00\x00T(\xfftt.'), // an opcode no pickle protocol has
      B('X\x01\x00\x00\x00Tt.'), // TUPLE without MARK
      B('R.'), // REDUCE on an empty stack
      B('(X\xff\x00\x00\x00T'), // a length that runs past the end
    ];
    const closedBySecondary: boolean[] = [];
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      if (n >= errors.length) return c.send(flat(frames));
      // the first three transactions (on the first connection), then the bad payload where a T is due
      const first = frames.filter((f) => Buffer.compare((decodeMessage(f[0]![1]) as TransactionMessage).tid, tidOf(small[2]!.tid)) <= 0);
      c.send([...flat(first), encodeFrame(errors[n]!)]);
      closedBySecondary[n] = await c.waitForClose(5000);
      c.destroy();
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    await reaches(s, small.at(-1)!.tid, 30_000);
    expect(closedBySecondary).toEqual([true, true, true, true, true]);
    for (let n = 1; n <= 5; n++) expect(hex((await p.connections[n]!.handshake).startTid), `handshake ${n}`).toBe(small[2]!.tid);
    await s.node.stop();
    expect(byValue(fileContent(s.fs))).toEqual(byValue(small));
  });

  it('[WIRE-PICKLE-5] a control message that asks for a call (os.mkdir) makes the secondary call nothing', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const target = path.join(workdir(), 'made-by-the-secondary');
    const tid = LATER;
    const ext = Buffer.concat([B('}'), pk.text('probe'), B('cos\nmkdir\n('), pk.text(target), B('tR'), B('s')]);
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      if (n > 0) return;
      c.send(rawTransaction(new StreamEncoder(startTid), tPayload(tid, ext), [{ oid: oid(0x7b), tid, data: DATA('probe') }]));
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    // the transaction has been handled once it is committed, or refused (a new connection)
    const end = Date.now() + 15_000;
    while ((await lastTidOf(s)) !== hex(tid) && p.connections.length < 2 && Date.now() < end) await sleep(25);
    await sleep(200);
    expect(existsSync(target)).toBe(false);
  });

  it('[WIRE-PICKLE-13] objects in an extension (globals of a module that exists nowhere, REDUCE, BUILD, INST, OBJ) are kept inert, committed, and stored unchanged', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const mod = 'zrs_conformance_probe_3f9a';
    const tid = LATER;
    const ext = Buffer.concat([
      B('}('),
      pk.text('global'), B(`c${mod}\nThing\n`),
      pk.text('reduce'), B(`c${mod}\nmake\n(`), pk.text('abc'), B('K\x05tR'),
      pk.text('build'), B(`c${mod}\nThing\n)R}`), pk.text('a'), B('K\x01sb'),
      pk.text('inst'), B(`(K\x01i${mod}\nThing\n`),
      pk.text('obj'), B(`(c${mod}\nThing\nK\x02o`),
      B('u'),
    ]);
    const t = tPayload(tid, ext);
    const want = pickleToJson((decodeMessage(t) as TransactionMessage).extension);
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      c.send(rawTransaction(new StreamEncoder(startTid), t, [{ oid: oid(0x7c), tid, data: DATA('inert') }]));
    });
    const s = await startSecondary({ from: p.address });
    await reaches(s, hex(tid), 10_000);
    await s.node.stop();
    expect(extensionJson(transactionOf(s.fs, tid)!.extension)).toEqual(want);
  });

  it('[WIRE-KA-3] a keep-alive delay of 0 sends no keep-alive at all', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await serving('small');
    const s = await startSecondary({ from: p.address, keepAliveDelay: 0 });
    await reaches(s, small.at(-1)!.tid);
    await sleep(1500);
    const c = await p.connection(0);
    expect(c.frames).toHaveLength(2);
    expect(c.closed).toBe(false);
  });

  it('[WIRE-LIFE-2] one secondary through the states of the first table: refused connect, lost connection, protocol error, reconnection, shutdown', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const port = await freePort();
    const address: Address = { kind: 'tcp', host: '127.0.0.1', port };
    const s = await startSecondary({ from: address, reconnectDelay: 0.2 });
    await sleep(600); // CONNECTING → refused → RECONNECT_WAIT, more than once
    const handshakes: string[] = [];
    let n = 0;
    const connections = await listenOn(address, async (c) => {
      const i = n++;
      const { startTid } = await c.handshake;
      handshakes.push(hex(startTid));
      const frames = storeFrames(store('small'), startTid);
      if (i === 0) return c.destroy(); // a primary that refuses: closed at once
      if (i === 1) {
        // lost inside a transaction
        c.send(frames[0]!.slice(0, -1).flat());
        await sleep(100);
        return c.end();
      }
      if (i === 2) {
        // five transactions, then a wrong digest: a protocol error
        const sixth = frames[5]!;
        const wrong = encodeMessage({ type: 'C', checksum: Buffer.alloc(16, 0xaa) });
        return c.send([...flat(frames.slice(0, 5)), ...sixth.slice(0, -1).flat(), encodeFrame(wrong)]);
      }
      c.send(flat(frames));
    });
    await reaches(s, small.at(-1)!.tid);
    expect(handshakes).toEqual([hex8(Z64), hex8(Z64), hex8(Z64), small[4]!.tid]);
    expect(connections[2]!.closed).toBe(true);
    expect(connections[3]!.closed).toBe(false);
    expect(await s.node.stop()).toEqual({ code: 0, signal: null });
    await sleep(600);
    expect(connections).toHaveLength(4); // no reconnection after shutdown
    expect(byValue(fileContent(s.fs))).toEqual(byValue(small));
  });

  it('[FS-COMMIT-4] killed at random moments while it commits: at most one unfinished (c) record, always the last, and nothing lost after restarts', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const count = 300;
    const generated = Array.from({ length: count }, (_, i) => {
      const tid = after(LATER, 1000 * (i + 1));
      return { t: txn(tid, `generated ${i}`), records: [record(0x100 + (i % 7), tid, DATA(`${i}`.repeat(200)))] };
    });
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      const payloads = generated.filter((g) => Buffer.compare(g.t.tid, startTid) > 0).flatMap((g) => transactionPayloads(g.t, g.records));
      c.send(restream(payloads, startTid, () => null));
    });
    const fs = path.join(workdir(), 'Data.fs');
    const random = prng(SEED);
    for (let round = 0; round < 4; round++) {
      const s = await startSecondary({ from: p.address, fs });
      await p.connection(round);
      await sleep(20 + Math.floor(random() * 200));
      await s.node.kill();
      const r = FileStorageReader.open(fs);
      try {
        const size = r.size();
        let at = 4;
        for (;;) {
          const scan = r.scan(at);
          if (scan.kind === 'transaction') {
            at = scan.txn.next;
            continue;
          }
          if (scan.kind === 'checkpoint') expect(scan.txn.next, `a c record at ${at} is not the last record`).toBe(size);
          break;
        }
      } finally {
        r.close();
      }
    }
    const s = await startSecondary({ from: p.address, fs });
    await reaches(s, hex(generated.at(-1)!.t.tid), 30_000);
    await s.node.stop();
    expect(checkFile(fs).violation).toBeNull();
    expect(fileContent(fs).map((t) => t.tid)).toEqual(generated.map((g) => hex(g.t.tid)));
  });

  it('[WIRE-ADDR-1] [WIRE-ADDR-2] a primary address that is a path is a Unix domain socket', async (ctx) => {
    requires(ctx, iut, 'secondary', 'unix');
    const address: Address = { kind: 'unix', path: path.join(workdir(), 'primary.sock') };
    const connections = await listenOn(address, async (c) => {
      const { startTid } = await c.handshake;
      c.send(flat(storeFrames(store('small'), startTid)));
    });
    const s = await startSecondary({ from: address });
    await reaches(s, small.at(-1)!.tid);
    expect(connections).toHaveLength(1);
  });

  it('[WIRE-ADDR-2] a primary address [IPV6-ADDRESS]:PORT', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const probe = net.createServer();
    const v6 = await new Promise<boolean>((resolve) => probe.once('error', () => resolve(false)).listen(0, '::1', () => resolve(true)));
    probe.close();
    if (!v6) ctx.skip('no IPv6 loopback on this host');
    const address: Address = { kind: 'tcp', host: '::1', port: await freePort() };
    const connections = await listenOn(address, async (c) => {
      const { startTid } = await c.handshake;
      c.send(flat(storeFrames(store('small'), startTid)));
    });
    const s = await startSecondary({ from: address });
    await reaches(s, small.at(-1)!.tid);
    expect(connections.length).toBeGreaterThanOrEqual(1);
  });
});

describe(`secondary with blobs: ${iut.name}`, () => {
  const want = fileContent(store('blobs'));

  /**
   * A secondary whose blob directory is `blobDir` (startSecondary always makes a new one, and
   * these cases need one prepared beforehand). Stopped after the case.
   */
  async function secondaryWithBlobDir(from: Address, fs: string, blobDir: string): Promise<{ node: IutNode; fs: string }> {
    const config = writeZrsConfig(path.join(path.dirname(fs), 'secondary.conf'), [`replicate-from ${formatAddress(from)}`], fs, blobDir);
    const node = await IutNode.start(iut, 'secondary', { fs, from: formatAddress(from), config, reconnectDelay: '0.2', blobDir });
    servers.push({ close: () => node.stop(5000) });
    return { node, fs };
  }

  /** Every file under a blob directory, relative, except `.layout`. */
  function filesUnder(dir: string): string[] {
    const out: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else out.push(path.relative(dir, p));
      }
    };
    walk(dir);
    return out.filter((f) => f !== '.layout').sort();
  }

  it.for([
    ['a new blob directory', null, 'bushy'],
    ['an existing directory without .layout holding other names', (d: string) => (mkdirSync(d), writeFileSync(path.join(d, 'README'), 'kept')), 'lawn'],
    ['an empty directory whose .layout says lawn with white space around it', (d: string) => (mkdirSync(d), writeFileSync(path.join(d, '.layout'), ' lawn\n')), 'lawn'],
  ] as const)(
    '[FS-BLOB-1] [FS-BLOB-2] [FS-BLOB-3] [FS-BLOB-5] [FS-BLOB-6] %s: the layout is chosen and written to .layout as ZODB does, blob files are where that layout puts them, and nothing is left in tmp',
    async ([, prepare, layout], ctx) => {
      requires(ctx, iut, 'secondary', 'blobs');
      const dir = workdir();
      const blobDir = path.join(dir, 'blobs');
      prepare?.(blobDir);
      const p = await serving('blobs', true);
      const s = await secondaryWithBlobDir(p.address, path.join(dir, 'Data.fs'), blobDir);
      await reaches(s, want.at(-1)!.tid);
      await s.node.stop();
      expect(readFileSync(path.join(blobDir, '.layout'), 'latin1').trim()).toBe(layout);
      const theirs = new BlobDirectory(fixture('blobs', 'blobs'));
      const place = (o: string, t: string) =>
        layout === 'bushy'
          ? path.join(...[...tidOf(o)].map((b) => `0x${b.toString(16).padStart(2, '0')}`), `${blobRepr(tidOf(t))}.blob`)
          : path.join(blobRepr(tidOf(o)), `${blobRepr(tidOf(t))}.blob`);
      const expected = new Set<string>();
      for (const t of want) {
        for (const r of t.records) {
          const source = theirs.blobPath(tidOf(r.oid), tidOf(r.tid));
          if (!existsSync(source)) continue;
          const mine = path.join(blobDir, place(r.oid, r.tid));
          expected.add(path.relative(blobDir, mine));
          if (statSync(source).size === 0) continue; // zero-length blobs: DEV-BLOB0-1
          expect(readFileSync(mine).equals(readFileSync(source)), mine).toBe(true);
        }
      }
      const stray = filesUnder(blobDir).filter((f) => !expected.has(f) && f !== 'README');
      expect(stray).toEqual([]);
      if (existsSync(path.join(blobDir, 'tmp'))) expect(readdirSync(path.join(blobDir, 'tmp'))).toEqual([]);
    },
  );
});
