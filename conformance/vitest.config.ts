import { defineConfig } from 'vitest/config';

// The conformance suite: cases run against the implementation(s) named in the environment
// (see conformance/context.ts); `npm run conformance` starts it through conformance/cli.ts.
export default defineConfig({
  test: {
    root: new URL('..', import.meta.url).pathname,
    include: ['conformance/cases/**/*.case.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
  },
});
