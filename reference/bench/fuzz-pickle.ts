/**
 * `npm run fuzz [-- --inputs N --seed S]`: the pickle decoder's fuzzing at length. Runs N inputs
 * (default 1 000 000) made from seed S (default: random, printed), of the kinds
 * reference/test/pickle-fuzz.test.ts uses: random bytes; mutated real pickles, under the default
 * limits or under small ones with persistent ids accepted; structured hostile pickles, under
 * small limits or under the default depth and integer limits. Checks each as that test does
 * (reference/test/pickle-check.ts), and reports the inputs run, how many decoded, the refusals by
 * error code, the slowest input (each candidate decoded twice, the lower time kept), the most
 * heap and RSS seen, and every crash (an error that is not a ZrsError, a decoded value beyond the
 * limits, a walker failing) with the input in hex to reproduce it. Exits 1 after a crash.
 * @module
 */
import { parseArgs } from 'node:util';
import { PICKLE_LIMITS, type PickleLimits } from '../pickle/limits.ts';
import { checkPickle } from '../test/pickle-check.ts';
import { hostile, mutate, randomBytes, type Rand, seedCorpus, seeded } from '../test/pickle-inputs.ts';

const { values: opts } = parseArgs({
  options: {
    inputs: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
  },
});
const INPUTS = Number(opts.inputs);
const SEED = opts.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(opts.seed);
if (!Number.isInteger(INPUTS) || INPUTS < 1 || !Number.isInteger(SEED)) {
  console.error('fuzz-pickle: --inputs takes a positive integer, --seed an integer');
  process.exit(2);
}

/** Small limits, so that structured inputs reach them cheaply. */
const SMALL: PickleLimits = { maxItems: 4000, maxDepth: 64, maxIntBytes: 128, maxExpansion: 20_000 };
/** The default depth and integer limits, with small item and expansion limits. */
const DEEP: PickleLimits = { ...SMALL, maxDepth: PICKLE_LIMITS.maxDepth, maxIntBytes: PICKLE_LIMITS.maxIntBytes };
/** Crashes shown in full; the rest are only counted. */
const SHOWN = 20;
const MB = 1 << 20;

type Kind = 'random' | 'mutated' | 'mutated-small' | 'hostile' | 'hostile-deep';
const corpus = seedCorpus();

function input(rand: Rand): { kind: Kind; bytes: Buffer; limits: PickleLimits; persistent?: boolean } {
  const r = rand(100);
  if (r < 30) return { kind: 'random', bytes: randomBytes(rand, 512), limits: PICKLE_LIMITS };
  if (r < 65) {
    const bytes = mutate(corpus[rand(corpus.length)]!, rand, corpus);
    return r < 50 ? { kind: 'mutated', bytes, limits: PICKLE_LIMITS } : { kind: 'mutated-small', bytes, limits: SMALL, persistent: true };
  }
  if (r < 97) return { kind: 'hostile', bytes: hostile(rand, SMALL), limits: SMALL };
  return { kind: 'hostile-deep', bytes: hostile(rand, DEEP), limits: DEEP };
}

const hex = (b: Buffer, max: number) => (b.length <= max ? b.toString('hex') : `${b.subarray(0, max).toString('hex')}… (${b.length} bytes)`);

const outcomes = new Map<string, number>();
const kinds = new Map<Kind, number>();
const crashes: string[] = [];
let crashCount = 0;
let slowest: { ms: number; kind: string; bytes: Buffer; outcome: string } = { ms: 0, kind: '', bytes: Buffer.alloc(0), outcome: '' };
let maxHeap = 0;
let maxRss = 0;
const rand = seeded(SEED);
const start = performance.now();

console.log(`fuzz-pickle: seed ${SEED}, ${INPUTS} inputs, corpus of ${corpus.length} real pickles`);
for (let i = 1; i <= INPUTS; i++) {
  const { kind, bytes, limits, persistent } = input(rand);
  const r = checkPickle(bytes, limits, persistent);
  kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
  if (r.ms > slowest.ms) {
    // Timed again, the lower time kept: a GC pause or the scheduler is not the input's doing.
    const ms = Math.min(r.ms, checkPickle(bytes, limits, persistent).ms);
    if (ms > slowest.ms) slowest = { ms, kind, bytes, outcome: r.outcome };
  }
  if (r.problem) {
    crashCount++;
    if (crashes.length < SHOWN) crashes.push(`input #${i} (${kind}): ${r.problem}\n    reproducer: ${hex(bytes, 16_384)}`);
  }
  if (i % 1000 === 0) {
    const m = process.memoryUsage();
    maxHeap = Math.max(maxHeap, m.heapUsed);
    maxRss = Math.max(maxRss, m.rss);
  }
  if (i % 100_000 === 0) console.error(`  ${i} inputs, ${((performance.now() - start) / 1000).toFixed(0)} s, ${crashCount} crashes`);
}

const seconds = (performance.now() - start) / 1000;
const decoded = outcomes.get('decoded') ?? 0;
const refused = [...outcomes].filter(([o]) => o !== 'decoded' && o !== 'crash').sort(([a], [b]) => a.localeCompare(b));
const pad = (n: number) => String(n).padStart(9);
console.log(`inputs run:       ${pad(INPUTS)} in ${seconds.toFixed(1)} s (${Math.round(INPUTS / seconds)} per second)`);
console.log(`  by kind:        ${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}`);
console.log(`decoded:          ${pad(decoded)}`);
console.log(`refused, by code: ${pad(INPUTS - decoded - (outcomes.get('crash') ?? 0))}`);
for (const [code, n] of refused) console.log(`  ${code.padEnd(26)}${pad(n)}`);
console.log(`slowest input:    ${slowest.ms.toFixed(1)} ms (${slowest.kind}, ${slowest.bytes.length} bytes, ${slowest.outcome}): ${hex(slowest.bytes, 256)}`);
console.log(`max heap used:    ${(maxHeap / MB).toFixed(0)} MB, max RSS ${(maxRss / MB).toFixed(0)} MB (sampled every 1000 inputs); peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
console.log(`crashes:          ${crashCount === 0 ? 'none' : crashCount}`);
for (const c of crashes) console.log(`  ${c}`);
process.exit(crashCount === 0 ? 0 : 1);
