// Conformance of a node as a process and through its control channel (spec/conformance.md),
// and of a primary as the writer of its own file: what it does with commit, undo and pack,
// the tids it chooses, the metadata limits, the bytes of what it then sends, and how it
// refuses files and addresses it cannot use.
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import { RunningChecksum } from '../../reference/checksum.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { decodeMessage, encodeMessage } from '../../reference/messages.ts';
import { type Address, parseAddress } from '../../reference/net/address.ts';
import { loadPickle } from '../../reference/pickle/decoder.ts';
import { pickleToJson } from '../../reference/pickle/json.ts';
import { type PickleValue, PyDict } from '../../reference/pickle/values.ts';
import { hex8, tidToUnixSeconds, Z64 } from '../../reference/timestamp.ts';
import { check, type Subject } from '../checks.ts';
import { commitOn, loopback, primaryIut, reaches, refusesToStart, requires, secondaryIut, startPrimary, startSecondary, workdir } from '../context.ts';
import { until } from '../wait.ts';
import { FIXTURES } from '../env.ts';
import type { ControlMessage, IutNode } from '../iut/node.ts';
import { FakePrimary, storeFrames } from '../peers/fake-primary.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';
import { byValue, checkValid, prevPointers } from '../file-checks.ts';
import { after, hex, tidOf } from '../tids.ts';

const primary = primaryIut();
const secondary = secondaryIut();
const both = primary === secondary ? primary.name : `${primary.name} / ${secondary.name}`;
const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
const small = fileContent(fixture('small', 'Data.fs'));
const oidHex = (n: number) => n.toString(16).padStart(16, '0');

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((f) => f()));
});

/** A folder with a copy of `from` as Data.fs, named as a store for startPrimary. */
function prepared(from: string): string {
  const dir = workdir();
  writeFileSync(path.join(dir, 'Data.fs'), readFileSync(from));
  return path.relative(FIXTURES, dir);
}

/** Control responses (messages without `event`) from index `from` on. */
const responses = (node: IutNode, from: number) => node.messages.slice(from).filter((m) => !('event' in m));

/** Every line a node wrote on standard output is a control-channel response or event. */
function onlyControlMessages(node: IutNode): ControlMessage[] {
  return node.messages.filter((m) => !(typeof m.event === 'string' && !('id' in m)) && !('id' in m && typeof m.ok === 'boolean'));
}

/** The response to a control request; one that does not come within the request's time breaks `id` (the requirement the request tests). */
const answered = (id: string, node: IutNode, op: string, fields: ControlMessage = {}) => check(id, () => node.request(op, fields), node.role);

/** `node`'s exit within `ms`, or 'still running'. */
const exitWithin = (node: IutNode, ms = 15_000) => Promise.race([node.exited, sleep(ms).then(() => 'still running' as const)]);

/** A JSON extension as the pickle values a primary must send for it. */
function extensionValue(j: unknown): PickleValue {
  if (j === null || typeof j === 'boolean' || typeof j === 'string') return j;
  if (typeof j === 'number') return Number.isInteger(j) ? BigInt(j) : j;
  if (Array.isArray(j)) return j.map(extensionValue);
  const o = j as Record<string, unknown>;
  if (typeof o.$bytes === 'string' && Object.keys(o).length === 1) return Buffer.from(o.$bytes, 'hex');
  return new PyDict(Object.entries(o).map(([k, v]) => [k, extensionValue(v)]));
}

/** A fake primary of the harness's that serves small/Data.fs from each connection's start tid. */
async function servingSmall(): Promise<FakePrimary> {
  const fake = await FakePrimary.listen(async (c) => {
    const { startTid } = await c.handshake;
    c.send(storeFrames(fixture('small', 'Data.fs'), startTid).flat(2));
  });
  cleanup.push(() => fake.close());
  return fake;
}

/** A fake secondary of the harness's connected to `address` from z64, once it has `n` transactions (WIRE-TXN-1 otherwise). */
async function servedFrom(address: Address, n: number, what: string): Promise<FakeSecondary> {
  const s = await FakeSecondary.connect(address);
  s.handshake('zrs2.0', Z64);
  const served = await s.waitForTransactions(n);
  s.verify();
  check('WIRE-TXN-1', () => expect(served, what).toBe(true));
  return s;
}

