// Conformance of a secondary, judged by fake primaries and by the files it writes: every
// validity rule of its file, the magic, recovery of a damaged tail, the pickle profile of
// its decoder (accepted opcodes, protocol errors, inert objects), framing, addresses,
// connections and keep-alives, and its blob directory.
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { checkFile } from '../../reference/filestorage/checker.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { encodeFrame, frameHeader } from '../../reference/framing.ts';
import type { Frame } from '../../reference/primary/frames.ts';
import { decodeMessage, encodeMessage, type TransactionMessage } from '../../reference/messages.ts';
import type { Address } from '../../reference/net/address.ts';
import { type Json, pickleToJson } from '../../reference/pickle/json.ts';
import { PyDict, PyTuple } from '../../reference/pickle/values.ts';
import { type OutgoingRecord, StreamEncoder } from '../../reference/stream.ts';
import { compareTids, hex8, tidFromParts, Z64 } from '../../reference/timestamp.ts';
import { lastTidOf, reaches, requires, secondaryIut, SEED, startSecondary, workdir } from '../context.ts';
import { until } from '../wait.ts';
import { FIXTURES } from '../env.ts';
import { freePort } from '../../reference/net/ports.ts';
import {
  commitOf,
  damagedOnce,
  FakeConnection,
  FakePrimary,
  flat,
  framesAsSent,
  payloadsOf,
  restream,
  type Sent,
  serveStore,
  storeFrames,
  type Transaction,
  transactionPayloads,
} from '../peers/fake-primary.ts';
import { sleep } from '../peers/fake-secondary.ts';
import { prng } from '../proxy/fault-proxy.ts';
import { backpointersOf, byValue, checkContent, checkValid, extensionJson, prevPointers, versionedRecords } from '../file-checks.ts';
import { blobDirFiles, blobPlace } from '../blob-places.ts';
import { canMountTmpfs, mountTmpfs } from '../tmpfs.ts';
import { check, independently } from '../checks.ts';
import { expectedTransactions } from '../expected.ts';
import { after, hex, LATER, oid, tidOf } from '../tids.ts';
import * as floors from '../pickle-limits.ts';
import { atLimit, DECODING_LIMITS, HARNESS_CEILING, HARNESS_DECODING, overLimit } from '../pickle-limits.ts';
import { loadPickle } from '../../reference/pickle/decoder.ts';

const iut = secondaryIut();
const store = (name: string) => path.join(FIXTURES, name, 'Data.fs');
const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
const small = fileContent(store('small'));
const keepAliveDelay = iut.features.has('fractionalDelays') ? 0.3 : 1;

// ---- pickles written by hand, for messages in forms the reference encoder never writes ----
const B = (s: string) => Buffer.from(s, 'latin1');
/** A 4-byte little-endian integer, unsigned or signed. */
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const i32 = (n: number) => u32(n >>> 0);
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

