// Conformance of a secondary, judged by a fake primary that serves fixture stores, right or
// damaged on purpose, and by the file the secondary writes.
import { cpSync, existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { checkFile } from '../../reference/filestorage/checker.ts';
import { fileContent } from '../../reference/filestorage/content.ts';
import { encodeFrame } from '../../reference/framing.ts';
import { encodeMessage } from '../../reference/messages.ts';
import { PyDict } from '../../reference/pickle/values.ts';
import type { Frame } from '../../reference/primary/frames.ts';
import { StreamEncoder } from '../../reference/stream.ts';
import { hex8, Z64 } from '../../reference/timestamp.ts';
import { reaches, requires, secondaryIut, startSecondary, workdir } from '../context.ts';
import { FIXTURES } from '../env.ts';
import { type FakeConnection, FakePrimary, storeFrames } from '../peers/fake-primary.ts';
import { sleep } from '../peers/fake-secondary.ts';

const iut = secondaryIut();
const store = (name: string) => path.join(FIXTURES, name, 'Data.fs');
const flat = (frames: Frame[][]) => frames.flat(2);

/** Serves `name` correctly to every connection, from the start tid each one sends. */
async function serving(name: string, blobs = false): Promise<FakePrimary> {
  const dir = blobs ? new BlobDirectory(path.join(FIXTURES, name, 'blobs')) : null;
  return FakePrimary.listen(async (c) => {
    const { startTid } = await c.handshake;
    c.send(flat(storeFrames(store(name), startTid, dir)));
  });
}

/** Stops the secondary and returns its file's content, after checking the file is valid. */
async function finalContent(s: Awaited<ReturnType<typeof startSecondary>>) {
  expect((await s.node.stop()).code).toBe(0);
  const check = checkFile(s.fs);
  expect(check.violation).toBeNull();
  return fileContent(s.fs);
}

describe(`secondary: ${iut.name}`, () => {
  it('[WIRE-HS-1] [WIRE-HS-2] [WIRE-HS-3] [WIRE-HS-4] a new secondary sends zrs2.0 and z64 at once, and nothing else before them', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await FakePrimary.listen(() => undefined);
    await startSecondary({ from: p.address });
    const c = await p.connection(0);
    const h = await c.handshake;
    expect(h.protocol).toBe('zrs2.0');
    expect(hex8(h.startTid)).toBe(hex8(Z64));
    expect(c.frames.slice(0, 2).map((f) => f.payload.length)).toEqual([6, 8]);
    p.close();
  });

  it('[WIRE-HS-2] a secondary that stores blobs asks for zrs2.1', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const p = await FakePrimary.listen(() => undefined);
    await startSecondary({ from: p.address, blobs: true });
    expect((await (await p.connection(0)).handshake).protocol).toBe('zrs2.1');
    p.close();
  });

  it.for(['small', 'undo', 'packed'])(
    '[WIRE-TXN-9] [WIRE-TXN-10] [WIRE-DATA-5] [WIRE-DATA-6] [WIRE-SUM-5] [WIRE-SUM-6] [FS-COMMIT-2] %s: the secondary file holds every transaction, unchanged, and is valid',
    async (name, ctx) => {
      requires(ctx, iut, 'secondary');
      const p = await serving(name);
      const s = await startSecondary({ from: p.address });
      const want = fileContent(store(name));
      await reaches(s, want.at(-1)!.tid);
      expect(await finalContent(s)).toEqual(want);
      p.close();
    },
  );

  it('[WIRE-BLOB-5] [FS-BLOB-4] [FS-BLOB-8] blobs: every blob file arrives where ZODB looks for it', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const p = await serving('blobs', true);
    const s = await startSecondary({ from: p.address, blobs: true });
    const want = fileContent(store('blobs'));
    await reaches(s, want.at(-1)!.tid);
    expect(await finalContent(s)).toEqual(want);
    const theirs = new BlobDirectory(path.join(FIXTURES, 'blobs', 'blobs'));
    const ours = new BlobDirectory(s.blobDir!);
    for (const t of want) {
      for (const r of t.records) {
        const source = theirs.blobPath(Buffer.from(r.oid, 'hex'), Buffer.from(r.tid, 'hex'));
        if (!existsSync(source) || statSync(source).size === 0) continue; // zero-length blobs: DEV-BLOB0-1
        expect(readFileSync(ours.blobPath(Buffer.from(r.oid, 'hex'), Buffer.from(r.tid, 'hex'))).equals(readFileSync(source))).toBe(true);
      }
    }
    p.close();
  });

  it('[DEV-BLOB0-1] a blob of zero blocks becomes an empty blob file', async (ctx) => {
    requires(ctx, iut, 'secondary', 'blobs');
    const p = await serving('blobs', true);
    const s = await startSecondary({ from: p.address, blobs: true });
    await reaches(s, fileContent(store('blobs')).at(-1)!.tid);
    await s.node.stop();
    const empty = new BlobDirectory(s.blobDir!).blobPath(Buffer.from('0000000000000002', 'hex'), Buffer.from('040d453df97e9422', 'hex'));
    expect(existsSync(empty) && statSync(empty).size === 0).toBe(true);
    p.close();
  });

  const keepAliveDelay = iut.features.has('fractionalDelays') ? 0.3 : 1;
  it('[WIRE-KA-1] [WIRE-KA-2] [WIRE-KA-4] keep-alives: empty frames, the first one delay after the handshake, then every delay (±40%)', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await FakePrimary.listen(() => undefined);
    await startSecondary({ from: p.address, keepAliveDelay });
    const c = await p.connection(0);
    const h = await c.handshake;
    await sleep(keepAliveDelay * 1000 * 4.5);
    const times = c.keepAlives;
    expect(c.frames.slice(2).every((f) => f.payload.length === 0)).toBe(true);
    expect(times.length).toBeGreaterThanOrEqual(3);
    const gaps = [times[0]! - h.at, ...times.slice(1).map((t, i) => t - times[i]!)];
    for (const g of gaps) expect(Math.abs(g - keepAliveDelay * 1000)).toBeLessThan(keepAliveDelay * 400);
    p.close();
  });

  /** Serves `small`, damaged by `damage` on the first connection only. */
  async function damagedOnce(damage: (frames: Frame[][], c: FakeConnection) => Uint8Array[]) {
    return FakePrimary.listen(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), startTid);
      if (n > 0) return c.send(flat(frames));
      c.send(damage(frames, c));
      await sleep(50);
      c.end();
    });
  }

  const small = fileContent(store('small'));
  it.for([
    ['[WIRE-SUM-7] a wrong digest in the 4th transaction', (f: Frame[][]) => {
      const bad = f[3]!;
      const payload = encodeMessage({ type: 'C', checksum: Buffer.alloc(16, 0xaa) });
      bad[bad.length - 1] = [encodeFrame(payload).subarray(0, 4), payload];
      return flat(f);
    }],
    ['[WIRE-CLOSE-6] a cut after the T of the 4th transaction', (f: Frame[][]) => [...flat(f.slice(0, 3)), ...f[3]![0]!]],
    ['[WIRE-CLOSE-6] a cut inside a data frame of the 4th transaction', (f: Frame[][]) => [...flat(f.slice(0, 3)), ...flat([f[3]!.slice(0, 2)]), f[3]![2]![0], f[3]![2]![1].subarray(0, 3)]],
    ['[WIRE-CLOSE-6] a cut just before the C of the 4th transaction', (f: Frame[][]) => [...flat(f.slice(0, 3)), ...flat([f[3]!.slice(0, -1)])]],
    ['[WIRE-MSG-4] garbage where the 4th T is due', (f: Frame[][]) => [...flat(f.slice(0, 3)), encodeFrame(Buffer.from('not a pickle'))]],
    ['[WIRE-MSG-4] an unknown message type', (f: Frame[][]) => [...flat(f.slice(0, 3)), encodeFrame(Buffer.from('(X\x01\x00\x00\x00Z)t.', 'latin1'))]],
    ['[WIRE-TXN-11] a T inside a transaction', (f: Frame[][]) => [...flat(f.slice(0, 3)), ...f[3]![0]!, ...f[3]![0]!]],
    ['[WIRE-TXN-11] a C outside a transaction', (f: Frame[][]) => [...flat(f.slice(0, 3)), ...f[3]!.at(-1)!]],
  ] as const)(
    '[WIRE-TXN-12] [WIRE-RECON-1] [WIRE-RECON-2] %s: nothing of it is kept; after reconnecting it resumes from its last commit',
    async ([, damage], ctx) => {
      requires(ctx, iut, 'secondary');
      const p = await damagedOnce(damage);
      const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
      const second = await (await p.connection(1)).handshake;
      expect(hex8(second.startTid)).toBe(small[2]!.tid);
      await reaches(s, small.at(-1)!.tid);
      expect(await finalContent(s)).toEqual(small);
      p.close();
    },
  );

  it('[WIRE-TXN-14] nothing of a transaction reaches the file before its C', async (ctx) => {
    requires(ctx, iut, 'secondary');
    let hold!: (c: FakeConnection) => void;
    const held = new Promise<FakeConnection>((r) => (hold = r));
    let frames: Frame[][] = [];
    const p = await FakePrimary.listen(async (c) => {
      const { startTid } = await c.handshake;
      frames = storeFrames(store('small'), startTid);
      c.send([...flat(frames.slice(0, 1)), ...flat([frames[1]!.slice(0, -1)])]);
      hold(c);
    });
    const s = await startSecondary({ from: p.address });
    const c = await held;
    await reaches(s, small[0]!.tid);
    await sleep(300);
    const size = statSync(s.fs).size;
    expect(fileContent(s.fs)).toHaveLength(1);
    await sleep(200);
    expect(statSync(s.fs).size).toBe(size);
    c.send(frames[1]!.at(-1)!);
    await reaches(s, small[1]!.tid);
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
    expect((await finalContent(s))[0]!.records[0]!.data).toBe('80034e2e');
    p.close();
  });

  it('[DEV-TIDORDER-1] a T not later than the last commit is refused and never written', async (ctx) => {
    requires(ctx, iut, 'secondary');
    const p = await FakePrimary.listen(async (c, n) => {
      const { startTid } = await c.handshake;
      const frames = storeFrames(store('small'), n === 0 ? startTid : Z64);
      // first connection: five transactions; later ones: a primary that went back in time
      c.send(flat(n === 0 ? frames.slice(0, 5) : frames.slice(1, 2)));
    });
    const s = await startSecondary({ from: p.address, reconnectDelay: 0.2 });
    await reaches(s, small[4]!.tid);
    await p.connection(0).then((c) => c.end());
    await p.connection(2);
    expect(await finalContent(s)).toEqual(small.slice(0, 5));
    p.close();
  });

  it.for(['checkpoint.fs', 'truncated-mid.fs', 'truncated-header.fs', 'checkpoint-truncated.fs'])(
    '[DEV-RESUME-1] [FS-RECOVER-7] restarted on a file whose last transaction was cut or never finished (%s): resumes from its last whole one',
    async (name, ctx) => {
      requires(ctx, iut, 'secondary');
      const fs = path.join(workdir(), 'Data.fs');
      cpSync(path.join(FIXTURES, 'incomplete', name), fs);
      const p = await serving('small');
      const s = await startSecondary({ from: p.address, fs });
      expect(hex8((await (await p.connection(0)).handshake).startTid)).toBe(small[18]!.tid);
      await reaches(s, small.at(-1)!.tid);
      expect(await finalContent(s)).toEqual(small);
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
    await reaches(s, small[1]!.tid);
    expect(await finalContent(s)).toEqual(small.slice(0, 2));
    p.close();
  });
});
