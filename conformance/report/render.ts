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
  'not covered': 'not covered',
};

/** Counts of requirement states per document section. */
function sections(v: RunVerdict): Map<string, Record<RequirementState, number>> {
  const out = new Map<string, Record<RequirementState, number>>();
  for (const r of v.requirements) {
    const key = `${r.document} § ${r.section}`;
    const row = out.get(key) ?? { pass: 0, fail: 0, 'expected-failure': 0, 'unexpected-pass': 0, unsupported: 0, 'not covered': 0 };
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
      `${count('unexpected-pass')} unexpected passes, ${count('unsupported')} unsupported, ${count('not covered')} not covered`,
    `cases: ${cases('passed')} passed, ${cases('failed')} failed, ${cases('unsupported')} unsupported, ${cases('skipped')} skipped`,
  );
  for (const w of v.warnings) lines.push(`warning: ${w}`);
  for (const p of v.problems) lines.push(`FAILURE: ${p}`);
  lines.push(v.ok ? 'verdict: conforms (no MUST fails)' : 'verdict: DOES NOT CONFORM');
  return lines.join('\n');
}

/** The per-requirement matrix in Markdown. */
export function matrix(v: RunVerdict, title: string): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [`# ${title}`, '', `Verdict: **${v.ok ? 'conforms' : 'does not conform'}**.`, ''];
  let doc = '';
  for (const r of v.requirements) {
    if (r.document !== doc) {
      doc = r.document;
      lines.push('', `## ${doc}`, '', '| requirement | level | section | result | cases |', '|---|---|---|---|---|');
    }
    const note = r.expectedReason ? ` (${esc(r.expectedReason)})` : '';
    lines.push(`| ${r.id} | ${r.level} | ${esc(r.section)} | ${MARK[r.state]}${note} | ${r.cases.length} |`);
  }
  return `${lines.join('\n')}\n`;
}

/** Writes conformance.json and matrix.md into `dir`. */
export function writeReports(dir: string, v: RunVerdict, title: string, extra: Record<string, unknown>): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'conformance.json'), `${JSON.stringify({ title, ...extra, ...v }, null, 2)}\n`);
  writeFileSync(path.join(dir, 'matrix.md'), matrix(v, title));
}