// ---- fake primaries and servers, closed after each case ----
const servers: { close(): unknown }[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Closes `server` after the case. */
function tracked<T extends { close(): unknown }>(server: T): T {
  servers.push(server);
  return server;
}

const fake = async (script: (c: FakeConnection, n: number) => void | Promise<void>) => tracked(await FakePrimary.listen(script));

/** The correct stream of `small` for a start tid. */
const smallStream = (startTid: Buffer) => flat(storeFrames(store('small'), startTid));

/** {@link damagedOnce}, closed after the case. */
async function damagedOnceTracked(damaged: (startTid: Buffer) => Uint8Array[], correct = smallStream) {
  const { primary, release } = await damagedOnce({ damaged, correct });
  return { p: tracked(primary), release };
}

/**
 * Gates for the connections of a fake primary: connection `n` waits at `wait(n)` until the case
 * calls `open(n)` (connection 0 is open), so that what a case looks at between two connections
 * is not changed by the next one.
 */
function gates() {
  const opened = new Map<number, () => void>();
  const waits = new Map<number, Promise<void>>();
  const get = (n: number) => {
    if (!waits.has(n)) waits.set(n, n === 0 ? Promise.resolve() : new Promise<void>((r) => opened.set(n, r)));
    return waits.get(n)!;
  };
  return {
    wait: get,
    open(n: number) {
      get(n);
      opened.get(n)?.();
    },
  };
}

/** Serves `name` correctly (and `extra` after it) to every connection, from its start tid. */
const serving = (name: string, blobs = false, extra: Transaction[] = []): Promise<FakePrimary> =>
  fake(serveStore(store(name), blobs ? new BlobDirectory(fixture(name, 'blobs')) : null, extra));

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

/** A transaction whose `T` sets the key 'k' twice (to 1, then 2). */
function repeatProbe(tid: Buffer): Transaction {
  return { t: { ...txn(tid, 'a key set twice'), extension: new PyDict([['k', 1n], ['k', 2n]]) }, records: [record(0x79, tid, B('k'))] };
}

/** Whether the secondary stored both pairs of {@link repeatProbe}'s extension, against WIRE-PICKLE-21. */
function keptRepeatedPairs(fs: string, tid: Buffer): boolean {
  const t = transactionOf(fs, tid);
  return !!t && (loadPickle(Buffer.from(t.extension, 'hex'), { mergeKeys: false }) as PyDict).entries.length > 1;
}

describe(`secondary: ${iut.name}`, () => {
  it.for(['small', 'undo', 'packed'])(
    '[FS-MAGIC-1] [FS-MAGIC-3] [FS-TXN-1] [FS-TXN-2] [FS-TXN-3] [FS-DATA-1] [FS-DATA-2] [FS-DATA-3] [FS-DATA-4] [FS-DATA-5] [FS-DATA-6] [FS-BACK-1] [FS-BACK-5] [FS-STATUS-1] [FS-STATUS-2] [FS-STATUS-3] [FS-STATUS-4] [FS-TID-1] [FS-TID-2] [FS-TID-4] [FS-TID-7] [FS-CHECK-2] [FS-CHECK-3] [FS-CHECK-4] [FS-CHECK-5] [FS-CHECK-6] [FS-CHECK-7] [FS-CHECK-8] [FS-CHECK-9] [FS-CHECK-10] [FS-CHECK-11] [FS-CHECK-12] [FS-CHECK-13] [FS-CHECK-14] [FS-CHECK-15] [FS-CHECK-16] [FS-CHECK-17] [FS-CHECK-18] [FS-CHECK-19] [DEV-EXTBYTES-1] [DEV-VERSION-1] [WIRE-FRAME-2] %s: the file the secondary writes passes every validity rule, holds what was sent (extensions by value), and chains prev pointers',
    async (name, ctx) => {
      requires(ctx, iut, 'secondary');
      const p = await serving(name);
      const s = await startSecondary({ from: p.address });
      const want = fileContent(store(name));
      await check('WIRE-TXN-10', () => reaches(s, want.at(-1)!.tid));
      const exit = await s.node.stop();
      check('CONF-PROC-2', () => expect(exit, 'exit on SIGTERM').toEqual({ code: 0, signal: null }));
      const magic = readFileSync(s.fs).subarray(0, 4).toString('latin1');
      check('FS-MAGIC-1', () => expect(['FS30', 'FS21'], `magic ${JSON.stringify(magic)}`).toContain(magic));
      check('FS-MAGIC-3', () => expect(magic, 'the magic of a new file').toBe('FS30'));
      // every record applied as an ordinary record, without a version: looked at before validity,
      // which would blame the file's rule (FS-CHECK-14) rather than the secondary's
      check('DEV-VERSION-1', () => expect(versionedRecords(s.fs), 'records written with a version').toEqual([]));
      // a valid file meets every rule of §9 and the layout rules they check
      const fileRules = ['FS-TXN-1', 'FS-TXN-2', 'FS-TXN-3', 'FS-DATA-1', 'FS-DATA-2', 'FS-DATA-3', 'FS-DATA-4', 'FS-DATA-5', 'FS-BACK-1', 'FS-STATUS-1', 'FS-STATUS-2', 'FS-TID-1', 'FS-TID-2', 'FS-TID-7'];
      checkValid(s.fs, [...fileRules, ...Array.from({ length: 18 }, (_, i) => `FS-CHECK-${i + 2}`)]);
      const got = fileContent(s.fs);
      check('FS-STATUS-3', () => expect(got.filter((t) => t.status === 'u' || t.status === 'c').map((t) => t.tid), 'transactions written with status u or c').toEqual([]));
      // resolved data equal to what was sent: empty frames as no data (WIRE-FRAME-2); a record the
      // secondary wrote as a backpointer points at the same data (FS-BACK-5), any other holds what was sent (WIRE-DATA-6)
      const backpointers = backpointersOf(s.fs);
      checkContent(got, want, { status: 'FS-STATUS-4', noData: 'WIRE-FRAME-2', dataOf: (r) => (backpointers.has(`${r.tid}:${r.oid}`) ? 'FS-BACK-5' : 'WIRE-DATA-6') });
      check('FS-DATA-6', () => expect(prevPointers(s.fs)).toEqual([]));
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
    await check('WIRE-TXN-10', () => reaches(s, small.at(-1)!.tid));
    const c = await check('WIRE-ADDR-6', () => p.connection(0));
    await check('WIRE-KA-2', () => until('two keep-alives', () => c.keepAlives.length >= 2, { timeoutMs: keepAliveDelay * 4000 }));
    await sleep(50);
    check('DEV-TIMEOUT-2', () => expect(p.connections.length === 1 && !c.closed, 'the secondary closed its connection while idle').toBe(true));
    check('WIRE-HS-5', () => expect(c.frames.slice(2).filter((f) => f.payload.length !== 0).map((f) => f.payload.length), 'frames after the handshake that are not keep-alives').toEqual([]));
    check('WIRE-FRAME-1', () => expect(bytes, 'bytes received, against the whole frames decoded from them').toBe(c.frames.reduce((n, f) => n + 4 + f.payload.length, 0)));
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
    // on an FS30 file, a secondary that does not connect or does not commit breaks the rule of that
    // step; on an FS21 file, it did not take the file as it takes an FS30 one: the row's rule
    const step = <T>(id: string, fn: () => Promise<T>) => (magic === 'FS21' ? fn() : check(id, fn));
    const h = await step('WIRE-HS-1', async () => (await p.connection(0)).handshakeWithin(10_000));
    expect(hex(h.startTid), 'the start tid on a file whose last transaction is the 10th').toBe(small[9]!.tid);
    await step('WIRE-TXN-10', () => reaches(s, small.at(-1)!.tid));
    expect((await s.node.stop()).code).toBe(0);
    expect(readFileSync(fs).subarray(0, 4).toString('latin1')).toBe(magic);
    expect(checkFile(fs).violation).toBeNull();
    expect(byValue(fileContent(fs))).toEqual(byValue(small));
  });

  it('[FS-MAGIC-6] a secondary opening an empty file writes the magic FS30 into it before anything else', async (ctx) => {
    requires(ctx, iut, 'secondary');
    // nothing to replicate: once stopped, the file is a valid file without transactions
    const idle = await fake(async (c) => void (await c.handshake));
    const empty = path.join(workdir(), 'Data.fs');
    writeFileSync(empty, Buffer.alloc(0));
    const first = await startSecondary({ from: idle.address, fs: empty });
    await check('WIRE-HS-1', async () => (await idle.connection(0)).handshakeWithin(10_000));
    await first.node.stop();
    expect(readFileSync(empty).toString('latin1'), 'an empty file after the secondary ran on it').toBe('FS30');
    // transactions come after the magic
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, Buffer.alloc(0));
    const p = await serving('small');
    const s = await startSecondary({ from: p.address, fs });
    const h = await check('WIRE-HS-1', async () => (await p.connection(0)).handshakeWithin(10_000));
    check('WIRE-HS-3', () => expect(hex(h.startTid), 'start tid on an empty file').toBe(hex8(Z64)));
    await check('WIRE-TXN-10', () => reaches(s, small.at(-1)!.tid));
    await s.node.stop();
    expect(readFileSync(fs).subarray(0, 4).toString('latin1')).toBe('FS30');
    checkValid(fs);
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
      await check('FS-RECOVER-4', () => reaches(s, hex(LATER)));
      const exit = await s.node.stop();
      check('CONF-PROC-2', () => expect(exit, 'exit on SIGTERM').toEqual({ code: 0, signal: null }));
      const saved = `${fs}.tr${trTaken ? 1 : 0}`;
      check('FS-RECOVER-2', () => {
        expect(existsSync(saved), `${path.basename(saved)} was not written`).toBe(true);
        expect(readFileSync(saved).equals(original.subarray(tpos)), `${path.basename(saved)} is not the damaged tail`).toBe(true);
        if (trTaken) expect(readFileSync(`${fs}.tr0`, 'latin1'), 'a Data.fs.tr0 that was there before').toBe('taken');
      });
      checkValid(fs);
      const after_ = FileStorageReader.open(fs);
      const txns = [...after_.transactions()];
      after_.close();
      check('FS-RECOVER-4', () => {
        expect(txns.slice(0, 19).map((t) => hex(t.tid)), 'the whole transactions before the cut').toEqual(small.slice(0, 19).map((t) => t.tid));
        expect(txns[19]!.offset, 'where the next transaction was written').toBe(tpos);
        expect(hex(txns.at(-1)!.tid)).toBe(hex(LATER));
      });
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
    checkValid(s.fs);
  });

  it('[FS-TXN-4] [DEV-REFUSE-1] [DEV-REFUSE-2] a description or an extension longer than 65535 bytes is refused, never truncated, and later transactions still commit; 65535 bytes are written whole', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const base = tidOf(small[2]!.tid);
    const longDescription = after(base, 1);
    const good = tidOf(small[3]!.tid);
    const longExtension = after(good, 1);
    const fits = after(good, 2);
    const gate = gates();
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      await gate.wait(n);
      const frames = storeFrames(store('small'), startTid);
      const payloads = n === 0 ? payloadsOf(frames.slice(0, 3)) : n === 1 ? payloadsOf(frames.slice(0, 1)) : [];
      const t =
        n === 0
          ? { ...txn(longDescription), description: Buffer.alloc(65536, 0x64) }
          : n === 1
            ? { ...txn(longExtension), extension: new PyDict([['k', 'x'.repeat(66000)]]) }
            : { ...txn(fits), user: Buffer.alloc(65535, 0x75), description: Buffer.alloc(65535, 0x64) };
      if (Buffer.compare(t.tid, startTid) > 0) payloads.push(...transactionPayloads({ t, records: [record(0x72, t.tid, DATA('long'))] }));
      c.send(restream(payloads, startTid));
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const tids = () => fileContent(s.fs).map((t) => t.tid);
    /** Waits until connection `n` is closed by the secondary or `tid` is in its file; ends it if it is still open. */
    const outcome = async (n: number, tid: Buffer) => {
      const c = await check(n === 0 ? 'WIRE-ADDR-6' : 'WIRE-RECON-1', () => p.connection(n, 10_000));
      gate.open(n);
      await until(`connection ${n + 1} to close, or ${hex(tid)} to be written`, () => c.closed || tids().includes(hex(tid)), { timeoutMs: 10_000 }).catch(() => undefined);
      c.end();
    };
    await outcome(0, longDescription);
    check('FS-TXN-4', () => expect(tids(), 'a description of 65536 bytes').toEqual(small.slice(0, 3).map((t) => t.tid)));
    // the refused T left nothing behind that stops the secondary: it commits the next transaction
    // (connection 2), and it still stops when told to
    gate.open(1);
    await independently(
      () => check('DEV-REFUSE-1', () => reaches(s, hex(good), 15_000)),
      async () => {
        if (tids().includes(hex(good))) return;
        const exit = await s.node.stop(10_000);
        check('DEV-REFUSE-2', () => expect(exit, 'SIGTERM after a refused T: the secondary did not exit 0 within 10 s').toEqual({ code: 0, signal: null }));
      },
    );
    await outcome(1, longExtension);
    check('FS-TXN-4', () => expect(tids(), 'an extension of more than 65535 bytes').toEqual(small.slice(0, 4).map((t) => t.tid)));
    gate.open(2);
    await check('DEV-REFUSE-1', () => p.connection(2, 10_000)); // it connects again after the refusal
    await check('FS-TXN-4', () => reaches(s, hex(fits)));
    const exit = await s.node.stop(10_000);
    check('DEV-REFUSE-2', () => expect(exit, 'SIGTERM after refused transactions').toEqual({ code: 0, signal: null }));
    const content = fileContent(s.fs);
    check('FS-TXN-4', () => {
      expect(content.map((t) => t.tid)).toEqual([...small.slice(0, 4).map((t) => t.tid), hex(fits)]);
      expect(content.at(-1)!.user.length / 2, 'user of 65535 bytes').toBe(65535);
      expect(content.at(-1)!.description.length / 2, 'description of 65535 bytes').toBe(65535);
    });
    checkValid(s.fs);
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
    await check('WIRE-RECON-1', () => reaches(s, small.at(-1)!.tid));
    const quiet = Math.max(keepAliveDelay * 3000, 1500);
    await sleep(quiet);
    check('DEV-TIMEOUT-2', () => {
      expect(p.connections.length, 'connections: the third one was closed during the silence').toBe(3);
      expect(p.connections[2]!.closed, 'the secondary closed a silent connection').toBe(false);
    });
    check('WIRE-ADDR-6', () => {
      for (let n = 1; n < opened.length; n++) {
        expect(closedAt[n - 1], `connection ${n - 1} still open when connection ${n} was made`).toBeLessThanOrEqual(opened[n]! + 50);
      }
    });
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
    await check(['WIRE-FRAME-6', 'WIRE-FRAME-4'], () => reaches(s, hex(tid), 30_000));
    await s.node.stop();
    const t = transactionOf(s.fs, tid)!;
    check('WIRE-FRAME-6', () => expect(t.records[0]?.data === hex(big), 'the 5 MiB record data').toBe(true));
    check('WIRE-FRAME-4', () => expect(t.records.slice(1).map((r) => r.data)).toEqual(lookAlikes.map((d) => hex(d))));
  });

  it('[WIRE-FRAME-6] the largest control message a valid file gives (a T of about 320 kB) and a 64 MiB data frame are stored', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const tid = LATER;
    // user and description of 65535 bytes above 0x7f (two bytes each in the pickle), an extension of 60 kB
    const t: TransactionMessage = { ...txn(tid), user: Buffer.alloc(0xffff, 0xff), description: Buffer.alloc(0xffff, 0xfe), extension: new PyDict([['note', 'é'.repeat(30_000)]]) };
    const size = encodeMessage(t).length;
    const big = Buffer.alloc(64 << 20);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32BE(i, i);
    const p = await serving('small', false, [{ t, records: [record(0x73, tid, big)] }]);
    const s = await startSecondary({ from: p.address });
    await check('WIRE-FRAME-6', () => reaches(s, hex(tid), 120_000));
    await s.node.stop();
    const stored = transactionOf(s.fs, tid)!;
    check('WIRE-FRAME-6', () => {
      expect(size, 'the T message (bytes)').toBeGreaterThan(300_000);
      expect(stored.user === hex(t.user) && stored.description === hex(t.description), 'the user and description of the large T').toBe(true);
      expect(stored.records[0]?.data === hex(big), 'the 64 MiB record data').toBe(true);
    });
  }, 180_000);

  it.for([
    { id: 'WIRE-PICKLE-16', what: 'lists nested 400 deep', extension: floors.extensionValue.depth, stored: (e: PyDict) => floors.listDepth(e.get('d')) === floors.DEPTH },
    { id: 'WIRE-PICKLE-17', what: 'a 4300-digit integer', extension: floors.extensionValue.integer, stored: (e: PyDict) => e.get('i') === floors.BIG },
  ])('[WIRE-PICKLE-16] [WIRE-PICKLE-17] an extension at a decoding floor is stored: $what', async ({ id, what, extension, stored }, ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await serving('small', false, [{ t: { ...txn(LATER, what), extension: extension() }, records: [record(0x75, LATER, B('x'))] }]);
    const s = await startSecondary({ from: p.address });
    await check(id, () => reaches(s, hex(LATER), 30_000));
    await s.node.stop();
    check(id, () => expect(stored(loadPickle(Buffer.from(transactionOf(s.fs, LATER)!.extension, 'hex')) as PyDict), `the stored extension holds ${what}`).toBe(true));
  });

  it('[WIRE-FRAME-8] [WIRE-FRAME-9] a header announcing 4 GiB where a control message, or a record\'s data, is expected ends the connection at once', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const announce = Buffer.from('ffffffff', 'hex');
    const closedBySecondary: boolean[] = [];
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      if (n >= 2) return c.send(smallStream(startTid));
      const e = new StreamEncoder(startTid);
      const begin = e.message(txn(LATER));
      c.send(n === 0 ? [...begin, announce] : [...begin, ...e.message(record(1, LATER, B('x')).message), announce]);
      closedBySecondary[n] = await c.waitForClose(5_000);
      c.destroy(); // a secondary without the limit waits for the 4 GiB: go on without it
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    await check('WIRE-RECON-1', () => reaches(s, small.at(-1)!.tid, 60_000));
    await s.node.stop();
    await independently(
      () => check('WIRE-FRAME-8', () => expect(closedBySecondary[0], 'closed within 5 s of a 4 GiB header where a control message was expected').toBe(true)),
      () => check('WIRE-FRAME-9', () => expect(closedBySecondary[1], 'closed within 5 s of a 4 GiB header where record data was expected').toBe(true)),
      () => check('WIRE-CLOSE-6', () => expect(fileContent(s.fs).map((t) => t.tid)).toEqual(small.map((t) => t.tid))),
    );
  });

  it('[FS-FAIL-1] [FS-FAIL-2] a disk that fills during a catch-up: the file keeps whole transactions, the node keeps running, and it converges once space is back', async (ctx) => {
    requires(ctx, iut, 'secondary');
    if (!canMountTmpfs) ctx.skip('skipped: mounting a small tmpfs for the secondary needs root');
    // 24 MB in 12 transactions of two 1 MB records after small, into 8 MB
    let tid = LATER;
    const extra: Transaction[] = [];
    for (let t = 0; t < 12; t++) {
      tid = after(tid, 1);
      extra.push({ t: txn(tid, `big ${t}`), records: [0, 1].map((i) => record(0x100 + t * 2 + i, tid, Buffer.alloc(1 << 20, t * 2 + i + 1))) });
    }
    const disk = path.join(workdir(), 'disk');
    const tmpfs = mountTmpfs(disk, '8m');
    try {
      // the second connection waits until the case has looked at the file, at rest between two attempts
      const serve = serveStore(store('small'), null, extra);
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const p = await fake(async (c, n) => {
        if (n === 1) await gate;
        return serve(c);
      });
      const s = await startSecondary({ from: p.address, fs: path.join(disk, 'Data.fs'), reconnectDelay: 0.2 });
      const first = await check('WIRE-ADDR-6', () => p.connection(0));
      const ended = await first.waitForClose(60_000);
      await sleep(500);
      check('FS-FAIL-1', () => expect(s.node.log().exit, 'the secondary exited after its disk filled').toBeNull());
      check('FS-FAIL-2', () => expect(ended, 'the secondary closed its connection once its disk was full').toBe(true));
      await check('FS-FAIL-2', async () => (await p.connection(1, 30_000)).handshakeWithin(10_000));
      checkValid(s.fs, ['FS-FAIL-1']);
      const served = [...small.map((t) => t.tid), ...extra.map((x) => hex(x.t.tid))];
      check('FS-FAIL-1', () => {
        const kept = fileContent(s.fs).map((t) => t.tid);
        expect(kept, 'the file while the disk is full: whole transactions, a prefix of those served').toEqual(served.slice(0, kept.length));
      });
      release();
      await check('FS-FAIL-2', () => until('a third connection: the secondary tried again', () => p.connections.length >= 3, { timeoutMs: 30_000, everyMs: 50 }));
      tmpfs.resize('64m');
      await check('FS-FAIL-2', () => reaches(s, served.at(-1)!, 60_000));
      await s.node.stop();
      checkValid(s.fs, ['FS-FAIL-1']);
    } finally {
      tmpfs.unmount();
    }
  }, 180_000);

  it('[WIRE-FRAME-8] [WIRE-FRAME-9] just over and at the declared limits: a header one byte beyond maxMessageSize or maxRecordSize ends the connection at once; a T of exactly maxMessageSize (up to 64 MiB) is committed, and a record of exactly maxRecordSize is stored (above the floor)', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const { maxMessageSize, maxRecordSize } = iut.limits;
    if (maxMessageSize === undefined && maxRecordSize === undefined) ctx.skip(`unsupported: ${iut.name} declares neither maxMessageSize nor maxRecordSize`);
    const over = [...(maxMessageSize !== undefined ? ['message' as const] : []), ...(maxRecordSize !== undefined ? ['record' as const] : [])];
    const closedBySecondary = new Map<string, boolean>();
    // a record of exactly the limit, unless the limit is the floor, whose record the WIRE-FRAME-6 case stores
    const atLimit = maxRecordSize === undefined || maxRecordSize === 64 << 20 ? null : Buffer.alloc(maxRecordSize, 0x5a);
    // a T of exactly maxMessageSize (up to 64 MiB): its key None set to a text that fills it, then to
    // None, so that what is stored is {None: None} (WIRE-PICKLE-21)
    const messageTid = after(LATER, 2);
    const fullT = (fill: number): TransactionMessage => ({ ...txn(messageTid, 'a message at the limit'), extension: new PyDict([[null, 'x'.repeat(fill)], [null, null]]) });
    const fill = maxMessageSize === undefined ? -1 : maxMessageSize - encodeMessage(fullT(0)).length;
    const messageAt = fill >= 0 && fill <= 64 << 20 ? fullT(fill) : null;
    const probeTid = after(LATER, 1);
    const extra = [
      ...(atLimit ? [{ t: txn(LATER, 'a record at the limit'), records: [record(0x77, LATER, atLimit)] }] : []),
      ...(messageAt ? [repeatProbe(probeTid), { t: messageAt, records: [record(0x78, messageTid, B('m'))] }] : []),
    ];
    const serve = serveStore(store('small'), null, extra);
    const p = await fake(async (c, n) => {
      const what = over[n];
      if (!what) return serve(c);
      const { startTid } = await c.handshake;
      const e = new StreamEncoder(startTid);
      const begin = e.message(txn(after(LATER, 1)));
      const header = frameHeader((what === 'message' ? maxMessageSize! : maxRecordSize!) + 1);
      c.send(what === 'message' ? [...begin, header] : [...begin, ...e.message(record(1, after(LATER, 1), B('x')).message), header]);
      closedBySecondary.set(what, await c.waitForClose(5_000));
      c.destroy();
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const caughtUp = [small.at(-1)!.tid, ...extra.map((x) => hex(x.t.tid))];
    await check('WIRE-RECON-1', () => until(`the secondary at ${caughtUp[0]} or later`, async () => caughtUp.includes(await lastTidOf(s)), { timeoutMs: 120_000, everyMs: 50 }));
    await until(`${caughtUp.at(-1)} committed`, async () => (await lastTidOf(s)) === caughtUp.at(-1), { timeoutMs: 60_000, everyMs: 50 }).catch(() => undefined);
    await s.node.stop();
    await independently(
      ...(maxMessageSize === undefined ? [] : [() => check('WIRE-FRAME-8', () => expect(closedBySecondary.get('message'), `closed within 5 s of a header of ${maxMessageSize + 1} bytes where a control message was expected`).toBe(true))]),
      ...(messageAt
        ? [
            () => {
              const t = transactionOf(s.fs, messageTid);
              // without WIRE-PICKLE-21, its extension is too long to store (FS-TXN-4)
              if (!t && keptRepeatedPairs(s.fs, probeTid)) check('WIRE-PICKLE-21', () => expect.fail(`the T of exactly ${maxMessageSize} bytes not committed: the secondary keeps every pair of a key set again, and this T sets its key twice, the first time to a text that fills it`));
              check('WIRE-FRAME-8', () => expect(t, `the T of exactly ${maxMessageSize} bytes committed`).toBeDefined());
            },
          ]
        : []),
      ...(maxRecordSize === undefined
        ? []
        : [
            () => check('WIRE-FRAME-9', () => expect(closedBySecondary.get('record'), `closed within 5 s of a header of ${maxRecordSize + 1} bytes where record data was expected`).toBe(true)),
            ...(atLimit ? [() => check('WIRE-FRAME-9', () => expect(transactionOf(s.fs, LATER)?.records[0]?.data === atLimit.toString('hex'), `the record of exactly ${maxRecordSize} bytes stored`).toBe(true))] : []),
          ]),
    );
  }, 180_000);

  it.for(DECODING_LIMITS)('[WIRE-PICKLE-20] [WIRE-PICKLE-21] the declared %s holds: a T just over it ends the connection at once; one at it is committed as sent', async (name, ctx) => {
    requires(ctx, iut, 'secondary');
    const limit = iut.limits[name];
    if (limit === undefined) return ctx.skip(`unsupported: ${iut.name} declares no ${name}`);
    const [probeTid, overTid, atTid] = [LATER, after(LATER, 1), after(LATER, 2)];
    const over = overLimit[name](limit);
    const overT = tPayload(overTid, over.extension);
    // the floor of WIRE-FRAME-6 when no message size is declared
    const room = iut.limits.maxMessageSize ?? 1 << 20;
    if (overT.length > room) return ctx.skip(`unsupported: a T holding ${over.what} takes ${overT.length} bytes, more than a control message may (${room})`);
    const at = atLimit[name](limit);
    if (limit > HARNESS_CEILING[name]) return ctx.skip(`unsupported: the harness cannot decode what a secondary stores at the declared ${name} of ${limit} (at most ${HARNESS_CEILING[name]})`);
    const atT = tPayload(atTid, at.probe.extension);
    if (atT.length > room) return ctx.skip(`unsupported: a T holding ${at.probe.what} takes ${atT.length} bytes, more than a control message may (${room})`);
    const probe = repeatProbe(probeTid);
    let closedAfterOver: boolean | undefined;
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      const e = new StreamEncoder(startTid);
      if (n === 0) {
        c.send(e.frame(overT));
        closedAfterOver = await c.waitForClose(5_000);
        return c.destroy(); // a secondary without the limit waits for the rest: go on without it
      }
      const frames = payloadsOf(storeFrames(store('small'), startTid)).flatMap((x) => e.frame(x));
      if (compareTids(probeTid, startTid) > 0) frames.push(...e.transaction(probe.t, probe.records));
      if (compareTids(atTid, startTid) > 0) frames.push(...rawTransaction(e, atT, [{ oid: oid(0x7d), tid: atTid, data: DATA('at the limit') }]));
      c.send(frames);
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const caughtUp = [small.at(-1)!.tid, hex(probeTid), hex(atTid)];
    await check('WIRE-RECON-1', () => until(`the secondary at ${caughtUp[0]} or later`, async () => caughtUp.includes(await lastTidOf(s)), { timeoutMs: 60_000, everyMs: 50 }));
    await until(`${hex(atTid)} committed`, async () => (await lastTidOf(s)) === hex(atTid), { timeoutMs: 20_000, everyMs: 50 }).catch(() => undefined);
    await s.node.stop();
    await independently(
      () => check('WIRE-PICKLE-20', () => expect(closedAfterOver, `closed within 5 s of a T holding ${over.what}, one over the declared ${name} of ${limit}`).toBe(true)),
      () => {
        const t = transactionOf(s.fs, atTid);
        const what = `the transaction whose T holds ${at.probe.what}, at the declared ${name} of ${limit}`;
        // without WIRE-PICKLE-21, the extension of a T at the values or expansion limit is too long to store (FS-TXN-4)
        if (!t && at.repeatsKey && keptRepeatedPairs(s.fs, probeTid)) check('WIRE-PICKLE-21', () => expect.fail(`${what} not committed: the secondary keeps every pair of a key set again, and this T sets its key many times`));
        check('WIRE-PICKLE-20', () => expect(t, `${what} committed`).toBeDefined());
        // the repeated key is held once (WIRE-PICKLE-21); a value, as it was sent (DEV-EXTBYTES-1)
        const stored = loadPickle(Buffer.from(t!.extension, 'hex'), HARNESS_DECODING);
        check(at.repeatsKey ? 'WIRE-PICKLE-21' : 'DEV-EXTBYTES-1', () => expect(stored instanceof PyDict && at.stored(stored), `the stored extension of the T holding ${at.probe.what}`).toBe(true));
      },
    );
  });

  it('[WIRE-SUM-9] [WIRE-TXN-13] a C without digest (C0) is a protocol error: the transaction is not committed and the secondary closes', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const c0 = B('(X\x01\x00\x00\x00C)t.');
    const { p, release } = await damagedOnceTracked((startTid) => {
      const frames = storeFrames(store('small'), startTid);
      return [...flat(frames.slice(0, 3)), ...flat([frames[3]!.slice(0, -1)]), encodeFrame(c0)];
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const first = await check('WIRE-ADDR-6', () => p.connection(0));
    await check('WIRE-TXN-10', () => reaches(s, small[2]!.tid));
    const closed = await first.waitForClose(10_000);
    check(['WIRE-TXN-13', 'WIRE-SUM-9'], () => expect(fileContent(s.fs).map((t) => t.tid), 'transactions after a C0').toEqual(small.slice(0, 3).map((t) => t.tid)));
    check('WIRE-SUM-9', () => expect(closed, 'the secondary did not close the connection after a C0').toBe(true));
    release();
    const h = await check('WIRE-RECON-1', async () => (await p.connection(1, 10_000)).handshakeWithin(10_000));
    check('WIRE-RECON-2', () => expect(hex(h.startTid)).toBe(small[2]!.tid));
    await check('WIRE-RECON-2', () => reaches(s, small.at(-1)!.tid));
    await s.node.stop();
    checkContent(fileContent(s.fs), small);
  });
  it('[WIRE-PICKLE-4] control messages using every opcode of the profile: 8-bit strings for text fields, Python 3 and 2 names of bytes, and every integer, float and string form in the extension', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const tid = LATER;
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
    const h = await check('WIRE-RECON-1', async () => (await p.connection(1, 10_000)).handshakeWithin(10_000));
    expect(hex(h.startTid), 'the start tid after the refusal').toBe(hex(good));
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
    for (const t of want) {
      for (const r of t.records) {
        const source = theirs.blobPath(tidOf(r.oid), tidOf(r.tid));
        if (!existsSync(source) || statSync(source).size === 0) continue;
        expect(readFileSync(path.join(s.blobDir!, blobPlace('bushy', r.oid, r.tid))).equals(readFileSync(source))).toBe(true);
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
      const py2: Sent[] = [[x, B(' ')] as const, [y, Buffer.from([0xe9])] as const].flatMap(([tid, status]) => [py2T(tid, status), py2S(tid), DATA('py2'), py2C]);
      c.send(framesAsSent(startTid, [...payloadsOf(frames.slice(0, 3)), ...py2]));
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
    for (let n = 1; n <= 5; n++) {
      const h = await check('WIRE-RECON-1', async () => (await p.connection(n, 10_000)).handshakeWithin(10_000));
      expect(hex(h.startTid), `handshake ${n}`).toBe(small[2]!.tid);
    }
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

  it('[WIRE-PICKLE-21] an extension that sets keys again is stored with one entry per key, as Python\'s dict: first key and position, last value', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const tid = LATER;
    const one = Buffer.from('473ff0000000000000', 'hex'); // BINFLOAT 1.0
    const nan = Buffer.from('477ff8000000000000', 'hex');
    // 'a' 1, 'b' 2, 'a' 3, 1 'x', True 'y', 1.0 'z', b'a' 'w', (1, 'a') 'v', (1.0, 'a') 'u', NaN 5, NaN 6
    const ext = Buffer.concat([
      B('}('),
      pk.text('a'), B('K\x01'), pk.text('b'), B('K\x02'), pk.text('a'), B('K\x03'),
      B('K\x01'), pk.text('x'), B('I01\n'), pk.text('y'), one, pk.text('z'),
      pk.bytes(B('a')), pk.text('w'),
      B('(K\x01'), pk.text('a'), B('t'), pk.text('v'), B('('), one, pk.text('a'), B('t'), pk.text('u'),
      nan, B('K\x05'), nan, B('K\x06'),
      B('u'),
    ]);
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      c.send(rawTransaction(new StreamEncoder(startTid), tPayload(tid, ext), [{ oid: oid(0x7e), tid, data: DATA('keys') }]));
    });
    const s = await startSecondary({ from: p.address });
    await check('WIRE-TXN-10', () => reaches(s, hex(tid), 10_000));
    await s.node.stop();
    const stored = loadPickle(Buffer.from(transactionOf(s.fs, tid)!.extension, 'hex'), { mergeKeys: false }) as PyDict;
    // what Python 3 unpickles: {'a': 3, 'b': 2, 1: 'z', b'a': 'w', (1, 'a'): 'u', nan: 5, nan: 6}
    check('WIRE-PICKLE-21', () =>
      expect(stored.entries, 'the stored extension').toEqual([
        ['a', 3n],
        ['b', 2n],
        [1n, 'z'],
        [B('a'), 'w'],
        [new PyTuple([1n, 'a']), 'u'],
        [NaN, 5n],
        [NaN, 6n],
      ]),
    );
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

  /** Waits until connection `c` is closed or `tid` is in the file `fs` (up to 10 s); true when it closed. */
  async function refusedOrWritten(c: FakeConnection, fs: string, tid: Uint8Array): Promise<boolean> {
    // written: its tid is in the file, finished or not (a transaction left at status c counts)
    const written = () => existsSync(fs) && readFileSync(fs).includes(Buffer.from(tid));
    await until(`the secondary to close, or to write ${hex(tid)}`, () => c.closed || written(), { timeoutMs: 10_000 }).catch(() => undefined);
    return c.closed && !written();
  }

  it('[DEV-PY2-1] a transaction whose control messages are in the form Python 2 zc.zrs wrote them is applied as its Python 3 form', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const x = after(tidOf(small[2]!.tid), 1); // between small[2] and small[3], with bytes above 0x7f
    const user = Buffer.from('e974e9', 'hex');
    const py2 = [
      message(pk.short('T'), pk.short(x), pk.short(' '), pk.short(user), pk.short('py2'), B('}')),
      message(pk.short('S'), pk.short(oid(0x7e)), pk.short(x), pk.short(''), B('N')),
      DATA('py2'),
    ];
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      // Python 3 transactions, each C with the digest of what was sent before it
      const py3 = (list: Frame[][]): Sent[] => list.flatMap((t) => [...payloadsOf([t.slice(0, -1)]), commitOf]);
      const before = frames.filter((t) => Buffer.compare((decodeMessage(t[0]![1]) as TransactionMessage).tid, x) < 0);
      const py2C = (digest: Buffer) => message(pk.short('C'), pk.short(digest));
      c.send(framesAsSent(startTid, [...py3(before), ...(Buffer.compare(x, startTid) > 0 ? [...py2, py2C] : []), ...py3(frames.slice(before.length))]));
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    await reaches(s, small.at(-1)!.tid, 15_000);
    await s.node.stop();
    const got = transactionOf(s.fs, x);
    expect(got, `transaction ${hex(x)} (Python 2 form) is not in the file`).toBeDefined();
    expect(got).toMatchObject({ status: ' ', user: hex(user), description: hex(B('py2')), extension: '' });
    expect(got!.records).toEqual([{ oid: hex(oid(0x7e)), tid: hex(x), data: hex(DATA('py2')) }]);
  });

  it('[DEV-BLOCKS-1] a B whose block count is -1 is a protocol error: the secondary closes and keeps nothing of the transaction', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const blobData = Buffer.from(fileContent(store('blobs')).flatMap((t) => t.records).find((r) => r.data?.includes(hex(B('ZODB.blob'))))!.data!, 'hex');
    const next = after(LATER, 1);
    const afterIt = (e: StreamEncoder) => e.transaction(txn(next, 'after it'), [record(0x80, next, DATA('after'))]);
    const { p, release } = await damagedOnceTracked(
      (startTid) => {
        // T, then B announcing -1 blocks and its record data; then a whole further transaction
        const e = new StreamEncoder(startTid);
        const bad = message(pk.text('B'), pk.bytes(oid(0x7f)), pk.bytes(LATER), pk.text(''), B('N'), Buffer.concat([B('J'), i32(-1)]));
        return [...e.message(txn(LATER, 'bad block count')), ...e.frame(bad), ...e.frame(blobData), ...afterIt(e)];
      },
      (startTid) => afterIt(new StreamEncoder(startTid)),
    );
    const s = await startSecondary({ from: p.address, blobs: true, reconnectDelay: 0.2 });
    const first = await p.connection(0);
    expect(await refusedOrWritten(first, s.fs, next), 'the secondary did not close the connection after a block count of -1, or wrote the transaction after it').toBe(true);
    release();
    await check('WIRE-RECON-1', async () => (await p.connection(1, 10_000)).handshakeWithin(10_000));
    await reaches(s, hex(next));
    await s.node.stop();
    expect(transactionOf(s.fs, LATER), 'the transaction of the bad B').toBeUndefined();
  });

  it('[DEV-SEQ-1] an S while no transaction is open (between a C and the next T) is a protocol error: the secondary closes and writes nothing of it', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const { p, release } = await damagedOnceTracked((startTid) => {
      const frames = storeFrames(store('small'), startTid);
      const stray = [encodeMessage({ type: 'S', oid: oid(0x7d), tid: tidOf(small[0]!.tid), version: '', dataTxn: null }), DATA('stray')];
      return restream([...payloadsOf(frames.slice(0, 1)), ...stray, ...payloadsOf(frames.slice(1, 2))], startTid);
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const first = await p.connection(0);
    expect(await refusedOrWritten(first, s.fs, tidOf(small[1]!.tid)), 'the secondary did not close at the stray S, or committed the next transaction on that connection').toBe(true);
    release();
    await check('WIRE-RECON-2', () => reaches(s, small.at(-1)!.tid));
    await s.node.stop();
    checkContent(fileContent(s.fs), small, { extra: 'DEV-SEQ-1', records: 'DEV-SEQ-1' });
  });

  it('[DEV-SEQ-2] an S whose tid differs from its transaction tid is a protocol error: the secondary closes and keeps nothing of the transaction', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await fake(async (c, n) => {
      const { startTid } = await c.handshake;
      if (n > 0) return;
      c.send(new StreamEncoder(startTid).transaction(txn(LATER, 'other record tid'), [record(0x7c, after(LATER, 5), DATA('other tid'))]));
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    expect(await refusedOrWritten(await p.connection(0), s.fs, LATER), 'the secondary did not close the connection, or wrote the transaction').toBe(true);
  });

  it.for([
    ['c', 1],
    ['u', 2],
  ] as const)('[DEV-STATUS-2] a T with status %s is a protocol error: the secondary closes and writes nothing of the transaction', async ([status, k], ctx) => {
    requires(ctx, iut, 'secondary');
    const bad = after(tidOf(small[2]!.tid), k);
    const { p, release } = await damagedOnceTracked((startTid) => {
      const t = { ...txn(bad, `status ${status}`), status };
      return restream([...payloadsOf(storeFrames(store('small'), startTid).slice(0, 3)), ...transactionPayloads({ t, records: [record(0x7b, bad, DATA(status))] })], startTid);
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    const first = await p.connection(0);
    expect(await refusedOrWritten(first, s.fs, bad), `the secondary did not close at a T with status ${status}, or wrote it`).toBe(true);
    release();
    await check('WIRE-RECON-2', () => reaches(s, small.at(-1)!.tid));
    await s.node.stop();
    checkContent(fileContent(s.fs), small, { extra: 'DEV-STATUS-2' });
  });
  it('[FS-COMMIT-4] [DEV-RESUME-1] killed at moments chosen from the seed while it commits: at most one unfinished (c) record, always the last; after each restart it resumes from its last whole transaction, and nothing is lost', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const count = 300;
    const generated = Array.from({ length: count }, (_, i) => {
      const tid = after(LATER, 1000 * (i + 1));
      return { t: txn(tid, `generated ${i}`), records: [record(0x100 + (i % 7), tid, DATA(`${i}`.repeat(200)))] };
    });
    // a paced stream (five transactions every 5 ms), so that the kills land while transactions commit
    const p = await fake(async (c) => {
      const { startTid } = await c.handshake;
      const e = new StreamEncoder(startTid);
      const todo = generated.filter((g) => Buffer.compare(g.t.tid, startTid) > 0);
      while (todo.length && !c.closed) {
        for (const g of todo.splice(0, 5)) c.send(e.transaction(g.t, g.records));
        await sleep(5);
      }
    });
    const fs = path.join(workdir(), 'Data.fs');
    const random = prng(SEED);
    /** The tid of the last whole, finished transaction of the file (z64 for none), and whether a `c` record exists that is not the last. */
    const scanFile = () => {
      const r = FileStorageReader.open(fs);
      try {
        const size = r.size();
        let at = 4;
        let last = hex8(Z64);
        for (;;) {
          const scan = r.scan(at);
          if (scan.kind === 'transaction') {
            last = hex(scan.txn.tid);
            at = scan.txn.next;
            continue;
          }
          return { last, misplacedC: scan.kind === 'checkpoint' && scan.txn.next !== size ? at : null };
        }
      } finally {
        r.close();
      }
    };
    for (let round = 0; round < 4; round++) {
      const whole = existsSync(fs) ? scanFile().last : hex8(Z64);
      const s = await startSecondary({ from: p.address, fs });
      const h = await check('WIRE-HS-1', async () => (await p.connection(round, 10_000)).handshakeWithin(10_000));
      // on the first start the file is new: z64 is the handshake's rule, not a resume
      check(round === 0 ? 'WIRE-HS-3' : 'DEV-RESUME-1', () => expect(hex(h.startTid), `start tid after restart ${round}`).toBe(whole));
      // the kill moment, from the seed: once the file has grown past a byte offset drawn in the next 25 KB
      // (or once everything is there)
      const size = () => (existsSync(fs) ? statSync(fs).size : 0);
      const target = size() + 1 + Math.floor(random() * 25_000);
      let polls = 0;
      const done = async () => ++polls % 50 === 0 && (await lastTidOf(s)) === hex(generated.at(-1)!.t.tid);
      await check('WIRE-TXN-10', () => until(`the file to grow past ${target} bytes`, async () => size() >= target || (await done()), { timeoutMs: 15_000, everyMs: 1 }));
      await s.node.kill();
      const { misplacedC } = scanFile();
      check('FS-COMMIT-4', () => expect(misplacedC, `a c record at ${misplacedC} is not the last record`).toBeNull());
    }
    const whole = scanFile().last;
    const s = await startSecondary({ from: p.address, fs });
    const h = await check('WIRE-HS-1', async () => (await p.connection(4, 10_000)).handshakeWithin(10_000));
    check('DEV-RESUME-1', () => expect(hex(h.startTid), 'start tid after the last restart').toBe(whole));
    await check('WIRE-TXN-10', () => reaches(s, hex(generated.at(-1)!.t.tid), 30_000));
    await s.node.stop();
    checkValid(fs);
    check('DEV-RESUME-1', () => expect(fileContent(fs).map((t) => t.tid), 'transactions lost across the restarts').toEqual(generated.map((g) => hex(g.t.tid))));
  });

  it('[WIRE-ADDR-1] [WIRE-ADDR-2] a primary address that is a path is a Unix domain socket', async (ctx) => {
    requires(ctx, iut, 'secondary', 'unix');
    const address: Address = { kind: 'unix', path: path.join(workdir(), 'primary.sock') };
    const connections = await listenOn(address, async (c) => {
      const { startTid } = await c.handshake;
      c.send(flat(storeFrames(store('small'), startTid)));
    });
    const s = await startSecondary({ from: address });
    // one observation: the path was taken for a Unix socket, and the session ran over it
    await check(['WIRE-ADDR-1', 'WIRE-ADDR-2'], () => reaches(s, small.at(-1)!.tid));
    check('WIRE-ADDR-6', () => expect(connections).toHaveLength(1));
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

  const readme = (d: string) => (mkdirSync(d), writeFileSync(path.join(d, 'README'), 'kept'));
  const lawnMarker = (d: string) => (mkdirSync(d), writeFileSync(path.join(d, '.layout'), ' lawn\n'));
  /** A repr (FS-BLOB-6): `0x`, then an even number of lower-case hex digits, not starting with `00` unless they are `00`. */
  const REPR = /^0x(00|(?!00)(?:[0-9a-f]{2})+)$/;
  it.for([
    // [title, prepare, the layout ZODB chooses, the rule of that choice, whether .layout is to be written]
    ['[FS-BLOB-1] [FS-BLOB-3] [FS-BLOB-4] [FS-BLOB-6] a new blob directory', null, 'bushy', 'FS-BLOB-1', true],
    ['[FS-BLOB-1] [FS-BLOB-2] [FS-BLOB-3] [FS-BLOB-5] [FS-BLOB-6] an existing directory without .layout holding other names', readme, 'lawn', 'FS-BLOB-2', true],
    ['[FS-BLOB-2] [FS-BLOB-3] [FS-BLOB-5] [FS-BLOB-6] an empty directory whose .layout says lawn with white space around it', lawnMarker, 'lawn', 'FS-BLOB-2', false],
  ] as const)(
    '%s, beside an existing Data.fs without transactions: the layout is chosen as ZODB does (and written to a missing .layout), blob files are where that layout puts them, and nothing is left in tmp',
    async ([, prepare, layout, choice, writesLayout], ctx) => {
      requires(ctx, iut, 'secondary', 'blobs');
      const dir = workdir();
      const blobDir = path.join(dir, 'blobs');
      prepare?.(blobDir);
      // an existing file: ZODB empties the blob directory of a Data.fs it creates, which would hide the layout choice
      const fs = path.join(dir, 'Data.fs');
      writeFileSync(fs, 'FS30');
      const p = await serving('blobs', true);
      const s = await startSecondary({ from: p.address, fs, blobDir });
      await check('WIRE-BLOB-5', () => reaches(s, want.at(-1)!.tid));
      await s.node.stop();
      const theirs = new BlobDirectory(fixture('blobs', 'blobs'));
      const backpointers = new Set(expectedTransactions('blobs').flatMap((t) => t.records.filter((r) => r.data_txn !== null).map((r) => `${r.oid}:${r.serial}`)));
      // the blobs to look for: those with content (a 0-byte one may have no file: DEV-BLOB0-1)
      const blobs = want.flatMap((t) => t.records).filter((r) => existsSync(theirs.blobPath(tidOf(r.oid), tidOf(r.tid))) && statSync(theirs.blobPath(tidOf(r.oid), tidOf(r.tid))).size > 0);
      const found = (l: 'bushy' | 'lawn') => blobs.filter((r) => existsSync(path.join(blobDir, blobPlace(l, r.oid, r.tid)))).length;
      const chosen = found('bushy') > 0 ? 'bushy' : found('lawn') > 0 ? 'lawn' : 'neither';
      const files = blobDirFiles(blobDir).filter((f) => f !== 'README');
      const blobFiles = files.filter((f) => !f.startsWith(`tmp${path.sep}`) && f.endsWith('.blob'));
      check('FS-BLOB-6', () => {
        const names = blobFiles.flatMap((f) => [path.basename(f, '.blob'), ...(chosen === 'lawn' ? [f.split(path.sep)[0]!] : [])]);
        expect(names.filter((n) => !REPR.test(n)), 'names that are not reprs').toEqual([]);
      });
      if (writesLayout) {
        check('FS-BLOB-1', () => {
          const marker = path.join(blobDir, '.layout');
          expect(existsSync(marker), 'no .layout was written').toBe(true);
          expect(readFileSync(marker, 'latin1').trim(), 'the layout written to .layout').toBe(chosen === 'neither' ? layout : chosen);
        });
      }
      check(choice, () => expect(chosen, `the layout the blob files are in (found ${found('bushy')} in bushy places, ${found('lawn')} in lawn places)`).toBe(layout));
      for (const r of blobs) {
        const mine = path.join(blobDir, blobPlace(layout, r.oid, r.tid));
        check(backpointers.has(`${r.oid}:${r.tid}`) ? 'FS-BLOB-8' : layout === 'bushy' ? 'FS-BLOB-4' : 'FS-BLOB-5', () => expect(existsSync(mine), `no blob file ${mine}`).toBe(true));
        check('WIRE-BLOB-5', () => expect(readFileSync(mine).equals(readFileSync(theirs.blobPath(tidOf(r.oid), tidOf(r.tid)))), `${mine} differs from what was sent`).toBe(true));
      }
      const expected = new Set(want.flatMap((t) => t.records).map((r) => blobPlace(layout, r.oid, r.tid)));
      check('FS-BLOB-3', () => {
        expect(files.filter((f) => f.startsWith(`tmp${path.sep}`)), 'files left in tmp').toEqual([]);
        expect(files.filter((f) => !expected.has(f)), 'files that are neither blobs nor README').toEqual([]);
      });
    },
  );
});
