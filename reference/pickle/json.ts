/**
 * A JSON view of pickle values, for tools that show them to people and machines. Plain
 * data maps to plain JSON; everything else is tagged with a `$` key: `{"$bytes": hex}`,
 * `{"$tuple": [...]}`, `{"$dict": [[k, v], ...]}` for a dict with a key that is not text,
 * `{"$int": "digits"}` beyond 2^53, `{"$float": "inf"}`, and inert objects as
 * `{"$global": "module.name"}`, `{"$reduce": [callable, args]}`, `{"$build": [object, state]}`,
 * `{"$new": [cls, args]}`.
 * @module
 */
import { type PickleValue, PyBuild, PyDict, PyGlobal, PyInst, PyNewObj, PyObj, PyReduce, PyTuple } from './values.ts';

/** JSON-compatible data. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Converts a pickle value into its JSON view (iteratively safe up to the encoder's depth). */
export function pickleToJson(v: PickleValue): Json {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : { $int: v.toString() };
  if (typeof v === 'number') return Number.isFinite(v) ? v : { $float: String(v) };
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(pickleToJson);
  if (v instanceof PyTuple) return { $tuple: v.items.map(pickleToJson) };
  if (v instanceof PyDict) {
    if (v.entries.every(([k]) => typeof k === 'string' && !k.startsWith('$'))) {
      return Object.fromEntries(v.entries.map(([k, x]) => [k as string, pickleToJson(x)]));
    }
    return { $dict: v.entries.map(([k, x]) => [pickleToJson(k), pickleToJson(x)]) };
  }
  if (v instanceof PyGlobal) return { $global: `${v.module}.${v.name}` };
  if (v instanceof PyReduce) return { $reduce: [pickleToJson(v.callable), pickleToJson(v.args)] };
  if (v instanceof PyBuild) return { $build: [pickleToJson(v.object), pickleToJson(v.state)] };
  if (v instanceof PyNewObj) return { $new: [pickleToJson(v.cls), v.args.map(pickleToJson)] };
  if (v instanceof PyInst) return { $inst: [`${v.module}.${v.name}`, v.args.map(pickleToJson)] };
  if (v instanceof PyObj) return { $obj: [pickleToJson(v.cls), v.args.map(pickleToJson)] };
  return null;
}

/**
 * The rendering of extension values in the manifests of the interop files made with real ZODB
 * (`fixtures/real/*.json`): `{"dict": [[k, v], ...]}`, `{"list": [...]}` for lists and tuples,
 * `{"bytes": hex}`, integers as numbers.
 */
export function pickleToManifestJson(v: PickleValue): unknown {
  if (v instanceof PyDict) return { dict: v.entries.map(([k, x]) => [pickleToManifestJson(k), pickleToManifestJson(x)]) };
  if (Array.isArray(v)) return { list: v.map(pickleToManifestJson) };
  if (v instanceof PyTuple) return { list: v.items.map(pickleToManifestJson) };
  if (v instanceof Uint8Array) return { bytes: Buffer.from(v).toString('hex') };
  if (typeof v === 'bigint') return Number(v);
  return v;
}
