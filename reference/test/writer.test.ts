import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fc, test } from '@fast-check/vitest';
import { afterAll, describe, expect, it } from 'vitest';
import { ZrsError } from '../errors.ts';
import { checkFile } from '../filestorage/checker.ts';
import { FileStorageReader } from '../filestorage/reader.ts';
import { FileStorageWriter, type RecordToWrite, type TxnMeta } from '../filestorage/writer.ts';
import { FrameDecoder, PRIMARY_RECEIVE_LIMIT } from '../framing.ts';
import { dumpExtension } from '../pickle/encoder.ts';
import { StreamDecoder } from '../stream.ts';
import { hex8, laterThan, tidFromString } from '../timestamp.ts';
import { fileContent } from './helpers.ts';
import { interopFile, interopPath } from './interop.ts';

const work = mkdtempSync(path.join(tmpdir(), 'zrs-writer-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let counter = 0;
const fresh = (name = 'Data.fs') => path.join(mkdtempSync(path.join(work, `${counter++}-`)), name);

/** Applies a captured primary stream to a writer, as a secondary does. */
function replicate(transcript: string, file: string): number {
  const [, startTid] = new FrameDecoder(PRIMARY_RECEIVE_LIMIT).push(interopFile(`transcripts/${transcript}.zrs.sent`));
  const decoder = new StreamDecoder(startTid!);
  const writer = FileStorageWriter.open(file);
  let meta: TxnMeta | null = null;
  let records: RecordToWrite[] = [];
  let n = 0;
  for (const frame of new FrameDecoder().push(interopFile(`transcripts/${transcript}.zrs`))) {
    const e = decoder.push(frame);
    if (e?.kind === 'begin') {
      const m = e.message;
      meta = { tid: m.tid, status: m.status, user: m.user, description: m.description, extension: dumpExtension(m.extension) };
      records = [];
    } else if (e?.kind === 'record') {
      records.push({ oid: e.message.oid, serial: e.message.tid, data: e.data, dataTxn: e.message.dataTxn });
    } else if (e?.kind === 'commit') {
      writer.commit(meta!, records);
      n++;
    }
  }
  writer.close();
  return n;
}

describe('a secondary writing what a real primary sent', () => {
  it.each([
    ['small-from-z64', 'small/Data.fs'],
    ['undo-from-z64', 'undo/Data.fs'],
    ['blobs-from-z64', 'blobs/Data.fs'],
  ])('[FS-BACK-5] [FS-DATA-6] [FS-COMMIT-2] %s: the file is byte for byte the primary file', (transcript, original) => {
    const file = fresh();
    replicate(transcript, file);
    expect(readFileSync(file).equals(interopFile(original))).toBe(true);
    expect(checkFile(file).ok).toBe(true);
  });

  it('[FS-STATUS-4] packed-from-z64: same transactions, statuses and data as the packed primary', () => {
    const file = fresh();
    replicate('packed-from-z64', file);
    expect(fileContent(file)).toEqual(fileContent(interopPath('packed/Data.fs')));
    expect(checkFile(file).ok).toBe(true);
  });
});

const oid = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(n, 4);
  return b;
};

/** Random transaction logs: increasing tids, a few objects, data or none. */
const logs = fc
  .array(
    fc.record({
      user: fc.uint8Array({ maxLength: 20 }),
      description: fc.uint8Array({ maxLength: 40 }),
      extension: fc.uint8Array({ maxLength: 30 }),
      packed: fc.boolean(),
      records: fc.array(fc.record({ oid: fc.nat(5), data: fc.option(fc.uint8Array({ minLength: 1, maxLength: 200 }), { freq: 5 }) }), {
        maxLength: 4,
      }),
    }),
    { minLength: 1, maxLength: 8 },
  )
  .map((txns) => {
    let tid = tidFromString('2026-11-26 08:00:00');
    return txns.map((t, i) => {
      tid = Buffer.from(tid);
      tid.writeUInt32BE(tid.readUInt32BE(4) + 1 + i * 1000, 4);
      const records = [...new Map(t.records.map((r) => [r.oid, r])).values()]; // one record per object
      return {
        meta: { tid, status: t.packed ? 'p' : ' ', user: t.user, description: t.description, extension: t.extension },
        records: records.map((r) => ({ oid: oid(r.oid), serial: tid, data: r.data ? Buffer.from(r.data) : null })),
      };
    });
  });

describe('the writer', () => {
  test.prop([logs], { numRuns: 40 })('[FS-TXN-1] [FS-DATA-1] random logs written then read back are equal, and pass the checker', (log) => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    for (const t of log) w.commit(t.meta, t.records);
    w.close();
    expect(checkFile(file).ok).toBe(true);
    expect(fileContent(file)).toEqual(
      log.map((t) => ({
        tid: hex8(t.meta.tid),
        status: t.meta.status,
        user: Buffer.from(t.meta.user).toString('hex'),
        description: Buffer.from(t.meta.description).toString('hex'),
        extension: Buffer.from(t.meta.extension).toString('hex'),
        records: t.records.map((r) => ({ oid: hex8(r.oid), tid: hex8(r.serial), data: r.data?.toString('hex') ?? null })),
      })),
    );
  });

  it('[FS-MAGIC-3] [FS-MAGIC-6] creates a new file with the FS30 magic', () => {
    const file = fresh();
    FileStorageWriter.open(file).close();
    expect(readFileSync(file).toString('latin1')).toBe('FS30');
  });

  it('[FS-TID-2] refuses a tid that is not later than the last one', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const tid = tidFromString('2026-11-26 08:00:00');
    w.commit({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) }, []);
    expect(() => w.begin({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) })).toThrow(
      expect.objectContaining({ code: 'ERR_FS_TID_ORDER' }) as ZrsError,
    );
    w.close();
  });

  it('[FS-COMMIT-3] an abort after the vote cuts the file back', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const t = w.begin({ tid: tidFromString('2026-11-26 08:00:00'), status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) });
    t.restore({ oid: oid(1), serial: tidFromString('2026-11-26 08:00:00'), data: Buffer.from('x') });
    t.vote();
    expect(readFileSync(file).length).toBeGreaterThan(4);
    t.abort();
    expect(readFileSync(file).toString('latin1')).toBe('FS30');
    w.close();
  });

  it('[FS-BACK-5] a hint naming a missing transaction, or different data, stores the data', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const t1 = tidFromString('2026-11-26 08:00:00');
    const t2 = tidFromString('2026-11-26 08:01:00');
    const t3 = tidFromString('2026-11-26 08:02:00');
    const meta = (tid: Buffer) => ({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) });
    w.commit(meta(t1), [{ oid: oid(1), serial: t1, data: Buffer.from('one') }]);
    w.commit(meta(t2), [{ oid: oid(1), serial: t2, data: Buffer.from('two'), dataTxn: tidFromString('2000-01-01 00:00:00') }]);
    w.commit(meta(t3), [
      { oid: oid(1), serial: t3, data: Buffer.from('one'), dataTxn: t1 },
      { oid: oid(2), serial: t3, data: Buffer.from('new'), dataTxn: t1 },
    ]);
    w.close();
    const r = FileStorageReader.open(file);
    const txns = [...r.transactions()];
    const [second] = [...r.records(txns[1]!)];
    expect(second!.data?.toString()).toBe('two');
    const [third, fourth] = [...r.records(txns[2]!)];
    expect(third!.data).toBeNull(); // back pointer to t1's record
    expect(r.resolve(third!).data?.toString()).toBe('one');
    expect(fourth!.data?.toString()).toBe('new');
    r.close();
  });
});

