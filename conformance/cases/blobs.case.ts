// Blobs end to end (zrs2.1): a primary without a blob file, transfers cut at every chunk
// boundary, and a secondary killed in the middle of a blob.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { checkFile } from '../../reference/filestorage/checker.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { type BlobMessage, decodeMessage } from '../../reference/messages.ts';
import type { Frame } from '../../reference/primary/frames.ts';
import { Z64 } from '../../reference/timestamp.ts';
import { primaryIut, reaches, requires, secondaryIut, startPrimary, startSecondary, workdir } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { expectedTransactions, firstDifference } from '../expected.ts';
import { type FakeConnection, FakePrimary, storeFrames } from '../peers/fake-primary.ts';
import { FakeSecondary, sleep } from '../peers/fake-secondary.ts';

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
    expect(firstDifference(s.transactions, expected)).toBeNull();
    const kinds = s.transactions.flatMap((t) => t.records).map((r) => `${Buffer.from(r.message.oid).toString('hex')}:${r.message.type}`);
    expect(kinds).toContain('0000000000000003:S');
    expect(kinds.filter((k) => k.endsWith(':B')).length).toBeGreaterThan(5);
    s.close();
  });

  it('[FS-BLOB-8] [WIRE-CLOSE-6] a transfer cut at every chunk boundary of a 17-chunk blob: no partial blob is ever visible, and the blob arrives whole', async (ctx) => {
    const iut = secondaryIut();
    requires(ctx, iut, 'secondary', 'blobs', 'control');
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
        target = new BlobDirectory(blobDir).blobPath(b.oid, b.tid);
      } else visibleAtReconnect.push(existsSync(target)); // the secondary is back: nothing of the cut blob may be in place
      if (n >= chunks) return c.send(frames.flat(2));
      // everything before the blob's transaction, then that transaction up to its n-th chunk
      c.send([...frames.slice(0, big.txn).flat(2), ...frames[big.txn]!.slice(0, big.first + n).flat()]);
      await sleep(30);
      c.end();
    });
    const blobDir = path.join(workdir(), 'blobs');
    const s = await startSecondary({ from: p.address, blobDir, reconnectDelay: 0.1 });
    await reaches(s, want.at(-1)!.tid, 60_000);
    expect(chunks).toBe(17);
    expect(p.connections.length).toBe(chunks + 1);
    expect(visibleAtReconnect).toEqual(Array.from({ length: chunks }, () => false));
    await s.node.stop();
    expect(checkFile(s.fs, { blobDir }).violation).toBeNull();
    expect(fileContent(s.fs)).toEqual(want);
    for (const t of want) {
      for (const r of t.records) {
        const from = source.blobPath(Buffer.from(r.oid, 'hex'), Buffer.from(r.tid, 'hex'));
        if (!existsSync(from) || readFileSync(from).length === 0) continue;
        expect(readFileSync(new BlobDirectory(blobDir).blobPath(Buffer.from(r.oid, 'hex'), Buffer.from(r.tid, 'hex'))).equals(readFileSync(from))).toBe(true);
      }
    }
    p.close();
  });

  it('[DEV-BLOBTMP-1] a secondary killed in the middle of a blob leaves, once restarted, no incoming blob file behind', async (ctx) => {
    const iut = secondaryIut();
    requires(ctx, iut, 'secondary', 'blobs', 'control');
    let hold = true;
    const p = await FakePrimary.listen(async (c) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store, startTid, source);
      const big = largestBlob(frames);
      if (!hold) return c.send(frames.flat(2));
      c.send([...frames.slice(0, big.txn).flat(2), ...frames[big.txn]!.slice(0, big.first + 5).flat()]);
    });
    const fs = path.join(workdir(), 'Data.fs');
    const first = await startSecondary({ from: p.address, fs, blobs: true });
    const blobDir = first.blobDir!;
    await sleep(800);
    await first.node.kill();
    hold = false;
    const second = await startSecondary({ from: p.address, fs, blobDir });
    const tmp = path.join(blobDir, 'tmp');
    expect(existsSync(tmp) ? readdirSync(tmp).filter((f) => !f.startsWith('.')) : []).toEqual([]);
    await reaches(second, want.at(-1)!.tid);
    await second.node.stop();
    expect(fileContent(fs)).toEqual(want);
    p.close();
  });
});
