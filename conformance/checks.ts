/**
 * Checks that blame one requirement each. A case may cite several requirements; each is
 * proved by its own `check`, so that a failure names only the requirement actually broken,
 * and against the implementation that broke it (the one playing the check's role).
 *
 * A check records its outcome in the running case's metadata, where the collector reads it:
 *
 * ```ts
 * await check('WIRE-HS-1', async () => expect(await handshake()).toEqual(...));
 * check('FS-MAGIC-6', () => expect(magicOf(fs)).toBe('FS30'), 'secondary');
 * ```
 *
 * The role a check judges is, in order: the one it names; the role the requirement binds in
 * the registry, when that is `primary` or `secondary` (`chained` counts as `secondary`); the
 * one role the case declared with `requires`. A failure outside every check blames the case's
 * requirement when it cites exactly one, and is a case error otherwise. A check may blame a
 * requirement the case does not cite; it proves only those the case cites.
 * @module
 */
import { TestRunner } from 'vitest';
import { citedRequirements } from './report/verdict.ts';

/** The role whose implementation a check judges. */
export type Subject = 'primary' | 'secondary';

/** One check's outcome, as the collector reads it. */
export interface CheckRecord {
  ids: string[];
  /** The role named by the check; null when the requirement or the case decides. */
  subject: Subject | null;
  ok: boolean;
  message?: string;
}

/** A started node, kept with a failing case so that reports show what it said. */
export interface NodeLog {
  role: Subject;
  implementation: string;
  argv: string[];
  exit: string | null;
  stderrTail: string;
}

declare module 'vitest' {
  interface TaskMeta {
    /** Runs of a property case (set by the case). */
    runs?: number;
    /** Checks made by the case, in order. */
    checks?: CheckRecord[];
    /** Roles whose implementation the case judges (from `requires`). */
    subjects?: Subject[];
    /** The nodes of a failing case, with the tail of their standard error. */
    nodes?: NodeLog[];
  }
}

/** A requirement proved broken by a check; its message starts with the IDs. */
export class RequirementViolation extends Error {
  override name = 'RequirementViolation';
  constructor(
    readonly ids: string[],
    cause: unknown,
  ) {
    super(`[${ids.join('] [')}] ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

/**
 * A fault of the harness or of the case's set-up, not of the implementation: it blames no
 * requirement and makes the run inconclusive.
 */
export class HarnessError extends Error {
  override name = 'HarnessError';
}

function current() {
  const test = TestRunner.getCurrentTest();
  if (!test) throw new HarnessError('check() called outside a running case');
  return test;
}

function meta() {
  return current().meta;
}

/** The requirements the running case cites. */
export function citedByCase(): string[] {
  return citedRequirements(current().name);
}

/** Records that the running case judges the implementation playing `role`. */
export function declareSubject(role: Subject): void {
  const m = meta();
  m.subjects = [...new Set([...(m.subjects ?? []), role])];
}

/** Records a check: a failure whatever it blames; a pass only for the requirements the case cites. */
function record(ids: string[], subject: Subject | null, error?: unknown): void {
  const test = current();
  const checks = (test.meta.checks ??= []);
  if (error !== undefined) return void checks.push({ ids, subject, ok: false, message: error instanceof Error ? error.message : String(error) });
  const cited = citedRequirements(test.name);
  const proved = ids.filter((id) => cited.includes(id));
  if (proved.length) checks.push({ ids: proved, subject, ok: true });
}

/**
 * Runs `fn`, an assertion (or several) that proves requirement `id` (or each of a few IDs that
 * the same observation proves); records the outcome and, on failure, throws a
 * {@link RequirementViolation} naming them. A {@link HarnessError}, or the violation of a check
 * nested inside, passes through unrecorded.
 */
export function check<T>(id: string | string[], fn: () => Promise<T>, subject?: Subject): Promise<T>;
export function check<T>(id: string | string[], fn: () => T, subject?: Subject): T;
export function check<T>(id: string | string[], fn: () => T | Promise<T>, subject?: Subject): T | Promise<T> {
  const ids = Array.isArray(id) ? id : [id];
  const fail = (e: unknown): never => {
    if (e instanceof HarnessError || e instanceof RequirementViolation) throw e; // not this check's, or already recorded
    record(ids, subject ?? null, e);
    throw new RequirementViolation(ids, e);
  };
  let out: T | Promise<T>;
  try {
    out = fn();
  } catch (e) {
    return fail(e);
  }
  if (out instanceof Promise) {
    return out.then((v) => (record(ids, subject ?? null), v), fail);
  }
  record(ids, subject ?? null);
  return out;
}

/**
 * Runs `steps` (checks that do not depend on each other) one after another, each to the end
 * even when an earlier one failed, then rethrows the first failure: so that each broken
 * requirement among them is blamed, not only the first.
 */
export async function independently(...steps: (() => unknown)[]): Promise<void> {
  let first: unknown = null;
  for (const step of steps) {
    try {
      await step();
    } catch (e) {
      if (!(e instanceof RequirementViolation)) throw e;
      first ??= e;
    }
  }
  if (first) throw first;
}
