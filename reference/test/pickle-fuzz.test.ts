// Fuzzing the pickle decoder (wire-protocol.md §6.4, §6.7): random bytes, mutated real pickles
// and structured hostile pickles each decode or fail with a ZrsError, never anything else, in
// under 100 ms; what decodes stays within the limits, and the encoders and JSON views walk it
// safely (pickle-check.ts). Each property prints its fast-check seed in its title; `npm run fuzz`
// runs the same kinds of input at length.
import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { LimitCode, PICKLE_LIMITS, type PickleLimits } from '../pickle/limits.ts';
import { checkPickle } from './pickle-check.ts';
import { hostile, mutate, randomBytes, seedCorpus, seeded } from './pickle-inputs.ts';

/** Small limits, so that structured inputs reach them cheaply. */
const SMALL: PickleLimits = { maxItems: 4000, maxDepth: 64, maxIntBytes: 128, maxExpansion: 20_000 };
const SLOW_MS = 100;
const corpus = seedCorpus();

/** Checks one input and returns its outcome; a slow input is timed again once, so that a GC pause or a busy machine does not count. */
function expectSafe(bytes: Uint8Array, limits: PickleLimits, persistent = false): string {
  let r = checkPickle(bytes, limits, persistent);
  if (r.ms >= SLOW_MS) r = checkPickle(bytes, limits, persistent);
  const input = bytes.length <= 2048 ? Buffer.from(bytes).toString('hex') : `${bytes.length} bytes`;
  expect(r.problem, input).toBeUndefined();
  expect(r.ms, input).toBeLessThan(SLOW_MS);
  return r.outcome;
}

describe('pickle decoder fuzzing', () => {
  it('[WIRE-PICKLE-9] the corpus of real pickles decodes, or fails only with ZrsErrors', () => {
    expect(corpus.length).toBeGreaterThan(100);
    const outcomes = corpus.map((b) => expectSafe(b, PICKLE_LIMITS));
    // Record data is two pickles in a row: decoded alone, the first leaves trailing bytes. The
    // few frames that are not pickles at all are small blob chunks.
    const pickles = outcomes.filter((o) => o === 'decoded' || o === 'ERR_PICKLE_TRAILING');
    expect(pickles.length / corpus.length).toBeGreaterThan(0.95);
  });

  test.prop([fc.uint8Array({ maxLength: 512 })], { numRuns: 3000 })('[WIRE-PICKLE-9] random bytes', (bytes) => {
    expectSafe(bytes, PICKLE_LIMITS);
  });

  test.prop([fc.integer()], { numRuns: 2000 })('[WIRE-PICKLE-9] random opcode sequences', (seed) => {
    const bytes = randomBytes(seeded(seed), 400);
    expectSafe(bytes, PICKLE_LIMITS);
    expectSafe(bytes, SMALL);
  });

  test.prop([fc.integer()], { numRuns: 3000 })('[WIRE-PICKLE-9] real pickles with bytes changed, inserted, deleted or repeated', (seed) => {
    const rand = seeded(seed);
    const bytes = mutate(corpus[rand(corpus.length)]!, rand, corpus);
    expectSafe(bytes, PICKLE_LIMITS);
    expectSafe(bytes, SMALL, true);
  });

  it.each([
    ['a UNICODE escape beyond U+10FFFF', 'V\\UFFFFFFFF\n.', 'ERR_PICKLE_VALUE'],
    ['a UNICODE escape just beyond U+10FFFF', 'V\\U00110000\n.', 'ERR_PICKLE_VALUE'],
  ])('[WIRE-PICKLE-9] refuses an input fuzzing found: %s', (_name, input, outcome) => {
    expect(expectSafe(Buffer.from(input, 'latin1'), PICKLE_LIMITS)).toBe(outcome);
  });

  const seen = new Set<string>();
  test.prop([fc.integer()], { numRuns: 1500 })(
    '[WIRE-PICKLE-15] [WIRE-PICKLE-16] [WIRE-PICKLE-17] [WIRE-PICKLE-18] [WIRE-PICKLE-19] hostile pickles just under, at and over each limit',
    (seed) => {
      seen.add(expectSafe(hostile(seeded(seed), SMALL), SMALL));
    },
  );

  it('the hostile pickles met every limit, and some decoded', () => {
    for (const code of [...Object.values(LimitCode), 'decoded']) expect(seen, code).toContain(code);
  });
});
