/**
 * A vitest reporter that collects each case's outcome, the requirements it cites, its checks
 * and the roles it judges (conformance/checks.ts), for the conformance verdict. Cases skipped
 * with a note starting `unsupported:` count as unsupported, `not applicable:` as not applicable.
 * @module
 */
import path from 'node:path';
import type { Reporter, TestModule } from 'vitest/node';
import type { CaseResult } from './verdict.ts';
import { citedRequirements } from './verdict.ts';

export class CaseCollector implements Reporter {
  readonly cases: CaseResult[] = [];

  constructor(private readonly root: string) {}

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    for (const m of modules) {
      for (const test of m.children.allTests()) {
        const r = test.result();
        const note = r.state === 'skipped' ? (r.note ?? null) : null;
        const state =
          r.state === 'passed'
            ? 'passed'
            : r.state === 'failed'
              ? 'failed'
              : note?.startsWith('unsupported:')
                ? 'unsupported'
                : note?.startsWith('not applicable:')
                  ? 'not-applicable'
                  : 'skipped';
        const message = r.state === 'failed' ? r.errors.map((e) => (e.name && e.name !== 'Error' && e.name !== 'AssertionError' ? `${e.name}: ${e.message}` : e.message)).join('\n') : note;
        const meta = test.meta();
        this.cases.push({
          name: test.fullName,
          file: path.relative(this.root, m.moduleId),
          state,
          requirements: citedRequirements(test.fullName),
          message,
          durationMs: test.diagnostic()?.duration ?? 0,
          checks: meta.checks ?? [],
          subjects: meta.subjects ?? [],
          ...(meta.runs !== undefined ? { runs: meta.runs } : {}),
          ...(meta.nodes?.length ? { nodes: meta.nodes } : {}),
        });
      }
    }
  }
}
