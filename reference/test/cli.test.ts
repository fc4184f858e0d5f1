// The `zrs` command line, run as a real process the way a user runs it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FSTEST_FILES, interopJson, interopPath, type Manifest, REPO_ROOT } from './interop.ts';

const BIN = path.join(REPO_ROOT, 'reference/cli/zrs.mjs');

function zrs(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}


describe('zrs', () => {
  it('[FS-CHECK-1] fsck gives the verdict of ZODB fstest on every interop file, and exit status 1 when one is invalid', () => {
    const r = zrs('fsck', '--json', ...FSTEST_FILES.map((f) => interopPath(f)));
    expect(r.status).toBe(1);
    const results = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; violation: { message: string } | null });
    FSTEST_FILES.forEach((f, i) => {
      const verdict = interopJson<Manifest>(`${f}.json`).fstest;
      if (verdict === 'ok') expect(results[i]!.ok, f).toBe(true);
      else expect(results[i]!.violation!.message.endsWith(verdict.slice(verdict.indexOf(' ') + 1)), `${f}: ${verdict}`).toBe(true);
    });
  });

  it('fsck exits 0 on valid files and names the rule of an invalid one', () => {
    expect(zrs('fsck', interopPath('small/Data.fs')).status).toBe(0);
    const bad = zrs('fsck', interopPath('incomplete/checkpoint.fs'));
    expect(bad.stdout).toMatch(/INVALID \[FS-CHECK-7\] at offset 17484/);
  });

  it('fsdump --json prints a line per transaction and per record', () => {
    const r = zrs('fsdump', '--json', interopPath('undo/Data.fs'));
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const log = interopJson<Manifest>('undo/Data.fs.json').transaction_log;
    expect(lines.filter((l) => l.kind === 'transaction').map((l) => l.tid)).toEqual(log.map((t) => t.tid));
    expect(lines.filter((l) => l.kind === 'record').map((l) => [l.oid, l.size, l.data_txn])).toEqual(
      log.flatMap((t) => t.records.map((x) => [x.oid, x.data_len, x.data_txn])),
    );
  });

  it('fsdump shows an unfinished tail and exits 1', () => {
    const r = zrs('fsdump', interopPath('incomplete/truncated-mid.fs'));
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/tail 17484: \d+ bytes of an incomplete transaction/);
  });

  it('[FS-BLOB-8] fsck --blob-dir checks every blob file; fsdump --blob-dir shows blob sizes', () => {
    const ok = zrs('fsck', '--blob-dir', interopPath('blobs/blobs'), interopPath('blobs/Data.fs'));
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/11 blob records with their files/);
    expect(ok.stdout).toMatch(/warning: zero-length blob file/);
    const dump = zrs('fsdump', '--json', '--blob-dir', interopPath('blobs/blobs'), interopPath('blobs/Data.fs'));
    const sizes = dump.stdout.trim().split('\n').map((l) => JSON.parse(l) as { blob?: number }).filter((l) => l.blob !== undefined).map((l) => l.blob);
    expect(sizes).toEqual(expect.arrayContaining([0, 1, 100, 65535, 65536, 65537, 200000, 1048579]));
  });

  it('tid converts both ways and refuses what is neither', () => {
    const r = zrs('tid', '03ac3a4816c925bb', '2015-01-11 19:20:05.340406');
    const [fromHex, fromDate] = r.stdout.trim().split('\n');
    expect(fromHex).toBe('03ac3a4816c925bb  2015-01-11 19:20:05.340406');
    expect(fromDate).toMatch(/^03ac3a4816c9[0-9a-f]{4}  2015-01-11 19:20:05.340406$/);
    const bad = zrs('tid', 'yesterday');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/"yesterday" is neither 16 hex digits nor a date/);
  });

  it('bad command lines and missing files give a clear message and exit 2', () => {
    expect(zrs().status).toBe(2);
    const unknown = zrs('frobnicate');
    expect([unknown.status, unknown.stderr]).toEqual([2, expect.stringMatching(/unknown command "frobnicate"/)]);
    const missing = zrs('fsck', '/nonexistent/Data.fs');
    expect([missing.status, missing.stderr]).toEqual([2, expect.stringMatching(/cannot open \/nonexistent\/Data.fs: ENOENT/)]);
    const option = zrs('fsdump', '--frob', 'x');
    expect([option.status, option.stderr]).toEqual([2, expect.stringMatching(/unknown option --frob/)]);
  });

  it('[WIRE-FRAME-8] [WIRE-FRAME-9] a receive limit is a size in bytes, K, M or G; anything else is refused before the secondary starts', () => {
    for (const bad of ['0', '12X', '1.5M', '4G']) {
      const r = zrs('secondary', '--fs', '/nonexistent/dir/Data.fs', '--from', '127.0.0.1:1', '--max-record-size', bad);
      expect([r.status, r.stderr], bad).toEqual([2, expect.stringContaining(`--max-record-size takes a size in bytes from 1 to 4G-1 (suffix K, M or G), not "${bad}"`)]);
    }
    const message = zrs('secondary', '--fs', '/nonexistent/dir/Data.fs', '--from', '127.0.0.1:1', '--max-message-size', '');
    expect(message.status).toBe(2);
  });

  it('[WIRE-PICKLE-20] a decoding limit is a whole number from its floor in the spec to its ceiling; anything else is refused before the secondary starts', () => {
    for (const [flag, bad, least, most] of [
      ['--max-pickle-depth', '1001', 500, 1000],
      ['--max-pickle-depth', '499', 500, 1000],
      ['--max-pickle-values', '1e6', 600000, 16777215],
      ['--max-pickle-int-bytes', '65536', 1786, 65535],
      ['--max-pickle-expansion', 'x', 500000, 16777215],
    ] as const) {
      const r = zrs('secondary', '--fs', '/nonexistent/dir/Data.fs', '--from', '127.0.0.1:1', flag, bad);
      expect([r.status, r.stderr], `${flag} ${bad}`).toEqual([2, expect.stringMatching(new RegExp(`${flag} takes a whole number( from ${least} \\(spec §6\\.7\\) to ${most})?, not "${bad}"`))]);
    }
  });
});