describe('the index of the writer', () => {
  it('[FS-DATA-6] keeps apart oids that differ only in their last bits, small and beyond 2^53', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const ids = ['0000000000000001', '0000000000000002', '001fffffffffffff', '0020000000000000', '0020000000000001', 'ffffffffffffff00', 'ffffffffffffff01'];
    let tid = tidFromString('2026-11-26 10:00:00');
    for (let round = 0; round < 2; round++) {
      for (const id of ids) {
        tid = laterThan(tid, tid);
        w.commit({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) }, [{ oid: Buffer.from(id, 'hex'), serial: tid, data: Buffer.from(`${id} ${round}`) }]);
      }
    }
    w.close();
    // each record's prev names the record of the same oid before it, and no other
    const r = FileStorageReader.open(file);
    const at = new Map<number, string>();
    for (const t of r.transactions()) {
      for (const rec of r.records(t)) {
        at.set(rec.offset, rec.oid.toString('hex'));
        expect(rec.prev === 0 ? null : at.get(rec.prev)).toBe(rec.data!.toString().endsWith(' 0') ? null : rec.oid.toString('hex'));
      }
    }
    r.close();
  });
});

describe('undo', () => {
  it('[FS-BACK-1] writes the transaction ZODB wrote for the same undo, byte for byte', () => {
    const original = interopFile('undo/Data.fs');
    const r = FileStorageReader.open(interopPath('undo/Data.fs'));
    const txns = [...r.transactions()];
    r.close();
    const t8 = txns.find((t) => t.description.toString() === 'T8 undo T5')!;
    const t5 = txns.find((t) => t.description.toString() === 'T5')!;
    const file = fresh();
    writeFileSync(file, original.subarray(0, t8.offset));
    const w = FileStorageWriter.open(file);
    w.commit(
      { tid: t8.tid, status: ' ', user: t8.user, description: t8.description, extension: t8.extension },
      w.undoRecords(t5.tid, t8.tid),
    );
    w.close();
    expect(readFileSync(file).equals(original.subarray(0, t8.next))).toBe(true);
  });

  it('refuses to undo a transaction whose objects changed since, or that does not exist', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const meta = (tid: Buffer) => ({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) });
    const [t1, t2, t3] = ['08:00', '08:01', '08:02'].map((m) => tidFromString(`2026-11-26 ${m}:00`));
    w.commit(meta(t1!), [{ oid: oid(1), serial: t1!, data: Buffer.from('a') }]);
    w.commit(meta(t2!), [{ oid: oid(1), serial: t2!, data: Buffer.from('b') }]);
    expect(() => w.undoRecords(t1!, t3!)).toThrow(/modified by a later transaction/);
    expect(() => w.undoRecords(t3!, t3!)).toThrow(/no transaction/);
    w.close();
  });
});

