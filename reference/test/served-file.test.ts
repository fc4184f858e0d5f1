// The file a primary serves: `zrs primary` refuses a missing one unless given `--create`, and
// every primary logs at start which file it serves.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { NodeProcess, nodeSession, records, ZRS_BIN } from './processes.ts';

const { ws, start } = nodeSession('served-file');
const Z64 = '0000000000000000';

/** The `serving` event of a node started with `--log-format json`. */
function serving(p: NodeProcess): Record<string, unknown> | undefined {
  return p.stderr
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .find((e) => e.event === 'serving');
}

describe('the file a primary serves', () => {
  it('[CONF-PROC-3] without --create, a missing file stops the primary at start with status 2, naming it; no file is made', () => {
    const file = ws.file('typo.fs');
    const r = spawnSync(process.execPath, [ZRS_BIN, 'primary', '--fs', file, '--listen', '127.0.0.1:0'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`zrs primary: ${file} does not exist (--create makes a new, empty one)\n`);
    expect(existsSync(file)).toBe(false);
  });

  it('with --create a new file is served, and the start log names it; started again, it names its size and last tid', async () => {
    const file = ws.file('new.fs');
    const p = await start(['primary', '--create', '--fs', file, '--listen', '127.0.0.1:0', '--log-format', 'json']);
    expect(p.ready.lastTid).toBe(Z64);
    expect(serving(p)).toMatchObject({ level: 'info', file, size: 4, lastTid: Z64, created: true });
    const tid = (await p.request('commit', { records: records(1, 10, 1) })).tid as string;
    await p.request('shutdown');
    expect((await p.exited).code).toBe(0);
    const again = await start(['primary', '--fs', file, '--listen', '127.0.0.1:0', '--log-format', 'json']);
    expect(serving(again)).toMatchObject({ file, size: statSync(file).size, lastTid: tid, created: false });
    expect(serving(again)!.message).toBe(`serving ${file}: ${statSync(file).size} bytes, last tid ${tid}`);
    await again.request('shutdown');
  });

  it('--follow with --create starts an empty file for the other writer', async () => {
    const file = ws.file('followed.fs');
    const p = await start(['primary', '--follow', '--create', '--fs', file, '--listen', '127.0.0.1:0']);
    expect(statSync(file).size).toBe(4);
    expect(p.ready.lastTid).toBe(Z64);
    await p.request('shutdown');
  });

  it('zrs run creates a missing file as ZODB does, and refuses create true, which would empty it', async () => {
    const file = ws.file('run.fs');
    const conf = (name: string, extra: string) => {
      const f = ws.file(name);
      writeFileSync(f, `%import zc.zrs\n<zrs>\n  replicate-to 127.0.0.1:0\n  <filestorage>\n    path ${file}\n${extra}  </filestorage>\n</zrs>\n`);
      return f;
    };
    const p = await start(['run', '--config', conf('p.conf', ''), '--log-format', 'json']);
    expect(serving(p)).toMatchObject({ file, created: true });
    await p.request('shutdown');
    const refused = conf('create.conf', '    create true\n');
    const e = await NodeProcess.start(['run', '--config', refused]).catch((x: Error) => x);
    expect((e as Error).message).toMatch(new RegExp(`exited with 2 .*\\n.*${refused.replaceAll('.', '\\.')}:6: create true would empty the file`));
  });

  it('[FS-LOCK-4] zrs run with read-only true follows the file without locking it, refuses a missing one, and refuses a secondary', async () => {
    const file = ws.file('ro.fs');
    const conf = (name: string, role: string) => {
      const f = ws.file(name);
      writeFileSync(f, `%import zc.zrs\n<zrs>\n  ${role}\n  <filestorage>\n    path ${file}\n    read-only true\n  </filestorage>\n</zrs>\n`);
      return f;
    };
    const primaryConf = conf('ro.conf', 'replicate-to 127.0.0.1:0');
    const missing = spawnSync(process.execPath, [ZRS_BIN, 'run', '--config', primaryConf], { encoding: 'utf8' });
    expect([missing.status, missing.stderr]).toEqual([2, `zrs run: ${file} does not exist (read-only true: nothing is created)\n`]);
    const typoConf = ws.file('ro-typo.conf');
    writeFileSync(typoConf, readFileSync(primaryConf, 'utf8').replace('read-only true', 'read-only ture'));
    const typo = spawnSync(process.execPath, [ZRS_BIN, 'run', '--config', typoConf], { encoding: 'utf8' });
    expect([typo.status, typo.stderr]).toEqual([2, expect.stringContaining(`${typoConf}:6: read-only is true or false, not "ture"`)]);
    expect(existsSync(file)).toBe(false);
    const writer = await start(['primary', '--create', '--fs', file, '--listen', '127.0.0.1:0']);
    const tid = (await writer.request('commit', { records: records(1, 10, 1) })).tid as string;
    // the writer holds the lock; the read-only primary takes none, and serves what is there
    const ro = await start(['run', '--config', primaryConf]);
    expect(ro.ready.lastTid).toBe(tid);
    await ro.request('shutdown');
    await writer.request('shutdown');
    const secondary = spawnSync(process.execPath, [ZRS_BIN, 'run', '--config', conf('ro-secondary.conf', 'replicate-from 127.0.0.1:1')], { encoding: 'utf8' });
    expect([secondary.status, secondary.stderr]).toEqual([2, expect.stringContaining('ro-secondary.conf:6: read-only true: a secondary writes its file')]);
  });
});
