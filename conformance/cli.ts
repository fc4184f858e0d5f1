/**
 * `zrs-conformance` (`npm run conformance`): runs the conformance suite against an
 * implementation (the reference by default) and reports, per requirement, whether it
 * conforms. Exit status 0 when no MUST fails; 1 otherwise; 2 for a bad command line; 3 when a
 * case failed without blaming a requirement (spec/conformance.md §4.2).
 * @module
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startVitest } from 'vitest/node';
import { buildRegistry } from '../spec/tools/requirements.ts';
import { ENV, REFERENCE_IUT, REPO_ROOT } from './env.ts';
import { type Descriptor, readDescriptor } from './iut/descriptor.ts';
import { killAll } from './iut/node.ts';
import { CaseCollector } from './report/collector.ts';
import { summary, writeReports } from './report/render.ts';
import { judge, readExpectedFailures, type RunVerdict } from './report/verdict.ts';

const USAGE = `usage: zrs-conformance [--iut FILE | --primary-iut FILE --secondary-iut FILE | --matrix FILE FILE... [--jobs N]]
                       [--full] [--seed N [--replay PATH]] [--report-dir DIR] [--filter PATTERN]`;

interface Run {
  primary: string;
  secondary: string;
  reportDir: string;
}

async function runOnce(run: Run, o: { full: boolean; seed: number; filter?: string; replay?: string }): Promise<RunVerdict> {
  const primary = readDescriptor(run.primary);
  const secondary = readDescriptor(run.secondary);
  // everything a run needs is read before it starts, so that a bad file ends it at once (exit 2)
  const player = (d: Descriptor) => ({ name: d.name, expected: d.expectedFailures ? readExpectedFailures(d.expectedFailures) : new Map() });
  const setup = { primary: player(primary), secondary: player(secondary), ...(o.filter !== undefined ? { filter: o.filter } : {}) };
  if (run.primary !== run.secondary && primary.name === secondary.name) throw new Error(`two implementations are both named ${primary.name}: rename one`);
  process.env[ENV.primary] = run.primary;
  process.env[ENV.secondary] = run.secondary;
  process.env[ENV.profile] = o.full ? 'full' : 'quick';
  process.env[ENV.seed] = String(o.seed);
  process.env[ENV.reportDir] = run.reportDir;
  if (o.replay) process.env[ENV.replay] = o.replay;
  const collector = new CaseCollector(REPO_ROOT);
  const vitest = await startVitest('test', [], {
    config: path.join(REPO_ROOT, 'conformance/vitest.config.ts'),
    run: true,
    watch: false,
    testNamePattern: o.filter,
    reporters: [collector, 'default', ['junit', { outputFile: path.join(run.reportDir, 'junit.xml') }]],
  });
  await vitest?.close();
  // cases left out by --filter are not part of the run: vitest reports them skipped, with no note
  const cases = o.filter === undefined ? collector.cases : collector.cases.filter((c) => !(c.state === 'skipped' && c.message === null));
  const verdict = judge(cases, buildRegistry().requirements, setup);
  const title = run.primary === run.secondary ? `ZRS conformance of ${primary.name}` : `ZRS conformance: primary ${primary.name}, secondary ${secondary.name}`;
  const descriptors = { primaryDescriptor: path.relative(REPO_ROOT, run.primary), secondaryDescriptor: path.relative(REPO_ROOT, run.secondary) };
  writeReports(run.reportDir, verdict, title, { primary: primary.name, secondary: secondary.name, ...descriptors, profile: o.full ? 'full' : 'quick', seed: o.seed, filter: o.filter ?? null });
  console.log(summary(verdict, title));
  console.log(`reports: ${path.relative(process.cwd(), run.reportDir) || '.'}/{conformance.json,matrix.md,junit.xml}`);
  return verdict;
}

/**
 * One cell of a matrix run in a process of its own (for `--jobs` above 1), its output kept in
 * the cell's report directory; its verdict, or null when it wrote none.
 */
