/**
 * From case results to a verdict per requirement and per implementation.
 *
 * Each case yields evidence: a requirement, the role whose implementation it judged, and
 * whether it held (see conformance/checks.ts for how a case blames one requirement). Expected
 * failures are matched against the implementation that played that role, so that in a pair
 * run one implementation's known deviations never excuse, or are never charged to, the other.
 * The run fails when a `MUST` or `MUST NOT` fails unexpectedly, when an expected failure passes
 * or (in a complete run) is never exercised, and when a case cannot blame a requirement.
 * @module
 */
import { readFileSync } from 'node:fs';
import type { Level, Requirement } from '../../spec/tools/requirements.ts';
import type { CheckRecord, NodeLog, Subject } from '../checks.ts';

/** The outcome of one case. */
export interface CaseResult {
  /** Full name, as vitest reports it. */
  name: string;
  file: string;
  /** `not-applicable`: the case is for implementations unlike this one (one that lacks a feature it has), so leaving it out leaves nothing untested. */
  state: 'passed' | 'failed' | 'unsupported' | 'not-applicable' | 'skipped';
  /** Requirement IDs the case cites (bracketed at the start of its title). */
  requirements: string[];
  /** Failure message, or the reason it was unsupported or skipped. */
  message: string | null;
  durationMs: number;
  /** Runs of a property case, as it reported them. */
  runs?: number;
  /** The case's checks, in order. */
  checks: CheckRecord[];
  /** The roles the case declared it judges. */
  subjects: Subject[];
  /** For a failing case, its nodes and the tail of their standard error. */
  nodes?: NodeLog[];
}

/** One expected failure: why, and the roles it is expected in (null: the requirement's own). */
export interface ExpectedEntry {
  reason: string;
  roles: Subject[] | null;
  /** The deviation shows only in some runs (a race in the implementation): a pass is "not observed", not stale. */
  intermittent?: boolean;
}

/** An implementation as it plays a role in the run. */
export interface Player {
  name: string;
  expected: Map<string, ExpectedEntry>;
}

/** What a run was: who played each role, and whether part of the suite was left out on purpose. */
export interface RunSetup {
  primary: Player;
  secondary: Player;
  /** The `--filter` pattern, when only part of the suite was asked for. */
  filter?: string;
}

/** What one case proved about one requirement. */
export interface Evidence {
  id: string;
  subject: Subject;
  implementation: string;
  ok: boolean;
  case: string;
  message?: string;
  /** A failure the implementation lists as expected. */
  expected: boolean;
}

export type RequirementState = 'pass' | 'fail' | 'expected-failure' | 'unexpected-pass' | 'unsupported' | 'not applicable' | 'not covered';

export interface RequirementVerdict {
  id: string;
  level: Level;
  document: string;
  section: string;
  state: RequirementState;
  cases: string[];
  /** Why it is expected to fail, from the expected-failures file of the implementation it failed in. */
  expectedReason: string | null;
  /** The implementations a failure was charged to. */
  blamed: string[];
}

/** What became of one entry of an expected-failures file. */
export interface ExpectedOutcome {
  implementation: string;
  id: string;
  reason: string;
  /** Listed as `intermittent`: the deviation shows in some runs only. */
  intermittent?: true;
  state: 'failed as expected' | 'not observed (intermittent)' | 'unexpected pass' | 'not exercised' | 'not applicable';
}

export interface RunVerdict {
  ok: boolean;
  /** Every case of the suite ran (no filter, none unsupported or skipped). */
  complete: boolean;
  /** What was left out: the filter, and the cases that did not run with why. */
  partial: { filter: string | null; unsupported: number; skipped: number; reasons: string[] };
  requirements: RequirementVerdict[];
  cases: CaseResult[];
  evidence: Evidence[];
  expectedFailures: ExpectedOutcome[];
  /** Unexpected failures of MUST/MUST NOT requirements, and stale expected failures. */
  problems: string[];
  /** Cases that failed without blaming a requirement: the run cannot be trusted until they are fixed. */
  errors: string[];
  /** SHOULD/MAY failures: warnings. */
  warnings: string[];
}

const ID = /[A-Z]+-[A-Z0-9]{1,8}-[1-9][0-9]*/;

/** IDs cited at the start of a case title: `[WIRE-HS-1] [WIRE-HS-2] ...`. */
export function citedRequirements(name: string): string[] {
  const ids: string[] = [];
  for (const part of name.split(' > ')) {
    const m = /^((?:\[[A-Z]+-[A-Z0-9]{1,8}-[1-9][0-9]*\]\s*)+)/.exec(part);
    if (m) for (const id of m[1]!.matchAll(/\[([^\]]+)\]/g)) ids.push(id[1]!);
  }
  return [...new Set(ids)];
}

/**
 * Reads an expected-failures file: one requirement ID a line, optionally the roles it fails in
 * (`(primary)`, `(secondary)`, `(primary, secondary)`), optionally the word `intermittent`, then
 * `#` and the reason, which is mandatory. Blank lines and lines starting with `#` are ignored.
 */