describe('group commit (FS-COMMIT-7)', () => {
  it('[FS-COMMIT-7] transactions finished without sync count as committed only after the shared fsync', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const tids = ['09:00', '09:01', '09:02'].map((m) => tidFromString(`2026-11-26 ${m}:00`));
    for (const tid of tids) {
      const t = w.begin({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) });
      t.restore({ oid: oid(1), serial: tid, data: Buffer.from(hex8(tid)) });
      t.vote();
      t.finish({ sync: false });
    }
    expect(hex8(w.lastTid)).toBe(hex8(Buffer.alloc(8)));
    expect(hex8(w.lastWritten)).toBe(hex8(tids[2]!));
    expect(w.sync()).toBe(true);
    expect(hex8(w.lastTid)).toBe(hex8(tids[2]!));
    w.close();
    expect(fileContent(file)).toHaveLength(3);
  });

  it('[FS-COMMIT-7] a background fsync commits what was finished before it began, not what is written meanwhile', async () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const meta = (tid: Buffer) => ({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) });
    const [t1, t2] = ['09:00', '09:01'].map((m) => tidFromString(`2026-11-26 ${m}:00`));
    const finish = (tid: Buffer) => {
      const t = w.begin(meta(tid));
      t.restore({ oid: oid(1), serial: tid, data: Buffer.from(hex8(tid)) });
      t.vote();
      t.finish({ sync: false });
    };
    expect(await w.syncInBackground()).toBe(false); // nothing to sync
    finish(t1!);
    const first = w.syncInBackground();
    finish(t2!); // written while the fsync runs
    expect(hex8(w.lastTid)).toBe(hex8(Buffer.alloc(8)));
    expect(await first).toBe(true);
    expect(hex8(w.lastTid)).toBe(hex8(t1!));
    expect(hex8(w.lastWritten)).toBe(hex8(t2!));
    expect(await w.syncInBackground()).toBe(true);
    expect(hex8(w.lastTid)).toBe(hex8(t2!));
    w.close();
    expect(fileContent(file)).toHaveLength(2);
  });

  it('[FS-COMMIT-7] [FS-RECOVER-1] a crash at any byte of a group leaves, after recovery, a prefix of whole transactions', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const ends: number[] = [4];
    let tid = tidFromString('2026-11-26 09:00:00');
    for (let i = 0; i < 4; i++) {
      tid = laterThan(tid, tid);
      const t = w.begin({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.from(`t${i}`), extension: Buffer.alloc(0) });
      t.restore({ oid: oid(i % 2), serial: tid, data: Buffer.alloc(50 + i, i) });
      t.vote();
      t.finish({ sync: false });
      ends.push(w.next);
    }
    w.close();
    const whole = readFileSync(file);
    for (let cut = 4; cut <= whole.length; cut++) {
      const f = fresh();
      writeFileSync(f, whole.subarray(0, cut));
      const r = FileStorageWriter.open(f);
      const kept = ends.filter((e) => e <= cut).length - 1;
      expect(r.end).toBe(ends[kept]);
      r.close();
      expect(checkFile(f).ok).toBe(true);
      expect(fileContent(f)).toHaveLength(kept);
    }
  });
});

