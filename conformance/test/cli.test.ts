// zrs-conformance run as a user runs it, on descriptors made for the occasion.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildRegistry } from '../../spec/tools/requirements.ts';
import { REFERENCE_IUT, REPO_ROOT } from '../env.ts';
import type { RunVerdict } from '../report/verdict.ts';
import { readExpectedFailures } from '../report/verdict.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'zrs-conformance-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function descriptor(name: string, edit: (d: Record<string, any>) => void): string { // eslint-disable-line @typescript-eslint/no-explicit-any
  const d = JSON.parse(readFileSync(REFERENCE_IUT, 'utf8'));
  for (const r of ['primary', 'secondary']) d[r].args = d[r].args.map((a: unknown) => (a === '../../reference/cli/zrs.mjs' ? path.join(REPO_ROOT, 'reference/cli/zrs.mjs') : a));
  d.name = name;
  edit(d);
  const f = path.join(dir, `${name}.json`);
  writeFileSync(f, JSON.stringify(d));
  return f;
}

function conformance(args: string[]) {
  const reportDir = path.join(dir, `report-${Math.random().toString(36).slice(2)}`);
  const r = spawnSync(path.join(REPO_ROOT, 'node_modules/.bin/tsx'), [path.join(REPO_ROOT, 'conformance/cli.ts'), ...args, '--report-dir', reportDir, '--seed', '3'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 240_000,
  });
  let verdict: RunVerdict | null = null;
  try {
    verdict = JSON.parse(readFileSync(path.join(reportDir, 'conformance.json'), 'utf8')) as RunVerdict;
  } catch {
    verdict = null;
  }
  return { status: r.status, out: r.stdout + r.stderr, verdict, reportDir };
}

describe('zrs-conformance', () => {
  it('reports cases whose feature the IUT does not claim as unsupported, never as passed or failed', () => {
    const iut = descriptor('no-blobs', (d) => (d.features = d.features.filter((f: string) => f !== 'blobs')));
    const r = conformance(['--iut', iut, '--filter', 'WIRE-HS-8|WIRE-HS-2\\]']);
    expect(r.status, r.out).toBe(0);
    const states = Object.fromEntries(r.verdict!.requirements.map((x) => [x.id, x.state]));
    expect(states['WIRE-HS-8']).toBe('unsupported');
    expect(r.verdict!.cases.filter((c) => c.state === 'unsupported').length).toBeGreaterThan(0);
    expect(readFileSync(path.join(r.reportDir, 'matrix.md'), 'utf8')).toMatch(/\| WIRE-HS-8 \| MUST \| .* \| unsupported \|/);
    expect(readFileSync(path.join(r.reportDir, 'junit.xml'), 'utf8')).toMatch(/<testsuites/);
  });

  it('fails the cases of an IUT that dies at start, showing its stderr, and exits 1', () => {
    const iut = descriptor('crashing', (d) => {
      d.primary = { command: process.execPath, args: ['-e', "console.error('primary exploded'); process.exit(3)"], ready: 'port' };
    });
    const r = conformance(['--iut', iut, '--filter', 'WIRE-HS-13']);
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/primary exploded/);
    expect(r.verdict!.ok).toBe(false);
  });

  it('refuses an invalid descriptor with a clear message and exit status 2', () => {
    const bad = path.join(dir, 'bad.json');
    writeFileSync(bad, '{"name": "x"}');
    const r = conformance(['--iut', bad]);
    expect(r.status).toBe(2);
    expect(r.out).toMatch(/describes neither a primary nor a secondary/);
  });

  it('--matrix runs every pair of implementations and prints the interop matrix', () => {
    const a = descriptor('alpha', () => undefined);
    const b = descriptor('beta', (d) => (d.features = d.features.filter((f: string) => f !== 'blobs')));
    const r = conformance(['--matrix', a, b, '--filter', 'small replicates through real nodes']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/interop matrix \(rows: primary, columns: secondary\)\n\talpha\tbeta\nalpha\tconforms \(partial\)\tconforms \(partial\)\nbeta\tconforms \(partial\)\tconforms \(partial\)/);
    expect(r.out).toMatch(/ZRS conformance: primary alpha, secondary beta/);
  });

  it('a failing property case prints its shrunk counterexample, a replay command that reproduces it, and a wire transcript', () => {
    const mutant = path.join(REPO_ROOT, 'conformance/selftest/mutant.mjs');
    const iut = descriptor('no-reconnect', (d) => (d.secondary.args = [mutant, 'no-reconnect', ...d.secondary.args.slice(1)]));
    const filter = 'random commits and random faults';
    const first = conformance(['--iut', iut, '--filter', filter]);
    expect(first.status, first.out).toBe(1);
    const counterexample = /counterexample: (.*)/.exec(first.out)?.[1];
    const replay = /replay: npm run conformance -- .*--seed (\d+) --replay '([^']+)'/.exec(first.out);
    const transcript = /wire transcript: (\S+)/.exec(first.out)?.[1];
    expect(counterexample, first.out).toBeDefined();
    expect(replay, first.out).not.toBeNull();
    expect(existsSync(`${transcript}.sent`), first.out).toBe(true);
    // the printed command, run again, fails on the same counterexample at once
    const again = conformance(['--iut', iut, '--filter', filter, '--replay', replay![2]!]);
    expect(again.status, again.out).toBe(1);
    expect(/counterexample: (.*)/.exec(again.out)?.[1]).toBe(counterexample);
  }, 300_000);

  it('the expected failures shipped for zc.zrs name requirements of the specification', () => {
    const ids = new Set(buildRegistry().requirements.map((r) => r.id));
    for (const id of readExpectedFailures(path.join(REPO_ROOT, 'conformance/iut/zc.zrs.expected-failures')).keys()) expect(ids.has(id), id).toBe(true);
  });
});
