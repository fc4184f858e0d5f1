#!/usr/bin/env node
// The `zrs` executable: runs the TypeScript command line through tsx, so it works right
// after `npm ci` without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
const status = await main(process.argv.slice(2));
process.exit(status);
