// A primary in follow mode: another process owns the file and appends to it.
import { copyFileSync, renameSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { FileStorageWriter } from '../filestorage/writer.ts';
import type { Address } from '../net/address.ts';
import { Primary } from '../primary/primary.ts';
import { Secondary } from '../secondary/secondary.ts';
import { hex8, laterThan, tidFromString } from '../timestamp.ts';
import { fileContent, waitFor, workspace } from './helpers.ts';
import { interopJson, interopPath, type Manifest } from './interop.ts';

const ws = workspace('follow');
afterAll(() => ws.cleanup());
const LOOPBACK: Address = { kind: 'tcp', host: '127.0.0.1', port: 0 };

describe('follow mode', () => {
  it('[WIRE-TXN-3] streams each transaction another writer appends, as soon as it is whole', async () => {
    const fs = ws.file('p.fs');
    const owner = FileStorageWriter.open(fs); // the "application" that owns the file
    const primary = await Primary.start({ fs, listen: LOOPBACK, mode: 'follow', pollInterval: 20 });
    const secondary = await Secondary.start({ fs: ws.file('s.fs'), from: primary.address, reconnectDelay: 0.05 });
    let tid = tidFromString('2026-11-26 09:00:00');
    for (let i = 0; i < 20; i++) {
      tid = laterThan(tid, tid);
      const t = owner.begin({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.from(`t${i}`), extension: Buffer.alloc(0) });
      t.restore({ oid: Buffer.alloc(8, i % 3), serial: tid, data: Buffer.alloc(500, i) });
      t.vote(); // status c: nothing may be sent yet
      await new Promise((r) => setTimeout(r, 30));
      expect(secondary.lastTid.equals(tid)).toBe(false);
      t.finish();
      await waitFor(`transaction ${i}`, () => secondary.lastTid.equals(tid));
    }
    owner.close();
    await secondary.close();
    await primary.close();
    expect(fileContent(secondary.options.fs)).toEqual(fileContent(fs));
  });

  it('[WIRE-TXN-8] when the owner packs (the file is replaced), streaming resumes after the last tid sent', async () => {
    const fs = ws.file('p.fs');
    copyFileSync(interopPath('packed/Data.fs.old'), fs);
    const primary = await Primary.start({ fs, listen: LOOPBACK, mode: 'follow', pollInterval: 20 });
    const secondary = await Secondary.start({ fs: ws.file('s.fs'), from: primary.address, reconnectDelay: 0.05 });
    const before = interopJson<Manifest>('packed/Data.fs.old.json').transaction_log;
    await waitFor('catch-up', () => hex8(secondary.lastTid) === before.at(-1)!.tid);
    // the owner packs: the packed file replaces the old one, and a new transaction follows
    const packed = ws.file('packed.fs');
    copyFileSync(interopPath('packed/Data.fs'), packed);
    const owner = FileStorageWriter.open(packed);
    const tid = laterThan(tidFromString('2026-11-26 09:00:00'), owner.lastTid);
    owner.commit({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.from('after pack'), extension: Buffer.alloc(0) }, [
      { oid: Buffer.alloc(8), serial: tid, data: Buffer.from('new root') },
    ]);
    owner.close();
    renameSync(packed, fs);
    await waitFor('the transaction after the pack', () => secondary.lastTid.equals(tid));
    await secondary.close();
    await primary.close();
    // the secondary keeps its unpacked history and adds the new transaction
    const got = fileContent(secondary.options.fs);
    const after = interopJson<Manifest>('packed/Data.fs.json').transaction_log.filter((t) => t.tid > before.at(-1)!.tid);
    expect(after.length).toBeGreaterThan(0); // the packed file has transactions the old one lacked
    expect(got.map((t) => t.tid)).toEqual([...before, ...after].map((t) => t.tid).concat(hex8(tid)));
  });
});
