import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Requirement } from '../../spec/tools/requirements.ts';
import type { CheckRecord, Subject } from '../checks.ts';
import { type CaseResult, citedRequirements, type ExpectedEntry, judge, readExpectedFailures, type RunSetup } from '../report/verdict.ts';
import { partialNote, verdictLine } from '../report/render.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'zrs-verdict-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const req = (id: string, level: Requirement['level'], roles: Requirement['roles'] = ['primary']): Requirement => ({ id, level, roles, document: 'wire-protocol.md', section: 'S', line: 1, text: '' });
const registry = [
  req('WIRE-A-1', 'MUST'),
  req('WIRE-A-2', 'SHOULD'),
  req('WIRE-A-3', 'MUST'),
  req('WIRE-A-4', 'MUST', ['secondary']),
  req('WIRE-A-5', 'MUST', ['writer']),
];
/** A case title citing `ids` (built, so that the registry does not take them for citations). */
const titled = (ids: string[], rest: string) => `${ids.map((id) => `[${id}]`).join(' ')} ${rest}`;
const result = (ids: string[], state: CaseResult['state'], o: { message?: string; checks?: CheckRecord[]; subjects?: Subject[] } = {}): CaseResult => {
  const name = titled(ids, `case ${ids.join('+')} ${state}`);
  return { name, file: 'x.case.ts', state, requirements: citedRequirements(name), message: o.message ?? null, durationMs: 1, checks: o.checks ?? [], subjects: o.subjects ?? [] };
};
const pass = (id: string, subject: Subject | null = null): CheckRecord => ({ ids: [id], subject, ok: true });
const fail = (id: string, subject: Subject | null = null): CheckRecord => ({ ids: [id], subject, ok: false, message: `${id} broken` });
const list = (entries: Record<string, string | ExpectedEntry>) =>
  new Map(Object.entries(entries).map(([k, v]) => [k, typeof v === 'string' ? { reason: v, roles: null } : v]));
const alone = (expected = list({}), filter?: string): RunSetup => ({ primary: { name: 'x', expected }, secondary: { name: 'x', expected }, ...(filter ? { filter } : {}) });
const stateOf = (v: ReturnType<typeof judge>, id: string) => v.requirements.find((r) => r.id === id)!.state;

