/**
 * From case results to a verdict per requirement: pass, fail, expected failure, unsupported
 * or not covered; and from those to the run's verdict (it fails only when a `MUST` or
 * `MUST NOT` fails unexpectedly, or a listed expected failure passes).
 * @module
 */
import { readFileSync } from 'node:fs';
import type { Level, Requirement } from '../../spec/tools/requirements.ts';

/** The outcome of one case. */
export interface CaseResult {
  /** Full name, as vitest reports it. */
  name: string;
  file: string;
  state: 'passed' | 'failed' | 'unsupported' | 'skipped';
  /** Requirement IDs the case cites (bracketed at the start of its title). */
  requirements: string[];
  /** Failure message, or the reason it was unsupported. */
  message: string | null;
  durationMs: number;
  /** Runs of a property case, as it reported them. */
  runs?: number;
}

export type RequirementState = 'pass' | 'fail' | 'expected-failure' | 'unexpected-pass' | 'unsupported' | 'not covered';

export interface RequirementVerdict {
  id: string;
  level: Level;
  document: string;
  section: string;
  state: RequirementState;
  cases: string[];
  /** Why it is expected to fail, from the expected-failures file. */
  expectedReason: string | null;
}

export interface RunVerdict {
  ok: boolean;
  requirements: RequirementVerdict[];
  cases: CaseResult[];
  /** Unexpected failures of MUST/MUST NOT requirements, and stale expected failures. */
  problems: string[];
  /** SHOULD/MAY failures: warnings. */
  warnings: string[];
}

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
 * Reads an expected-failures file: one requirement ID a line, then `#` and the reason,
 * which is mandatory. Blank lines and lines starting with `#` are ignored.
 */
export function readExpectedFailures(file: string): Map<string, string> {
  const out = new Map<string, string>();
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const m = /^([A-Z]+-[A-Z0-9]{1,8}-[1-9][0-9]*)\s*#\s*(\S.*)$/.exec(line);
      if (!m) throw new Error(`${file}:${i + 1}: expected "REQUIREMENT-ID  # reason", got ${JSON.stringify(line)}`);
      out.set(m[1]!, m[2]!);
    });
  return out;
}

const strong = (l: Level) => l === 'MUST' || l === 'MUST NOT';

/** Combines case results into requirement verdicts and the run verdict. */
export function judge(cases: CaseResult[], registry: Requirement[], expected: Map<string, string>): RunVerdict {
  const byId = new Map<string, CaseResult[]>();
  for (const c of cases) for (const id of c.requirements) byId.set(id, [...(byId.get(id) ?? []), c]);
  const problems: string[] = [];
  const warnings: string[] = [];
  const known = new Set(registry.map((r) => r.id));
  for (const id of byId.keys()) if (!known.has(id)) problems.push(`cases cite ${id}, which the specification does not define`);
  for (const id of expected.keys()) if (!known.has(id)) problems.push(`the expected-failures file lists ${id}, which the specification does not define`);

  const requirements = registry.map((r): RequirementVerdict => {
    const cs = byId.get(r.id) ?? [];
    const ran = cs.filter((c) => c.state === 'passed' || c.state === 'failed');
    const failed = ran.filter((c) => c.state === 'failed');
    let state: RequirementState;
    if (ran.length === 0) state = cs.some((c) => c.state === 'unsupported') ? 'unsupported' : 'not covered';
    else if (failed.length) state = expected.has(r.id) ? 'expected-failure' : 'fail';
    else state = expected.has(r.id) ? 'unexpected-pass' : 'pass';
    const label = `${r.id} (${r.level})`;
    if (state === 'fail') {
      const why = failed.map((c) => `${c.name}: ${c.message ?? 'failed'}`).join('; ');
      (strong(r.level) ? problems : warnings).push(`${label} fails: ${why}`);
    }
    if (state === 'unexpected-pass') problems.push(`${label} is listed as an expected failure but passes: remove it from the list`);
    return {
      id: r.id,
      level: r.level,
      document: r.document,
      section: r.section,
      state,
      cases: cs.map((c) => c.name),
      expectedReason: expected.get(r.id) ?? null,
    };
  });
  for (const c of cases) {
    if (c.state === 'failed' && c.requirements.length === 0) problems.push(`${c.name} fails and cites no requirement: ${c.message}`);
  }
  return { ok: problems.length === 0, requirements, cases, problems, warnings };
}
