/**
 * The harness's self-test (`npm run conformance:selftest`): the suite must fail each
 * deliberately broken variant of the reference on the requirement it breaks, and find the
 * unbroken reference conforming. Exit status 0 only when every mutant is caught.
 * @module
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { REFERENCE_IUT, REPO_ROOT } from '../env.ts';
import type { RunVerdict } from '../report/verdict.ts';
import { MUTATIONS } from './mutants.ts';

const MUTANT = path.join(REPO_ROOT, 'conformance/selftest/mutant.mjs');
const ZRS = path.join(REPO_ROOT, 'reference/cli/zrs.mjs');
const CLI = path.join(REPO_ROOT, 'conformance/cli.ts');
const TSX = path.join(REPO_ROOT, 'node_modules/.bin/tsx');

/**
 * A descriptor for the reference with one role replaced by a mutant: every relative path of
 * the reference's descriptor (relative to its folder) made absolute, so that it works from a
 * temporary folder, and `zrs.mjs` replaced by the mutant's launcher in every command line of
 * that role.
 */
function mutantDescriptor(dir: string, name: string, role: 'primary' | 'secondary'): string {
  type Args = unknown[];
  const ref = JSON.parse(readFileSync(REFERENCE_IUT, 'utf8')) as Record<string, Record<string, unknown>>;
  const absolute = (a: unknown): unknown =>
    Array.isArray(a) ? a.map(absolute) : typeof a === 'string' && /^\.\.?\//.test(a) ? path.resolve(path.dirname(REFERENCE_IUT), a) : a;
  for (const r of ['primary', 'secondary'] as const) {
    for (const key of Object.keys(ref[r]!)) if (key === 'args' || key.endsWith('Args')) ref[r]![key] = absolute(ref[r]![key]);
  }
  for (const key of ['args', 'configArgs']) {
    const args = ref[role]![key] as Args | undefined;
    if (args) ref[role]![key] = args.flatMap((a) => (a === ZRS ? [MUTANT, name] : [a]));
  }
  ref.name = `mutant-${name}` as never;
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(ref, null, 2));
  return file;
}

function conformance(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn(TSX, [CLI, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout.on('data', (d: Buffer) => (output += d));
    p.stderr.on('data', (d: Buffer) => (output += d));
    p.on('exit', (code) => resolve({ code, output }));
  });
}

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'zrs-selftest-'));
  const rows: string[][] = [['mutant', 'breaks', 'verdict', 'state of that requirement']];
  let ok = true;
  try {
    const names = Object.keys(MUTATIONS);
    const run = async (name: string) => {
      const m = MUTATIONS[name]!;
      const iut = mutantDescriptor(dir, name, m.role);
      const reportDir = path.join(dir, name);
      const escaped = m.breaks.replace(/-/g, '\\-');
      const r = await conformance(['--iut', iut, '--report-dir', reportDir, '--seed', '1', '--filter', `\\[${escaped}\\]`]);
      let state = 'no report';
      try {
        const v = JSON.parse(readFileSync(path.join(reportDir, 'conformance.json'), 'utf8')) as RunVerdict;
        state = v.requirements.find((x) => x.id === m.breaks)?.state ?? 'not in registry';
      } catch {
        state = `no report (exit ${r.code}): ${r.output.slice(-500)}`;
      }
      const caught = r.code === 1 && state === 'fail';
      if (!caught) ok = false;
      rows.push([name, m.breaks, caught ? 'caught' : 'SURVIVED', state]);
    };
    // four at a time: the runs mostly wait on their processes
    for (let i = 0; i < names.length; i += 4) await Promise.all(names.slice(i, i + 4).map(run));
    const clean = await conformance(['--report-dir', path.join(dir, 'reference'), '--seed', '1']);
    const refOk = clean.code === 0;
    if (!refOk) ok = false;
    rows.push(['(unbroken reference)', 'everything', refOk ? 'conforms' : 'FAILS', refOk ? '' : clean.output.slice(-2000)]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').split('\n')[0]!.length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
  console.log(ok ? `\nself-test: all ${Object.keys(MUTATIONS).length} mutants caught, the reference conforms` : '\nself-test: FAILED');
  return ok ? 0 : 1;
}

process.exitCode = await main();
