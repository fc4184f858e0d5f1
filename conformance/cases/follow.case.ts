// A primary that follows a file another process writes (feature `follow`): the harness owns
// the file and commits, aborts and packs, as a ZODB application would.
import { copyFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileStorageWriter } from '../../reference/filestorage/writer.ts';
import { hex8, laterThan, tidFromString, Z64 } from '../../reference/timestamp.ts';
import { primaryIut, requires, startPrimary } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { expectedTransactions } from '../expected.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';

const iut = primaryIut();
const meta = (tid: Buffer, d: string) => ({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.from(d), extension: Buffer.alloc(0) });
const tids = (s: FakeSecondary) => s.transactions.map((t) => hex8(Buffer.from(t.begin.tid)));

describe(`following a file: ${iut.name}`, () => {
  it('[FS-COMMIT-6] [WIRE-TXN-4] [WIRE-TXN-3] a c record at the end is not sent; it goes out once finished, and an aborted one never does', async (ctx) => {
    requires(ctx, iut, 'primary', 'follow');
    const p = await startPrimary({ store: 'small', follow: true });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    const before = expectedTransactions('small');
    await s.waitForTransactions(before.length);
    const owner = FileStorageWriter.open(p.fs); // the application that owns the file
    let tid = laterThan(tidFromString('2026-11-26 12:00:00'), owner.lastTid);
    const aborted = owner.begin(meta(tid, 'aborted'));
    aborted.restore({ oid: Buffer.alloc(8), serial: tid, data: Buffer.from('80034e2e', 'hex') });
    aborted.vote(); // status c at the end of the file
    await sleep(400);
    expect(s.transactions).toHaveLength(before.length);
    aborted.abort(); // truncated back; the next commit takes the same offset
    tid = laterThan(tid, tid);
    const t = owner.begin(meta(tid, 'kept'));
    t.restore({ oid: Buffer.alloc(8), serial: tid, data: Buffer.from('80034b012e', 'hex') });
    t.vote();
    await sleep(300);
    expect(s.transactions).toHaveLength(before.length);
    t.finish();
    owner.close();
    expect(await s.waitForTransactions(before.length + 1, 10_000)).toBe(true);
    await s.settle();
    expect(tids(s)).toEqual([...before.map((x) => x.tid), hex8(tid)]);
    expect(s.error).toBeNull();
    s.close();
  });

  it('[WIRE-TXN-8] when the owner packs (the file is replaced), the stream resumes after the last tid it sent', async (ctx) => {
    requires(ctx, iut, 'primary', 'follow');
    const p = await startPrimary({ store: 'packed', follow: true });
    copyFileSync(path.join(FIXTURES, 'packed', 'Data.fs.old'), p.fs); // before the pack
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    await sleep(500);
    const sent = tids(s);
    expect(sent.length).toBeGreaterThan(0);
    const packed = `${p.fs}.pack`;
    copyFileSync(path.join(FIXTURES, 'packed', 'Data.fs'), packed);
    renameSync(packed, p.fs);
    const after = expectedTransactions('packed').filter((t) => t.tid > sent.at(-1)!);
    expect(await s.waitForTransactions(sent.length + after.length, 10_000)).toBe(true);
    expect(tids(s)).toEqual([...sent, ...after.map((t) => t.tid)]);
    s.close();
  });
});
