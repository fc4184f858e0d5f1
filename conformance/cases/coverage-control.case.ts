// Conformance of a node as a process and through its control channel (spec/conformance.md),
// and of a primary as the writer of its own file: what it does with commit, undo and pack,
// the tids it chooses, the metadata limits, the bytes of what it then sends, and how it
// refuses files and addresses it cannot use.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it, type TestContext } from 'vitest';
import { RunningChecksum } from '../../reference/checksum.ts';
import { checkFile } from '../../reference/filestorage/checker.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { encodeMessage } from '../../reference/messages.ts';
import { parseAddress } from '../../reference/net/address.ts';
import { type PickleValue, PyDict } from '../../reference/pickle/values.ts';
import { hex8, tidToUnixSeconds, Z64 } from '../../reference/timestamp.ts';
import { loopback, primaryIut, requires, secondaryIut, startPrimary, startSecondary, workdir, writeZrsConfig } from '../context.ts';
import { until } from '../wait.ts';
import { FIXTURES } from '../env.ts';
import { expandArgs } from '../iut/descriptor.ts';
import { type ControlMessage, type IutNode } from '../iut/node.ts';
import { freePort } from '../../reference/net/ports.ts';
import { FakePrimary, storeFrames } from '../peers/fake-primary.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';
import { byValue, prevPointers } from '../file-checks.ts';

const primary = primaryIut();
const secondary = secondaryIut();
const fixture = (...parts: string[]) => path.join(FIXTURES, ...parts);
const small = fileContent(fixture('small', 'Data.fs'));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const tidOf = (h: string) => Buffer.from(h, 'hex');
const oidHex = (n: number) => n.toString(16).padStart(16, '0');
const after = (t: Uint8Array, n: number) => {
  const b = Buffer.from(t);
  b.writeBigUInt64BE(b.readBigUInt64BE(0) + BigInt(n));
  return b;
};

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

/** Sends a raw line on the control channel. */
const rawLine = (node: IutNode, line: string) => node.proc.stdin!.write(`${line}\n`);

/** Control responses (messages without `event`) from index `from` on. */
const responses = (node: IutNode, from: number) => node.messages.slice(from).filter((m) => !('event' in m));

/** Every line a node wrote on standard output is a control-channel response or event. */
function onlyControlMessages(node: IutNode): ControlMessage[] {
  return node.messages.filter((m) => !(typeof m.event === 'string' && !('id' in m)) && !('id' in m && typeof m.ok === 'boolean'));
}

/** A commit over the control channel; fails the case unless it succeeds. */
async function commit(node: IutNode, fields: ControlMessage): Promise<string> {
  const r = await node.request('commit', fields);
  expect(r.ok, JSON.stringify(r)).toBe(true);
  return r.tid as string;
}

/** A JSON extension as the pickle values a primary must send for it. */
function extensionValue(j: unknown): PickleValue {
  if (j === null || typeof j === 'boolean' || typeof j === 'string') return j;
  if (typeof j === 'number') return Number.isInteger(j) ? BigInt(j) : j;
  if (Array.isArray(j)) return j.map(extensionValue);
  const o = j as Record<string, unknown>;
  if (typeof o.$bytes === 'string' && Object.keys(o).length === 1) return Buffer.from(o.$bytes, 'hex');
  return new PyDict(Object.entries(o).map(([k, v]) => [k, extensionValue(v)]));
}


/**
 * Starts a node that is expected not to start; resolves with its exit and standard error
 * (killed after 15 s: a node that does not exit fails the case).
 */
