// `npm run conformance` / `zrs-conformance`: the conformance suite is not built yet (see
// the harness issue). It says so and fails, so that nobody mistakes it for a pass.
console.error(
  'zrs-conformance: the conformance harness is not built yet; no implementation has been judged.\n' +
    'Run `npm test` for the specification and reference tests that exist today.',
);
process.exitCode = 2;
