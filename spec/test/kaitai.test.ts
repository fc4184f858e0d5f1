/**
 * Runs the Kaitai Struct description spec/filestorage.ksy over FileStorage files written by the
 * real ZODB (the interop set, copied in fixtures/real) and compares what it parses with the
 * manifests that ZODB's own iterator wrote beside each file. Also checks the byte examples of
 * spec/file-format.md against the .ksy and the TimeStamp formulas.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  compileFileStorageKsy,
  parseFileStorage,
  type CompiledFileStorageParser,
  type FsDataRecord,
  type FsFile,
} from '../tools/kaitai.ts';
import { HAS_TEST_CHECKER, interopPath, TEST_CHECKER } from '../../reference/test/interop.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const formatDoc = path.join(repoRoot, 'spec/file-format.md');


// ---------------------------------------------------------------------------------------------
// Manifest format (written by the real ZODB's FileStorage iterator, see fixtures/real/README.md)

interface ManifestRecord {
  oid: string;
  serial: string;
  data_len: number | null;
  data_sha256: string | null;
  data_txn: string | null;
}

interface ManifestTransaction {
  tid: string;
  time: string;
  status: string;
  user_hex: string;
  description_hex: string;
  extension_bytes_hex: string;
  records: ManifestRecord[];
}

interface Manifest {
  magic: string;
  size: number;
  fstest: string;
  transactions: number;
  records: number;
  first_tid: string | null;
  last_tid: string | null;
  transaction_log: ManifestTransaction[];
}

function readManifest(rel: string): Manifest {
  return JSON.parse(readFileSync(interopPath(rel), 'utf8')) as Manifest;
}

function readInterop(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(interopPath(rel)));
}

// ---------------------------------------------------------------------------------------------
// Helpers

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** TimeStamp text form of spec/file-format.md section 5, computed exactly (ties to even). */
function tidText(tidHex: string): string {
  const hi = Number.parseInt(tidHex.slice(0, 8), 16);
  const lo = BigInt(`0x${tidHex.slice(8, 16)}`);
  const minute = hi % 60;
  const hour = Math.floor(hi / 60) % 24;
  const day = (Math.floor(hi / 1440) % 31) + 1;
  const month = (Math.floor(hi / 44640) % 12) + 1;
  const year = Math.floor(hi / 535680) + 1900;
  // microseconds = lo * 60e6 / 2^32, rounded half to even
  const num = lo * 60_000_000n;
  const den = 1n << 32n;
  let micros = num / den;
  const twiceRest = (num % den) * 2n;
  if (twiceRest > den || (twiceRest === den && micros % 2n === 1n)) micros += 1n;
  const secInt = micros / 1_000_000n;
  const secFrac = micros % 1_000_000n;
  const p2 = (n: number | bigint): string => String(n).padStart(2, '0');
  return (
    `${String(year).padStart(4, '0')}-${p2(month)}-${p2(day)} ${p2(hour)}:${p2(minute)}:` +
    `${p2(secInt)}.${String(secFrac).padStart(6, '0')}`
  );
}

