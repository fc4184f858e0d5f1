import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Requirement } from '../../spec/tools/requirements.ts';
import { type CaseResult, citedRequirements, judge, readExpectedFailures } from '../report/verdict.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'zrs-verdict-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const req = (id: string, level: Requirement['level']): Requirement => ({ id, level, roles: ['primary'], document: 'wire-protocol.md', section: 'S', line: 1, text: '' });
const registry = [req('WIRE-A-1', 'MUST'), req('WIRE-A-2', 'SHOULD'), req('WIRE-A-3', 'MUST'), req('WIRE-A-4', 'MUST')];
/** A case title citing `ids` (built, so that the registry does not take them for citations). */
const titled = (ids: string[], rest: string) => `${ids.map((id) => `[${id}]`).join(' ')} ${rest}`;
const result = (name: string, state: CaseResult['state'], message: string | null = null): CaseResult => ({
  name,
  file: 'x.case.ts',
  state,
  requirements: citedRequirements(name),
  message,
  durationMs: 1,
});

describe('requirement verdicts', () => {
  it('reads the IDs at the start of a case title, in any suite', () => {
    expect(citedRequirements(`primary: x > ${titled(['WIRE-A-1', 'WIRE-A-2'], 'does things [WIRE-A-3]')}`)).toEqual(['WIRE-A-1', 'WIRE-A-2']);
  });

  it('a MUST failure fails the run; a SHOULD failure is a warning; untested ones are not covered', () => {
    const v = judge([result(titled(['WIRE-A-1'], 'a'), 'passed'), result(titled(['WIRE-A-2'], 'b'), 'failed', 'boom'), result(titled(['WIRE-A-3'], 'c'), 'unsupported', 'unsupported: no blobs')], registry, new Map());
    expect(v.requirements.map((r) => r.state)).toEqual(['pass', 'fail', 'unsupported', 'not covered']);
    expect(v.ok).toBe(true);
    expect(v.warnings).toEqual([expect.stringMatching(/WIRE-A-2 \(SHOULD\) fails: \[WIRE-A-2\] b: boom/)]);
    const bad = judge([result(titled(['WIRE-A-1'], 'a'), 'failed', 'broken')], registry, new Map());
    expect(bad.ok).toBe(false);
    expect(bad.problems[0]).toMatch(/WIRE-A-1 \(MUST\) fails/);
  });

  it('an expected failure that fails is fine; one that passes fails the run, so the list never goes stale', () => {
    const expected = new Map([['WIRE-A-1', 'known bug']]);
    expect(judge([result(titled(['WIRE-A-1'], 'a'), 'failed')], registry, expected)).toMatchObject({ ok: true, requirements: [{ state: 'expected-failure', expectedReason: 'known bug' }, {}, {}, {}] });
    const stale = judge([result(titled(['WIRE-A-1'], 'a'), 'passed')], registry, expected);
    expect(stale.ok).toBe(false);
    expect(stale.problems[0]).toMatch(/listed as an expected failure but passes/);
  });

  it('a case citing an undefined requirement, or failing without citing one, fails the run', () => {
    expect(judge([result(titled(['WIRE-Z-9'], 'a'), 'passed')], registry, new Map()).problems[0]).toMatch(/WIRE-Z-9, which the specification does not define/);
    expect(judge([result('no id', 'failed', 'x')], registry, new Map()).ok).toBe(false);
  });

  it('reads expected-failures files, requiring a reason on every line', () => {
    const good = path.join(dir, 'good.txt');
    writeFileSync(good, '# zc.zrs\n\nDEV-DATATXN-1  # loops forever on a missing hint\n');
    expect(readExpectedFailures(good)).toEqual(new Map([['DEV-DATATXN-1', 'loops forever on a missing hint']]));
    const bad = path.join(dir, 'bad.txt');
    writeFileSync(bad, 'DEV-DATATXN-1\n');
    expect(() => readExpectedFailures(bad)).toThrow(/bad\.txt:1: expected "REQUIREMENT-ID  # reason"/);
  });
});
