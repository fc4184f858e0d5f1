/**
 * The conformance reports: a console summary per spec section, and files in the report
 * directory: `conformance.json` (everything), `matrix.md` (one row per requirement), the
 * JUnit XML written by vitest, and the transcripts of failing cases.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { RequirementState, RunVerdict } from './verdict.ts';

const MARK: Record<RequirementState, string> = {
  pass: 'pass',
  fail: 'FAIL',
  'expected-failure': 'expected failure',
  'unexpected-pass': 'UNEXPECTED PASS',
  unsupported: 'unsupported',
  'not applicable': 'not applicable',
  'not covered': 'not covered',
};

/** Lines of each node's standard error shown under a failing case in the console summary (conformance.json has more). */
const STDERR_LINES = 8;

/** Counts of requirement states per document section. */
function sections(v: RunVerdict): Map<string, Record<RequirementState, number>> {
  const out = new Map<string, Record<RequirementState, number>>();
  for (const r of v.requirements) {
    const key = `${r.document} § ${r.section}`;
    const row = out.get(key) ?? { pass: 0, fail: 0, 'expected-failure': 0, 'unexpected-pass': 0, unsupported: 0, 'not applicable': 0, 'not covered': 0 };
    row[r.state]++;
    out.set(key, row);
  }
  return out;
}

/** The console summary. */
export function summary(v: RunVerdict, title: string): string {
  const lines = [`\n${title}`, ''];
  const head = ['section', 'pass', 'fail', 'expected', 'unsupported', 'not covered'];
  const rows = [...sections(v)].filter(([, c]) => c.pass + c.fail + c['expected-failure'] + c['unexpected-pass'] + c.unsupported > 0);
  const table = [head, ...rows.map(([s, c]) => [s, c.pass, c.fail + c['unexpected-pass'], c['expected-failure'], c.unsupported, c['not covered']].map(String))];
  const widths = head.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const r of table) lines.push(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  const count = (s: RequirementState) => v.requirements.filter((r) => r.state === s).length;
  const cases = (s: string) => v.cases.filter((c) => c.state === s).length;
  lines.push(
    '',
    `requirements: ${count('pass')} pass, ${count('fail')} fail, ${count('expected-failure')} expected failures, ` +
      `${count('unexpected-pass')} unexpected passes, ${count('unsupported')} unsupported, ${count('not applicable')} not applicable, ${count('not covered')} not covered`,
    `cases: ${cases('passed')} passed, ${cases('failed')} failed, ${cases('unsupported')} unsupported, ${cases('not-applicable')} not applicable, ${cases('skipped')} skipped`,
  );
  const expectedCount = (state: string) => v.expectedFailures.filter((e) => e.state === state).length;
  if (v.expectedFailures.length) {
    lines.push(
      `expected failures: ${expectedCount('failed as expected')} failed as expected, ` +
        (expectedCount('not observed (intermittent)') ? `${expectedCount('not observed (intermittent)')} intermittent not observed, ` : '') +
        `${expectedCount('unexpected pass')} passed, ` +
        `${expectedCount('not exercised')} not exercised, ${expectedCount('not applicable')} not applicable (role not played)`,
    );
  }
  for (const w of v.warnings) lines.push(`warning: ${w}`);
  for (const p of v.problems) lines.push(`FAILURE: ${p}`);
  for (const e of v.errors) lines.push(`CASE ERROR: ${e}`);
  // what the nodes of each case that failed unexpectedly last said (CONF-READY-2)
  const unexpected = new Set(v.evidence.filter((e) => !e.ok && !e.expected).map((e) => e.case));
  const shown = v.cases.filter((x) => x.state === 'failed' && x.nodes?.length && (unexpected.has(x.name) || v.errors.some((e) => e.startsWith(x.name))));
  for (const c of shown) {
    lines.push(`\nnodes of the failing case ${c.name}:`);
    for (const n of c.nodes!) {
      const tail = n.stderrTail.split('\n').slice(-STDERR_LINES);
      lines.push(`  ${n.implementation} ${n.role} (${n.exit === null ? 'running' : `exited: ${n.exit}`}): ${n.argv.join(' ')}`, ...tail.map((l) => `    | ${l}`));
    }
  }
  lines.push(verdictLine(v));
  return lines.join('\n');
}

/** What was left out of a run, or null when everything ran. */
export function partialNote(v: RunVerdict): string | null {
  if (v.complete) return null;
  const parts = [
    ...(v.partial.filter !== null ? [`only cases matching ${JSON.stringify(v.partial.filter)}`] : []),
    ...(v.partial.unsupported ? [`${v.partial.unsupported} cases unsupported`] : []),
    ...(v.partial.skipped ? [`${v.partial.skipped} cases skipped`] : []),
  ];
  return `partial run: ${parts.join(', ')}`;
}

/** The one line that says what the run concluded. */
export function verdictLine(v: RunVerdict): string {
  const partial = partialNote(v);
  if (v.errors.length) return `verdict: NO VERDICT: ${v.errors.length} case(s) failed without blaming a requirement (a fault of the harness or of the case's set-up)`;
  if (!v.ok) return `verdict: DOES NOT CONFORM${partial ? ` (${partial})` : ''}`;
  return partial ? `verdict: conforms on what ran, no MUST fails (${partial})` : 'verdict: conforms (no MUST fails, every case ran)';
}

/** The per-requirement matrix in Markdown. */
export function matrix(v: RunVerdict, title: string): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [`# ${title}`, '', `${verdictLine(v).replace(/^verdict: /, 'Verdict: ')}.`, ''];
  let doc = '';
  for (const r of v.requirements) {
    if (r.document !== doc) {
      doc = r.document;
      lines.push('', `## ${doc}`, '', '| requirement | level | section | result | cases |', '|---|---|---|---|---|');
    }
    const who = r.blamed.length ? ` in ${r.blamed.join(', ')}` : '';
    const note = r.expectedReason ? ` (${esc(r.expectedReason)})` : '';
    lines.push(`| ${r.id} | ${r.level} | ${esc(r.section)} | ${MARK[r.state]}${who}${note} | ${r.cases.length} |`);
  }
  return `${lines.join('\n')}\n`;
}

/** Writes conformance.json and matrix.md into `dir`. */
export function writeReports(dir: string, v: RunVerdict, title: string, extra: Record<string, unknown>): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'conformance.json'), `${JSON.stringify({ title, ...extra, ...v }, null, 2)}\n`);
  writeFileSync(path.join(dir, 'matrix.md'), matrix(v, title));
}
