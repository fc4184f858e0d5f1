// The report on one implementation (conformance/report/implementation.ts), and the committed
// report on real zc.zrs against its expected-failures list.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildRegistry } from '../../spec/tools/requirements.ts';
import { REPO_ROOT } from '../env.ts';
import { implementationReport, type Report } from '../report/implementation.ts';
import { type CaseResult, judge, readExpectedFailures } from '../report/verdict.ts';

const registry = buildRegistry().requirements;
const result = (name: string, state: CaseResult['state'], message: string | null = null): CaseResult => ({
  name,
  file: 'x.case.ts',
  state,
  requirements: [/^\[([^\]]+)\]/.exec(name.split(' > ').at(-1)!)![1]!],
  message,
  durationMs: 1,
  checks: [],
  subjects: [],
});

describe('implementation report', () => {
  it('lists each deviation with the requirement text and the reason, and what was not run, in a stable order', () => {
    const expected = new Map([['DEV-BLOB0-1', { reason: 'restored without a blob file', roles: null }]]);
    const setup = { primary: { name: 'x', expected }, secondary: { name: 'x', expected } };
    const cases = [
      result('secondary: x > [DEV-BLOB0-1] b blob of zero blocks', 'failed', 'no blob file'),
      result('secondary: x > [DEV-BLOB0-1] a blob of zero blocks, again', 'failed', 'no blob file'),
      result('secondary: x > [WIRE-HS-1] handshake', 'passed'),
      result('discovery: x > [DISC-REG-8] unix', 'unsupported', 'unsupported: x does not claim discovery'),
    ];
    const verdict = judge(cases, registry, setup);
    const text = implementationReport({ ...verdict, title: 't', primary: 'x', secondary: 'x', primaryDescriptor: 'conformance/iut/x.json', seed: 5, filter: null } as Report);
    expect(text).toMatch(/^# x against the ZRS specification/);
    expect(text).toContain('npm run conformance -- --iut conformance/iut/x.json --seed 5');
    expect(text).toContain('npm run conformance:report -- reports/conformance/conformance.json conformance/iut/x.report.md');
    expect(text).toMatch(/### DEV-BLOB0-1 \(SHOULD, secondary\)\n\n> .+\n\nWhy: restored without a blob file\.\n\nShown by:\n- \[DEV-BLOB0-1\] a blob of zero blocks, again\n- \[DEV-BLOB0-1\] b blob of zero blocks\n/);
    expect(text).toContain('- x does not claim discovery');
    expect(text).toMatch(/\| WIRE-HS-1 \| MUST \| pass \|/);
    expect(text).not.toMatch(/durationMs|seed 5 \(/);
  });

  it('shows an intermittent deviation whether or not the run saw it, and says which', () => {
    const expected = new Map([['DEV-BLOB0-1', { reason: 'a race', roles: null, intermittent: true }]]);
    const setup = { primary: { name: 'x', expected }, secondary: { name: 'x', expected } };
    const report = (state: CaseResult['state']) =>
      implementationReport({ ...judge([result('secondary: x > [DEV-BLOB0-1] a blob of zero blocks', state)], registry, setup), title: 't', primary: 'x', secondary: 'x', primaryDescriptor: 'x.json', seed: 5, filter: null } as Report);
    expect(report('failed')).toMatch(/### DEV-BLOB0-1 \(SHOULD, secondary, intermittent\)\n\n> .+\n\nWhy: a race\.\n\nIntermittent: it shows in some runs only\. This run showed it\.\n\nShown by:\n- \[DEV-BLOB0-1\] a blob of zero blocks\n/);
    expect(report('passed')).toMatch(/### DEV-BLOB0-1 \(SHOULD, secondary, intermittent\)\n\n> .+\n\nWhy: a race\.\n\nIntermittent: it shows in some runs only\. This run did not\.\n\nExercised by:\n- \[DEV-BLOB0-1\] a blob of zero blocks\n/);
  });

  it('the committed report on zc.zrs shows as deviations exactly the entries of its expected-failures list', () => {
    const report = readFileSync(path.join(REPO_ROOT, 'conformance/iut/zc.zrs.report.md'), 'utf8');
    const shown = [...report.matchAll(/^### (\S+) \(/gm)].map((m) => m[1]).sort();
    const listed = [...readExpectedFailures(path.join(REPO_ROOT, 'conformance/iut/zc.zrs.expected-failures')).keys()].sort();
    expect(shown).toEqual(listed);
    expect(report).toMatch(/^\| fail, not expected \| 0 \|$/m);
  });
});