describe('requirement verdicts', () => {
  it('reads the IDs at the start of a case title, in any suite', () => {
    expect(citedRequirements(`primary: x > ${titled(['WIRE-A-1', 'WIRE-A-2'], 'does things [WIRE-A-3]')}`)).toEqual(['WIRE-A-1', 'WIRE-A-2']);
  });

  it('[CONF-VERD-1] [CONF-VERD-3] a case citing one requirement proves it by passing and breaks it by failing; a MUST failure fails the run, a SHOULD one warns', () => {
    const v = judge([result(['WIRE-A-1'], 'passed'), result(['WIRE-A-2'], 'failed', { message: 'boom' }), result(['WIRE-A-3'], 'unsupported', { message: 'unsupported: no blobs' })], registry, alone());
    expect(v.requirements.map((r) => r.state)).toEqual(['pass', 'fail', 'unsupported', 'not covered', 'not covered']);
    expect(v.ok).toBe(true);
    expect(v.warnings).toEqual([expect.stringMatching(/WIRE-A-2 \(SHOULD\) fails: x \(primary\) in \[WIRE-A-2\] case .*: boom/)]);
    const bad = judge([result(['WIRE-A-1'], 'failed', { message: 'broken' })], registry, alone());
    expect(bad.ok).toBe(false);
    expect(bad.problems[0]).toMatch(/WIRE-A-1 \(MUST\) fails/);
  });

  it('[CONF-VERD-1] a case citing several requirements blames only the one whose check failed; those it never reached get no verdict from it', () => {
    const v = judge([result(['WIRE-A-1', 'WIRE-A-3', 'WIRE-A-4'], 'failed', { checks: [pass('WIRE-A-1'), fail('WIRE-A-3')] })], registry, alone());
    expect([stateOf(v, 'WIRE-A-1'), stateOf(v, 'WIRE-A-3'), stateOf(v, 'WIRE-A-4')]).toEqual(['pass', 'fail', 'not covered']);
    expect(v.problems).toEqual([expect.stringMatching(/^WIRE-A-3 \(MUST\) fails/)]);
    expect(v.errors).toEqual([]);
  });

  it('[CONF-VERD-1] a case citing several requirements that fails outside its checks blames none: the run has no verdict', () => {
    const v = judge([result(['WIRE-A-1', 'WIRE-A-3'], 'failed', { message: 'node did not start', checks: [pass('WIRE-A-1')] })], registry, alone());
    expect(stateOf(v, 'WIRE-A-3')).toBe('not covered');
    expect(v.errors).toEqual([expect.stringMatching(/failed outside its checks.*node did not start/)]);
    expect(v.ok).toBe(false);
    expect(verdictLine(v)).toMatch(/^verdict: NO VERDICT/);
  });

  it('[CONF-VERD-1] a harness error blames nothing, even in a case citing one requirement', () => {
    const v = judge([result(['WIRE-A-1'], 'failed', { message: 'HarnessError: no free port' })], registry, alone());
    expect(stateOf(v, 'WIRE-A-1')).toBe('not covered');
    expect(v.errors).toHaveLength(1);
  });

  it('[CONF-VERD-1] a check of a requirement that binds no single role takes the role the case declared, or must name one', () => {
    const declared = judge([result(['WIRE-A-5'], 'failed', { subjects: ['secondary'], checks: [fail('WIRE-A-5')] })], registry, alone());
    expect(declared.evidence).toMatchObject([{ id: 'WIRE-A-5', subject: 'secondary', ok: false }]);
    const both = judge([result(['WIRE-A-5'], 'failed', { subjects: ['primary', 'secondary'], checks: [fail('WIRE-A-5')] })], registry, alone());
    expect(both.errors).toEqual([expect.stringMatching(/cannot tell which implementation WIRE-A-5 judges/)]);
    const named = judge([result(['WIRE-A-5'], 'failed', { subjects: ['primary', 'secondary'], checks: [fail('WIRE-A-5', 'primary')] })], registry, alone());
    expect(named.evidence).toMatchObject([{ subject: 'primary' }]);
  });

  it('[CONF-VERD-2] an expected failure that fails is fine; one that passes, or that no case exercised, fails the run', () => {
    const expected = list({ 'WIRE-A-1': 'known bug' });
    expect(judge([result(['WIRE-A-1'], 'failed')], registry, alone(expected))).toMatchObject({ ok: true, requirements: [{ state: 'expected-failure', expectedReason: 'known bug' }, {}, {}, {}, {}] });
    const stale = judge([result(['WIRE-A-1'], 'passed')], registry, alone(expected));
    expect(stale.ok).toBe(false);
    expect(stale.problems[0]).toMatch(/listed as an expected failure of x but passes/);
    const idle = judge([result(['WIRE-A-3'], 'passed')], registry, alone(expected));
    expect(idle.problems).toEqual([expect.stringMatching(/WIRE-A-1 is listed as an expected failure of x, but no case exercised it/)]);
    const filtered = judge([result(['WIRE-A-3'], 'passed')], registry, alone(expected, 'WIRE-A-3'));
    expect(filtered.ok).toBe(true);
    expect(filtered.warnings).toEqual([expect.stringMatching(/1 expected failure\(s\) of x no case of this filtered run exercised: WIRE-A-1$/)]);
  });

  it('[CONF-VERD-2] in a pair run, expected failures belong to the implementation that plays the role they bind', () => {
    // "zc" lists a primary deviation (WIRE-A-1) and a secondary one (WIRE-A-4); it plays the primary, "ref" the secondary.
    const zc = list({ 'WIRE-A-1': 'zc primary bug', 'WIRE-A-4': 'zc secondary bug' });
    const setup: RunSetup = { primary: { name: 'zc', expected: zc }, secondary: { name: 'ref', expected: list({}) } };
    const v = judge([result(['WIRE-A-1'], 'failed'), result(['WIRE-A-4'], 'failed')], registry, setup);
    expect(stateOf(v, 'WIRE-A-1')).toBe('expected-failure');
    expect(stateOf(v, 'WIRE-A-4')).toBe('fail'); // the reference secondary's failure is not excused by zc's list
    expect(v.requirements.find((r) => r.id === 'WIRE-A-4')!.blamed).toEqual(['ref']);
    expect(v.expectedFailures).toEqual([
      { implementation: 'zc', id: 'WIRE-A-1', reason: 'zc primary bug', state: 'failed as expected' },
      { implementation: 'zc', id: 'WIRE-A-4', reason: 'zc secondary bug', state: 'not applicable' },
    ]);
    const clean = judge([result(['WIRE-A-1'], 'failed'), result(['WIRE-A-4'], 'passed')], registry, setup);
    expect(clean.ok).toBe(true); // zc's secondary entry neither passes unexpectedly nor goes unexercised
  });

  it('[CONF-VERD-2] an entry may name the roles it fails in', () => {
    const zc = list({ 'WIRE-A-5': { reason: 'fails as a writer of secondaries', roles: ['secondary'] } });
    const v = judge(
      [result(['WIRE-A-5'], 'passed', { subjects: ['primary'] }), result(['WIRE-A-5'], 'failed', { subjects: ['secondary'], message: 'x' })],
      registry,
      alone(zc),
    );
    expect(stateOf(v, 'WIRE-A-5')).toBe('expected-failure');
    expect(v.ok).toBe(true);
    const primaryFails = judge([result(['WIRE-A-5'], 'failed', { subjects: ['primary'], message: 'x' })], registry, alone(zc));
    expect(primaryFails.problems).toContainEqual(expect.stringMatching(/WIRE-A-5 \(MUST\) fails: x \(primary\)/));
  });

  it('[CONF-VERD-4] tells a partial run from a complete one', () => {
    const complete = judge([result(['WIRE-A-1'], 'passed')], registry, alone());
    expect(complete.complete).toBe(true);
    expect(verdictLine(complete)).toBe('verdict: conforms (no MUST fails, every case ran)');
    const unsupported = judge([result(['WIRE-A-1'], 'passed'), result(['WIRE-A-3'], 'unsupported', { message: 'unsupported: x does not claim blobs' })], registry, alone());
    expect(unsupported.complete).toBe(false);
    expect(unsupported.partial.reasons).toEqual(['x does not claim blobs']);
    expect(verdictLine(unsupported)).toMatch(/^verdict: conforms on what ran.*1 cases unsupported/);
    const inapplicable = judge([result(['WIRE-A-1'], 'passed'), result(['WIRE-A-3'], 'not-applicable', { message: 'not applicable: x offers discovery' })], registry, alone());
    expect(inapplicable.complete).toBe(true);
    expect(stateOf(inapplicable, 'WIRE-A-3')).toBe('not applicable');
    const filtered = judge([result(['WIRE-A-1'], 'passed')], registry, alone(list({}), 'A-1'));
    expect(partialNote(filtered)).toBe('partial run: only cases matching "A-1"');
  });

  it('a case citing an undefined requirement, or failing without citing one, fails the run', () => {
    expect(judge([result(['WIRE-Z-9'], 'passed')], registry, alone()).problems[0]).toMatch(/WIRE-Z-9, which the specification does not define/);
    expect(judge([result([], 'failed', { message: 'x' })], registry, alone()).ok).toBe(false);
  });

  it('[CONF-VERD-2] an intermittent expected failure excuses a failure, is "not observed" when it passes, and must still be exercised', () => {
    const expected = list({ 'WIRE-A-1': { reason: 'a race', roles: null, intermittent: true } });
    const seen = judge([result(['WIRE-A-1'], 'failed')], registry, alone(expected));
    expect(seen).toMatchObject({ ok: true, expectedFailures: [{ id: 'WIRE-A-1', state: 'failed as expected', intermittent: true }] });
    const unseen = judge([result(['WIRE-A-1'], 'passed')], registry, alone(expected));
    expect(unseen).toMatchObject({ ok: true, problems: [], expectedFailures: [{ id: 'WIRE-A-1', state: 'not observed (intermittent)' }] });
    // the same requirement verdict whether this run saw the race or not
    for (const v of [seen, unseen]) expect(v.requirements[0]).toMatchObject({ id: 'WIRE-A-1', state: 'expected-failure', expectedReason: 'a race' });
    const idle = judge([result(['WIRE-A-3'], 'passed')], registry, alone(expected));
    expect(idle.problems).toEqual([expect.stringMatching(/WIRE-A-1 is listed as an expected failure of x, but no case exercised it/)]);
  });

  it('reads expected-failures files, requiring a reason on every line and allowing roles and intermittence', () => {
    const good = path.join(dir, 'good.txt');
    writeFileSync(good, '# zc.zrs\n\nDEV-DATATXN-1  # loops forever on a missing hint\nCONF-PROC-3 (primary) # runs on without a listener\nDEV-SHUT-1 (primary) intermittent # a race\nWIRE-A-1 intermittent # another\n');
    expect(readExpectedFailures(good)).toEqual(
      new Map([
        ['DEV-DATATXN-1', { reason: 'loops forever on a missing hint', roles: null }],
        ['CONF-PROC-3', { reason: 'runs on without a listener', roles: ['primary'] }],
        ['DEV-SHUT-1', { reason: 'a race', roles: ['primary'], intermittent: true }],
        ['WIRE-A-1', { reason: 'another', roles: null, intermittent: true }],
      ]),
    );
    const bad = path.join(dir, 'bad.txt');
    writeFileSync(bad, 'DEV-DATATXN-1\n');
    expect(() => readExpectedFailures(bad)).toThrow(/bad\.txt:1: expected "REQUIREMENT-ID \[\(ROLES\)\] \[intermittent\]  # reason"/);
    writeFileSync(bad, 'DEV-DATATXN-1 sometimes # x\n');
    expect(() => readExpectedFailures(bad)).toThrow(/bad\.txt:1: expected/);
    writeFileSync(bad, 'DEV-DATATXN-1 (tertiary) # x\n');
    expect(() => readExpectedFailures(bad)).toThrow(/bad\.txt:1: unknown role "tertiary"/);
    writeFileSync(bad, 'DEV-DATATXN-1 # x\nDEV-DATATXN-1 # y\n');
    expect(() => readExpectedFailures(bad)).toThrow(/bad\.txt:2: DEV-DATATXN-1 is listed twice/);
  });
});