describe('a large transaction streams to the file (FS-COMMIT-8)', () => {
  const python = process.env.ZRS_PYTHON;
  if (!python && process.env.CI) throw new Error('ZRS_PYTHON is not set: CI must check what real ZODB makes of a streamed transaction');
  /** Size of the file after real ZODB opened it for writing (its recovery), and its last tid. */
  const zodbOpens = (file: string) => {
    const script = 'import sys\nfrom ZODB.FileStorage import FileStorage\nfs = FileStorage(sys.argv[1])\nprint(len(list(fs.iterator())))\nfs.close()\n';
    const r = spawnSync(python!, ['-c', script, file], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(r.stderr);
    return { size: statSync(file).size, transactions: Number(r.stdout.trim()) };
  };

  it('[FS-COMMIT-8] [FS-COMMIT-1] [FS-RECOVER-1] records go out before the vote, and a crash at any moment leaves the previous transactions', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const first = tidFromString('2026-11-26 10:00:00');
    w.commit({ tid: first, status: ' ', user: Buffer.from('u'), description: Buffer.from('small'), extension: Buffer.alloc(0) }, [{ oid: oid(1), serial: first, data: Buffer.from('one') }]);
    const end = w.end;
    const tid = laterThan(first, first);
    const t = w.begin({ tid, status: ' ', user: Buffer.from('u'), description: Buffer.from('large'), extension: Buffer.alloc(0) });
    const snapshots: Buffer[] = [];
    const records = [0, 1, 2, 3].map((i) => ({ oid: oid(10 + i), serial: tid, data: Buffer.alloc(600_000, i + 1) }));
    for (const r of records) {
      t.restore(r);
      snapshots.push(readFileSync(file));
    }
    expect(snapshots[0]!.length, 'the first 600 kB wait in memory').toBe(end);
    expect(snapshots[1]!.length, 'past 1 MiB the records are in the file').toBeGreaterThan(end + 1_200_000);
    expect(String.fromCharCode(snapshots[1]![end + 16]!), 'under a header with status c').toBe('c');
    t.vote();
    const voted = readFileSync(file);
    t.finish();
    w.close();
    expect(checkFile(file).ok).toBe(true);
    expect(fileContent(file).map((x) => x.records.map((r) => r.data))).toEqual([[Buffer.from('one').toString('hex')], records.map((r) => r.data.toString('hex'))]);
    // every state a crash can leave: any prefix of the streamed bytes, the voted record
    const streamed = snapshots.at(-1)!;
    const states = [end + 1, end + 22, end + 23, end + 30, end + 700_000, streamed.length - 1, streamed.length].map((n) => streamed.subarray(0, n));
    states.push(voted);
    for (const state of states) {
      const copy = fresh();
      writeFileSync(copy, state);
      const r = FileStorageWriter.open(copy);
      expect(r.end).toBe(end);
      expect(hex8(r.lastTid)).toBe(hex8(first));
      r.close();
      expect(checkFile(copy).ok).toBe(true);
      if (python) {
        writeFileSync(copy, state);
        expect(zodbOpens(copy), `real ZODB opening a crash at ${state.length}`).toEqual({ size: end, transactions: 1 });
      }
    }
  });

  it('[FS-COMMIT-3] [FS-COMMIT-8] an abort before the vote cuts the streamed records off', () => {
    const file = fresh();
    const w = FileStorageWriter.open(file);
    const tid = tidFromString('2026-11-26 10:00:00');
    const t = w.begin({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) });
    for (let i = 0; i < 3; i++) t.restore({ oid: oid(i), serial: tid, data: Buffer.alloc(700_000, i) });
    expect(readFileSync(file).length).toBeGreaterThan(1_000_000);
    t.abort();
    expect(readFileSync(file).toString('latin1')).toBe('FS30');
    w.commit({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0) }, [{ oid: oid(1), serial: tid, data: Buffer.from('x') }]);
    w.close();
    expect(checkFile(file).ok).toBe(true);
  });
});