/** The fenced blocks of spec/file-format.md whose info string starts with `hex`. */
function hexBlocks(): { info: string; bytes: Uint8Array; lines: string[] }[] {
  const text = readFileSync(formatDoc, 'utf8');
  const out: { info: string; bytes: Uint8Array; lines: string[] }[] = [];
  for (const m of text.matchAll(/^```(hex[^\n]*)\n([\s\S]*?)^```/gm)) {
    const info = (m[1] ?? '').trim();
    const lines = (m[2] ?? '')
      .split('\n')
      .map((l) => l.replace(/#.*$/, '').trim())
      .filter((l) => l.length > 0);
    const bytes = info === 'hex tids' ? new Uint8Array() : new Uint8Array(Buffer.from(lines.join('').replace(/\s+/g, ''), 'hex'));
    out.push({ info, bytes, lines });
  }
  return out;
}

function recordsByOffset(file: FsFile): Map<number, FsDataRecord> {
  const map = new Map<number, FsDataRecord>();
  for (const t of file.transactions) for (const r of t.records) map.set(r.offset, r);
  return map;
}

/** Follows backpointers (FS-BACK-2): the data of the revision, or null when it has none. */
function resolveData(rec: FsDataRecord, byOffset: Map<number, FsDataRecord>): Uint8Array | null {
  let r: FsDataRecord | undefined = rec;
  for (let hops = 0; r !== undefined; hops++) {
    if (r.data !== undefined) return r.data;
    if (r.back === undefined || r.back === 0) return null;
    if (hops > byOffset.size) throw new Error(`backpointer loop from offset ${rec.offset}`);
    r = byOffset.get(r.back);
  }
  throw new Error(`backpointer from offset ${rec.offset} does not lead to a data record`);
}

/** The one-hop data_txn of FS-BACK-4. */
function dataTxn(rec: FsDataRecord, byOffset: Map<number, FsDataRecord>): string | null {
  if (rec.plen !== 0 || rec.back === undefined || rec.back === 0) return null;
  const target = byOffset.get(rec.back);
  if (target === undefined) throw new Error(`back ${rec.back} is not a data record`);
  return target.tid;
}

let parser: CompiledFileStorageParser;

beforeAll(async () => {
  parser = await compileFileStorageKsy();
});

// ---------------------------------------------------------------------------------------------
// Examples of spec/file-format.md (no interop data needed)

describe('spec/file-format.md examples against filestorage.ksy', () => {
  it('[FS-MAGIC-1] [FS-TXN-1] [FS-DATA-1] the hex fs-file example parses as a valid one-transaction file', () => {
    const blocks = hexBlocks().filter((b) => b.info === 'hex fs-file');
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) {
      const fs = parseFileStorage(block.bytes, parser);
      expect(fs.magic).toBe('FS30');
      expect(fs.transactions).toHaveLength(1);
      const t = fs.transactions[0]!;
      expect(t.offset).toBe(4);
      expect(t.trailingLength).toBe(t.tlen);
      expect(4 + t.tlen + 8).toBe(block.bytes.length);
      for (const r of t.records) expect(r.tloc).toBe(t.offset);
    }
  });

  it('[FS-TID-1] [FS-TID-5] [FS-TID-7] every line of the hex tids example matches the TimeStamp formulas', () => {
    const blocks = hexBlocks().filter((b) => b.info === 'hex tids');
    expect(blocks.length).toBeGreaterThan(0);
    let lines = 0;
    for (const block of blocks) {
      for (const line of block.lines) {
        const m = /^([0-9a-f]{16})\s+(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6})$/.exec(line);
        expect(m, line).not.toBeNull();
        expect(tidText(m![1]!)).toBe(m![2]);
        lines++;
      }
    }
    expect(lines).toBeGreaterThan(3);
    expect(tidText('0000000000000000')).toBe('1900-01-01 00:00:00.000000');
  });
});

// ---------------------------------------------------------------------------------------------
// Real files

interface Case {
  /** File under the interop folder. */
  file: string;
  /** Its manifest. */
  manifest: string;
  /** Expected magic (differs from the manifest's for small-as-fs21). */
  magic: string;
}

const validFiles: Case[] = [
  { file: 'small/Data.fs', manifest: 'small/Data.fs.json', magic: 'FS30' },
  { file: 'undo/Data.fs', manifest: 'undo/Data.fs.json', magic: 'FS30' },
  { file: 'packed/Data.fs', manifest: 'packed/Data.fs.json', magic: 'FS30' },
  { file: 'packed/Data.fs.old', manifest: 'packed/Data.fs.old.json', magic: 'FS30' },
  { file: 'blobs/Data.fs', manifest: 'blobs/Data.fs.json', magic: 'FS30' },
  ...(HAS_TEST_CHECKER ? [{ file: TEST_CHECKER, manifest: `${TEST_CHECKER}.json`, magic: 'FS21' }] : []),
  { file: 'fs21/small-as-fs21.fs', manifest: 'small/Data.fs.json', magic: 'FS21' },
];

const interopTitle = 'filestorage.ksy against files written by the real ZODB';

