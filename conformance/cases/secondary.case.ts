// Conformance of a secondary, judged by a fake primary that serves fixture stores, right or
// damaged on purpose, and by the file the secondary writes. Each requirement a case cites is
// proved by its own check, so that a failure names only the requirement actually broken.
import { cpSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { encodeFrame } from '../../reference/framing.ts';
import { encodeMessage, type TransactionMessage } from '../../reference/messages.ts';
import { PyDict } from '../../reference/pickle/values.ts';
import type { Frame } from '../../reference/primary/frames.ts';
import { type OutgoingRecord, StreamEncoder } from '../../reference/stream.ts';
import { hex8, Z64 } from '../../reference/timestamp.ts';
import { blobPlace } from '../blob-places.ts';
import { check, HarnessError, independently } from '../checks.ts';
import { lastTidOf, reaches, requires, SEED, secondaryIut, startSecondary, workdir } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { expectedTransactions } from '../expected.ts';
import { checkContent, checkValid } from '../file-checks.ts';
import { damagedOnce, type FakeConnection, FakePrimary, flat, payloadsOf, restream, serveStore, storeFrames, streamContinuously } from '../peers/fake-primary.ts';
import { sleep } from '../peers/fake-secondary.ts';
import { prng } from '../proxy/fault-proxy.ts';
import { until } from '../wait.ts';
import { hex, tidOf } from '../tids.ts';

const iut = secondaryIut();
const store = (name: string) => path.join(FIXTURES, name, 'Data.fs');

/** Serves `name` correctly to every connection, from the start tid each one sends. */
const serving = (name: string, blobs = false): Promise<FakePrimary> =>
  FakePrimary.listen(serveStore(store(name), blobs ? new BlobDirectory(path.join(FIXTURES, name, 'blobs')) : null));

/**
 * Stops the secondary (CONF-PROC-2: exit 0) and checks its file: valid (the rule it breaks),
 * and holding what was sent (the requirement of the first difference).
 */
async function checkFinal(s: Awaited<ReturnType<typeof startSecondary>>, want: ReturnType<typeof fileContent>, proves: string[] = []) {
  const exit = await s.node.stop();
  check('CONF-PROC-2', () => expect(exit, 'the secondary did not exit 0 on SIGTERM').toEqual({ code: 0, signal: null }));
  checkValid(s.fs);
  checkContent(fileContent(s.fs), want);
  for (const id of proves) check(id, () => undefined);
}

/** Where the file of blob (oid, tid) is in the blob directory `dir` of a new secondary: the bushy layout (FS-BLOB-1, FS-BLOB-4). */
const blobFile = (dir: string, oid: Uint8Array | string, tid: Uint8Array | string) => path.join(dir, blobPlace('bushy', oid, tid));

/** Case (d) of file-format §6, which no interop file holds: small's first 19 transactions, then a header of the 20th whose tlen (5) is shorter than a header. */
const DEBRIS = 'a header with a tlen shorter than a header (case d)';
function writeDebris(fs: string): void {
  const small = readFileSync(store('small'));
  const r = FileStorageReader.open(store('small'));
  const cut = [...r.transactions()][19]!;
  r.close();
  const header = Buffer.alloc(23);
  small.copy(header, 0, cut.offset, cut.offset + 8); // its tid
  header.writeBigUInt64BE(5n, 8);
  header.write(' ', 16, 'latin1');
  writeFileSync(fs, Buffer.concat([small.subarray(0, cut.offset), header]));
}

describe(`secondary: ${iut.name}`, () => {
  it('[WIRE-HS-1] [WIRE-HS-2] [WIRE-HS-3] [WIRE-HS-4] a new secondary sends zrs2.0 and z64 at once, and nothing else before them', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await FakePrimary.listen(() => undefined);
    await startSecondary({ from: p.address });
    const c = await check('WIRE-ADDR-6', () => p.connection(0));
    // the primary sends nothing: both frames come unasked
    await check('WIRE-HS-1', () => c.handshakeWithin(10_000));
    const [first, second] = c.frames;
    check('WIRE-HS-4', () => expect([first!.payload.length, second!.payload.length], 'an empty frame (a keep-alive) among the first two').not.toContain(0));
    check('WIRE-HS-1', () => expect(second!.payload.length, 'the second frame is not an 8-byte tid (protocol id, then start tid)').toBe(8));
    check('WIRE-HS-2', () => expect(first!.payload.toString('latin1')).toBe('zrs2.0'));
    check('WIRE-HS-3', () => expect(hex8(second!.payload), 'a new secondary starts from z64').toBe(hex8(Z64)));
    p.close();
  });

  it('[WIRE-HS-2] a secondary that stores blobs asks for zrs2.1', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const p = await FakePrimary.listen(() => undefined);
    await startSecondary({ from: p.address, blobs: true });
    expect((await (await p.connection(0)).handshakeWithin(10_000)).protocol).toBe('zrs2.1');
    p.close();
  });

  it.for(['small', 'undo', 'packed'])(
    '[WIRE-TXN-9] [WIRE-TXN-10] [WIRE-DATA-5] [WIRE-DATA-6] [WIRE-SUM-5] [WIRE-SUM-6] [FS-COMMIT-2] %s: the secondary file holds every transaction, unchanged, and is valid',
    async (name, ctx) => {
      requires(ctx, iut, 'secondary');
      const p = await serving(name);
      const s = await startSecondary({ from: p.address });
      const want = fileContent(store(name));
      const last = want.at(-1)!.tid;
      const c = await check('WIRE-ADDR-6', () => p.connection(0));
      // a correct stream on a connection the primary never closes: the secondary hashes what it
      // received and finds every digest right (it stays connected), and commits each transaction
      const exited = () => s.node.proc.exitCode !== null || s.node.proc.signalCode !== null;
      const reached = async () => !exited() && (await lastTidOf(s)) === last;
      let done = false;
      await until(`the secondary to reach ${last}, or to close the connection`, async () => c.closed || (done = await reached()), { timeoutMs: 30_000 }).catch(() => undefined);
      done ||= await reached();
      // closed by the secondary before the end: it rejected a right digest; still connected (or
      // exited) without the last one: it did not commit what it accepted
      const outcome = done ? 'committed' : c.closed && !exited() ? 'closed the connection' : exited() ? 'exited' : 'stayed connected without committing';
      const committed = `${existsSync(s.fs) ? fileContent(s.fs).length : 0} of ${want.length} transactions in its file`;
      const message = `on a correct stream, the secondary ${outcome} (${committed})`;
      if (done || outcome === 'closed the connection') check(['WIRE-SUM-5', 'WIRE-SUM-6'], () => expect(outcome, message).toBe('committed'));
      check('WIRE-TXN-10', () => expect(outcome, message).toBe('committed'));
      // once it reports a transaction committed, the transaction is in its file with its final
      // status (judged over the control channel: without one, "reported" is read from the file)
      if (iut.features.has('control')) check('FS-COMMIT-2', () => expect(fileContent(s.fs).at(-1)?.tid, 'reported committed, not (yet) in the file').toBe(last));
      await checkFinal(s, want);
      p.close();
    },
  );

  it('[WIRE-BLOB-5] [FS-BLOB-4] [FS-BLOB-8] blobs: every blob file arrives where ZODB looks for it', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const p = await serving('blobs', true);
    const s = await startSecondary({ from: p.address, blobs: true });
    const want = fileContent(store('blobs'));
    await check('WIRE-BLOB-5', () => reaches(s, want.at(-1)!.tid));
    await checkFinal(s, want);
    const theirs = new BlobDirectory(path.join(FIXTURES, 'blobs', 'blobs'));
    // records that are backpointers in the primary's file: their blob is named after their own tid (FS-BLOB-8)
    const backpointers = new Set(expectedTransactions('blobs').flatMap((t) => t.records.filter((r) => r.data_txn !== null).map((r) => `${r.oid}:${r.serial}`)));
    for (const t of want) {
      for (const r of t.records) {
        const source = theirs.blobPath(tidOf(r.oid), tidOf(r.tid));
        if (!existsSync(source) || statSync(source).size === 0) continue; // zero-length blobs: DEV-BLOB0-1
        const mine = blobFile(s.blobDir!, r.oid, r.tid);
        check(backpointers.has(`${r.oid}:${r.tid}`) ? 'FS-BLOB-8' : 'FS-BLOB-4', () => expect(existsSync(mine), `no blob file ${mine}`).toBe(true));
        check('WIRE-BLOB-5', () => expect(readFileSync(mine).equals(readFileSync(source)), `${mine} differs from what was sent`).toBe(true));
      }
    }
    p.close();
  });

  it('[WIRE-BLOB-5] one transaction with several blobs of 0, 1, 65536, 65537 and 200000 bytes: each blob file holds its own content', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const random = prng(SEED);
    const blobRecord = fileContent(store('blobs')).flatMap((t) => t.records).find((r) => r.data?.includes(Buffer.from('ZODB.blob').toString('hex')))!.data!;
    const tid = Buffer.from('040e000000000000', 'hex'); // after every tid of the fixtures' first years, and not z64
    const sizes = [65537, 1, 0, 200_000, 65536];
    const blobs = sizes.map((size, i) => {
      const oid = Buffer.alloc(8);
      oid.writeBigUInt64BE(BigInt(0x300 + i));
      const content = Buffer.alloc(size);
      for (let k = 0; k < size; k++) content[k] = Math.floor(random() * 256);
      return { oid, content };
    });
    const records: OutgoingRecord[] = blobs.map(({ oid, content }) => {
      const chunks: Buffer[] = [];
      for (let at = 0; at < content.length; at += 65536) chunks.push(content.subarray(at, at + 65536));
      return { message: { type: 'B', oid, tid, version: '', dataTxn: null, blocks: chunks.length }, data: Buffer.from(blobRecord, 'hex'), chunks };
    });
    const t: TransactionMessage = { type: 'T', tid, status: ' ', user: Buffer.alloc(0), description: Buffer.from('several blobs'), extension: new PyDict() };
    const p = await FakePrimary.listen(async (c) => {
      const { startTid } = await c.handshake;
      if (Buffer.compare(startTid, tid) < 0) c.send(new StreamEncoder(startTid).transaction(t, records));
    });
    const s = await startSecondary({ from: p.address, blobs: true });
    await check('WIRE-BLOB-5', () => reaches(s, hex(tid)));
    await s.node.stop();
    const stored = fileContent(s.fs).find((x) => x.tid === hex(tid))!;
    check('WIRE-BLOB-5', () => expect(stored.records.map((r) => [r.oid, r.data])).toEqual(blobs.map(({ oid }) => [hex(oid), blobRecord])));
    for (const { oid, content } of blobs) {
      const file = blobFile(s.blobDir!, oid, tid);
      // a blob of 0 blocks may have no file (DEV-BLOB0-1); if it has one, it is empty
      if (content.length === 0 && !existsSync(file)) continue;
      check('WIRE-BLOB-5', () => {
        expect(existsSync(file), `no blob file for oid ${hex(oid)} (${content.length} bytes)`).toBe(true);
        const got = readFileSync(file);
        expect(got.length, `blob of oid ${hex(oid)}: size`).toBe(content.length);
        expect(got.equals(content), `blob of oid ${hex(oid)} (${content.length} bytes): content differs from its own chunks`).toBe(true);
      });
    }
    p.close();
  });

  it('[DEV-BLOB0-1] a blob of zero blocks becomes an empty blob file', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const p = await serving('blobs', true);
    const s = await startSecondary({ from: p.address, blobs: true });
    await check('WIRE-BLOB-5', () => reaches(s, fileContent(store('blobs')).at(-1)!.tid));
    await s.node.stop();
    const empty = blobFile(s.blobDir!, '0000000000000002', '040d453df97e9422');
    expect(existsSync(empty) && statSync(empty).size === 0).toBe(true);
    p.close();
  });

  const keepAliveDelay = iut.features.has('fractionalDelays') ? 0.3 : 1;
  /** Checks WIRE-KA-2 on the keep-alives of `c`: the first one delay after the handshake, then every delay (±40%). */
  function checkPeriod(c: FakeConnection, handshakeAt: number, delay: number, what: string) {
    check('WIRE-KA-2', () => {
      const times = c.keepAlives;
      expect(times.length, `keep-alives in ${delay * 4.5} s ${what}`).toBeGreaterThanOrEqual(3);
      const gaps = [times[0]! - handshakeAt, ...times.slice(1).map((t, i) => t - times[i]!)];
      for (const g of gaps) expect(Math.abs(g - delay * 1000), `a gap of ${Math.round(g)} ms ${what}, for a delay of ${delay} s`).toBeLessThan(delay * 400);
    });
  }

  it('[WIRE-KA-1] [WIRE-KA-2] [WIRE-KA-4] keep-alives: empty frames, the first one delay after the handshake, then every delay (±40%)', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await FakePrimary.listen(() => undefined);
    await startSecondary({ from: p.address, keepAliveDelay });
    const c = await check('WIRE-ADDR-6', () => p.connection(0));
    const h = await check('WIRE-HS-1', () => c.handshakeWithin(10_000));
    await sleep(keepAliveDelay * 1000 * 4.5);
    check('WIRE-KA-4', () => expect(c.frames.slice(0, 2).map((f) => f.payload.length), 'an empty frame before the handshake was complete').not.toContain(0));
    check('WIRE-KA-1', () => expect(c.frames.slice(2).filter((f) => f.payload.length !== 0).map((f) => f.payload.length), 'frames that are not empty after the handshake').toEqual([]));
    checkPeriod(c, h.at, keepAliveDelay, 'while idle');
    p.close();
  });

  it('[WIRE-KA-2] keep-alives keep their period while the primary streams transactions without a pause', async (ctx) => {
    requires(ctx, iut, 'secondary');
    // a delay of 1 s (whole, and long beside the time a transaction takes to apply), and a transaction every 50 ms
    const delay = 1;
    const busy: { stream?: ReturnType<typeof streamContinuously> } = {};
    const p = await FakePrimary.listen(async (c, n) => {
      const { startTid } = await c.handshake;
      if (n === 0) busy.stream = streamContinuously(c, startTid, 50);
    });
    await startSecondary({ from: p.address, keepAliveDelay: delay });
    const c = await p.connection(0);
    const h = await check('WIRE-HS-1', () => c.handshakeWithin(10_000));
    await sleep(delay * 1000 * 4.5);
    const sent = busy.stream?.sent ?? 0;
    busy.stream?.stop();
    // the stream was busy the whole time
    if (sent < delay * 4.5 * 10) throw new HarnessError(`only ${sent} transactions were sent in ${delay * 4.5} s`);
    checkPeriod(c, h.at, delay, `while ${sent} transactions streamed in`);
    p.close();
  });

  const small = fileContent(store('small'));
  it.for([
    ['[WIRE-SUM-7] a wrong digest in the 4th transaction', 'WIRE-SUM-7', true, (f: Frame[][]) => {
      const bad = f[3]!;
      const payload = encodeMessage({ type: 'C', checksum: Buffer.alloc(16, 0xaa) });
      bad[bad.length - 1] = [encodeFrame(payload).subarray(0, 4), payload];
      return flat(f);
    }],
    ['[WIRE-CLOSE-6] a cut after the T of the 4th transaction', 'WIRE-CLOSE-6', false, (f: Frame[][]) => [...flat(f.slice(0, 3)), ...f[3]![0]!]],
    ['[WIRE-CLOSE-6] a cut inside a data frame of the 4th transaction', 'WIRE-CLOSE-6', false, (f: Frame[][]) => [...flat(f.slice(0, 3)), ...flat([f[3]!.slice(0, 2)]), f[3]![2]![0], f[3]![2]![1].subarray(0, 3)]],
    ['[WIRE-CLOSE-6] a cut just before the C of the 4th transaction', 'WIRE-CLOSE-6', false, (f: Frame[][]) => [...flat(f.slice(0, 3)), ...flat([f[3]!.slice(0, -1)])]],
    ['[WIRE-MSG-4] garbage where the 4th T is due', 'WIRE-MSG-4', true, (f: Frame[][]) => [...flat(f.slice(0, 3)), encodeFrame(Buffer.from('not a pickle'))]],
    ['[WIRE-MSG-4] an unknown message type', 'WIRE-MSG-4', true, (f: Frame[][]) => [...flat(f.slice(0, 3)), encodeFrame(Buffer.from('(X\x01\x00\x00\x00Z)t.', 'latin1'))]],
    ['[WIRE-TXN-11] a T inside a transaction', 'WIRE-TXN-11', true, (f: Frame[][]) => [...flat(f.slice(0, 3)), ...f[3]![0]!, ...f[3]![0]!]],
    ['[WIRE-TXN-11] a C outside a transaction', 'WIRE-TXN-11', true, (f: Frame[][]) => [...flat(f.slice(0, 3)), ...f[3]!.at(-1)!]],
  ] as const)(
    '[WIRE-TXN-12] [WIRE-RECON-1] [WIRE-RECON-2] %s: nothing of it is kept; after reconnecting it resumes from its last commit',
    async ([, rule, protocolError, damage], ctx) => {
      requires(ctx, iut, 'secondary');
      // `small`, damaged on the first connection only; a protocol error is left to the secondary
      // to close, a cut closes after 50 ms
      const closedBySecondary: boolean[] = [];
      const { primary: p, release } = await damagedOnce({
        damaged: (startTid) => damage(storeFrames(store('small'), startTid)),
        correct: (startTid) => flat(storeFrames(store('small'), startTid)),
        then: async (c) => {
          if (protocolError) closedBySecondary.push(await c.waitForClose(10_000));
          else await sleep(50);
          c.end();
        },
      });
      const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
      const first = await check('WIRE-ADDR-6', () => p.connection(0));
      if (protocolError) {
        // a protocol error: the secondary closes the connection itself
        await check('WIRE-HS-1', () => until('the handshake, and the end of the first connection', () => closedBySecondary.length > 0, { timeoutMs: 15_000 }));
        check([rule, 'WIRE-TXN-12'], () => expect(closedBySecondary[0], 'the secondary did not close the connection within 10 s').toBe(true));
      } else await first.waitForClose(5000);
      const second = await check('WIRE-RECON-1', async () => (await p.connection(1, 10_000)).handshakeWithin(10_000));
      // nothing of the 4th transaction was kept (aborted, or never committed)
      check(rule === 'WIRE-TXN-11' || rule === 'WIRE-MSG-4' ? 'WIRE-TXN-12' : rule, () =>
        expect(fileContent(s.fs).map((t) => t.tid), 'transactions in the file when it reconnected').toEqual(small.slice(0, 3).map((t) => t.tid)),
      );
      check('WIRE-RECON-2', () => expect(hex8(second.startTid), 'the start tid of the new connection').toBe(small[2]!.tid));
      release();
      // a new connection starts from scratch (a new hash from its start tid): the rest commits
      await check('WIRE-RECON-2', () => reaches(s, small.at(-1)!.tid));
      await checkFinal(s, small);
      p.close();
    },
  );

  it('[WIRE-RECON-1] after a lost connection the secondary waits its reconnect delay, neither much less nor much more, before connecting again', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const delay = 0.5;
    // how each connection ends: the primary goes away after some transactions, a protocol error, a refusal
    const lostAt: number[] = [];
    const p = await FakePrimary.listen(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      if (n === 0) {
        c.send(flat(frames.slice(0, 3)));
        await sleep(300);
        lostAt[n] = performance.now();
        return c.end();
      }
      if (n === 1) {
        c.send([...flat(frames.slice(0, 2)), encodeFrame(Buffer.from('not a pickle'))]);
        await c.waitForClose(10_000);
        lostAt[n] = c.closedAt ?? performance.now();
        return c.destroy();
      }
      if (n === 2) {
        lostAt[n] = performance.now();
        return c.destroy();
      }
      c.send(flat(frames));
    });
    await startSecondary({ from: p.address, reconnectDelay: delay });
    const low = delay * 1000 * 0.8;
    const high = delay * 1000 * 2 + 1000;
    for (let n = 0; n < 3; n++) {
      const next = await check('WIRE-RECON-1', () => p.connection(n + 1, high + 10_000));
      await until(`the end of connection ${n + 1}`, () => lostAt[n] !== undefined, { timeoutMs: 15_000 });
      const gap = next.openedAt - lostAt[n]!;
      check('WIRE-RECON-1', () => {
        expect(gap, `connection ${n + 2} came ${Math.round(gap)} ms after connection ${n + 1} was lost, for a reconnect delay of ${delay} s`).toBeGreaterThanOrEqual(low);
        expect(gap, `connection ${n + 2} came ${Math.round(gap)} ms after connection ${n + 1} was lost, for a reconnect delay of ${delay} s`).toBeLessThanOrEqual(high);
      });
    }
    p.close();
  });

  it('[WIRE-TXN-14] nothing of a transaction reaches the file before its C', async (ctx) => {
    requires(ctx, iut, 'secondary');
    let frames: Frame[][] = [];
    const p = await FakePrimary.listen(async (c) => {
      const { startTid } = await c.handshake;
      frames = storeFrames(store('small'), startTid);
      c.send([...flat(frames.slice(0, 1)), ...flat([frames[1]!.slice(0, -1)])]);
    });
    const s = await startSecondary({ from: p.address });
    const c = await p.connection(0);
    await check('WIRE-TXN-10', () => reaches(s, small[0]!.tid));
    await sleep(300);
    const size = statSync(s.fs).size;
    expect(fileContent(s.fs)).toHaveLength(1);
    await sleep(200);
    expect(statSync(s.fs).size).toBe(size);
    c.send(frames[1]!.at(-1)!);
    await check('WIRE-TXN-10', () => reaches(s, small[1]!.tid));
    p.close();
  });

  it('[DEV-DATATXN-1] a hint naming a transaction the secondary lacks: the data is stored instead', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const tid = Buffer.from(small[0]!.tid, 'hex');
    const p = await FakePrimary.listen(async (c) => {
      const { startTid } = await c.handshake;
      const e = new StreamEncoder(startTid);
      c.send(
        e.transaction({ type: 'T', tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: new PyDict() }, [
          { message: { type: 'S', oid: Buffer.alloc(8), tid, version: '', dataTxn: Buffer.from('0300000000000001', 'hex') }, data: Buffer.from('80034e2e', 'hex') },
        ]),
      );
    });
    const s = await startSecondary({ from: p.address });
    await reaches(s, small[0]!.tid, 10_000);
    await s.node.stop();
    expect(fileContent(s.fs)[0]!.records[0]!.data).toBe('80034e2e');
    p.close();
  });

  it('[DEV-TIDORDER-1] a T whose tid equals, then one whose tid is lower than, the last commit is refused: the connection is closed, nothing is written, and the next start tid is unchanged', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const five = small.slice(0, 5);
    const last = tidOf(five.at(-1)!.tid);
    const p = await FakePrimary.listen(async (c, n) => {
      const { startTid } = await c.handshake;
      if (n === 0) return c.send(flat(storeFrames(store('small'), startTid).slice(0, 5)));
      // a primary that went back in time, with digests right for this connection's start tid
      if (n === 1) {
        const t: TransactionMessage = { type: 'T', tid: last, status: ' ', user: Buffer.alloc(0), description: Buffer.from('the same tid'), extension: new PyDict() };
        const oid = Buffer.alloc(8, 0);
        oid[7] = 0x70;
        return c.send(new StreamEncoder(startTid).transaction(t, [{ message: { type: 'S', oid, tid: last, version: '', dataTxn: null }, data: Buffer.from('80034e2e', 'hex') }]));
      }
      if (n === 2) return c.send(restream(payloadsOf(storeFrames(store('small'), Z64).slice(1, 2)), startTid));
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    await check('WIRE-TXN-10', () => reaches(s, five.at(-1)!.tid));
    (await p.connection(0)).end();
    for (const [n, what] of [[1, 'equal to'], [2, 'lower than']] as const) {
      const c = await check('WIRE-RECON-1', () => p.connection(n, 10_000));
      await check('WIRE-RECON-1', () => c.handshakeWithin(10_000));
      // refused: the secondary closes; accepted: its file grows
      await until(`the secondary to close, or to write the transaction whose tid is ${what} its last`, () => c.closed || fileContent(s.fs).length !== 5, { timeoutMs: 10_000 }).catch(() => undefined);
      check('DEV-TIDORDER-1', () => {
        expect(fileContent(s.fs).map((t) => t.tid), `the file after a T whose tid is ${what} the last commit`).toEqual(five.map((t) => t.tid));
        expect(c.closed, `the secondary kept the connection open after a T whose tid is ${what} the last commit`).toBe(true);
      });
    }
    const h = await check('WIRE-RECON-1', async () => (await p.connection(3, 10_000)).handshakeWithin(10_000));
    check('DEV-TIDORDER-1', () => expect(hex8(h.startTid), 'the start tid after the refusals').toBe(five.at(-1)!.tid));
    await s.node.stop();
    check('DEV-TIDORDER-1', () => expect(fileContent(s.fs).map((t) => t.tid)).toEqual(five.map((t) => t.tid)));
    p.close();
  });

  it.for(['checkpoint.fs', 'truncated-mid.fs', 'truncated-header.fs', 'checkpoint-truncated.fs', DEBRIS])(
    '[DEV-RESUME-1] [FS-RECOVER-7] restarted on a file whose last transaction was cut or never finished (%s): reports and resumes from its last whole one',
    async (name, ctx) => {
      requires(ctx, iut, 'secondary');
      const fs = path.join(workdir(), 'Data.fs');
      if (name === DEBRIS) writeDebris(fs);
      else cpSync(path.join(FIXTURES, 'incomplete', name), fs);
      let go!: () => void;
      const release = new Promise<void>((r) => (go = r));
      const p = await FakePrimary.listen(async (c) => {
        const { startTid } = await c.handshake;
        await release; // nothing arrives before the start tid and the reported last tid are read
        c.send(flat(storeFrames(store('small'), startTid)));
      });
      const s = await startSecondary({ from: p.address, fs });
      const h = await check('WIRE-HS-1', async () => (await p.connection(0, 10_000)).handshakeWithin(10_000));
      const whole = small[18]!.tid;
      await independently(
        // the last transaction the writer reports after recovery (control channel only: the file would say nothing of it)
        () => iut.features.has('control') && check('FS-RECOVER-7', async () => expect(await s.node.lastTid(), 'last tid reported after recovery').toBe(whole)),
        () => check('DEV-RESUME-1', () => expect(hex8(h.startTid), 'start tid after recovery').toBe(whole)),
      );
      go();
      await check('DEV-RESUME-1', () => reaches(s, small.at(-1)!.tid));
      await checkFinal(s, small);
      p.close();
    },
  );

  it('[WIRE-SHUT-4] [CONF-PROC-2] SIGTERM in the middle of a transaction: exit 0, the file holds only whole transactions', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await FakePrimary.listen(async (c) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      c.send([...flat(frames.slice(0, 2)), ...flat([frames[2]!.slice(0, 2)])]);
    });
    const s = await startSecondary({ from: p.address });
    await check('WIRE-TXN-10', () => reaches(s, small[1]!.tid));
    await sleep(100); // the T and S of the third transaction have arrived
    const exit = await s.node.stop();
    check('CONF-PROC-2', () => expect(exit, 'exit on SIGTERM').toEqual({ code: 0, signal: null }));
    check('WIRE-SHUT-4', () => expect(fileContent(s.fs).map((t) => t.tid), 'the open transaction was not aborted').toEqual(small.slice(0, 2).map((t) => t.tid)));
    checkValid(s.fs);
    p.close();
  });
});
