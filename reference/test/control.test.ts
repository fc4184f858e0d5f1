// The control channel of spec/conformance.md, spoken by the reference nodes.
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { workspace } from './helpers.ts';
import { NodeProcess, records, ZRS_BIN } from './processes.ts';

const ws = workspace('control');
afterAll(() => ws.cleanup());

/** Runs a primary, writes `lines` to it, closes its input, and returns everything it printed. */
async function converse(lines: string[]): Promise<{ out: Record<string, unknown>[]; code: number | null; stderr: string }> {
  const proc = spawn(process.execPath, [ZRS_BIN, 'primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--control', 'stdio'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const out: Record<string, unknown>[] = [];
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d));
  createInterface({ input: proc.stdout }).on('line', (l) => out.push(JSON.parse(l) as Record<string, unknown>));
  proc.stdin.end(lines.map((l) => `${l}\n`).join(''));
  const code = await new Promise<number | null>((r) => proc.once('exit', r));
  return { out, code, stderr };
}

describe('the control channel', () => {
  it('[CONF-PROC-1] [CONF-CTL-1] [CONF-CTL-2] [CONF-CTL-3] [CONF-CTL-4] [CONF-CTL-11] one response per request, in order, errors included; stdin closing stops the node', async () => {
    const commit = JSON.stringify({ id: 'a', op: 'commit', records: records(1, 4, 1) });
    const { out, code } = await converse([commit, '{"op":"last-tid"}', 'not json', '[1,2]', '{"id":7,"op":"frob"}', '{"id":8,"op":"commit"}', '{"id":9,"op":"commit","records":[{"oid":"01","data":"00"}]}', '{"id":10,"op":"last-tid"}']);
    expect(code).toBe(0);
    const [ready, ...responses] = out;
    expect(ready).toMatchObject({ event: 'ready', role: 'primary', listen: expect.stringMatching(/^127\.0\.0\.1:\d+$/), lastTid: '0000000000000000' });
    expect(responses.map((r) => [r.id, r.ok])).toEqual([
      ['a', true],
      [null, true],
      [null, false],
      [null, false],
      [7, false],
      [8, false],
      [9, false],
      [10, true],
    ]);
    expect(responses[1]!.tid).toBe(responses[0]!.tid);
    expect(responses[4]).toMatchObject({ error: { code: 'ERR_REQUEST', message: 'unknown op "frob"' } });
    expect(responses[6]).toMatchObject({ error: { message: expect.stringMatching(/records\[0\]\.oid must be 8 bytes/) } });
    expect(responses[7]!.tid).toBe(responses[0]!.tid);
  });

  it('[CONF-PROC-4] [CONF-CTL-5] [CONF-CTL-6] [CONF-CTL-9] [CONF-CTL-10] [CONF-CTL-12] a secondary reports commits, refuses writes, and stops on shutdown', async () => {
    const p = await NodeProcess.start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0']);
    const s = await NodeProcess.start(['secondary', '--fs', ws.file('s.fs'), '--from', p.ready.listen as string, '--reconnect-delay', '0.1']);
    const c = await p.request('commit', { records: records(2, 10, 3) });
    await s.waitFor((m) => m.event === 'committed' && m.tid === c.tid);
    expect((await s.request('last-tid')).tid).toBe(c.tid);
    for (const op of ['commit', 'undo', 'pack']) {
      const r = await s.request(op, { records: [], tid: c.tid, before: c.tid });
      expect(r).toMatchObject({ ok: false, error: { code: 'ERR_UNSUPPORTED', message: expect.stringMatching(/read-only/) } });
    }
    expect(await s.request('shutdown')).toMatchObject({ ok: true });
    expect((await s.exited).code).toBe(0);
    expect((await p.kill('SIGTERM')).code).toBe(0); // [CONF-PROC-2]
  });

  it('[CONF-PROC-2] SIGTERM stops a node gracefully with status 0', async () => {
    const p = await NodeProcess.start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0']);
    expect(await p.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  });

  it('[CONF-PROC-3] a node that cannot start exits non-zero and says why', () => {
    const taken = spawnSync(process.execPath, [ZRS_BIN, 'primary', '--create', '--fs', '/nonexistent/dir/p.fs', '--listen', '127.0.0.1:0'], { encoding: 'utf8' });
    expect(taken.status).toBe(2);
    expect(taken.stderr).toMatch(/zrs primary: cannot open \/nonexistent\/dir\/p\.fs\.lock: ENOENT/);
  });
});