/** Checks that the ready event of `node` names an address it listens on itself, with its real port (and `port`, when the harness chose it). */
async function listensAsReported(node: IutNode, port?: number): Promise<void> {
  const listen = node.ready?.listen;
  expect(typeof listen, `the address in the ready event ${JSON.stringify(node.ready)}`).toBe('string');
  const address = parseAddress(listen as string);
  expect(address.kind, `the address in the ready event: ${String(listen)}`).toBe('tcp');
  const real = address.kind === 'tcp' ? address.port : 0;
  expect(real, 'the port in the ready event (the one it got, not 0)').not.toBe(0);
  if (port !== undefined) expect(real, 'the port in the ready event, against the one the node was given').toBe(port);
  // the node itself listens there (/proc tells on Linux; elsewhere, something accepts there)
  expect(await node.listens(real), `the ${node.role} listens on port ${real}, which its ready event names`).toBe(true);
}

describe(`control channel: ${both}`, () => {
  it('[CONF-CTL-11] [CONF-PROC-1] [CONF-PROC-5] nodes given valid files start and become ready; the ready event names the role, the address with its real port, and the last tid; standard output carries nothing else', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'control');
    // each node is given a valid file, a usable address (port 0 when it reports its port) and
    // valid options: it must start and become ready within 20 s (CONF-PROC-5, the check of each start)
    const p = await startPrimary({ store: 'small', startFailure: 'CONF-PROC-5' });
    await check(
      'CONF-CTL-11',
      async () => {
        expect(p.node.ready, "the primary's ready event").toMatchObject({ event: 'ready', role: 'primary', lastTid: small.at(-1)!.tid });
        await listensAsReported(p.node);
      },
      'primary',
    );
    await answered('CONF-CTL-1', p.node, 'last-tid');
    await commitOn(p.node, { records: [{ oid: oidHex(0xc0), data: '80034e2e' }] });

    const fresh = await startSecondary({ from: p.address, startFailure: 'CONF-PROC-5' });
    check('CONF-CTL-11', () => expect(fresh.node.ready, 'the ready event of a secondary on a new file').toMatchObject({ event: 'ready', role: 'secondary', listen: null, lastTid: hex8(Z64) }), 'secondary');
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, readFileSync(fixture('small', 'Data.fs')));
    const resumed = await startSecondary({ from: p.address, fs, startFailure: 'CONF-PROC-5' });
    check(
      'CONF-CTL-11',
      () => expect(resumed.node.ready, 'the ready event of a secondary on a copy of small/Data.fs').toMatchObject({ event: 'ready', role: 'secondary', listen: null, lastTid: small.at(-1)!.tid }),
      'secondary',
    );
    await answered('CONF-CTL-1', resumed.node, 'last-tid');
    for (const n of [p, fresh, resumed]) check('CONF-PROC-1', () => expect(onlyControlMessages(n.node), `what the ${n.node.role} wrote on standard output besides control messages`).toEqual([]), n.node.role);
  });

  it('[CONF-CTL-11] a chained secondary reports the address it listens on, with its real port', async (ctx) => {
    requires(ctx, primary, 'primary');
    requires(ctx, secondary, 'secondary', 'control', 'chaining');
    const p = await startPrimary({ store: 'small' });
    const listen = await loopback();
    const s = await startSecondary({ from: p.address, listen });
    await check(
      'CONF-CTL-11',
      async () => {
        expect(s.node.ready).toMatchObject({ event: 'ready', role: 'secondary', lastTid: hex8(Z64) });
        await listensAsReported(s.node, listen.port);
      },
      'secondary',
    );
  });

  it('[CONF-CTL-1] [CONF-CTL-2] [CONF-CTL-3] one response a request, in order, with its id; malformed lines and requests get errors and the node goes on', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const p = await startPrimary({ store: 'small' });
    const mark = p.node.messages.length;
    const lines = [
      '{"id":"a","op":"last-tid"}',
      'this is not JSON',
      '[1,2,3]',
      '{"id":{"x":[1]},"op":"frob"}',
      '{"op":"last-tid"}',
      '{"id":7,"op":"commit"}',
      '{"id":8,"op":"commit","records":[{"oid":"xyz","data":"00"}]}',
      '{"id":9,"op":"undo"}',
      `{"id":10,"op":"commit","records":[{"oid":"${oidHex(0xb0)}","data":"80034e2e"}]}`,
      '{"id":11,"op":"last-tid"}',
    ];
    const ids = ['a', null, null, { x: [1] }, null, 7, 8, 9, 10, 11];
    p.node.proc.stdin!.write(`${lines.join('\n')}\n`);
    await check('CONF-CTL-1', () => until('ten responses', () => responses(p.node, mark).length >= lines.length, { timeoutMs: 10_000, seen: () => `${responses(p.node, mark).length}` }));
    await sleep(200);
    const r = responses(p.node, mark);
    check('CONF-CTL-1', () => expect(r, 'responses to ten requests').toHaveLength(lines.length));
    check('CONF-CTL-2', () => {
      const key = (x: unknown) => JSON.stringify(x);
      expect(r.map((m) => key(m.id)).sort(), 'the ids of the responses (in any order)').toEqual(ids.map(key).sort());
      for (const m of r) {
        expect(typeof m.ok, JSON.stringify(m)).toBe('boolean');
        if (m.ok === false) {
          const e = m.error as { code?: unknown; message?: unknown } | undefined;
          expect(typeof e?.code === 'string' && e.code.length > 0, `an error without a code: ${JSON.stringify(m)}`).toBe(true);
          expect(typeof e?.message, `an error without a message: ${JSON.stringify(m)}`).toBe('string');
        }
      }
    });
    check('CONF-CTL-1', () => expect(r.map((m) => m.id), 'the ids, in the order of the responses').toEqual(ids));
    check('CONF-CTL-3', () => {
      expect(r.map((m) => m.ok), 'ok of each response: malformed lines and requests get errors, the node serves the rest').toEqual([true, false, false, false, true, false, false, false, true, true]);
      expect(r[9]!.tid, 'the last tid after the malformed requests and a commit').toBe(r[8]!.tid);
    });
    check('CONF-CTL-5', () => {
      expect(r[0]!.tid).toBe(small.at(-1)!.tid);
      expect(r[4]!.tid).toBe(small.at(-1)!.tid);
    });
    check('CONF-PROC-1', () => expect(onlyControlMessages(p.node), 'what the node wrote on standard output besides control messages').toEqual([]));
  });

  it('[CONF-CTL-4] a primary whose standard input ends shuts down gracefully and exits with 0', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const p = await startPrimary({ store: 'small' });
    const s = await servedFrom(p.address, small.length, 'the transactions of small/Data.fs, before the test');
    p.node.proc.stdin!.end();
    expect(await exitWithin(p.node)).toEqual({ code: 0, signal: null });
    expect(await s.waitForClose(5000), 'the connection was still open after the primary exited').toBe(true);
    expect(s.atBoundary, 'the connection ended inside a transaction').toBe(true);
  });

  it('[CONF-CTL-4] a secondary whose standard input ends shuts down gracefully and exits with 0', async (ctx) => {
    requires(ctx, secondary, 'secondary', 'control');
    const fake = await servingSmall();
    const s = await startSecondary({ from: fake.address });
    // at rest before its input ends: it has what it was sent
    await check('WIRE-TXN-10', () => reaches(s, small.at(-1)!.tid, 10_000), 'secondary');
    s.node.proc.stdin!.end();
    expect(await exitWithin(s.node)).toEqual({ code: 0, signal: null });
    checkValid(s.fs);
  });

  it.for(['primary', 'secondary'] as const)('[CONF-CTL-10] a %s answers shutdown, then shuts down gracefully and exits with 0', async (role, ctx) => {
    if (role === 'primary') requires(ctx, primary, 'primary', 'control');
    else requires(ctx, secondary, 'secondary', 'control');
    let node: IutNode;
    if (role === 'primary') node = (await startPrimary({ store: 'small' })).node;
    else node = (await startSecondary({ from: (await servingSmall()).address })).node;
    const r = await node.request('shutdown', {}, 10_000);
    expect(r).toMatchObject({ ok: true });
    expect(await exitWithin(node)).toEqual({ code: 0, signal: null });
  });

  it('[CONF-CTL-5] last-tid: a primary reports its last commit; a secondary the tid its next handshake carries', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'control');
    const p = await startPrimary({ store: 'small' });
    await check('CONF-CTL-5', async () => expect(await p.node.lastTid(), 'last tid of a primary serving small/Data.fs').toBe(small.at(-1)!.tid), 'primary');
    const t = await commitOn(p.node, { records: [{ oid: oidHex(0xc1), data: '80034e2e' }] });
    await check('CONF-CTL-5', async () => expect(await p.node.lastTid(), 'last tid after a commit').toBe(t), 'primary');

    // the first connection gets nothing until the first last-tid was asked: the answer must
    // be the tid of the handshake, not of a transaction already applied
    let go!: () => void;
    const release = new Promise<void>((r) => (go = r));
    const fake = await FakePrimary.listen(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(fixture('small', 'Data.fs'), startTid);
      if (n === 0) await release;
      c.send((n === 0 ? frames.slice(0, 5) : frames.slice(0, 3)).flat(2));
    });
    cleanup.push(() => fake.close());
    const s = await startSecondary({ from: fake.address, reconnectDelay: 0.2 });
    // a last-tid request that fails breaks CONF-CTL-5 itself
    const lastTid = async () => {
      try {
        return await s.node.lastTid();
      } catch (e) {
        return check('CONF-CTL-5', (): string => {
          throw e;
        }, 'secondary');
      }
    };
    const first = await lastTid();
    go();
    const h0 = await check('WIRE-HS-1', async () => (await fake.connection(0)).handshakeWithin(), 'secondary');
    check('CONF-CTL-5', () => expect(first, 'last tid of a secondary on a new file, against its first handshake').toBe(hex(h0.startTid)), 'secondary');
    let last = '';
    await check('WIRE-TXN-10', () => until('the secondary to report the fifth transaction, once five were sent', async () => (last = await lastTid()) === small[4]!.tid, { timeoutMs: 10_000, everyMs: 25, seen: () => last }), 'secondary');
    (await fake.connection(0)).end();
    const h1 = await check('WIRE-RECON-1', async () => (await fake.connection(1, 10_000)).handshakeWithin(), 'secondary');
    check('CONF-CTL-5', () => expect(hex(h1.startTid), 'the start tid of the next connection, against the last tid reported').toBe(last), 'secondary');
  });

  it('[CONF-CTL-7] [FS-BACK-5] undo writes back pointers to the revisions before (0 for a creation), or refuses when a later transaction changed an object', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const p = await startPrimary();
    const a = await commitOn(p.node, { records: [{ oid: oidHex(1), data: '8003580100000061' + '2e' }, { oid: oidHex(2), data: '80035801000000622e' }] });
    const b = await commitOn(p.node, { records: [{ oid: oidHex(1), data: '80035801000000632e' }] });
    const u1 = await answered('CONF-CTL-7', p.node, 'undo', { tid: b, description: 'undo b' });
    check('CONF-CTL-7', () => expect(u1.ok, JSON.stringify(u1)).toBe(true));
    const c = await commitOn(p.node, { records: [{ oid: oidHex(3), data: '80035801000000642e' }] });
    const u2 = await answered('CONF-CTL-7', p.node, 'undo', { tid: c });
    check('CONF-CTL-7', () => expect(u2.ok, JSON.stringify(u2)).toBe(true));
    await commitOn(p.node, { records: [{ oid: oidHex(2), data: '80035801000000652e' }] });
    const refused = await answered('CONF-CTL-7', p.node, 'undo', { tid: a });
    check('CONF-CTL-7', () => expect(refused.ok, 'undo of a transaction whose object a later one changed').toBe(false));

    checkValid(p.fs);
    const r = FileStorageReader.open(p.fs);
    try {
      const txns = [...r.transactions()];
      const byTid = (t: string) => txns.find((x) => hex(x.tid) === t)!;
      check('CONF-CTL-7', () => {
        expect(txns.map((t) => hex(t.tid))).toContain(u1.tid);
        expect(txns.map((t) => hex(t.tid))).toContain(u2.tid);
        expect(txns, 'transactions (the refused undo wrote nothing)').toHaveLength(6);
      });
      for (const [undone, undo] of [[b, u1.tid as string], [c, u2.tid as string]] as const) {
        const before = [...r.records(byTid(undone))];
        const records = [...r.records(byTid(undo))];
        check('CONF-CTL-7', () => {
          expect(records.map((x) => hex(x.oid)), `the objects of undo ${undo}`).toEqual(before.map((x) => hex(x.oid)));
          records.forEach((rec, i) => {
            expect(rec.plen, `data length of ${hex(rec.oid)} in undo ${undo}`).toBe(0);
            expect(rec.back, `back pointer of ${hex(rec.oid)} in undo ${undo}: the revision before ${undone}`).toBe(before[i]!.prev);
          });
        });
        check('FS-BACK-5', () => {
          records.forEach((rec, i) => {
            const wantData = before[i]!.prev === 0 ? null : r.resolve(r.readDataRecord(before[i]!.prev)).data;
            expect(r.resolve(rec).data, `what the back pointer of ${hex(rec.oid)} in undo ${undo} resolves to`).toEqual(wantData);
          });
        });
      }
      // oid 1 is back to the data transaction a gave it; oid 3 no longer has data
      const resolvedOf = (tid: string) => [...r.records(byTid(tid))].map((x) => r.resolve(x).data?.toString('hex') ?? null);
      check('FS-BACK-5', () => {
        expect(resolvedOf(u1.tid as string)).toEqual(['8003580100000061' + '2e']);
        expect(resolvedOf(u2.tid as string)).toEqual([null]);
      });
    } finally {
      r.close();
    }
  });

  it('[CONF-CTL-8] [WIRE-TXN-8] pack as ZODB does, replacing the file under an open stream, which goes on after the last tid it sent', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const oldFile = fixture('packed', 'Data.fs.old');
    const old = fileContent(oldFile);
    const lastPacked = old.find((t) => t.description === Buffer.from('undo bad').toString('hex'))!;
    const golden = byValue(fileContent(fixture('packed', 'Data.fs'))).filter((t) => old.some((o) => o.tid === t.tid));
    const p = await startPrimary({ store: prepared(oldFile) });
    const a = await servedFrom(p.address, old.length, 'the transactions of the file, before the pack');
    const r = await answered('CONF-CTL-8', p.node, 'pack', { before: lastPacked.tid });
    if (r.ok === false && (r.error as { code?: string }).code === 'ERR_UNSUPPORTED') ctx.skip(`unsupported: ${primary.name} cannot pack`);
    check('CONF-CTL-8', () => expect(r.ok, JSON.stringify(r)).toBe(true));
    // the file is replaced when the pack is done, which the response need not wait for
    let packed: ReturnType<typeof byValue> = [];
    const readable = () => {
      try {
        return (packed = byValue(fileContent(p.fs))).length === golden.length;
      } catch {
        return false; // being replaced
      }
    };
    await check('CONF-CTL-8', async () => {
      await until('the packed file', readable, { timeoutMs: 15_000, everyMs: 50, seen: () => `${packed.length} transactions, ${golden.length} after the pack` });
      expect(packed, 'the packed file against what ZODB made of it').toEqual(golden);
    });
    checkValid(p.fs);
    const x = await commitOn(p.node, { records: [{ oid: oidHex(0xc2), data: '80034e2e' }] });
    if (!a.closed) {
      // still streaming: the next transaction after the last one it sent, and nothing else
      const more = await a.waitForTransactions(old.length + 1, 5000);
      await a.settle();
      a.verify();
      check('WIRE-TXN-8', () => {
        expect(more, 'the commit after the pack, on the stream opened before it').toBe(true);
        expect(a.transactions.slice(old.length).map((t) => hex(t.begin.tid))).toEqual([x]);
      });
    }
    const b = await FakeSecondary.connect(p.address);
    b.handshake('zrs2.0', Z64);
    const all = await b.waitForTransactions(golden.length + 1);
    b.verify();
    check('CONF-CTL-8', () => {
      expect(all, 'a new connection gets the packed file and the commit after it').toBe(true);
      expect(b.transactions.map((t) => [hex(t.begin.tid), t.begin.status])).toEqual([...golden.map((t) => [t.tid, t.status]), [x, ' ']]);
    });
    a.close();
    b.close();
  });

  it('[CONF-CTL-9] a secondary refuses commit, undo and pack, and goes on replicating', async (ctx) => {
    requires(ctx, secondary, 'secondary', 'control');
    let go!: () => void;
    const more = new Promise<void>((r) => (go = r));
    const fake = await FakePrimary.listen(async (c) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(fixture('small', 'Data.fs'), startTid);
      c.send(frames.slice(0, 10).flat(2));
      await more;
      c.send(frames.slice(10).flat(2));
    });
    cleanup.push(() => fake.close());
    const s = await startSecondary({ from: fake.address });
    await check('WIRE-TXN-10', () => reaches(s, small[9]!.tid, 10_000), 'secondary');
    for (const [op, fields] of [
      ['commit', { records: [{ oid: oidHex(0xc3), data: '80034e2e' }] }],
      ['undo', { tid: small[9]!.tid }],
      ['pack', { before: small[5]!.tid }],
    ] as const) {
      const r = await s.node.request(op, fields);
      expect(r.ok, `${op}: ${JSON.stringify(r)}`).toBe(false);
    }
    go();
    await reaches(s, small.at(-1)!.tid, 10_000); // it goes on replicating
    await s.node.stop();
    expect(fileContent(s.fs).map((t) => t.tid)).toEqual(small.map((t) => t.tid));
  });
});

