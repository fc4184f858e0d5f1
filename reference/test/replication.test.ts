// The reference primary and secondary over real loopback sockets and unix sockets.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkFile } from '../filestorage/checker.ts';
import type { Address } from '../net/address.ts';
import { Primary } from '../primary/primary.ts';
import { Secondary } from '../secondary/secondary.ts';
import { hex8 } from '../timestamp.ts';
import { copy, fileContent, folderContent, waitFor, workspace } from './helpers.ts';
import { interopFile, interopPath } from './interop.ts';

const ws = workspace('replication');
afterAll(() => ws.cleanup());
const LOOPBACK: Address = { kind: 'tcp', host: '127.0.0.1', port: 0 };
const FAST = { reconnectDelay: 0.05 };

async function caughtUp(s: Secondary, p: Primary): Promise<void> {
  await waitFor(`secondary at ${hex8(p.lastTid)}`, () => s.lastTid.equals(p.lastTid));
}

describe('replicating the real files', () => {
  it.each(['small', 'undo', 'blobs'])(
    '[WIRE-TXN-1] [WIRE-DATA-4] [WIRE-TXN-10] %s: the secondary ends with the primary file, byte for byte',
    async (name) => {
      const fs = copy(interopPath(`${name}/Data.fs`), ws.file('primary.fs'));
      const blobs = name === 'blobs' ? copy(interopPath('blobs/blobs'), ws.file('primary-blobs')) : null;
      const primary = await Primary.start({ fs, listen: LOOPBACK, mode: 'follow', blobDir: blobs });
      const secondaryBlobs = blobs ? ws.file('secondary-blobs') : null;
      const secondary = await Secondary.start({ fs: ws.file('secondary.fs'), from: primary.address, blobDir: secondaryBlobs, ...FAST });
      await caughtUp(secondary, primary);
      await secondary.close();
      await primary.close();
      expect(readFileSync(secondary.options.fs).equals(interopFile(`${name}/Data.fs`))).toBe(true);
      expect(checkFile(secondary.options.fs).ok).toBe(true);
      // every blob arrives, the empty one included (DEV-BLOB0-1)
      if (blobs) expect(folderContent(secondaryBlobs!)).toEqual(folderContent(blobs));
    },
  );

  it('[WIRE-TXN-5] packed: the same transactions, status p included', async () => {
    const fs = copy(interopPath('packed/Data.fs'), ws.file('primary.fs'));
    const primary = await Primary.start({ fs, listen: LOOPBACK, mode: 'follow' });
    const secondary = await Secondary.start({ fs: ws.file('secondary.fs'), from: primary.address, ...FAST });
    await caughtUp(secondary, primary);
    await secondary.close();
    await primary.close();
    expect(fileContent(secondary.options.fs)).toEqual(fileContent(fs));
  });
});

/** A record of `n` bytes for object `oid`. */
const record = (oid: number, n: number, fill: number) => {
  const o = Buffer.alloc(8);
  o.writeUInt32BE(oid, 4);
  return { oid: o, data: Buffer.alloc(n, fill) };
};