export function readExpectedFailures(file: string): Map<string, ExpectedEntry> {
  const out = new Map<string, ExpectedEntry>();
  const line = new RegExp(`^(${ID.source})\\s*(?:\\(([a-z, ]+)\\))?\\s*(intermittent\\s*)?#\\s*(\\S.*)$`);
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      const text = raw.trim();
      if (text === '' || text.startsWith('#')) return;
      const m = line.exec(text);
      const where = `${file}:${i + 1}`;
      if (!m) throw new Error(`${where}: expected "REQUIREMENT-ID [(ROLES)] [intermittent]  # reason", got ${JSON.stringify(text)}`);
      let roles: Subject[] | null = null;
      if (m[2] !== undefined) {
        const words = m[2].split(',').map((w) => w.trim());
        for (const w of words) if (w !== 'primary' && w !== 'secondary') throw new Error(`${where}: unknown role ${JSON.stringify(w)} (primary or secondary)`);
        roles = words as Subject[];
      }
      if (out.has(m[1]!)) throw new Error(`${where}: ${m[1]} is listed twice`);
      out.set(m[1]!, { reason: m[4]!, roles, ...(m[3] ? { intermittent: true } : {}) });
    });
  return out;
}

const strong = (l: Level) => l === 'MUST' || l === 'MUST NOT';

/** The role a requirement binds, when the registry says it binds exactly one of the two. */
export function registryRole(r: Requirement | undefined): Subject | null {
  if (!r) return null;
  const primary = r.roles.includes('primary');
  const secondary = r.roles.includes('secondary') || r.roles.includes('chained');
  if (primary && !secondary) return 'primary';
  if (secondary && !primary) return 'secondary';
  return null;
}

/** The evidence of one case, or why it cannot give any (a case error). */
export function caseEvidence(c: CaseResult, registry: Map<string, Requirement>): { evidence: Omit<Evidence, 'implementation' | 'expected'>[]; error: string | null } {
  const subjectOf = (id: string, named: Subject | null): Subject | null =>
    named ?? registryRole(registry.get(id)) ?? (c.subjects.length === 1 ? c.subjects[0]! : null);
  const evidence: Omit<Evidence, 'implementation' | 'expected'>[] = [];
  const unknownRole: string[] = [];
  const add = (id: string, named: Subject | null, ok: boolean, message?: string) => {
    const subject = subjectOf(id, named);
    if (!subject) unknownRole.push(id);
    else evidence.push({ id, subject, ok, case: c.name, ...(message !== undefined ? { message } : {}) });
  };
  for (const k of c.checks) for (const id of k.ids) add(id, k.subject, k.ok, k.message);
  let error: string | null = null;
  if (c.state === 'passed') {
    // A case citing one requirement proves it by passing; a case citing several proves each by its checks.
    if (c.requirements.length === 1 && !c.checks.some((k) => k.ids.includes(c.requirements[0]!))) add(c.requirements[0]!, null, true);
  } else if (c.state === 'failed' && !c.checks.some((k) => !k.ok)) {
    const harness = /^HarnessError\b/.test(c.message ?? '') || c.message?.includes('HarnessError:');
    if (c.requirements.length === 1 && !harness) add(c.requirements[0]!, null, false, c.message ?? 'failed');
    else if (c.requirements.length === 0) error = `${c.name} fails and cites no requirement: ${c.message ?? 'failed'}`;
    else error = `${c.name} failed outside its checks, so no requirement can be blamed: ${c.message ?? 'failed'}`;
  }
  if (unknownRole.length) error ??= `${c.name}: cannot tell which implementation ${unknownRole.join(', ')} judges (name the role in the check)`;
  return { evidence, error };
}

/** The roles an expected-failures entry applies to. */
function entryRoles(e: ExpectedEntry, r: Requirement | undefined): Subject[] {
  if (e.roles) return e.roles;
  const role = registryRole(r);
  return role ? [role] : ['primary', 'secondary'];
}

