// Blobs end to end (zrs2.1): a primary without a blob file, transfers cut at every chunk
// boundary, and a connection lost in the middle of a blob.
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { type BlobMessage, decodeMessage, type TransactionMessage } from '../../reference/messages.ts';
import type { Frame } from '../../reference/primary/frames.ts';
import { hex8, Z64 } from '../../reference/timestamp.ts';
import { blobDirFiles, blobPlace } from '../blob-places.ts';
import { check, HarnessError } from '../checks.ts';
import { primaryIut, reaches, requires, secondaryIut, startPrimary, startSecondary, workdir } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { checkTransactions, expectedTransactions } from '../expected.ts';
import { checkContent, checkValid } from '../file-checks.ts';
import { damagedOnce, type FakeConnection, FakePrimary, flat, storeFrames } from '../peers/fake-primary.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';
import { until } from '../wait.ts';

const store = path.join(FIXTURES, 'blobs', 'Data.fs');
const source = new BlobDirectory(path.join(FIXTURES, 'blobs', 'blobs'));
const want = fileContent(store);

/** The transaction with the blob of most chunks: its index, the index of its first chunk frame, the chunk count. */
function largestBlob(frames: Frame[][]): { txn: number; first: number; chunks: number } {
  let best = { txn: -1, first: -1, chunks: 0 };
  frames.forEach((t, i) => {
    t.forEach((f, j) => {
      let m;
      try {
        m = decodeMessage(f[1]);
      } catch {
        return; // a data or chunk frame
      }
      if (m.type === 'B' && m.blocks > best.chunks) best = { txn: i, first: j + 2, chunks: m.blocks };
    });
  });
  return best;
}

/** Where the file of blob (oid, tid) is in the blob directory `dir` of a new secondary: the bushy layout (FS-BLOB-1, FS-BLOB-4). */
const blobFile = (dir: string, oid: Uint8Array | string, tid: Uint8Array | string) => path.join(dir, blobPlace('bushy', oid, tid));

/** Checks that every blob of the store with content arrived whole in `blobDir` (a 0-byte one may have no file: DEV-BLOB0-1). */
function checkBlobFiles(blobDir: string): void {
  for (const t of want) {
    for (const r of t.records) {
      const from = source.blobPath(Buffer.from(r.oid, 'hex'), Buffer.from(r.tid, 'hex'));
      if (!existsSync(from) || statSync(from).size === 0) continue;
      const mine = blobFile(blobDir, r.oid, r.tid);
      check('FS-BLOB-8', () => expect(existsSync(mine), `no blob file ${mine}`).toBe(true));
      check('WIRE-BLOB-5', () => expect(readFileSync(mine).equals(readFileSync(from)), `${mine} differs from what was sent`).toBe(true));
    }
  }
}

