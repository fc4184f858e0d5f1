// A primary that follows a file another process writes (feature `follow`): the harness owns
// the file and commits, aborts and packs, as a ZODB application would.
import { copyFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileStorageWriter } from '../../reference/filestorage/writer.ts';
import { hex8, laterThan, tidFromString, Z64 } from '../../reference/timestamp.ts';
import { check } from '../checks.ts';
import { primaryIut, requires, startPrimary } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { checkTransactions, expectedTransactions } from '../expected.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';
import { tids } from '../tids.ts';

const iut = primaryIut();
const meta = (tid: Buffer, d: string) => ({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.from(d), extension: Buffer.alloc(0) });

describe(`following a file: ${iut.name}`, () => {
  it('[WIRE-TXN-3] [WIRE-TXN-4] [FS-COMMIT-6] a transaction the owner commits goes out; a c record at the end is not sent, and goes out once finished; an aborted one never does', async (ctx) => {
    requires(ctx, iut, 'primary', 'follow');
    const p = await startPrimary({ store: 'small', follow: true });
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.0', Z64);
    const before = expectedTransactions('small');
    await s.waitForTransactions(before.length);
    s.verify();
    checkTransactions(s.transactions, before);
    const want = before.map((t) => t.tid);
    const owner = FileStorageWriter.open(p.fs); // the application that owns the file
    try {
      // a plain commit by the owner
      let tid = laterThan(tidFromString('2026-11-26 12:00:00'), owner.lastTid);
      owner.commit(meta(tid, 'plain'), [{ oid: Buffer.alloc(8), serial: tid, data: Buffer.from('80034e2e', 'hex') }]);
      want.push(hex8(tid));
      await s.waitForTransactions(want.length, 10_000);
      s.verify();
      check('WIRE-TXN-3', () => expect(tids(s), 'after a transaction the owner committed').toEqual(want));

      tid = laterThan(tid, tid);
      const aborted = owner.begin(meta(tid, 'aborted'));
      aborted.restore({ oid: Buffer.alloc(8), serial: tid, data: Buffer.from('80034e2e', 'hex') });
      aborted.vote(); // status c at the end of the file
      await sleep(400);
      check('WIRE-TXN-4', () => expect(tids(s), 'while a voted transaction (status c) ends the file').toEqual(want));
      aborted.abort(); // truncated back; the next commit takes the same offset
      tid = laterThan(tid, tid);
      const t = owner.begin(meta(tid, 'kept'));
      t.restore({ oid: Buffer.alloc(8), serial: tid, data: Buffer.from('80034b012e', 'hex') });
      t.vote();
      await sleep(300);
      check('WIRE-TXN-4', () => expect(tids(s), 'while the next voted transaction, at the same offset, ends the file').toEqual(want));
      t.finish();
      want.push(hex8(tid));
    } finally {
      owner.close();
    }
    await s.waitForTransactions(want.length, 10_000);
    await s.settle();
    s.verify();
    check('FS-COMMIT-6', () => expect(tids(s), 'once the transaction at the offset of the aborted one is finished').toEqual(want));
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
    await s.waitForTransactions(sent.length + after.length, 10_000);
    s.verify();
    expect(tids(s)).toEqual([...sent, ...after.map((t) => t.tid)]);
    s.close();
  });
});