describe('live replication', () => {
  it('[WIRE-TXN-3] transactions committed while a secondary catches up all arrive, in order', async () => {
    const primary = await Primary.start({ fs: ws.file('primary.fs'), listen: LOOPBACK });
    for (let i = 0; i < 50; i++) primary.commit({ records: [record(i % 7, 1000 + i, i)] });
    const secondary = await Secondary.start({ fs: ws.file('secondary.fs'), from: primary.address, ...FAST });
    for (let i = 50; i < 150; i++) {
      primary.commit({ description: Buffer.from(`txn ${i}`), records: [record(i % 7, 100, i), record(100 + i, 10, i)] });
      if (i % 10 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    await caughtUp(secondary, primary);
    expect(secondary.appliedTransactions).toBe(150);
    await secondary.close();
    await primary.close();
    expect(fileContent(secondary.options.fs)).toEqual(fileContent(primary.options.fs));
    expect(readFileSync(secondary.options.fs).equals(readFileSync(primary.options.fs))).toBe(true);
  });

  it('[WIRE-ADDR-1] over a unix socket', async () => {
    const sock: Address = { kind: 'unix', path: path.join(ws.dir, 'primary.sock') };
    const primary = await Primary.start({ fs: ws.file('primary.fs'), listen: sock });
    primary.commit({ records: [record(1, 10, 1)] });
    const secondary = await Secondary.start({ fs: ws.file('secondary.fs'), from: sock, ...FAST });
    await caughtUp(secondary, primary);
    primary.commit({ records: [record(2, 10, 2)] });
    await caughtUp(secondary, primary);
    await secondary.close();
    await primary.close();
  });

  it('[WIRE-ADDR-5] 20 secondaries at once each get every transaction', async () => {
    const primary = await Primary.start({ fs: ws.file('primary.fs'), listen: LOOPBACK });
    for (let i = 0; i < 20; i++) primary.commit({ records: [record(i, 2000, i)] });
    const secondaries = await Promise.all(
      Array.from({ length: 20 }, (_, i) => Secondary.start({ fs: ws.file(`s${i}.fs`), from: primary.address, ...FAST })),
    );
    for (let i = 20; i < 40; i++) primary.commit({ records: [record(i, 2000, i)] });
    for (const s of secondaries) await caughtUp(s, primary);
    expect(primary.connections.size).toBe(20);
    await Promise.all(secondaries.map((s) => s.close()));
    await primary.close();
    for (const s of secondaries) expect(readFileSync(s.options.fs).equals(readFileSync(primary.options.fs))).toBe(true);
  });

  it('[WIRE-CHAIN-1] [WIRE-CHAIN-2] a chain of three: each link serves what it has committed', async () => {
    const primary = await Primary.start({ fs: ws.file('primary.fs'), listen: LOOPBACK });
    primary.commit({ records: [record(1, 10, 1)] });
    const s1 = await Secondary.start({ fs: ws.file('s1.fs'), from: primary.address, listen: LOOPBACK, ...FAST });
    const s2 = await Secondary.start({ fs: ws.file('s2.fs'), from: s1.primary!.address, listen: LOOPBACK, ...FAST });
    const s3 = await Secondary.start({ fs: ws.file('s3.fs'), from: s2.primary!.address, ...FAST });
    for (let i = 0; i < 30; i++) primary.commit({ records: [record(i, 100, i)] });
    for (const s of [s1, s2, s3]) await caughtUp(s, primary);
    for (const s of [s3, s2, s1]) await s.close();
    await primary.close();
    for (const s of [s1, s2, s3]) expect(readFileSync(s.options.fs).equals(readFileSync(primary.options.fs))).toBe(true);
  });

  it('[WIRE-RECON-1] [WIRE-RECON-2] a secondary waits for a primary that is down, and resumes after a restart', async () => {
    const fs = ws.file('primary.fs');
    let primary = await Primary.start({ fs, listen: LOOPBACK });
    const address = primary.address;
    primary.commit({ records: [record(1, 10, 1)] });
    const secondary = await Secondary.start({ fs: ws.file('secondary.fs'), from: address, ...FAST });
    await caughtUp(secondary, primary);
    await primary.close();
    await waitFor('the secondary to notice', () => !secondary.connected);
    primary = await Primary.start({ fs, listen: address });
    primary.commit({ records: [record(2, 10, 2)] });
    await caughtUp(secondary, primary);
    expect(secondary.appliedTransactions).toBe(2);
    await secondary.close();
    await primary.close();
  });

  it('[WIRE-RECON-4] a secondary started without an address connects once given one, and uses a new one from its next attempt', async () => {
    const fs = ws.file('primary.fs');
    let primary = await Primary.start({ fs, listen: LOOPBACK });
    primary.commit({ records: [record(1, 10, 1)] });
    const secondary = await Secondary.start({ fs: ws.file('secondary.fs'), from: null, ...FAST });
    await new Promise((r) => setTimeout(r, 100));
    expect(secondary.connected).toBe(false);
    secondary.setAddress(primary.address);
    await caughtUp(secondary, primary);
    await primary.close();
    primary = await Primary.start({ fs, listen: LOOPBACK }); // the primary moves to another port
    secondary.setAddress(primary.address);
    primary.commit({ records: [record(2, 10, 2)] });
    await caughtUp(secondary, primary);
    await secondary.close();
    await primary.close();
  });

  it('[WIRE-SHUT-1] [WIRE-SHUT-2] at shutdown every connected secondary catches up, then the connection ends', async () => {
    const primary = await Primary.start({ fs: ws.file('primary.fs'), listen: LOOPBACK });
    primary.commit({ records: [record(0, 10, 0)] });
    const secondaries = await Promise.all(
      Array.from({ length: 10 }, (_, i) => Secondary.start({ fs: ws.file(`s${i}.fs`), from: primary.address, reconnectDelay: 60 })),
    );
    for (const s of secondaries) await caughtUp(s, primary);
    for (let i = 1; i <= 20; i++) primary.commit({ records: [record(i, 50_000, i)] });
    const last = primary.lastTid;
    await primary.close();
    for (const s of secondaries) {
      await waitFor('catch-up', () => s.lastTid.equals(last));
      await s.close();
    }
  });
});
