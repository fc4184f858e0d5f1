// The `zrs primary`, `zrs secondary` and `zrs run` processes, as a user runs them.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkFile } from '../filestorage/checker.ts';
import { FileStorageReader } from '../filestorage/reader.ts';
import { fileContent } from './helpers.ts';
import { NodeProcess, nodeSession, records } from './processes.ts';

const { ws, start } = nodeSession('nodes');

async function commit(p: NodeProcess, n: number, size: number, seed: number): Promise<string> {
  const r = await p.request('commit', { records: records(n, size, seed), description: `commit ${seed}` });
  expect(r.ok, JSON.stringify(r)).toBe(true);
  return r.tid as string;
}

describe('zrs primary and zrs secondary', () => {
  it('[WIRE-TXN-10] [WIRE-CHAIN-2] replicate over TCP; the secondary file is valid and holds the same transactions', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0']);
    const first = await commit(p, 3, 100, 1);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--from', p.ready.listen as string, '--reconnect-delay', '0.1']);
    await s.committed(first);
    let last = first;
    for (let i = 2; i < 30; i++) last = await commit(p, 2, 1000, i);
    await s.committed(last);
    expect((await s.request('last-tid')).tid).toBe(last);
    const refused = await s.request('commit', { records: records(1, 1, 1) });
    expect(refused).toMatchObject({ ok: false, error: { code: 'ERR_UNSUPPORTED', message: expect.stringMatching(/read-only/) } });
    await s.request('shutdown');
    await p.request('shutdown');
    expect((await s.exited).code).toBe(0);
    expect((await p.exited).code).toBe(0);
    const pf = p.proc.spawnargs[p.proc.spawnargs.indexOf('--fs') + 1]!;
    const sf = s.proc.spawnargs[s.proc.spawnargs.indexOf('--fs') + 1]!;
    expect(checkFile(sf).ok).toBe(true);
    expect(fileContent(sf)).toEqual(fileContent(pf));
  });

  it('[WIRE-ADDR-2] over a unix socket path, undo on the primary included', async () => {
    const sock = path.join(ws.dir, 'p.sock');
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', sock]);
    const t1 = await commit(p, 1, 10, 1);
    const t2 = await commit(p, 2, 10, 2);
    const undo = await p.request('undo', { tid: t2 });
    expect(undo.ok).toBe(true);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--from', sock, '--reconnect-delay', '0.1']);
    await s.committed(undo.tid as string);
    const sf = s.proc.spawnargs[s.proc.spawnargs.indexOf('--fs') + 1]!;
    await s.request('shutdown');
    await s.exited;
    const r = FileStorageReader.open(sf);
    const [, , u] = [...r.transactions()];
    const back = [...r.records(u!)].map((rec) => rec.back);
    r.close();
    expect(back.every((b) => b === 0)).toBe(true); // undoing creations leaves no data
    expect(t1 < t2).toBe(true);
    await p.request('shutdown');
  });

  it('[WIRE-TXN-8] [CONF-CTL-8] pack on the primary while a secondary replicates: it keeps its history and goes on', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0']);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--from', p.ready.listen as string, '--reconnect-delay', '0.1']);
    const pickle = (n: number) => Buffer.concat([Buffer.from('80034e2e', 'hex'), Buffer.from(`\x80\x03K${String.fromCharCode(n)}.`, 'latin1')]).toString('hex');
    const tids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await p.request('commit', { records: [{ oid: '0000000000000000', data: pickle(i) }, { oid: `00000000000000${(i + 16).toString(16)}`, data: pickle(i) }] });
      tids.push(r.tid as string);
    }
    await s.committed(tids.at(-1)!);
    expect(await p.request('pack', { before: tids[4] })).toMatchObject({ ok: true });
    const after = await p.request('commit', { records: [{ oid: '0000000000000000', data: pickle(9) }] });
    await s.committed(after.tid as string);
    const pf = p.proc.spawnargs[p.proc.spawnargs.indexOf('--fs') + 1]!;
    const sf = s.proc.spawnargs[s.proc.spawnargs.indexOf('--fs') + 1]!;
    await s.request('shutdown');
    await p.request('shutdown');
    const primaryTids = fileContent(pf).map((t) => t.tid);
    expect(fileContent(sf).map((t) => t.tid)).toEqual([...tids, after.tid]); // the secondary is not packed
    expect(primaryTids.length).toBeLessThan(7); // the primary was
    expect(fileContent(pf).filter((t) => t.status === 'p').length).toBeGreaterThan(0);
  });

  it('[WIRE-SHUT-1] SIGTERM on the primary: the connected secondary still gets every committed transaction', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0']);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--from', p.ready.listen as string, '--reconnect-delay', '30']);
    await commit(p, 1, 10, 0);
    await s.waitFor((m) => m.event === 'committed');
    let last = '';
    for (let i = 1; i <= 40; i++) last = await commit(p, 4, 50_000, i);
    const exit = await p.kill('SIGTERM');
    expect(exit.code).toBe(0);
    await s.committed(last);
    await s.request('shutdown');
  });

  it('[FS-RECOVER-1] [DEV-RESUME-1] [FS-COMMIT-7] kill -9 of the secondary while it catches up (fsync each transaction, or group commit), then a restart: nothing lost, nothing twice', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0']);
    let last = '';
    for (let i = 0; i < 100; i++) last = await commit(p, 5, 40_000, i);
    const sf = ws.file('s.fs');
    const resumedFrom: string[] = [];
    for (const [i, delay] of [20, 60, 120].entries()) {
      const sync = i % 2 ? ['--sync', 'group'] : []; // both durability policies recover the same way
      const s = await start(['secondary', '--fs', sf, '--from', p.ready.listen as string, '--reconnect-delay', '0.1', ...sync]);
      resumedFrom.push(s.ready.lastTid as string);
      await new Promise((r) => setTimeout(r, delay));
      await s.kill('SIGKILL');
    }
    const s = await start(['secondary', '--fs', sf, '--from', p.ready.listen as string, '--reconnect-delay', '0.1']);
    resumedFrom.push(s.ready.lastTid as string);
    expect(resumedFrom[1]).not.toBe(last); // the first kill came while it was catching up
    await s.committed(last);
    await s.request('shutdown');
    await s.exited;
    const pf = p.proc.spawnargs[p.proc.spawnargs.indexOf('--fs') + 1]!;
    expect(checkFile(sf).ok).toBe(true);
    expect(readFileSync(sf).equals(readFileSync(pf))).toBe(true);
    await p.request('shutdown');
  });

  it('[WIRE-CHAIN-1] zrs run --config: a primary, and a chained secondary with its own secondary', async () => {
    const conf = (name: string, body: string) => {
      const f = ws.file(name);
      writeFileSync(f, `%import zc.zrs\n${body}\n`);
      return f;
    };
    const pfs = ws.file('p.fs');
    const p = await start(['run', '--config', conf('p.conf', `<zrs>\n  replicate-to 127.0.0.1:0\n  <filestorage>\n    path ${pfs}\n  </filestorage>\n</zrs>`)]);
    const t = await commit(p, 2, 100, 1);
    const chained = await start([
      'run',
      '--config',
      conf('s.conf', `<zrs>\n  replicate-from ${p.ready.listen}\n  replicate-to 127.0.0.1:0\n  keep-alive-delay 1\n  <filestorage>\n    path ${ws.file('s.fs')}\n  </filestorage>\n</zrs>`),
    ]);
    const leaf = await start(['secondary', '--fs', ws.file('leaf.fs'), '--from', chained.ready.listen as string, '--reconnect-delay', '0.1']);
    await leaf.committed(t);
    const t2 = await commit(p, 1, 100, 2);
    await leaf.committed(t2);
    for (const n of [leaf, chained, p]) await n.request('shutdown');
  });

  it('logs one JSON object per event with --log-format json, naming the peer', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--log-format', 'json']);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--from', p.ready.listen as string, '--log-format', 'json']);
    await s.committed(await commit(p, 1, 10, 1));
    await s.request('shutdown');
    await p.request('shutdown');
    await Promise.all([s.exited, p.exited]);
    const events = p.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['listening', 'connected', 'start', 'disconnected', 'stopped']));
    expect(events.find((e) => e.event === 'start')).toMatchObject({ level: 'info', node: 'primary', peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    const secondaryEvents = s.stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(secondaryEvents.find((e) => e.event === 'connected')).toMatchObject({ peer: p.ready.listen, protocol: 'zrs2.0' });
  });

  it('refuses a bad configuration with its file and line', async () => {
    const f = ws.file('bad.conf');
    writeFileSync(f, '%import zc.zrs\n<zrs>\n  replicate-to 5000\n  replicate-from 5000\n  <filestorage>\n    path x.fs\n  </filestorage>\n</zrs>\n');
    const n = await NodeProcess.start(['run', '--config', f]).catch((e: Error) => e);
    expect(String(n)).toMatch(/exited with 2/);
    expect(String(n)).toMatch(/bad\.conf:2: Values for replicate-to and replicate-from must be different\./);
  });
});