describe('blobs', () => {
  it('[WIRE-BLOB-4] a blob record whose file the primary lacks goes out as a plain S record', async (ctx) => {
    const iut = primaryIut();
    requires(ctx, iut, 'primary', 'blobs');
    const p = await startPrimary({ store: 'blobs', blobs: true });
    rmSync(new BlobDirectory(p.blobDir!).blobPath(Buffer.from('0000000000000003', 'hex'), Buffer.from('040d453df97f8bdd', 'hex')));
    const s = await FakeSecondary.connect(p.address);
    s.handshake('zrs2.1', Z64);
    const expected = expectedTransactions('blobs');
    await s.waitForTransactions(expected.length);
    s.verify();
    checkTransactions(s.transactions, expected);
    const kinds = s.transactions.flatMap((t) => t.records).map((r) => `${Buffer.from(r.message.oid).toString('hex')}:${r.message.type}`);
    expect(kinds).toContain('0000000000000003:S');
    check('WIRE-BLOB-2', () => expect(kinds.filter((k) => k.endsWith(':B')).length, 'blob records sent as B').toBeGreaterThan(5));
    s.close();
  });

  it('[FS-BLOB-8] [WIRE-CLOSE-6] a transfer cut at every chunk boundary of a 17-chunk blob: no partial blob is ever visible, and the blob arrives whole', async (ctx) => {
    const iut = secondaryIut();
    requires(ctx, iut, 'secondary', 'blobs');
    let chunks = 0;
    let target = '';
    const visibleAtReconnect: boolean[] = [];
    const p = await FakePrimary.listen(async (c: FakeConnection, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store, startTid, source);
      const big = largestBlob(frames);
      if (n === 0) {
        chunks = big.chunks;
        const b = decodeMessage(frames[big.txn]![big.first - 2]![1]) as BlobMessage; // B, data, then the chunks
        target = blobFile(blobDir, b.oid, b.tid);
      } else visibleAtReconnect.push(existsSync(target)); // the secondary is back: nothing of the cut blob may be in place
      if (n >= chunks) return c.send(frames.flat(2));
      // everything before the blob's transaction, then that transaction up to its n-th chunk
      c.send([...frames.slice(0, big.txn).flat(2), ...frames[big.txn]!.slice(0, big.first + n).flat()]);
      await sleep(30);
      c.end();
    });
    const blobDir = path.join(workdir(), 'blobs');
    const s = await startSecondary({ from: p.address, blobDir, reconnectDelay: 0.1 });
    await check('WIRE-ADDR-6', () => until('the first connection', () => chunks > 0, { timeoutMs: 20_000 }));
    if (chunks !== 17) throw new HarnessError(`the largest blob of the fixture has ${chunks} chunks, not 17`);
    // each cut transaction was abandoned whole, so that the next connection could commit it
    await check('WIRE-CLOSE-6', () => reaches(s, want.at(-1)!.tid, 60_000));
    check('WIRE-RECON-1', () => expect(p.connections.length, 'connections: one per cut, and the last one').toBe(chunks + 1));
    check('FS-BLOB-8', () => expect(visibleAtReconnect, 'whether the cut blob was in place when the secondary reconnected').toEqual(Array.from({ length: chunks }, () => false)));
    await s.node.stop();
    checkValid(s.fs);
    checkContent(fileContent(s.fs), want);
    checkBlobFiles(blobDir);
    p.close();
  });

  it('[DEV-BLOBTMP-1] a connection lost in the middle of a blob: once the secondary has reconnected, the partial blob file is gone', async (ctx) => {
    const iut = secondaryIut();
    requires(ctx, iut, 'secondary', 'blobs');
    // the first connection gets everything before the largest blob's transaction, then that
    // transaction up to its 5th chunk
    const sentBytes = 5 * 65536;
    const { primary: p, release } = await damagedOnce({
      damaged: (startTid) => {
        const frames = storeFrames(store, startTid, source);
        const big = largestBlob(frames);
        return [...flat(frames.slice(0, big.txn)), ...flat([frames[big.txn]!.slice(0, big.first + 5)])];
      },
      correct: (startTid) => flat(storeFrames(store, startTid, source)),
    });
    // the transaction before the blob's, for a new secondary (which starts from z64)
    const fromZ64 = storeFrames(store, Z64, source);
    const big = largestBlob(fromZ64);
    const before = big.txn > 0 ? hex8((decodeMessage(fromZ64[big.txn - 1]![0]![1]) as TransactionMessage).tid) : null;
    const fs = path.join(workdir(), 'Data.fs');
    const s = await startSecondary({ from: p.address, fs, blobs: true, reconnectDelay: 0.2 });
    const tmp = path.join(s.blobDir!, 'tmp');
    const incoming = () => (existsSync(tmp) ? readdirSync(tmp).filter((f) => !f.startsWith('.')) : []);
    const size = (f: string) => {
      try {
        return statSync(path.join(tmp, f)).size;
      } catch {
        return 0; // gone meanwhile
      }
    };
    const seen = () => JSON.stringify(incoming().map((f) => `${f}: ${size(f)} bytes`));
    // the transactions before the blob's are committed: the stream has reached the secondary
    if (before) await check('WIRE-TXN-10', () => reaches(s, before));
    // the secondary receives the chunks into a file in tmp (FS-BLOB-3). A file of the blob elsewhere in
    // the blob directory breaks that rule; with none anywhere, the partial blob cannot be watched here
    const appeared = await until(`an incoming blob file in ${tmp}`, () => incoming().length > 0, { timeoutMs: 20_000, seen }).catch(() => false);
    if (!appeared) {
      const committed = new Set(fileContent(fs).flatMap((t) => t.records).map((r) => blobPlace('bushy', r.oid, r.tid)));
      check('FS-BLOB-3', () => expect(blobDirFiles(s.blobDir!).filter((f) => !f.startsWith(`tmp${path.sep}`) && !committed.has(f)), 'files of the blob being received, outside tmp').toEqual([]));
      throw new HarnessError(`no incoming blob file appeared in ${tmp} within 20 s, nor elsewhere in the blob directory: the partial blob cannot be watched`);
    }
    // the moment to cut: the file holds the five chunks sent (how soon they reach the disk is no rule's)
    const partial = await until(`a file of ${sentBytes} bytes in ${tmp}`, () => {
      const full = incoming().filter((f) => size(f) >= sentBytes);
      return full.length ? full : null;
    }, { timeoutMs: 20_000, seen }).catch((e: Error) => {
      throw new HarnessError(`the incoming blob file did not reach the ${sentBytes} bytes sent: ${e.message}`);
    });
    (await p.connection(0)).end();
    await check('WIRE-RECON-1', async () => (await p.connection(1, 10_000)).handshakeWithin(10_000));
    expect(incoming().filter((f) => partial.includes(f)), 'partial blob files left in tmp after the reconnection').toEqual([]);
    release();
    await check('WIRE-CLOSE-6', () => reaches(s, want.at(-1)!.tid));
    await s.node.stop();
    checkContent(fileContent(fs), want);
    p.close();
  });
});
