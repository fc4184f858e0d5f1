/**
 * The harness's self-test (`npm run conformance:selftest [--thorough] [--without-reference] [MUTANT...]`): the suite
 * must fail each deliberately broken variant of the reference on the requirement it breaks, and
 * blame at most three requirements for it, and find the unbroken reference conforming. Exit
 * status 0 only when every mutant is caught so. `--thorough` runs each mutant against the whole
 * suite instead of the cases that concern it.
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

/** At most this many requirements may be blamed for one mutant's bug. */
const MAX_BLAMED = 3;

async function main(argv: string[]): Promise<number> {
  // --thorough: every mutant against the whole suite (slow); by default, the cases citing the
  // requirement it breaks, or the mutation's own filter
  const thorough = argv.includes('--thorough');
  // --without-reference: the unbroken reference is judged elsewhere (CI's matrix)
  const withReference = !argv.includes('--without-reference');
  const only = argv.filter((a) => !a.startsWith('--'));
  const dir = mkdtempSync(path.join(tmpdir(), 'zrs-selftest-'));
  const rows: string[][] = [['mutant', 'breaks', 'verdict', 'blamed']];
  let ok = true;
  try {
    const names = Object.keys(MUTATIONS).filter((n) => only.length === 0 || only.includes(n));
    const run = async (name: string) => {
      const m = MUTATIONS[name]!;
      const iut = mutantDescriptor(dir, name, m.role);
      const reportDir = path.join(dir, name);
      const filter = thorough ? [] : ['--filter', m.filter ?? `\\[${m.breaks.replace(/-/g, '\\-')}\\]`];
      const r = await conformance(['--iut', iut, '--report-dir', reportDir, '--seed', '1', ...filter]);
      let blamed: string[] = [];
      let verdict: RunVerdict | null = null;
      try {
        verdict = JSON.parse(readFileSync(path.join(reportDir, 'conformance.json'), 'utf8')) as RunVerdict;
        blamed = verdict.requirements.filter((x) => x.state === 'fail').map((x) => x.id);
      } catch {
        verdict = null;
      }
      // a broken MUST fails the run (exit 1); a broken SHOULD is a warning, but a failure all the same
      const caught = verdict !== null && verdict.errors.length === 0 && blamed.includes(m.breaks) && blamed.length <= MAX_BLAMED && (r.code === 1 || verdict.ok);
      if (!caught) ok = false;
      const why = verdict === null ? `no report (exit ${r.code}): ${r.output.slice(-500)}` : verdict.errors.length ? `case errors: ${verdict.errors.join('; ')}` : blamed.join(' ') || '(nothing)';
      rows.push([name, m.breaks, caught ? 'caught' : !blamed.includes(m.breaks) ? 'SURVIVED' : 'BLAMED TOO WIDELY', why]);
    };
    // four at a time: the runs mostly wait on their processes
    for (let i = 0; i < names.length; i += 4) await Promise.all(names.slice(i, i + 4).map(run));
    if (only.length === 0 && withReference) {
      const clean = await conformance(['--report-dir', path.join(dir, 'reference'), '--seed', '1']);
      const refOk = clean.code === 0;
      if (!refOk) ok = false;
      rows.push(['(unbroken reference)', 'everything', refOk ? 'conforms' : 'FAILS', refOk ? '' : clean.output.slice(-2000)]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').split('\n')[0]!.length)));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
  const judgedReference = only.length === 0 && withReference;
  const mutants = rows.length - 1 - (judgedReference ? 1 : 0);
  const reference = judgedReference ? '; the reference conforms' : '';
  console.log(ok ? `\nself-test: all ${mutants} mutants caught, each blamed on at most ${MAX_BLAMED} requirements${reference}` : '\nself-test: FAILED');
  return ok ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
