import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkFile } from '../filestorage/checker.ts';
import { FSTEST_FILES, interopFile, interopJson, interopPath, type Manifest } from './interop.ts';

const work = mkdtempSync(path.join(tmpdir(), 'zrs-check-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function checkBytes(bytes: Uint8Array) {
  const file = path.join(work, 'x.fs');
  writeFileSync(file, bytes);
  return checkFile(file);
}

/** fstest's verdicts in the interop manifests, and the rule each one is. */
const FSTEST_RULES: [RegExp, string][] = [
  [/checkpoint flag was not cleared/, 'FS-CHECK-7'],
  [/truncated possibly because of damaged records/, 'FS-CHECK-6'],
  [/truncated/, 'FS-CHECK-4'],
];

describe('[FS-CHECK-1] the checker agrees with ZODB fstest on every real file', () => {
  it.each(FSTEST_FILES)('%s', (file) => {
    const verdict = interopJson<Manifest>(`${file}.json`).fstest;
    const r = checkFile(interopPath(file));
    if (verdict === 'ok') {
      expect(r.violation).toBeNull();
      expect(r.ok).toBe(true);
    } else {
      const rule = FSTEST_RULES.find(([re]) => re.test(verdict))![1];
      expect(r.violation?.rule).toBe(rule);
      expect(r.violation?.message).toContain(verdict.replace(/^.*? (?=[a-z])/, ''));
    }
  });

  it('[FS-MAGIC-2] a file with the FS21 magic passes', () => {
    expect(checkFile(interopPath('fs21/small-as-fs21.fs')).ok).toBe(true);
  });
});

describe('each rule, broken on purpose in a real file', () => {
  // undo/Data.fs: transaction at 4 (first), the undo transaction at 1549 with a backpointer
  // record at 1629 (back = 465) and a no-data record at 1817 (see spec/file-format.md §10).
  const base = () => Buffer.from(interopFile('undo/Data.fs'));
  const firstTlen = () => Number(base().readBigUInt64BE(12));

  it.each<[string, string, (b: Buffer) => Buffer]>([
    ['FS-CHECK-2', 'empty file', () => Buffer.alloc(0)],
    ['FS-CHECK-3', 'invalid file header', (b) => (b.write('FS99', 0), b)],
    ['FS-CHECK-4', 'truncated at', (b) => Buffer.concat([b, Buffer.alloc(10)])],
    ['FS-CHECK-5', 'time-stamp reduction', (b) => (b.fill(0, 4 + firstTlen() + 8, 4 + firstTlen() + 16), b)],
    ['FS-CHECK-6', 'truncated possibly because of damaged records', (b) => b.subarray(0, b.length - 1)],
    ['FS-CHECK-7', 'checkpoint flag was not cleared', (b) => (b.write('c', 4 + 16), b)],
    ['FS-CHECK-8', "invalid status 'x'", (b) => (b.write('x', 4 + 16), b)],
    ['FS-CHECK-9', 'invalid transaction header', (b) => (b.writeUInt16BE(0xffff, 4 + 21), b)],
    ['FS-CHECK-10', 'tloc', (b) => (b.writeBigUInt64BE(5n, 1629 + 24), b)],
    ['FS-CHECK-14', 'version', (b) => (b.writeUInt16BE(1, 1629 + 32), b)],
    ['FS-CHECK-15', 'differs from its transaction', (b) => (b.writeUInt8(0xff, 1629 + 15), b)],
    ['FS-CHECK-16', 'invalid previous pointer', (b) => (b.writeBigUInt64BE(1629n, 1629 + 16), b)],
    ['FS-CHECK-17', 'previous pointer', (b) => (b.writeBigUInt64BE(1549n, 1629 + 16), b)],
    ['FS-CHECK-18', 'invalid back pointer', (b) => (b.writeBigUInt64BE(1629n, 1629 + 42), b)],
    ['FS-CHECK-19', 'back pointer 1549', (b) => (b.writeBigUInt64BE(1549n, 1629 + 42), b)],
    [
      'FS-CHECK-13',
      'inconsistent transaction length',
      (b) => (b.writeBigUInt64BE(BigInt(firstTlen() + 1), 4 + firstTlen()), b),
    ],
  ])('[FS-CHECK-1] %s', (rule, message, mutate) => {
    const r = checkBytes(mutate(base()));
    expect(r.ok).toBe(false);
    expect(r.violation?.rule).toBe(rule);
    expect(r.violation?.message).toContain(message);
  });

  it('[FS-CHECK-11] [FS-CHECK-12] a data record longer than its transaction, or records that leave bytes over', () => {
    const longer = base();
    longer.writeBigUInt64BE(10_000n, 1629 + 34); // plen far beyond the transaction
    expect(checkBytes(longer).violation?.rule).toBe('FS-CHECK-11');
    // grow the undo transaction by 8 bytes that are not a record
    const b = base();
    const tlen = Number(b.readBigUInt64BE(1549 + 8));
    const end = 1549 + tlen;
    const grown = Buffer.concat([b.subarray(0, end), Buffer.alloc(8), b.subarray(end)]);
    grown.writeBigUInt64BE(BigInt(tlen + 8), 1549 + 8);
    grown.writeBigUInt64BE(BigInt(tlen + 8), end + 8);
    const r = checkBytes(grown);
    expect(r.violation?.rule).toBe('FS-CHECK-12');
  });

  it('counts the transactions and records of a valid file', () => {
    const r = checkFile(interopPath('small/Data.fs'));
    expect([r.transactions, r.records]).toEqual([20, 46]);
    expect(r.lastTid).toBe(interopJson<Manifest>('small/Data.fs.json').transaction_log.at(-1)!.tid);
  });
});

describe('blob records and their files', () => {
  it('[FS-BLOB-8] every blob record of the real blob storage has its file; the empty one is a warning', () => {
    const r = checkFile(interopPath('blobs/Data.fs'), { blobDir: interopPath('blobs/blobs') });
    expect(r.ok).toBe(true);
    expect(r.blobs).toBe(11);
    expect(r.warnings).toEqual([expect.stringMatching(/zero-length blob file .*0x040d453df97e9422\.blob/)]);
  });

  it('[FS-BLOB-8] a missing blob file makes the storage invalid, naming the record', () => {
    const dir = path.join(work, 'blobs');
    cpSync(interopPath('blobs/blobs'), dir, { recursive: true });
    rmSync(path.join(dir, '0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x03/0x040d453df97f8bdd.blob'));
    const r = checkFile(interopPath('blobs/Data.fs'), { blobDir: dir });
    expect(r.violation).toMatchObject({ rule: 'FS-BLOB-8', message: expect.stringMatching(/oid 0x0000000000000003 .* has no blob file/) });
  });
});