/** Combines case results into requirement verdicts and the run verdict. */
export function judge(cases: CaseResult[], registry: Requirement[], setup: RunSetup): RunVerdict {
  const byRequirement = new Map(registry.map((r) => [r.id, r]));
  const problems: string[] = [];
  const warnings: string[] = [];
  const errors: string[] = [];
  const player = (s: Subject) => setup[s];
  const listed = (id: string, s: Subject) => {
    const e = player(s).expected.get(id);
    return e && entryRoles(e, byRequirement.get(id)).includes(s) ? e : undefined;
  };

  const evidence: Evidence[] = [];
  for (const c of cases) {
    for (const id of c.requirements) if (!byRequirement.has(id)) problems.push(`${c.name} cites ${id}, which the specification does not define`);
    const { evidence: found, error } = caseEvidence(c, byRequirement);
    if (error) errors.push(error);
    for (const e of found) evidence.push({ ...e, implementation: player(e.subject).name, expected: !e.ok && listed(e.id, e.subject) !== undefined });
  }
  for (const s of ['primary', 'secondary'] as const) {
    for (const id of player(s).expected.keys()) if (!byRequirement.has(id)) problems.push(`the expected failures of ${player(s).name} list ${id}, which the specification does not define`);
  }

  const casesOf = new Map<string, CaseResult[]>();
  for (const c of cases) for (const id of c.requirements) casesOf.set(id, [...(casesOf.get(id) ?? []), c]);
  const evidenceOf = new Map<string, Evidence[]>();
  for (const e of evidence) evidenceOf.set(e.id, [...(evidenceOf.get(e.id) ?? []), e]);

  // Expected failures, per implementation and the roles it played in this run.
  const expectedFailures: ExpectedOutcome[] = [];
  const unexpectedPasses = new Set<string>();
  const unobserved = new Map<string, string>(); // intermittent deviations that did not show this run, with why
  const seenPlayers = new Map<string, { player: Player; roles: Subject[] }>();
  for (const s of ['primary', 'secondary'] as const) {
    const key = player(s).name;
    const entry = seenPlayers.get(key) ?? { player: player(s), roles: [] };
    entry.roles.push(s);
    seenPlayers.set(key, entry);
  }
  for (const [name, { player: p, roles }] of seenPlayers) {
    const idle: string[] = []; // listed, applicable, and exercised by no case
    for (const [id, e] of p.expected) {
      const r = byRequirement.get(id);
      const applies = entryRoles(e, r).filter((s) => roles.includes(s));
      const base = { implementation: name, id, reason: e.reason, ...(e.intermittent ? { intermittent: true as const } : {}) };
      if (!applies.length) {
        expectedFailures.push({ ...base, state: 'not applicable' });
        continue;
      }
      const mine = (evidenceOf.get(id) ?? []).filter((x) => applies.includes(x.subject));
      if (mine.some((x) => !x.ok)) expectedFailures.push({ ...base, state: 'failed as expected' });
      else if (mine.length && e.intermittent) {
        expectedFailures.push({ ...base, state: 'not observed (intermittent)' });
        unobserved.set(id, e.reason);
      } else if (mine.length) {
        expectedFailures.push({ ...base, state: 'unexpected pass' });
        unexpectedPasses.add(id);
        problems.push(`${id} is listed as an expected failure of ${name} but passes: remove it from the list`);
      } else {
        expectedFailures.push({ ...base, state: 'not exercised' });
        idle.push(id);
      }
    }
    // a filtered run leaves most entries alone by design: one line for them all
    if (setup.filter !== undefined && idle.length) warnings.push(`${idle.length} expected failure(s) of ${name} no case of this filtered run exercised: ${idle.join(' ')}`);
    else for (const id of idle) problems.push(`${id} is listed as an expected failure of ${name}, but no case exercised it: fix the case or remove the entry`);
  }

  const requirements = registry.map((r): RequirementVerdict => {
    const cs = casesOf.get(r.id) ?? [];
    const ev = evidenceOf.get(r.id) ?? [];
    const unexpected = ev.filter((e) => !e.ok && !e.expected);
    const expected = ev.filter((e) => !e.ok && e.expected);
    let state: RequirementState;
    if (unexpected.length) state = 'fail';
    else if (unexpectedPasses.has(r.id)) state = 'unexpected-pass';
    else if (expected.length || unobserved.has(r.id)) state = 'expected-failure'; // a listed deviation, seen or not
    else if (ev.length) state = 'pass';
    else if (cs.some((c) => c.state === 'unsupported' || c.state === 'skipped')) state = 'unsupported';
    else state = cs.length && cs.every((c) => c.state === 'not-applicable') ? 'not applicable' : 'not covered';
    if (unexpected.length) {
      const why = unexpected.map((e) => `${e.implementation} (${e.subject}) in ${e.case}: ${e.message ?? 'failed'}`).join('; ');
      (strong(r.level) ? problems : warnings).push(`${r.id} (${r.level}) fails: ${why}`);
    }
    const failed = [...unexpected, ...expected];
    const reason = expected.map((e) => listed(e.id, e.subject)!.reason)[0] ?? unobserved.get(r.id) ?? null;
    return {
      id: r.id,
      level: r.level,
      document: r.document,
      section: r.section,
      state,
      cases: cs.map((c) => c.name),
      expectedReason: reason,
      blamed: [...new Set(failed.map((e) => e.implementation))],
    };
  });

  const notRun = cases.filter((c) => c.state === 'unsupported' || c.state === 'skipped');
  const reasons = [...new Set(notRun.map((c) => (c.message ?? 'skipped').replace(/^unsupported:\s*/, '')))];
  const partial = {
    filter: setup.filter ?? null,
    unsupported: notRun.filter((c) => c.state === 'unsupported').length,
    skipped: notRun.filter((c) => c.state === 'skipped').length,
    reasons,
  };
  const complete = partial.filter === null && notRun.length === 0;
  return { ok: problems.length === 0 && errors.length === 0, complete, partial, requirements, cases, evidence, expectedFailures, problems, errors, warnings };
}