async function startFailing(role: 'primary' | 'secondary', fs: string, listen?: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const iut = role === 'primary' ? primary : secondary;
  const cmd = iut[role]!;
  const dir = path.dirname(fs);
  const from = `127.0.0.1:${await freePort()}`;
  const config = writeZrsConfig(path.join(dir, `${role}.conf`), [role === 'primary' ? `replicate-to ${listen}` : `replicate-from ${from}`], fs);
  const values = role === 'primary' ? { fs, listen: listen!, config } : { fs, from, config, reconnectDelay: '0.2' };
  const proc: ChildProcess = spawn(cmd.command, expandArgs(cmd.args, values), { cwd: iut.dir, env: { ...process.env, ...cmd.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdin!.on('error', () => undefined);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
  cleanup.push(() => proc.kill('SIGKILL'));
  const [code, signal] = (await once(proc, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stderr };
}

describe(`control channel: ${primary.name}`, () => {
  it('[CONF-CTL-11] [CONF-PROC-1] the ready event names the role, the address with its real port, and the last tid; standard output carries nothing else', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'control');
    const p = await startPrimary({ store: 'small' });
    expect(p.node.ready).toMatchObject({ event: 'ready', role: 'primary', lastTid: small.at(-1)!.tid });
    const listen = parseAddress(p.node.ready!.listen as string);
    expect(listen).toMatchObject({ kind: 'tcp', port: p.address.kind === 'tcp' ? p.address.port : -1 });
    await p.node.request('last-tid');
    await commit(p.node, { records: [{ oid: oidHex(0xc0), data: '80034e2e' }] });

    const fresh = await startSecondary({ from: p.address });
    expect(fresh.node.ready).toMatchObject({ event: 'ready', role: 'secondary', listen: null, lastTid: hex8(Z64) });
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, readFileSync(fixture('small', 'Data.fs')));
    const resumed = await startSecondary({ from: p.address, fs });
    expect(resumed.node.ready).toMatchObject({ event: 'ready', role: 'secondary', listen: null, lastTid: small.at(-1)!.tid });
    await resumed.node.request('last-tid');
    for (const node of [p.node, fresh.node, resumed.node]) expect(onlyControlMessages(node)).toEqual([]);
  });

  it('[CONF-CTL-11] a chained secondary reports the address it listens on, with its real port', async (ctx) => {
    requires(ctx, primary, 'primary');
    requires(ctx, secondary, 'secondary', 'control', 'chaining');
    const p = await startPrimary({ store: 'small' });
    const listen = await loopback();
    const s = await startSecondary({ from: p.address, listen });
    expect(s.node.ready).toMatchObject({ event: 'ready', role: 'secondary', lastTid: hex8(Z64) });
    expect(parseAddress(s.node.ready!.listen as string)).toMatchObject({ kind: 'tcp', port: listen.port });
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
    p.node.proc.stdin!.write(`${lines.join('\n')}\n`);
    await until('ten responses', () => responses(p.node, mark).length >= lines.length, { timeoutMs: 10_000 });
    await sleep(200);
    const r = responses(p.node, mark);
    expect(r).toHaveLength(lines.length);
    expect(r.map((m) => m.id)).toEqual(['a', null, null, { x: [1] }, null, 7, 8, 9, 10, 11]);
    expect(r.map((m) => m.ok)).toEqual([true, false, false, false, true, false, false, false, true, true]);
    for (const m of r.filter((x) => x.ok === false)) {
      const e = m.error as { code?: unknown; message?: unknown };
      expect(typeof e.code === 'string' && e.code.length > 0, JSON.stringify(m)).toBe(true);
      expect(typeof e.message, JSON.stringify(m)).toBe('string');
    }
    expect(r[0]!.tid).toBe(small.at(-1)!.tid);
    expect(r[4]!.tid).toBe(small.at(-1)!.tid);
    expect(r[9]!.tid).toBe(r[8]!.tid);
    expect(onlyControlMessages(p.node)).toEqual([]);
  });

  it.for(['primary', 'secondary'] as const)('[CONF-CTL-4] a %s whose standard input ends shuts down gracefully and exits with 0', async (role, ctx) => {
    requires(ctx, primary, 'primary', ...(role === 'primary' ? (['control'] as const) : []));
    requires(ctx, secondary, 'secondary', ...(role === 'secondary' ? (['control'] as const) : []));
    const p = await startPrimary({ store: 'small' });
    if (role === 'primary') {
      const s = await FakeSecondary.connect(p.address);
      s.handshake('zrs2.0', Z64);
      expect(await s.waitForTransactions(small.length)).toBe(true);
      p.node.proc.stdin!.end();
      expect(await Promise.race([p.node.exited, sleep(15_000).then(() => 'still running')])).toEqual({ code: 0, signal: null });
      expect(await s.waitForClose(5000)).toBe(true);
      expect(s.atBoundary).toBe(true);
    } else {
      const s = await startSecondary({ from: p.address });
      const end = Date.now() + 10_000;
      while ((await s.node.lastTid()) !== small.at(-1)!.tid && Date.now() < end) await sleep(25);
      s.node.proc.stdin!.end();
      expect(await Promise.race([s.node.exited, sleep(15_000).then(() => 'still running')])).toEqual({ code: 0, signal: null });
      expect(checkFile(s.fs).violation?.rule ?? null).toBeNull();
    }
  });

  it.for(['primary', 'secondary'] as const)('[CONF-CTL-10] a %s answers shutdown, then shuts down gracefully and exits with 0', async (role, ctx) => {
    requires(ctx, primary, 'primary', ...(role === 'primary' ? (['control'] as const) : []));
    requires(ctx, secondary, 'secondary', ...(role === 'secondary' ? (['control'] as const) : []));
    const p = await startPrimary({ store: 'small' });
    const node = role === 'primary' ? p.node : (await startSecondary({ from: p.address })).node;
    const r = await node.request('shutdown', {}, 10_000);
    expect(r).toMatchObject({ ok: true });
    expect(await Promise.race([node.exited, sleep(15_000).then(() => 'still running')])).toEqual({ code: 0, signal: null });
  });

  it('[CONF-CTL-5] last-tid: a primary reports its last commit; a secondary the tid its next handshake carries', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'control');
    const p = await startPrimary({ store: 'small' });
    expect(await p.node.lastTid()).toBe(small.at(-1)!.tid);
    const t = await commit(p.node, { records: [{ oid: oidHex(0xc1), data: '80034e2e' }] });
    expect(await p.node.lastTid()).toBe(t);

    const fake = await FakePrimary.listen(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(fixture('small', 'Data.fs'), startTid);
      c.send((n === 0 ? frames.slice(0, 5) : frames.slice(0, 3)).flat(2));
    });
    cleanup.push(() => fake.close());
    const s = await startSecondary({ from: fake.address, reconnectDelay: 0.2 });
    expect(await s.node.lastTid()).toBe(hex8(Z64));
    expect(hex((await (await fake.connection(0)).handshake).startTid)).toBe(hex8(Z64));
    const end = Date.now() + 10_000;
    let last = '';
    while ((last = await s.node.lastTid()) !== small[4]!.tid && Date.now() < end) await sleep(25);
    expect(last).toBe(small[4]!.tid);
    (await fake.connection(0)).end();
    expect(hex((await (await fake.connection(1)).handshake).startTid)).toBe(last);
  });

  it('[CONF-CTL-7] [FS-BACK-5] undo writes back pointers to the revisions before (0 for a creation), or refuses when a later transaction changed an object', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const p = await startPrimary();
    const a = await commit(p.node, { records: [{ oid: oidHex(1), data: '8003580100000061' + '2e' }, { oid: oidHex(2), data: '80035801000000622e' }] });
    const b = await commit(p.node, { records: [{ oid: oidHex(1), data: '80035801000000632e' }] });
    const u1 = await p.node.request('undo', { tid: b, description: 'undo b' });
    expect(u1.ok, JSON.stringify(u1)).toBe(true);
    const c = await commit(p.node, { records: [{ oid: oidHex(3), data: '80035801000000642e' }] });
    const u2 = await p.node.request('undo', { tid: c });
    expect(u2.ok, JSON.stringify(u2)).toBe(true);
    await commit(p.node, { records: [{ oid: oidHex(2), data: '80035801000000652e' }] });
    const refused = await p.node.request('undo', { tid: a });
    expect(refused.ok).toBe(false);

    const r = FileStorageReader.open(p.fs);
    try {
      const txns = [...r.transactions()];
      const byTid = (t: string) => txns.find((x) => hex(x.tid) === t)!;
      expect(txns.map((t) => hex(t.tid))).toContain(u1.tid);
      expect(txns).toHaveLength(6); // the refused undo wrote nothing
      for (const [undone, undo] of [[b, u1.tid as string], [c, u2.tid as string]] as const) {
        const before = [...r.records(byTid(undone))];
        const records = [...r.records(byTid(undo))];
        expect(records.map((x) => hex(x.oid))).toEqual(before.map((x) => hex(x.oid)));
        records.forEach((rec, i) => {
          expect(rec.plen).toBe(0);
          expect(rec.back).toBe(before[i]!.prev);
          const wantData = before[i]!.prev === 0 ? null : r.resolve(r.readDataRecord(before[i]!.prev)).data;
          expect(r.resolve(rec).data).toEqual(wantData);
        });
      }
      // oid 1 is back to the data transaction a gave it; oid 3 no longer has data
      const resolvedOf = (tid: string) => [...r.records(byTid(tid))].map((x) => r.resolve(x).data?.toString('hex') ?? null);
      expect(resolvedOf(u1.tid as string)).toEqual(['8003580100000061' + '2e']);
      expect(resolvedOf(u2.tid as string)).toEqual([null]);
    } finally {
      r.close();
    }
    expect(checkFile(p.fs).violation).toBeNull();
  });

  it('[CONF-CTL-8] [WIRE-TXN-8] pack as ZODB does, replacing the file under an open stream, which goes on after the last tid it sent', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const oldFile = fixture('packed', 'Data.fs.old');
    const old = fileContent(oldFile);
    const lastPacked = old.find((t) => t.description === Buffer.from('undo bad').toString('hex'))!;
    const golden = byValue(fileContent(fixture('packed', 'Data.fs'))).filter((t) => old.some((o) => o.tid === t.tid));
    const p = await startPrimary({ store: prepared(oldFile) });
    const a = await FakeSecondary.connect(p.address);
    a.handshake('zrs2.0', Z64);
    expect(await a.waitForTransactions(old.length)).toBe(true);
    const r = await p.node.request('pack', { before: lastPacked.tid });
    if (r.ok === false && (r.error as { code?: string }).code === 'ERR_UNSUPPORTED') ctx.skip(`unsupported: ${primary.name} cannot pack`);
    expect(r.ok, JSON.stringify(r)).toBe(true);
    const end = Date.now() + 15_000;
    let packed: ReturnType<typeof byValue> = [];
    while (Date.now() < end) {
      try {
        packed = byValue(fileContent(p.fs));
        if (packed.length === golden.length) break;
      } catch {
        // the file is being replaced
      }
      await sleep(50);
    }
    expect(packed).toEqual(golden);
    expect(checkFile(p.fs).violation).toBeNull();
    const x = await commit(p.node, { records: [{ oid: oidHex(0xc2), data: '80034e2e' }] });
    if (!a.closed) {
      // still streaming: the next transaction after the last one it sent, and nothing else
      expect(await a.waitForTransactions(old.length + 1, 5000)).toBe(true);
      await a.settle();
      expect(a.transactions.slice(old.length).map((t) => hex(t.begin.tid))).toEqual([x]);
      expect(a.error).toBeNull();
    }
    const b = await FakeSecondary.connect(p.address);
    b.handshake('zrs2.0', Z64);
    expect(await b.waitForTransactions(golden.length + 1)).toBe(true);
    expect(b.transactions.map((t) => [hex(t.begin.tid), t.begin.status])).toEqual([...golden.map((t) => [t.tid, t.status]), [x, ' ']]);
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
    const end = Date.now() + 10_000;
    while ((await s.node.lastTid()) !== small[9]!.tid && Date.now() < end) await sleep(25);
    for (const [op, fields] of [
      ['commit', { records: [{ oid: oidHex(0xc3), data: '80034e2e' }] }],
      ['undo', { tid: small[9]!.tid }],
      ['pack', { before: small[5]!.tid }],
    ] as const) {
      const r = await s.node.request(op, fields);
      expect(r.ok, `${op}: ${JSON.stringify(r)}`).toBe(false);
    }
    go();
    while ((await s.node.lastTid()) !== small.at(-1)!.tid && Date.now() < end + 10_000) await sleep(25);
    expect(await s.node.lastTid()).toBe(small.at(-1)!.tid);
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
    const tid = await commit(p.node, { records, user: 'u'.repeat(65535), description: 'd'.repeat(65535) });
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
      const tid = tidOf(await commit(p.node, { records: [{ oid: oidHex(i % 4), data: `80035801000000${(0x41 + i).toString(16)}2e` }] }));
      windows.push({ tid, before, after: Date.now(), spaced: i % 10 === 0 });
    }
    for (const w of windows) {
      expect(Buffer.compare(w.tid, last), `${hex(w.tid)} after ${hex(last)}`).toBeGreaterThan(0);
      const ms = tidToUnixSeconds(w.tid) * 1000;
      const justAfter = hex(w.tid) === hex(after(last, 1));
      const inWindow = ms >= w.before - 5 && ms <= w.after + 5;
      // after a pause the clock is past the last tid, so the tid must be the time itself
      expect(w.spaced ? inWindow : justAfter || inWindow, `tid ${hex(w.tid)} is ${ms - w.before} ms after the request was sent (answered after ${w.after - w.before} ms)`).toBe(true);
      last = w.tid;
    }
    const u = await p.node.request('undo', { tid: hex(windows[29]!.tid) });
    expect(u.ok).toBe(true);
    await p.node.stop();
    expect(readFileSync(p.fs).subarray(0, 4).toString('latin1')).toBe('FS30');
    expect(checkFile(p.fs).violation).toBeNull();
    const content = fileContent(p.fs);
    expect(content).toHaveLength(31);
    expect(content.every((t) => t.status === ' ')).toBe(true);
    expect(prevPointers(p.fs)).toEqual([]);
  });

  it('[WIRE-PICKLE-1] [WIRE-PICKLE-2] [WIRE-PICKLE-3] [WIRE-PICKLE-14] a committed extension of every value type and size goes out byte for byte as Python 3 pickles it at protocol 1, batches included', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    const keys = (n: number, prefix: string) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${String(i).padStart(4, '0')}`, i % 3 === 0 ? i : `v${i}`]));
    const extension = {
      ints: [0, 1, 255, 256, 65535, 65536, -1, -256, 2147483647, -2147483648, 2147483648, -2147483649, 9007199254740991, -9007199254740991],
      floats: [0.5, -2.25, 1e300, 3.141592653589793],
      flags: [true, false, null],
      text: ['', 'a', 'é', '€𝄞', 'x'.repeat(300)],
      bytes: [{ $bytes: '' }, { $bytes: '00ff' }, { $bytes: 'e9' }, { $bytes: 'c3a9' }],
      lists: [[], [1], [1, 2], Array.from({ length: 1001 }, (_, i) => i), Array.from({ length: 2000 }, () => 7)],
      dicts: [{}, { one: 1 }, keys(2, 'b'), keys(1000, 'k'), keys(1001, 'm')],
      nested: { a: { b: { c: [{ d: null }] } } },
    };
    const user = 'zoë / ops';
    const description = 'a description, with “quotes”';
    const p = await startPrimary();
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await sleep(100);
    const data = '80035801000000782e';
    const tid = tidOf(await commit(p.node, { records: [{ oid: oidHex(5), data }], user, description, extension }));
    expect(await s.waitForTransactions(1)).toBe(true);
    await s.settle();
    const got: Buffer[] = [];
    for (let at = 0, b = s.received; at + 4 <= b.length; at += 4 + b.readUInt32BE(at)) got.push(b.subarray(at + 4, at + 4 + b.readUInt32BE(at)));
    const sum = new RunningChecksum(Z64);
    const want = [
      encodeMessage({ type: 'T', tid, status: ' ', user: Buffer.from(user), description: Buffer.from(description), extension: extensionValue(extension) as PyDict }),
      encodeMessage({ type: 'S', oid: tidOf(oidHex(5)), tid, version: '', dataTxn: null }),
      Buffer.from(data, 'hex'),
    ];
    want.forEach((w) => sum.update(w));
    want.push(encodeMessage({ type: 'C', checksum: sum.digest() }));
    expect(got).toHaveLength(4);
    got.forEach((g, i) => expect(g.toString('hex'), `frame ${i}`).toBe(want[i]!.toString('hex')));
    s.close();
  });
});

describe(`nodes that cannot start: ${primary.name}`, () => {
  const files: [string, Buffer][] = [
    ['a 1-byte file', Buffer.from('F')],
    ['a 3-byte file', Buffer.from('FS3')],
    ['a file whose magic is neither FS30 nor FS21', Buffer.concat([Buffer.from('FS40'), readFileSync(fixture('small', 'Data.fs')).subarray(4)])],
  ];
  /** `role`, started on a file holding `bytes`, exits non-zero with a message on standard error and leaves the file as it was. */
  async function expectRefused(ctx: TestContext, role: 'primary' | 'secondary', bytes: Buffer) {
    requires(ctx, role === 'primary' ? primary : secondary, role);
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, bytes);
    const { port } = await loopback();
    const r = await startFailing(role, fs, `127.0.0.1:${port}`);
    expect(r.signal, 'killed: it did not exit within 15 s').toBeNull();
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim()).not.toBe('');
    expect(readFileSync(fs).equals(bytes)).toBe(true);
  }
  // each role meets both kinds of file FS-MAGIC-5 names: too short, and another magic
  const fileCases = [['primary', ...files[0]!], ['primary', ...files[2]!], ['secondary', ...files[1]!], ['secondary', ...files[2]!]] as const;
  it.for(fileCases)(
    '[CONF-PROC-3] [FS-MAGIC-5] a %s given %s refuses it: non-zero exit, a message on standard error, the file untouched',
    async ([role, , bytes], ctx) => {
      await expectRefused(ctx, role, bytes);
    },
  );

  it('[WIRE-CHAIN-4] [CONF-PROC-3] a chained secondary told to listen on the address it replicates from refuses to start', async (ctx) => {
    requires(ctx, secondary, 'secondary', 'chaining');
    const address = await loopback(); // nothing listens there: only the rule can stop it
    const r = await startSecondary({ from: address, listen: address }).catch((e: Error) => e);
    expect(r, 'it started, listening on the address it replicates from').toBeInstanceOf(Error);
    expect((r as Error).message).toMatch(/exited \((?!0\))/);
  });

  it('[CONF-PROC-3] a primary whose address is in use exits with a non-zero status and names the address', async (ctx) => {
    requires(ctx, primary, 'primary');
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    cleanup.push(() => holder.close());
    const port = (holder.address() as net.AddressInfo).port;
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, readFileSync(fixture('small', 'Data.fs')));
    const r = await startFailing('primary', fs, `127.0.0.1:${port}`);
    expect(r.signal, 'killed: it did not exit within 15 s').toBeNull();
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(String(port));
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
      await expectRefused(ctx, role, bytes);
    },
  );
});
