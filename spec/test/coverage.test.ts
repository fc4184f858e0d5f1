// Spec coverage by the conformance suite: every MUST and MUST NOT of the registry that an
// outside observer can test is cited by a conformance case (conformance/cases/*.case.ts,
// the IDs bracketed at the start of a test title); the others are listed, each with the
// reason it cannot be observed, in conformance/not-observable.json.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildRegistry, findCitations, REPO_ROOT } from '../tools/requirements.ts';

const LIST = path.join(REPO_ROOT, 'conformance/not-observable.json');
const CASES = `conformance${path.sep}cases${path.sep}`;

describe('spec coverage by the conformance suite', () => {
  const { requirements } = buildRegistry();
  const strong = requirements.filter((r) => r.level === 'MUST' || r.level === 'MUST NOT');
  const byId = new Map(requirements.map((r) => [r.id, r]));
  const citedByCases = new Map(
    [...findCitations()]
      .map(([id, files]) => [id, files.filter((f) => f.startsWith(CASES) && f.endsWith('.case.ts'))] as const)
      .filter(([, files]) => files.length > 0),
  );
  const listed: unknown = JSON.parse(readFileSync(LIST, 'utf8'));

  it('conformance/not-observable.json is an object mapping requirement IDs to reasons', () => {
    expect(listed !== null && typeof listed === 'object' && !Array.isArray(listed)).toBe(true);
  });

  const reasons = new Map(Object.entries((listed ?? {}) as Record<string, unknown>));

  it('every MUST and MUST NOT is cited by a conformance case or listed as not observable', () => {
    const missing = strong.filter((r) => !citedByCases.has(r.id) && !reasons.has(r.id)).map((r) => `${r.id} (${r.document} § ${r.section})`);
    expect(missing, 'write a case for each, or list it with the reason it cannot be observed').toEqual([]);
  });

  it('no requirement listed as not observable is cited by a conformance case', () => {
    const wrong = [...reasons.keys()].filter((id) => citedByCases.has(id)).map((id) => `${id}: cited by ${citedByCases.get(id)!.join(', ')}`);
    expect(wrong, 'remove these from conformance/not-observable.json').toEqual([]);
  });

  it('every listed ID is a MUST or MUST NOT of the registry', () => {
    const wrong = [...reasons.keys()]
      .filter((id) => !byId.has(id) || !['MUST', 'MUST NOT'].includes(byId.get(id)!.level))
      .map((id) => (byId.has(id) ? `${id} is a ${byId.get(id)!.level}` : `${id} is not in the registry`));
    expect(wrong).toEqual([]);
  });

  it('every listed ID has a reason', () => {
    const empty = [...reasons].filter(([, reason]) => typeof reason !== 'string' || reason.trim() === '').map(([id]) => id);
    expect(empty).toEqual([]);
  });
});
