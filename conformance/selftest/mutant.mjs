#!/usr/bin/env node
// Runs the reference `zrs` command line with one mutation applied (see mutants.ts):
// node mutant.mjs MUTATION zrs-arguments...
import { register } from 'tsx/esm/api';

register();
const [name, ...args] = process.argv.slice(2);
const { MUTATIONS } = await import('./mutants.ts');
const mutation = MUTATIONS[name];
if (!mutation) {
  console.error(`mutant: unknown mutation ${JSON.stringify(name)}; known: ${Object.keys(MUTATIONS).join(', ')}`);
  process.exit(2);
}
mutation.apply();
const { main } = await import('../../reference/cli/main.ts');
process.exit(await main(args));
