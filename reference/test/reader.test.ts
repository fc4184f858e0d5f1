import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileFormatError } from '../errors.ts';
import { FileStorageReader, TidTooHighError, type TxnInfo } from '../filestorage/reader.ts';
import { hex8 } from '../timestamp.ts';
import { interopFile, interopJson, interopPath, type Manifest, WHOLE_FILES } from './interop.ts';

const work = mkdtempSync(path.join(tmpdir(), 'zrs-reader-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const tidOf = (h: string) => Buffer.from(h, 'hex');

function withFile<T>(bytes: Uint8Array, f: (r: FileStorageReader, file: string) => T): T {
  const file = path.join(work, `f${Math.random().toString(36).slice(2)}.fs`);
  writeFileSync(file, bytes);
  const r = FileStorageReader.open(file);
  try {
    return f(r, file);
  } finally {
    r.close();
  }
}


describe('reading files written by real ZODB', () => {
  it.each(WHOLE_FILES)('[FS-MAGIC-2] [FS-BACK-2] [FS-BACK-4] %s: transactions and resolved records as ZODB lists them', (file, manifestFile) => {
    const manifest = interopJson<Manifest>(manifestFile);
    const r = FileStorageReader.open(interopPath(file));
    try {
      expect(r.magic).toBe(file.startsWith('fs21') ? 'FS21' : manifest.magic);
      const txns = [...r.transactions()];
      expect(txns.map((t) => hex8(t.tid))).toEqual(manifest.transaction_log.map((t) => t.tid));
      txns.forEach((t, i) => {
        const want = manifest.transaction_log[i]!;
        expect(t.status).toBe(want.status);
        expect(t.user.toString('hex')).toBe(want.user_hex);
        expect(t.description.toString('hex')).toBe(want.description_hex);
        expect(t.extension.toString('hex')).toBe(want.extension_bytes_hex);
        const got = [...r.records(t)].map((rec) => {
          const { data, dataTxn } = r.resolve(rec);
          return {
            oid: hex8(rec.oid),
            serial: hex8(rec.tid),
            data_len: data ? data.length : null,
            data_sha256: data ? sha256(data) : null,
            data_txn: dataTxn ? hex8(dataTxn) : null,
          };
        });
        expect(got).toEqual(want.records);
      });
      expect(txns.at(-1)!.next).toBe(r.size());
    } finally {
      r.close();
    }
  });

  it('[FS-COMMIT-5] [FS-COMMIT-6] a trailing c transaction is seen as a checkpoint, never as committed', () => {
    const r = FileStorageReader.open(interopPath('incomplete/checkpoint.fs'));
    const txns = [...r.transactions()];
    expect(txns).toHaveLength(19);
    expect(r.scan(txns.at(-1)!.next).kind).toBe('checkpoint');
    r.close();
  });

  it.each(['incomplete/truncated-mid.fs', 'incomplete/truncated-header.fs', 'incomplete/checkpoint-truncated.fs'])(
    '[FS-RECOVER-5] %s: the cut tail is a partial transaction, the 19 before it are whole',
    (file) => {
      const r = FileStorageReader.open(interopPath(file));
      const txns = [...r.transactions()];
      expect(txns).toHaveLength(19);
      const tail = r.scan(txns.at(-1)!.next);
      expect(tail.kind).toBe('partial');
      r.close();
    },
  );

  it('a file being appended to shows a transaction only once all of it is there', () => {
    const full = interopFile('small/Data.fs');
    const file = path.join(work, 'growing.fs');
    writeFileSync(file, full.subarray(0, 4));
    const r = FileStorageReader.open(file);
    const first = FileStorageReader.open(interopPath('small/Data.fs'));
    const end = [...first.transactions()][1]!.next;
    first.close();
    const seen: string[] = [];
    let offset = 4;
    for (let i = 4; i < end; i += 7) {
      appendFileSync(file, full.subarray(i, Math.min(i + 7, end)));
      const s = r.scan(offset);
      if (s.kind === 'transaction') {
        seen.push(hex8(s.txn.tid));
        offset = s.txn.next;
      } else expect(['partial', 'end']).toContain(s.kind);
    }
    expect(seen).toHaveLength(2);
    r.close();
  });
});

describe('[FS-TID-2] positioning a stream after a start tid', () => {
  const manifest = interopJson<Manifest>('small/Data.fs.json');
  const tids = manifest.transaction_log.map((t) => t.tid);
  const r = FileStorageReader.open(interopPath('small/Data.fs'));
  const offsets = [...r.transactions()].map((t: TxnInfo) => t.offset);
  afterAll(() => r.close());

  it('z64 starts at the first transaction', () => {
    expect(r.positionAfter(Buffer.alloc(8))).toBe(4);
  });

  it('a tid in the file starts at the transaction after it', () => {
    expect(r.positionAfter(tidOf(tids[9]!))).toBe(offsets[10]);
  });

  it('a tid between two transactions starts at the later one', () => {
    const between = tidOf(tids[9]!);
    between.writeUInt32BE(between.readUInt32BE(4) + 1, 4);
    expect(r.positionAfter(between)).toBe(offsets[10]);
  });

  it('a tid below the first one starts at the first transaction', () => {
    expect(r.positionAfter(tidOf('0000000000000001'))).toBe(4);
  });

  it('the last tid positions at the end, where new transactions will come', () => {
    expect(r.positionAfter(tidOf(tids.at(-1)!))).toBe(r.size());
  });

  it('a tid above every transaction is too high', () => {
    expect(() => r.positionAfter(tidOf('7fffffffffffffff'))).toThrow(TidTooHighError);
  });
});

describe('refusing damaged files', () => {
  it('[FS-CHECK-2] [FS-CHECK-3] an empty file or a foreign magic', () => {
    const file = path.join(work, 'empty.fs');
    writeFileSync(file, '');
    expect(() => FileStorageReader.open(file)).toThrow(/empty file/);
    writeFileSync(file, 'FS99');
    expect(() => FileStorageReader.open(file)).toThrow(/invalid file header/);
  });

  it('[FS-CHECK-13] a trailing length that differs from the header is an error, not a stall', () => {
    const bytes = Buffer.from(interopFile('small/Data.fs'));
    const tlen = Number(bytes.readBigUInt64BE(4 + 8));
    bytes.writeBigUInt64BE(BigInt(tlen + 1), 4 + tlen);
    withFile(bytes, (r) => {
      expect(() => r.scan(4)).toThrow(FileFormatError);
    });
  });

  it('[FS-CHECK-18] a back pointer that points forward is refused when resolved', () => {
    const bytes = Buffer.from(interopFile('undo/Data.fs'));
    // the undo transaction's backpointer record (see spec/file-format.md) at offset 1629
    bytes.writeBigUInt64BE(BigInt(1629), 1629 + 42);
    withFile(bytes, (r) => {
      const rec = r.readDataRecord(1629);
      expect(() => r.resolve(rec)).toThrow(/does not point before/);
    });
  });

  it('notices that the file was replaced, as a pack does', () => {
    const file = path.join(work, 'packme.fs');
    copyFileSync(interopPath('packed/Data.fs.old'), file);
    const r = FileStorageReader.open(file);
    expect(r.replaced()).toBe(false);
    const packed = path.join(work, 'packme.fs.pack');
    writeFileSync(packed, readFileSync(interopPath('packed/Data.fs')));
    renameSync(packed, file);
    expect(r.replaced()).toBe(true);
    r.close();
  });
});
