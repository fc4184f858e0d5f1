// Status servers (/status, /metrics) and `zrs lag`, as an operator uses them.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { FileStorageWriter } from '../filestorage/writer.ts';
import { nodeSession, records, ZRS_BIN } from './processes.ts';

const { ws, start } = nodeSession('monitoring');

const zrs = (...args: string[]) => spawnSync(process.execPath, [ZRS_BIN, ...args], { encoding: 'utf8', timeout: 30_000 });

/** A one-transaction FileStorage file with the given tid (the nagios fixtures of zc.zrs). */
function oneTransaction(tidHex: string): string {
  const file = ws.file(`${tidHex}.fs`);
  const w = FileStorageWriter.open(file);
  const tid = Buffer.from(tidHex, 'hex');
  w.commit({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.from('initial database creation'), extension: Buffer.alloc(0) }, [
    { oid: Buffer.alloc(8), serial: tid, data: Buffer.from('80034e2e', 'hex') },
  ]);
  w.close();
  return file;
}

describe('zrs lag', () => {
  const current = oneTransaction('03ac3a493b577f88'); // 2015-01-11 19:21:13.908232
  const old = oneTransaction('03ac3a4816c925bb'); // 68.5678 s earlier

  it.each([
    [['-w', '30'], 1, 'Secondary behind primary by 68.5678 seconds > 30'],
    [['-e', '30'], 2, 'Secondary behind primary by 68.5678 seconds > 30'],
    [['-w', '100'], 0, 'Secondary behind primary by 68.5678 seconds'],
    [['-w', '30', '-m'], 1, "Secondary behind primary by 68.5678 seconds > 30|'lag'=68.5678seconds"],
  ])('%j: exit %i, %s', (options, status, line) => {
    const r = zrs('lag', ...options, current, old);
    expect([r.status, r.stdout.trim()]).toEqual([status, line]);
  });

  it('up to date, the wrong way round, and unreachable nodes', () => {
    expect(zrs('lag', '-w', '30', current, current).stdout.trim()).toBe('Secondary up to date.');
    const behind = zrs('lag', '-w', '30', old, current);
    expect([behind.status, behind.stdout]).toEqual([2, expect.stringMatching(/^Primary behind secondary by 68\.56/)]);
    const gone = zrs('lag', '-w', '30', current, '127.0.0.1:1');
    expect([gone.status, gone.stdout]).toEqual([2, expect.stringMatching(/^Can't connect to secondary at '127\.0\.0\.1:1'/)]);
    const usage = zrs('lag', current, old);
    expect([usage.status, usage.stdout.trim()]).toEqual([2, 'Usage: zrs lag [-w SECONDS] [-e SECONDS] [-m] PRIMARY SECONDARY']);
    const unknown = zrs('lag', '-w', '30', '--critical', '60', current, old);
    expect([unknown.status, unknown.stdout.trim()]).toEqual([2, 'unknown option --critical\nUsage: zrs lag [-w SECONDS] [-e SECONDS] [-m] PRIMARY SECONDARY']);
  });
});

describe('status servers', () => {
  it('a primary and a secondary report their state on /status and /metrics; zrs lag reads them', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--status-listen', '127.0.0.1:0']);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--from', p.ready.listen as string, '--status-listen', '127.0.0.1:0', '--reconnect-delay', '0.1']);
    let last = '';
    for (let i = 0; i < 5; i++) last = (await p.request('commit', { records: records(2, 100, i) })).tid as string;
    await s.committed(last);
    const get = async (where: unknown, what: string) => (await fetch(`http://${String(where)}/${what}`)).text();
    const primary = JSON.parse(await get(p.ready.status, 'status'));
    expect(primary).toMatchObject({ role: 'primary', lastTid: last, peers: [{ direction: 'downstream', connected: true, startTid: '0000000000000000', lastTid: last, transactions: 5, lagSeconds: 0, lagTransactions: 0 }] });
    const secondary = JSON.parse(await get(s.ready.status, 'status'));
    expect(secondary).toMatchObject({ role: 'secondary', lastTid: last, peers: [{ direction: 'upstream', connected: true, peer: p.ready.listen, transactions: 5 }] });
    const metrics = await get(p.ready.status, 'metrics');
    expect(metrics).toMatch(/^zrs_connections\{direction="downstream"\} 1$/m);
    expect(metrics).toMatch(/^zrs_peer_transactions\{peer="127\.0\.0\.1:\d+",direction="downstream"\} 5$/m);
    expect(metrics).toMatch(/^zrs_last_transaction_timestamp_seconds \d+/m);
    const lag = zrs('lag', '-w', '30', '-m', String(p.ready.status), String(s.ready.status));
    expect([lag.status, lag.stdout.trim()]).toEqual([0, "Secondary up to date.|'lag'=0.0000seconds"]);
    expect((await fetch(`http://${String(p.ready.status)}/nope`)).status).toBe(404);
    await s.request('shutdown');
    await p.request('shutdown');
  });
});

