// The Kaitai Struct description and the reference reader are two independent readings of
// spec/file-format.md: on every whole FileStorage file they must see the same records.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { hex8 } from '../../reference/timestamp.ts';
import { HAS_TEST_CHECKER, interopPath, REPO_ROOT, TEST_CHECKER } from '../../reference/test/interop.ts';
import { type CompiledFileStorageParser, compileFileStorageKsy, parseFileStorage } from '../tools/kaitai.ts';

/** Every whole FileStorage file of fixtures/ (the real ones included) and ZODB's FS21 test file. */
function fileStorageFiles(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.fs(\.old)?$/.test(name) && !p.includes(`${path.sep}incomplete${path.sep}`)) found.push(p);
    }
  };
  walk(path.join(REPO_ROOT, 'fixtures')); // the real files are in fixtures/real
  if (HAS_TEST_CHECKER) found.push(interopPath(TEST_CHECKER));
  return found.sort();
}

const hex = (b: Uint8Array | undefined | null) => (b ? Buffer.from(b).toString('hex') : null);

describe('filestorage.ksy and the reference reader agree', () => {
  let parser: CompiledFileStorageParser;
  beforeAll(async () => {
    parser = await compileFileStorageKsy();
  });
  const files = fileStorageFiles();

  it('there are files to compare', () => {
    expect(files.length).toBeGreaterThan(5);
  });

  it.each(files.map((f) => [path.relative(path.dirname(REPO_ROOT), f), f]))('[FS-TXN-1] [FS-DATA-1] %s', (_name, file) => {
    const k = parseFileStorage(readFileSync(file), parser);
    const r = FileStorageReader.open(file);
    try {
      expect(r.magic).toBe(k.magic);
      const txns = [...r.transactions()];
      expect(txns.at(-1)?.next ?? 4).toBe(r.size());
      expect(
        txns.map((t) => ({
          offset: t.offset,
          tid: hex8(t.tid),
          tlen: t.tlen,
          status: t.status,
          user: hex(t.user),
          description: hex(t.description),
          extension: hex(t.extension),
          records:
            t.status === 'u'
              ? null
              : [...r.records(t)].map((d) => ({
                  offset: d.offset,
                  oid: hex8(d.oid),
                  tid: hex8(d.tid),
                  prev: d.prev,
                  tloc: d.tloc,
                  vlen: d.vlen,
                  plen: d.plen,
                  data: hex(d.data),
                  back: d.data ? null : d.back,
                })),
        })),
      ).toEqual(
        k.transactions.map((t) => ({
          offset: t.offset,
          tid: t.tid,
          tlen: t.tlen,
          status: t.status,
          user: hex(t.user),
          description: hex(t.description),
          extension: hex(t.extension),
          records:
            t.status === 'u'
              ? null
              : t.records.map((d) => ({
                  offset: d.offset,
                  oid: d.oid,
                  tid: d.tid,
                  prev: d.prev,
                  tloc: d.tloc,
                  vlen: d.vlen,
                  plen: d.plen,
                  data: hex(d.data),
                  back: d.data ? null : (d.back ?? null),
                })),
        })),
      );
    } finally {
      r.close();
    }
  });
});
