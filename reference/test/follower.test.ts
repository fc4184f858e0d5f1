import { appendFileSync, copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.ts';
import { FileFollower } from '../filestorage/follower.ts';
import { FileStorageReader, TidTooHighError } from '../filestorage/reader.ts';
import { hex8, Z64 } from '../timestamp.ts';
import { interopFile, interopJson, interopPath, type Manifest } from './interop.ts';

const work = mkdtempSync(path.join(tmpdir(), 'zrs-follow-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(work, `f${n++}.fs`);

/** Every step until `wait`, as tids. */
function drain(f: FileFollower): string[] {
  const tids: string[] = [];
  for (let step = f.next(); step.kind === 'transaction'; step = f.next()) tids.push(hex8(step.txn.tid));
  return tids;
}

function offsets(file: string) {
  const r = FileStorageReader.open(file);
  try {
    return [...r.transactions()].map((t) => ({ offset: t.offset, next: t.next, tid: hex8(t.tid) }));
  } finally {
    r.close();
  }
}

describe('following a file for a stream', () => {
  const small = interopJson<Manifest>('small/Data.fs.json').transaction_log.map((t) => t.tid);

  it('[WIRE-TXN-3] [WIRE-POS-1] sends what is committed, waits, and sends each new transaction once it is whole', () => {
    const file = fresh();
    const bytes = interopFile('small/Data.fs');
    const txns = offsets(interopPath('small/Data.fs'));
    writeFileSync(file, bytes.subarray(0, txns[4]!.offset));
    const f = new FileFollower(file, Z64);
    expect(drain(f)).toEqual(small.slice(0, 4));
    for (let i = 4; i < txns.length; i++) {
      const t = txns[i]!;
      appendFileSync(file, bytes.subarray(t.offset, t.next - 1)); // all but the last byte
      expect(f.next().kind).toBe('wait');
      appendFileSync(file, bytes.subarray(t.next - 1, t.next));
      expect(drain(f)).toEqual([small[i]]);
    }
    f.close();
  });

  it('[WIRE-POS-2] starts after the start tid', () => {
    const f = new FileFollower(interopPath('small/Data.fs'), Buffer.from(small[9]!, 'hex'));
    expect(drain(f)).toEqual(small.slice(10));
    f.close();
  });

  it('[WIRE-POS-3] refuses a start tid above every tid', () => {
    const f = new FileFollower(interopPath('small/Data.fs'), Buffer.from('7fffffffffffffff', 'hex'));
    expect(() => f.next()).toThrow(TidTooHighError);
    f.close();
  });

  it('[WIRE-TXN-4] [DEV-CTAIL-1] waits on a c transaction, while streaming and while positioning, and goes on once it is finished', () => {
    const file = fresh();
    copyFileSync(interopPath('incomplete/checkpoint.fs'), file);
    const txns = offsets(file);
    const streaming = new FileFollower(file, Z64);
    expect(drain(streaming)).toHaveLength(19);
    const ahead = Buffer.from(small[19]!, 'hex'); // a secondary that already has the 20th
    const positioning = new FileFollower(file, ahead);
    expect(positioning.next().kind).toBe('wait');
    const bytes = readFileSync(file);
    bytes.write(' ', txns.at(-1)!.next + 16);
    writeFileSync(file, bytes);
    expect(drain(streaming)).toEqual([small[19]]);
    expect(drain(positioning)).toEqual([]);
    streaming.close();
    positioning.close();
  });

  it('[WIRE-TXN-5] passes over u transactions without sending them', () => {
    const file = fresh();
    const bytes = Buffer.from(interopFile('small/Data.fs'));
    const txns = offsets(interopPath('small/Data.fs'));
    bytes.write('u', txns[3]!.offset + 16);
    writeFileSync(file, bytes);
    const f = new FileFollower(file, Z64);
    expect(drain(f)).toEqual(small.filter((_, i) => i !== 3));
    f.close();
  });

  it('[WIRE-TXN-8] after a pack replaces the file, continues after the last tid sent', () => {
    const file = fresh();
    copyFileSync(interopPath('packed/Data.fs.old'), file);
    const before = interopJson<Manifest>('packed/Data.fs.old.json').transaction_log.map((t) => t.tid);
    const after = interopJson<Manifest>('packed/Data.fs.json').transaction_log.map((t) => t.tid);
    const f = new FileFollower(file, Z64);
    const first = [hex8((f.next() as { txn: { tid: Buffer } }).txn.tid), hex8((f.next() as { txn: { tid: Buffer } }).txn.tid)];
    expect(first).toEqual(before.slice(0, 2));
    const packed = `${file}.pack`;
    copyFileSync(interopPath('packed/Data.fs'), packed);
    renameSync(packed, file);
    expect(drain(f)).toEqual(after.filter((t) => t > first[1]!));
    f.close();
  });

  it('[DEV-TIDORDER-3] stops with an error rather than send a tid that does not increase', () => {
    const file = fresh();
    const bytes = Buffer.from(interopFile('small/Data.fs'));
    const txns = offsets(interopPath('small/Data.fs'));
    bytes.write(small[2]!, txns[5]!.offset, 'hex'); // the 6th transaction claims the 3rd's tid
    writeFileSync(file, bytes);
    const f = new FileFollower(file, Z64);
    expect(() => drain(f)).toThrow(FileFormatError);
    f.close();
  });
});