describe(interopTitle, () => {
  describe.each(validFiles)('$file', ({ file, manifest, magic }) => {
    let bytes: Uint8Array;
    let fs: FsFile;
    let man: Manifest;
    let byOffset: Map<number, FsDataRecord>;

    beforeAll(() => {
      bytes = readInterop(file);
      fs = parseFileStorage(bytes, parser);
      man = readManifest(manifest);
      byOffset = recordsByOffset(fs);
    });

    it('[FS-MAGIC-1] [FS-MAGIC-2] [FS-TXN-1] parses; transaction records tile the file from offset 4 to its end', () => {
      expect(fs.magic).toBe(magic);
      expect(man.fstest).toBe('ok');
      let pos = 4;
      for (const t of fs.transactions) {
        expect(t.offset).toBe(pos);
        pos = t.offset + t.tlen + 8;
      }
      expect(pos).toBe(bytes.length);
    });

    it('[FS-TXN-1] [FS-STATUS-1] tids, statuses, user, description and raw extension bytes match the manifest', () => {
      expect(fs.transactions).toHaveLength(man.transactions);
      expect(fs.transactions).toHaveLength(man.transaction_log.length);
      fs.transactions.forEach((t, i) => {
        const m = man.transaction_log[i]!;
        expect(t.tid).toBe(m.tid);
        expect(t.status).toBe(m.status);
        expect(' p').toContain(t.status);
        expect(hex(t.user)).toBe(m.user_hex);
        expect(hex(t.description)).toBe(m.description_hex);
        expect(hex(t.extension)).toBe(m.extension_bytes_hex);
      });
    });

    it('[FS-TXN-2] [FS-TXN-3] [FS-CHECK-9] [FS-CHECK-12] [FS-CHECK-13] tlen = header length + records, trailing length = tlen', () => {
      for (const t of fs.transactions) {
        expect(t.trailingLength).toBe(t.tlen);
        const headerLength = 23 + t.user.length + t.description.length + t.extension.length;
        expect(t.tlen).toBeGreaterThanOrEqual(headerLength);
        let pos = t.offset + headerLength;
        for (const r of t.records) {
          expect(r.offset).toBe(pos);
          pos += 42 + (r.plen === 0 ? 8 : r.plen);
        }
        expect(pos).toBe(t.offset + t.tlen);
      }
    });

    it('[FS-DATA-1] [FS-DATA-2] [FS-DATA-3] [FS-DATA-4] [FS-CHECK-10] [FS-CHECK-14] [FS-CHECK-15] per record oid, serial, tloc, vlen, data length and SHA-256 match the manifest', () => {
      let count = 0;
      fs.transactions.forEach((t, i) => {
        const m = man.transaction_log[i]!;
        expect(t.records).toHaveLength(m.records.length);
        t.records.forEach((r, j) => {
          const mr = m.records[j]!;
          expect(r.oid).toBe(mr.oid);
          expect(r.tid).toBe(mr.serial);
          expect(r.tid).toBe(t.tid);
          expect(r.tloc).toBe(t.offset);
          expect(r.vlen).toBe(0);
          if (r.plen > 0) {
            expect(r.data).toBeDefined();
            expect(r.back).toBeUndefined();
            expect(r.data!.length).toBe(r.plen);
            expect(r.plen).toBe(mr.data_len);
            expect(sha256(r.data!)).toBe(mr.data_sha256);
          } else {
            expect(r.data).toBeUndefined();
            expect(r.back).toBeDefined();
          }
          count++;
        });
      });
      expect(count).toBe(man.records);
    });

    it('[FS-BACK-2] [FS-BACK-3] [FS-BACK-4] backpointers resolve to the manifest data; data_txn is the tid of the record at back', () => {
      fs.transactions.forEach((t, i) => {
        const m = man.transaction_log[i]!;
        t.records.forEach((r, j) => {
          const mr = m.records[j]!;
          const data = resolveData(r, byOffset);
          if (data === null) {
            expect(mr.data_len).toBeNull();
            expect(mr.data_sha256).toBeNull();
          } else {
            expect(data.length).toBe(mr.data_len);
            expect(sha256(data)).toBe(mr.data_sha256);
          }
          expect(dataTxn(r, byOffset)).toBe(mr.data_txn);
        });
      });
    });

    it('[FS-DATA-5] [FS-BACK-1] [FS-CHECK-16] [FS-CHECK-17] [FS-CHECK-18] [FS-CHECK-19] prev and back point backwards at records of the same oid', () => {
      for (const t of fs.transactions) {
        for (const r of t.records) {
          if (r.prev !== 0) {
            expect(r.prev).toBeLessThan(r.offset);
            expect(byOffset.get(r.prev)?.oid).toBe(r.oid);
          }
          if (r.back !== undefined && r.back !== 0) {
            expect(r.back).toBeLessThan(r.offset);
            expect(byOffset.get(r.back)?.oid).toBe(r.oid);
          }
        }
      }
    });

    it('[FS-TID-1] [FS-TID-2] [FS-TID-5] [FS-CHECK-5] tids strictly increase from above z64 and render as the manifest time strings', () => {
      let last = '0000000000000000';
      fs.transactions.forEach((t, i) => {
        expect(t.tid > last).toBe(true);
        last = t.tid;
        expect(tidText(t.tid)).toBe(man.transaction_log[i]!.time);
      });
    });
  });

  it('[FS-MAGIC-2] fs21/small-as-fs21.fs differs from small/Data.fs only in the magic and parses to the same records', () => {
    const a = parseFileStorage(readInterop('small/Data.fs'), parser);
    const b = parseFileStorage(readInterop('fs21/small-as-fs21.fs'), parser);
    expect(a.magic).toBe('FS30');
    expect(b.magic).toBe('FS21');
    expect(b.transactions).toEqual(a.transactions);
  });

  it('[FS-STATUS-1] [FS-STATUS-4] packed/Data.fs: three p transactions first, with full data and prev 0', () => {
    const fs = parseFileStorage(readInterop('packed/Data.fs'), parser);
    const statuses = fs.transactions.map((t) => t.status).join('');
    expect(statuses).toBe('ppp    ');
    for (const t of fs.transactions.filter((x) => x.status === 'p')) {
      for (const r of t.records) {
        expect(r.prev).toBe(0);
        expect(r.plen > 0 || r.back === 0).toBe(true);
      }
    }
  });

  it('[FS-BLOB-1] [FS-BLOB-4] [FS-BLOB-6] [FS-BLOB-7] [FS-BLOB-8] blobs/: each blob record has its file at the bushy path, and each file a record', () => {
    const blobDir = interopPath('blobs/blobs');
    expect(readFileSync(path.join(blobDir, '.layout'), 'utf8')).toBe('bushy');
    const fs = parseFileStorage(readInterop('blobs/Data.fs'), parser);
    const byOffset = recordsByOffset(fs);
    const marker = Buffer.from('ZODB.blob\nBlob\n', 'latin1');
    const repr = (h: string): string => {
      let digits = h.replace(/^0+/, '');
      if (digits === '') digits = '00';
      else if (digits.length % 2 === 1) digits = `0${digits}`;
      return `0x${digits}`;
    };
    expect(repr('0000000000000000')).toBe('0x00');
    expect(repr('0000000000000001')).toBe('0x01');
    expect(repr('0000000000000123')).toBe('0x0123');
    const expected = new Set<string>();
    for (const t of fs.transactions) {
      for (const r of t.records) {
        const data = resolveData(r, byOffset);
        // protocol 3 marker, GLOBAL opcode 'c', then module and name (FS-BLOB-7)
        const isBlob =
          data !== null && data[0] === 0x80 && data[1] === 0x03 && data[2] === 0x63 &&
          Buffer.from(data.subarray(3, 3 + marker.length)).equals(marker);
        if (!isBlob) continue;
        const dirs = r.oid.match(/../g)!.map((b) => `0x${b}`);
        expected.add(path.join(...dirs, `${repr(r.tid)}.blob`));
      }
    }
    const found = new Set<string>();
    const walk = (dir: string, rel: string): void => {
      for (const name of readdirSync(dir)) {
        const full = path.join(dir, name);
        if (statSync(full).isDirectory()) walk(full, path.join(rel, name));
        else if (name.endsWith('.blob')) found.add(path.join(rel, name));
      }
    };
    walk(blobDir, '');
    expect(expected.size).toBe(11);
    expect([...found].sort()).toEqual([...expected].sort());
    // the zero-length blob exists as an empty file
    expect(statSync(path.join(blobDir, '0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x02/0x040d453df97e9422.blob')).size).toBe(0);
  });

  it('[FS-COMMIT-5] [FS-RECOVER-1] incomplete/: cut files fail to parse; checkpoint.fs parses with a last c record and 19 committed transactions', () => {
    const small = readManifest('small/Data.fs.json');
    for (const name of ['truncated-mid.fs', 'truncated-header.fs', 'checkpoint-truncated.fs']) {
      expect(() => parseFileStorage(readInterop(`incomplete/${name}`), parser), name).toThrow();
    }
    const cp = parseFileStorage(readInterop('incomplete/checkpoint.fs'), parser);
    const committed = cp.transactions.filter((t) => t.status !== 'c');
    expect(cp.transactions.at(-1)?.status).toBe('c');
    expect(cp.transactions.filter((t) => t.status === 'c')).toHaveLength(1);
    expect(committed.length).toBeLessThan(small.transactions);
    expect(committed).toHaveLength(readManifest('incomplete/checkpoint.fs.json').transactions);
  });

  it('[FS-CHECK-4] [FS-CHECK-6] [FS-CHECK-7] the fstest verdicts of the damaged files use the messages file-format.md gives', () => {
    const doc = readFileSync(formatDoc, 'utf8').replace(/\s+/g, ' ');
    const cases: [string, string, string][] = [
      ['checkpoint.fs', 'FS-CHECK-7', 'checkpoint flag was not cleared at'],
      ['truncated-mid.fs', 'FS-CHECK-6', 'truncated possibly because of damaged records at'],
      ['truncated-header.fs', 'FS-CHECK-4', 'truncated at'],
      ['checkpoint-truncated.fs', 'FS-CHECK-6', 'truncated possibly because of damaged records at'],
    ];
    for (const [name, id, message] of cases) {
      expect(readManifest(`incomplete/${name}.json`).fstest).toBe(`FormatError: incomplete/${name} ${message} 17484`);
      const rule = doc.slice(doc.indexOf(`**[${id}]**`), doc.indexOf('- **[', doc.indexOf(`**[${id}]**`) + 5));
      expect(rule, id).toContain(`PATH ${message} POS`);
    }
  });

  it('[FS-RECOVER-1] [FS-RECOVER-4] the damaged tail of each incomplete file starts at 17484; the last whole transaction is the one ZODB iterates last', () => {
    // Damaged-tail scan of file-format.md section 6, cases (a) to (c).
    const tailOf = (b: Uint8Array): { tail: number; lastWhole: string } => {
      const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
      let pos = 4;
      let lastWhole = '0000000000000000';
      while (pos < b.length) {
        if (b.length - pos < 23) break; // (a)
        const tlen = Number(view.getBigUint64(pos + 8));
        if (pos + tlen + 8 > b.length || b[pos + 16] === 0x63) break; // (b), (c)
        lastWhole = hex(b.subarray(pos, pos + 8));
        pos += tlen + 8;
      }
      return { tail: pos, lastWhole };
    };
    for (const name of ['checkpoint.fs', 'truncated-mid.fs', 'truncated-header.fs', 'checkpoint-truncated.fs']) {
      const { tail, lastWhole } = tailOf(readInterop(`incomplete/${name}`));
      expect(tail, name).toBe(17484);
      expect(lastWhole, name).toBe(readManifest(`incomplete/${name}.json`).last_tid);
    }
    const whole = tailOf(readInterop('small/Data.fs'));
    expect(whole.tail).toBe(readManifest('small/Data.fs.json').size);
  });

  it('[FS-TXN-1] [FS-DATA-1] [FS-BACK-1] every hex fs-transaction / fs-data-record example is a record boundary of an interop file', () => {
    const sources = ['small/Data.fs', 'undo/Data.fs', 'packed/Data.fs', 'blobs/Data.fs'].map((f) => {
      const b = readInterop(f);
      const parsed = parseFileStorage(b, parser);
      return { f, b, parsed, byOffset: recordsByOffset(parsed) };
    });
    const blocks = hexBlocks().filter((b) => /^hex fs-(transaction|data-record) offset=\d+$/.test(b.info));
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    for (const block of blocks) {
      const offset = Number(block.info.split('offset=')[1]);
      const isTxn = block.info.startsWith('hex fs-transaction');
      const hit = sources.find(({ b, parsed, byOffset }) => {
        const slice = Buffer.from(b.subarray(offset, offset + block.bytes.length));
        if (!slice.equals(Buffer.from(block.bytes))) return false;
        if (isTxn) {
          const t = parsed.transactions.find((x) => x.offset === offset);
          return t !== undefined && t.tlen + 8 === block.bytes.length;
        }
        const r = byOffset.get(offset);
        return r !== undefined && 42 + (r.plen === 0 ? 8 : r.plen) === block.bytes.length;
      });
      expect(hit, block.info).toBeDefined();
    }
  });
});