describe(`primary as a writer: ${primary.name}`, () => {
  it('[FS-TXN-4] user, description or extension over 65535 bytes: the commit is refused and nothing is written; 65535 bytes are written whole', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const p = await startPrimary({ store: 'small' });
    const size = readFileSync(p.fs).length;
    const records = [{ oid: oidHex(0xc4), data: '80034e2e' }];
    for (const fields of [{ user: 'u'.repeat(65536) }, { description: 'd'.repeat(65536) }, { description: 'é'.repeat(32768) }, { extension: { k: 'x'.repeat(66000) } }]) {
      const r = await p.node.request('commit', { records, ...fields });
      expect(r.ok, Object.keys(fields)[0]).toBe(false);
      expect(readFileSync(p.fs).length).toBe(size);
    }
    const tid = await commitOn(p.node, { records, user: 'u'.repeat(65535), description: 'd'.repeat(65535) });
    const t = fileContent(p.fs).at(-1)!;
    expect(t.tid).toBe(tid);
    expect(t.user.length / 2).toBe(65535);
    expect(t.description.length / 2).toBe(65535);
  });

  it('[FS-TID-3] [FS-STATUS-3] [FS-STATUS-4] [FS-MAGIC-3] [FS-DATA-6] a primary writing a new file: tids are the time of the commit (or just after the last one), statuses are blank, prev pointers chain', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const p = await startPrimary();
    let last: Buffer = Buffer.from(Z64);
    const windows: { tid: Buffer; before: number; after: number; spaced: boolean }[] = [];
    for (let i = 0; i < 30; i++) {
      if (i % 10 === 0) await sleep(30);
      const before = Date.now();
      const tid = tidOf(await commitOn(p.node, { records: [{ oid: oidHex(i % 4), data: `80035801000000${(0x41 + i).toString(16)}2e` }] }));
      windows.push({ tid, before, after: Date.now(), spaced: i % 10 === 0 });
    }
    check('FS-TID-3', () => {
      for (const w of windows) {
        expect(Buffer.compare(w.tid, last), `${hex(w.tid)} after ${hex(last)}`).toBeGreaterThan(0);
        const ms = tidToUnixSeconds(w.tid) * 1000;
        const justAfter = hex(w.tid) === hex(after(last, 1));
        const inWindow = ms >= w.before - 5 && ms <= w.after + 5;
        // after a pause the clock is past the last tid, so the tid must be the time itself
        expect(w.spaced ? inWindow : justAfter || inWindow, `tid ${hex(w.tid)} is ${ms - w.before} ms after the request was sent (answered after ${w.after - w.before} ms)`).toBe(true);
        last = w.tid;
      }
    });
    const u = await answered('CONF-CTL-7', p.node, 'undo', { tid: hex(windows[29]!.tid) });
    check('CONF-CTL-7', () => expect(u.ok, JSON.stringify(u)).toBe(true));
    await p.node.stop();
    check('FS-MAGIC-3', () => expect(readFileSync(p.fs).subarray(0, 4).toString('latin1'), 'the magic of the new file').toBe('FS30'));
    checkValid(p.fs);
    const content = fileContent(p.fs);
    check('CONF-CTL-6', () => expect(content, 'transactions after 30 commits and an undo').toHaveLength(31));
    check('FS-STATUS-3', () => expect(content.map((t) => t.status).filter((x) => x === 'u' || x === 'c'), 'statuses u or c').toEqual([]));
    check('FS-STATUS-4', () => expect(content.map((t) => t.status).filter((x) => x !== ' '), 'statuses other than blank').toEqual([]));
    check('FS-DATA-6', () => expect(prevPointers(p.fs), 'records whose prev is not the latest earlier record of their oid').toEqual([]));
  });

  it('[WIRE-PICKLE-1] [WIRE-PICKLE-2] [WIRE-PICKLE-3] [WIRE-PICKLE-14] committed extensions of every value type and size go out byte for byte as Python 3 pickles them at protocol 1, batches included', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const keys = (n: number, prefix: string) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${String(i).padStart(4, '0')}`, i % 3 === 0 ? i : `v${i}`]));
    // plain values (WIRE-PICKLE-2) in one transaction, containers and their batches (WIRE-PICKLE-3) in another
    const sent = [
      {
        rule: 'WIRE-PICKLE-2',
        user: 'zoë / ops',
        description: 'a description, with “quotes”',
        extension: {
          ints: 0,
          i1: 1, i255: 255, i256: 256, i65535: 65535, i65536: 65536, m1: -1, m256: -256, i31: 2147483647, m31: -2147483648, i32: 2147483648, m32: -2147483649, i53: 9007199254740991, m53: -9007199254740991,
          half: 0.5, f2: -2.25, big: 1e300, pi: 3.141592653589793,
          yes: true, no: false, none: null,
          empty: '', a: 'a', e: 'é', astral: '€𝄞', long: 'x'.repeat(300),
          b0: { $bytes: '' }, b2: { $bytes: '00ff' }, b1: { $bytes: 'e9' }, butf8: { $bytes: 'c3a9' },
        },
      },
      {
        rule: 'WIRE-PICKLE-3',
        user: '',
        description: '',
        extension: {
          lists: [[], [1], [1, 2], Array.from({ length: 1001 }, (_, i) => i), Array.from({ length: 2000 }, () => 7)],
          dicts: [{}, { one: 1 }, keys(2, 'b'), keys(1000, 'k'), keys(1001, 'm')],
          nested: { a: { b: { c: [{ d: null }] } } },
        },
      },
    ];
    const p = await startPrimary();
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await sleep(100);
    const data = '80035801000000782e';
    const tids: Buffer[] = [];
    for (const [i, x] of sent.entries()) tids.push(tidOf(await commitOn(p.node, { records: [{ oid: oidHex(5 + i), data }], user: x.user, description: x.description, extension: x.extension })));
    const arrived = await s.waitForTransactions(sent.length);
    await s.settle();
    s.verify(); // what does not decode, or a wrong digest, blames the rule it breaks
    check('WIRE-TXN-3', () => expect(arrived, 'the committed transactions were not sent').toBe(true));
    const got: Buffer[] = [];
    for (let at = 0, b = s.received; at + 4 <= b.length; at += 4 + b.readUInt32BE(at)) got.push(b.subarray(at + 4, at + 4 + b.readUInt32BE(at)));
    const sum = new RunningChecksum(Z64);
    for (const [i, x] of sent.entries()) {
      const want = [
        encodeMessage({ type: 'T', tid: tids[i]!, status: ' ', user: Buffer.from(x.user), description: Buffer.from(x.description), extension: extensionValue(x.extension) as PyDict }),
        encodeMessage({ type: 'S', oid: tidOf(oidHex(5 + i)), tid: tids[i]!, version: '', dataTxn: null }),
        Buffer.from(data, 'hex'),
      ];
      want.forEach((w) => sum.update(w));
      want.push(encodeMessage({ type: 'C', checksum: sum.digest() }));
      sum.update(want[3]!);
      const mine = got.slice(4 * i, 4 * i + 4);
      const t = mine[0] ?? Buffer.alloc(0);
      // one standalone protocol-1 pickle: no PROTO or FRAME, nothing after its STOP
      check('WIRE-PICKLE-1', () => {
        expect(t[0], 'the T pickle starts with PROTO').not.toBe(0x80);
        expect(() => loadPickle(t), 'the T pickle does not decode alone').not.toThrow();
      });
      check('WIRE-PICKLE-14', () => {
        const m = decodeMessage(t);
        expect(m.type === 'T' ? pickleToJson(m.extension) : m, 'the extension dict, decoded').toEqual(pickleToJson(extensionValue(x.extension)));
      });
      check('WIRE-TXN-1', () => expect(mine, `the frames of transaction ${hex(tids[i]!)}`).toHaveLength(4));
      // the T holds what the transaction tests; S and C hold plain values; the data frame is the record's data
      const rules = [x.rule, 'WIRE-PICKLE-2', 'WIRE-DATA-2', 'WIRE-PICKLE-2'];
      mine.forEach((g, j) => check(rules[j]!, () => expect(g.toString('hex'), `frame ${j} of transaction ${hex(tids[i]!)}`).toBe(want[j]!.toString('hex'))));
    }
    s.close();
  });
});

describe(`nodes that cannot start: ${both}`, () => {
  const files: [string, Buffer][] = [
    ['a 1-byte file', Buffer.from('F')],
    ['a 3-byte file', Buffer.from('FS3')],
    ['a file whose magic is neither FS30 nor FS21', Buffer.concat([Buffer.from('FS40'), readFileSync(fixture('small', 'Data.fs')).subarray(4)])],
  ];
  /**
   * `role`, started on a file holding `bytes`, refuses it (`rule`: it does not run on, and
   * leaves the file as it was) and exits non-zero with a message on standard error (CONF-PROC-3).
   */
  async function expectRefused(ctx: TestContext, role: Subject, bytes: Buffer, rule: string) {
    requires(ctx, role === 'primary' ? primary : secondary, role);
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, bytes);
    const address = await loopback(); // where the primary is to listen; nothing listens there for the secondary
    await refusesToStart(() => (role === 'primary' ? startPrimary({ fs, listen: address, startFailure: null }) : startSecondary({ fs, from: address, startFailure: null })), rule, {
      took: 'it took the file',
      also: () => expect(readFileSync(fs).equals(bytes), 'the file was changed').toBe(true),
    });
  }
  // each role meets both kinds of file FS-MAGIC-5 names: too short, and another magic
  const fileCases = [['primary', ...files[0]!], ['primary', ...files[2]!], ['secondary', ...files[1]!], ['secondary', ...files[2]!]] as const;
  it.for(fileCases)(
    '[CONF-PROC-3] [FS-MAGIC-5] a %s given %s refuses it: non-zero exit, a message on standard error, the file untouched',
    async ([role, , bytes], ctx) => {
      await expectRefused(ctx, role, bytes, 'FS-MAGIC-5');
    },
  );

  it('[WIRE-CHAIN-4] [CONF-PROC-3] a chained secondary told to listen on the address it replicates from refuses to start', async (ctx) => {
    requires(ctx, secondary, 'secondary', 'chaining');
    const address = await loopback(); // nothing listens there: only the rule can stop it
    await refusesToStart(() => startSecondary({ from: address, listen: address, startFailure: null }), 'WIRE-CHAIN-4', { took: 'it listens on the address it replicates from' });
  });

  it('[DEV-LISTEN-1] [CONF-PROC-3] a primary whose address is in use exits with a non-zero status and names the address', async (ctx) => {
    requires(ctx, primary, 'primary');
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    cleanup.push(() => holder.close());
    const port = (holder.address() as net.AddressInfo).port;
    // a node still there, ready or not, when the harness gives up on it runs on without its address
    await refusesToStart(() => startPrimary({ store: 'small', listen: { kind: 'tcp', host: '127.0.0.1', port }, startFailure: null }), 'DEV-LISTEN-1', {
      took: 'it runs on without the address it was to listen on',
      names: String(port),
      hangBreaks: true,
    });
  });

  /** Damage in the middle of small/Data.fs (its 6th transaction), which no writer may repair. */
  const damaged = (() => {
    const src = fixture('small', 'Data.fs');
    const r = FileStorageReader.open(src);
    const t = [...r.transactions()][5]!;
    const recs = [...r.records(t)];
    r.close();
    const make = (f: (b: Buffer) => void) => {
      const b = readFileSync(src);
      f(b);
      return b;
    };
    return [
      ['a trailing length that differs from tlen', make((b) => b.writeBigUInt64BE(BigInt(t.tlen + 1), t.offset + t.tlen))],
      ['data records that do not add up to tlen', make((b) => b.writeBigUInt64BE(BigInt(recs[0]!.plen - 1), recs[0]!.offset + 34))],
      ['a tlen shorter than the header', make((b) => b.writeBigUInt64BE(10n, t.offset + 8))],
    ] as const;
  })();
  const damageCases = [['primary', ...damaged[0]], ['primary', ...damaged[1]], ['secondary', ...damaged[2]], ['secondary', ...damaged[1]]] as const;
  it.for(damageCases)(
    '[FS-RECOVER-6] [CONF-PROC-3] a %s opening a file with %s in its middle refuses it and leaves it as it was',
    async ([role, , bytes], ctx) => {
      await expectRefused(ctx, role, bytes, 'FS-RECOVER-6');
    },
  );
});
