/**
 * What a secondary stores of an extension dict whose values name Python globals
 * (wire-protocol §6.5, WIRE-EXT-1): such a value is inert here, but a Python program that
 * reads the stored extension later (ZODB's undo log, a transaction iterator) imports the
 * global and calls what the pickle says.
 * @module
 */
import { PyBuild, PyDict, PyGlobal, PyInst, PyReduce, PyTuple, type PickleValue } from '../pickle/values.ts';

/** `keep` stores the extension as received (zc.zrs); `strip` drops the entries that name a global; `refuse` refuses the transaction. */
export type ExtensionPolicy = 'keep' | 'strip' | 'refuse';

export const EXTENSION_POLICIES: readonly ExtensionPolicy[] = ['keep', 'strip', 'refuse'];

/**
 * The first global `v` names, as `module.name`; `an object` for an object node that names
 * none; null when it is plain data. Shared values are looked at once.
 */
export function namedGlobal(v: PickleValue): string | null {
  const seen = new Set<object>();
  const stack: PickleValue[] = [v];
  let object = false;
  while (stack.length) {
    const x = stack.pop()!;
    if (x === null || typeof x !== 'object' || x instanceof Uint8Array || seen.has(x)) continue;
    seen.add(x);
    if (x instanceof PyGlobal || x instanceof PyInst) return `${x.module}.${x.name}`;
    if (Array.isArray(x)) for (const item of x) stack.push(item);
    else if (x instanceof PyTuple) for (const item of x.items) stack.push(item);
    else if (x instanceof PyDict) for (const [k, val] of x.entries) stack.push(k, val);
    else {
      object = true;
      if (x instanceof PyReduce) stack.push(x.args, x.callable);
      else if (x instanceof PyBuild) stack.push(x.state, x.object);
      else {
        for (const a of x.args) stack.push(a);
        stack.push(x.cls);
      }
    }
  }
  return object ? 'an object' : null;
}

/** The entries of `extension` that name a global: their key (as text) and the global. */
export function globalEntries(extension: PyDict): { key: string; global: string }[] {
  const out: { key: string; global: string }[] = [];
  for (const [k, v] of extension.entries) {
    const g = namedGlobal(k) ?? namedGlobal(v);
    if (g) out.push({ key: typeof k === 'string' ? k : String(typeof k === 'bigint' ? k : '<key>'), global: g });
  }
  return out;
}

/** `extension` without the entries that name a global. */
export function withoutGlobals(extension: PyDict): PyDict {
  return new PyDict(extension.entries.filter(([k, v]) => namedGlobal(k) === null && namedGlobal(v) === null));
}