async function runApart(run: Run, o: { full: boolean; seed: number; filter?: string }): Promise<RunVerdict | null> {
  mkdirSync(run.reportDir, { recursive: true });
  const log = path.join(run.reportDir, 'output.log');
  const args = ['--primary-iut', run.primary, '--secondary-iut', run.secondary, '--report-dir', run.reportDir, '--seed', String(o.seed)];
  if (o.full) args.push('--full');
  if (o.filter !== undefined) args.push('--filter', o.filter);
  const out = openSync(log, 'w');
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', out, out] });
  await new Promise((resolve) => child.once('exit', resolve));
  closeSync(out);
  const text = readFileSync(log, 'utf8');
  // the cell's summary, or the end of what it printed when it wrote none
  const summaryAt = text.lastIndexOf('\nZRS conformance');
  console.log(summaryAt >= 0 ? text.slice(summaryAt).trim() : text.slice(-2000));
  try {
    return JSON.parse(readFileSync(path.join(run.reportDir, 'conformance.json'), 'utf8')) as RunVerdict;
  } catch {
    return null;
  }
}

async function main(argv: string[]): Promise<number> {
  let v;
  let positionals: string[];
  try {
    ({ values: v, positionals } = parseArgs({
      args: argv,
      options: {
        iut: { type: 'string' },
        'primary-iut': { type: 'string' },
        'secondary-iut': { type: 'string' },
        matrix: { type: 'string', multiple: true },
        full: { type: 'boolean', default: false },
        quick: { type: 'boolean', default: false },
        seed: { type: 'string' },
        'report-dir': { type: 'string', default: 'reports/conformance' },
        filter: { type: 'string' },
        replay: { type: 'string' },
        jobs: { type: 'string', default: '1' },
        help: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    console.error(`zrs-conformance: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (v.help) return console.log(USAGE), 0;
  if (positionals.length && !v.matrix) return console.error(`zrs-conformance: unexpected argument ${positionals[0]}\n${USAGE}`), 2;
  const seed = v.seed === undefined ? Date.now() % 2 ** 31 : Number(v.seed);
  if (!Number.isInteger(seed)) return console.error(`zrs-conformance: --seed takes an integer\n${USAGE}`), 2;
  const options = { full: v.full && !v.quick, seed, filter: v.filter, replay: v.replay };
  const reportDir = path.resolve(v['report-dir']);
  try {
    if (v.matrix) {
      // --matrix A B C: the descriptors after --matrix (parseArgs gives the first as its value)
      const files = [...v.matrix, ...positionals].map((f) => path.resolve(f));
      const names = files.map((f) => readDescriptor(f).name);
      const cells = files.flatMap((p, i) => files.map((s, j) => ({ i, j, run: { primary: p, secondary: s, reportDir: path.join(reportDir, `${names[i]}--${names[j]}`) } })));
      const grid: string[][] = files.map(() => []);
      const jobs = Number(v.jobs);
      if (!Number.isInteger(jobs) || jobs < 1) return console.error(`zrs-conformance: --jobs takes a whole number of at least 1\n${USAGE}`), 2;
      console.log(`seed ${seed} (replay with --seed ${seed})`);
      const pending = [...cells];
      await Promise.all(
        Array.from({ length: Math.min(jobs, cells.length) }, async () => {
          for (let cell = pending.shift(); cell; cell = pending.shift()) {
            const verdict = jobs === 1 ? await runOnce(cell.run, options) : await runApart(cell.run, options);
            grid[cell.i]![cell.j] = !verdict ? 'NO REPORT' : verdict.errors.length ? 'NO VERDICT' : !verdict.ok ? 'FAILS' : verdict.complete ? 'conforms' : 'conforms (partial)';
          }
        }),
      );
      console.log(`\ninterop matrix (rows: primary, columns: secondary)\n${['', ...names].join('\t')}`);
      grid.forEach((row, i) => console.log([names[i], ...row].join('\t')));
      return grid.flat().some((c) => c.startsWith('NO ')) ? 3 : grid.flat().every((c) => c.startsWith('conforms')) ? 0 : 1;
    }
    const iut = path.resolve(v.iut ?? REFERENCE_IUT);
    const run = { primary: path.resolve(v['primary-iut'] ?? iut), secondary: path.resolve(v['secondary-iut'] ?? iut), reportDir };
    console.log(`seed ${seed} (replay with --seed ${seed})`);
    const verdict = await runOnce(run, options);
    return verdict.errors.length ? 3 : verdict.ok ? 0 : 1;
  } catch (e) {
    console.error(`zrs-conformance: ${(e as Error).message}`);
    return 2;
  } finally {
    killAll();
  }
}

process.exitCode = await main(process.argv.slice(2));
