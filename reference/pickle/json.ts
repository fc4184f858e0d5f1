/**
 * A JSON view of pickle values, for tools that show them to people and machines. Plain
 * data maps to plain JSON; everything else is tagged with a `$` key: `{"$bytes": hex}`,
 * `{"$tuple": [...]}`, `{"$dict": [[k, v], ...]}` for a dict with a key that is not text,
 * `{"$int": "digits"}` beyond 2^53, `{"$float": "inf"}`, and inert objects as
 * `{"$global": "module.name"}`, `{"$reduce": [callable, args]}`, `{"$build": [object, state]}`,
 * `{"$new": [cls, args]}`.
 * @module
 */
import { ZrsError } from '../errors.ts';
import { LimitCode, LimitRequirement, PICKLE_LIMITS } from './limits.ts';
import { type PickleValue, PyBuild, PyDict, PyGlobal, PyInst, PyNewObj, PyObj, PyReduce, PyTuple } from './values.ts';

/** JSON-compatible data. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * Converts a pickle value into its JSON view. Recursive: a value nested deeper than the
 * decoder's default limit (`PICKLE_LIMITS.maxDepth`) is refused (`ERR_PICKLE_TOO_DEEP`) rather
 * than overflow the stack; the decoder's limits also bound the work (its expansion limit).
 */
export function pickleToJson(v: PickleValue): Json {
  return toJson(v, 0);
}

function toJson(v: PickleValue, depth: number): Json {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : { $int: v.toString() };
  if (typeof v === 'number') return Number.isFinite(v) ? v : { $float: String(v) };
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('hex') };
  if (v instanceof PyGlobal) return { $global: `${v.module}.${v.name}` };
  const d = deeper(depth);
  const j = (x: PickleValue) => toJson(x, d);
  if (Array.isArray(v)) return v.map(j);
  if (v instanceof PyTuple) return { $tuple: v.items.map(j) };
  if (v instanceof PyDict) {
    if (v.entries.every(([k]) => typeof k === 'string' && !k.startsWith('$'))) {
      return Object.fromEntries(v.entries.map(([k, x]) => [k as string, j(x)]));
    }
    return { $dict: v.entries.map(([k, x]) => [j(k), j(x)]) };
  }
  if (v instanceof PyReduce) return { $reduce: [j(v.callable), j(v.args)] };
  if (v instanceof PyBuild) return { $build: [j(v.object), j(v.state)] };
  if (v instanceof PyNewObj) return { $new: [j(v.cls), v.args.map(j)] };
  if (v instanceof PyInst) return { $inst: [`${v.module}.${v.name}`, v.args.map(j)] };
  if (v instanceof PyObj) return { $obj: [j(v.cls), v.args.map(j)] };
  return null;
}

/** The depth of the parts of a list, tuple, dict or object at `depth`; refused beyond the limit. */
function deeper(depth: number): number {
  if (depth >= PICKLE_LIMITS.maxDepth) {
    throw new ZrsError(LimitCode.depth, `value nested deeper than ${PICKLE_LIMITS.maxDepth} levels`, LimitRequirement.depth);
  }
  return depth + 1;
}

/**
 * The rendering of extension values in the manifests of the interop files made with real ZODB
 * (`fixtures/real/*.json`): `{"dict": [[k, v], ...]}`, `{"list": [...]}` for lists and tuples,
 * `{"bytes": hex}`, integers as numbers.
 */
export function pickleToManifestJson(v: PickleValue): unknown {
  return toManifest(v, 0);
}

function toManifest(v: PickleValue, depth: number): unknown {
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
  if (typeof v === 'bigint') return Number(v);
  if (!(v instanceof PyDict || v instanceof PyTuple || Array.isArray(v))) return v;
  const d = deeper(depth);
  const j = (x: PickleValue) => toManifest(x, d);
  if (v instanceof PyDict) return { dict: v.entries.map(([k, x]) => [j(k), j(x)]) };
  return { list: (Array.isArray(v) ? v : v.items).map(j) };
}
