/**
 * What fuzzing asks of one input, shared by `pickle-fuzz.test.ts` and `npm run fuzz`: the
 * decoder returns a value or throws a ZrsError, and nothing else; a value it returns stays
 * within its limits (measured here independently, by walking the value); and the code that
 * walks decoded values (encoders, JSON views, the message decoder) throws nothing but ZrsErrors.
 */
import { ZrsError } from '../errors.ts';
import { decodeMessage } from '../messages.ts';
import { loadPickle } from '../pickle/decoder.ts';
import { dumpExtension, dumpPickle } from '../pickle/encoder.ts';
import { pickleToJson, pickleToManifestJson } from '../pickle/json.ts';
import { type PickleLimits, scalarSize } from '../pickle/limits.ts';
import { type PickleValue, PyBuild, PyDict, PyGlobal, PyInst, PyNewObj, PyObj, PyReduce, PyTuple } from '../pickle/values.ts';

/** The result of one input. */
export interface Checked {
  /** `decoded`, or the code of the ZrsError the decoder threw. */
  outcome: string;
  /** Milliseconds the decoder took. */
  ms: number;
  /** What went wrong, when something did. */
  problem?: string;
}

/** Decoded values of at most this logical size are also walked by the encoders and JSON views. */
const WALK_LIMIT = 200_000;

/**
 * Decodes `bytes` under `limits` and checks the outcome as the module says. With `persistent`,
 * persistent ids are accepted and kept, as the reference does to find an object's references.
 */
export function checkPickle(bytes: Uint8Array, limits: PickleLimits, persistent = false): Checked {
  const start = performance.now();
  let value: PickleValue;
  try {
    value = loadPickle(bytes, persistent ? { ...limits, persistentLoad: (pid) => pid } : limits);
  } catch (e) {
    const ms = performance.now() - start;
    if (e instanceof ZrsError) return { outcome: e.code, ms, ...walkProblem('decodeMessage', () => decodeMessage(bytes)) };
    return { outcome: 'crash', ms, problem: `decoder threw ${describe(e)}` };
  }
  const ms = performance.now() - start;
  // Every value created costs at least one byte of input and its text, bytes or integer at
  // least as many; what memo references add is bounded by the expansion limit.
  const bound = bytes.length + limits.maxExpansion;
  const m = measure(value, bound);
  const problem =
    m.size > bound
      ? `logical size above ${bound}`
      : m.depth > limits.maxDepth
        ? `depth ${m.depth} above ${limits.maxDepth}`
        : m.containers > limits.maxItems
          ? `${m.containers} containers, above ${limits.maxItems}`
          : m.size <= WALK_LIMIT
            ? walkers(value, bytes)
            : undefined;
  return problem ? { outcome: 'decoded', ms, problem } : { outcome: 'decoded', ms };
}

function walkers(v: PickleValue, bytes: Uint8Array): string | undefined {
  const walks: [string, () => unknown][] = [
    ['dumpPickle', () => dumpPickle(v)],
    ['dumpExtension', () => dumpExtension(new PyDict([['v', v]]))],
    ['pickleToJson', () => JSON.stringify(pickleToJson(v))],
    ['pickleToManifestJson', () => pickleToManifestJson(v)],
    ['decodeMessage', () => decodeMessage(bytes)],
  ];
  for (const [name, walk] of walks) {
    const problem = walkProblem(name, walk).problem;
    if (problem) return problem;
  }
  return undefined;
}

function walkProblem(name: string, walk: () => unknown): { problem?: string } {
  try {
    walk();
  } catch (e) {
    if (!(e instanceof ZrsError)) return { problem: `${name} threw ${describe(e)}` };
  }
  return {};
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message.slice(0, 200)}` : String(e);
}

/** The parts of a list, tuple, dict or object, or null for any other value. */
function partsOf(v: PickleValue): PickleValue[] | null {
  if (Array.isArray(v)) return v;
  if (v instanceof PyTuple) return v.items;
  if (v instanceof PyDict) return v.entries.flat();
  if (v instanceof PyReduce) return [v.callable, v.args];
  if (v instanceof PyBuild) return [v.object, v.state];
  if (v instanceof PyInst) return v.args;
  if (v instanceof PyObj || v instanceof PyNewObj) return [v.cls, ...v.args];
  return null;
}

/**
 * Logical size (as wire-protocol.md §6.7 defines it: shared parts counted each time), depth
 * and number of distinct containers of `v`, walking it part by part without recursion. The walk
 * stops once the size passes `cap`.
 */
function measure(v: PickleValue, cap: number): { size: number; depth: number; containers: number } {
  let size = 0;
  let depth = 0;
  const containers = new Set<object>();
  const todo: [PickleValue, number][] = [[v, 0]];
  while (todo.length && size <= cap) {
    const [x, level] = todo.pop()!;
    const parts = partsOf(x);
    if (!parts) {
      size += x instanceof PyGlobal ? 1 + x.module.length + x.name.length : scalarSize(x as string | Uint8Array | bigint | number | boolean | null);
      continue;
    }
    size += 1;
    depth = Math.max(depth, level + 1);
    containers.add(x as object);
    for (const p of parts) todo.push([p, level + 1]);
  }
  return { size, depth, containers: containers.size };
}