describe('recovery when a crash cut an append', () => {
  // The last transaction of small/Data.fs, as voted (status c) and then finished.
  const original = interopFile('small/Data.fs');
  const r = FileStorageReader.open(interopPath('small/Data.fs'));
  const txns = [...r.transactions()];
  r.close();
  const lastStart = txns.at(-1)!.offset;
  const voted = Buffer.from(original);
  voted.write('c', lastStart + 16);

  it('[FS-RECOVER-1] [FS-RECOVER-2] [FS-RECOVER-4] a crash at every byte of the append leaves exactly the previous transactions', () => {
    for (let cut = lastStart; cut <= original.length; cut++) {
      const file = fresh();
      writeFileSync(file, voted.subarray(0, cut));
      const w = FileStorageWriter.open(file);
      expect(hex8(w.lastTid)).toBe(hex8(txns.at(-2)!.tid));
      expect(w.end).toBe(lastStart);
      w.close();
      expect(readFileSync(file).equals(original.subarray(0, lastStart))).toBe(true);
      if (cut > lastStart) {
        expect(readFileSync(`${file}.tr0`).equals(voted.subarray(lastStart, cut))).toBe(true);
      }
      expect(checkFile(file).ok).toBe(true);
    }
  });

  it('[FS-RECOVER-2] [FS-INDEX-3] saves to the first unused .trN and removes a stale index', () => {
    const file = fresh();
    writeFileSync(file, voted);
    writeFileSync(`${file}.tr0`, 'older');
    writeFileSync(`${file}.index`, 'stale');
    const w = FileStorageWriter.open(file);
    expect(w.recovery).toMatchObject({ truncatedAt: lastStart, reason: 'checkpoint', savedAs: `${file}.tr1` });
    w.close();
    expect(readFileSync(`${file}.tr0`, 'utf8')).toBe('older');
    expect(existsSync(`${file}.index`)).toBe(false);
  });

  it.each(['incomplete/checkpoint.fs', 'incomplete/truncated-mid.fs', 'incomplete/truncated-header.fs', 'incomplete/checkpoint-truncated.fs'])(
    '[FS-RECOVER-4] [FS-RECOVER-7] %s: the last tid after recovery is the last whole transaction',
    (name) => {
      const file = fresh();
      writeFileSync(file, interopFile(name));
      const w = FileStorageWriter.open(file);
      expect(hex8(w.lastTid)).toBe(hex8(txns.at(-2)!.tid));
      w.close();
    },
  );

  it('[FS-RECOVER-6] a data record whose tloc is not its transaction is refused, not repaired', () => {
    const file = fresh();
    const bad = Buffer.from(original);
    bad.writeBigUInt64BE(5n, 4 + 23 + 25 + 24); // tloc of the first data record (after "initial database creation")
    writeFileSync(file, bad);
    expect(() => FileStorageWriter.open(file)).toThrow(/tloc 5 is not its transaction's offset 4/);
  });

  it('[FS-RECOVER-6] damage inside the file is refused, not repaired', () => {
    const file = fresh();
    const bad = Buffer.from(original);
    bad.writeBigUInt64BE(1n, 4 + Number(bad.readBigUInt64BE(12))); // first trailing length
    writeFileSync(file, bad);
    expect(() => FileStorageWriter.open(file)).toThrow(/redundant length/);
    expect(readFileSync(file).equals(bad)).toBe(true);
  });

  it('a whole file needs no recovery and is left as it is', () => {
    const file = fresh();
    writeFileSync(file, original);
    const w = FileStorageWriter.open(file);
    expect(w.recovery).toBeNull();
    expect(w.end).toBe(original.length);
    w.close();
  });
});
