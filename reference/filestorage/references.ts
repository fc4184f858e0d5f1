/**
 * The objects an object record refers to, found the way ZODB's `referencesf` finds them.
 *
 * The data of a ZODB data record is two pickles written by one pickler: the class metadata,
 * then the object's state. Because they share the pickler's memo, the state pickle may fetch
 * (`BINGET`) values that only the first one stored, typically the class itself. A reference
 * to another persistent object is a *persistent id* (`BINPERSID`, or `PERSID` at protocol 0)
 * whose value takes one of the forms ZODB's `ObjectWriter.persistent_id` writes:
 *
 * - `oid` (bytes): an object whose class is not recorded with the reference;
 * - `(oid, class metadata)`: the usual form;
 * - `['w', (oid,)]` or `['w', (oid, database)]`: a weak reference;
 * - `['m', (database, oid, class metadata)]`: a reference into another database;
 * - `['n', (database, oid)]`: the same, without class metadata.
 *
 * Like `referencesf`, {@link referencedOids} keeps only the first two (ordinary references
 * within the database): weak and cross-database references never keep an object alive
 * through pack. {@link persistentReferences} reports every form.
 *
 * Everything is decoded with the safe decoder: nothing is imported or called.
 * @module
 */
import { ZrsError } from '../errors.ts';
import { readPickle } from '../pickle/decoder.ts';
import { Op } from '../pickle/opcodes.ts';
import { type PickleValue, PyTuple } from '../pickle/values.ts';

/** One persistent id of a record, classified. */
export type PersistentReference =
  /** An ordinary reference: `oid` or `(oid, class)`. */
  | { kind: 'oid'; oid: Buffer; pid: PickleValue }
  /** `['w', (oid,)]` or `['w', (oid, database)]`. */
  | { kind: 'weak'; oid: Buffer | null; database: string | null; pid: PickleValue }
  /** `['m', (database, oid, class)]` or `['n', (database, oid)]`. */
  | { kind: 'cross-database'; oid: Buffer | null; database: string | null; pid: PickleValue }
  /** Any other list form (ZODB's `referencesf` skips every list). */
  | { kind: 'other'; pid: PickleValue };

/**
 * Every persistent id in record data, in pickle order: those of the class pickle, then
 * those of the state pickle, decoded with a memo shared by the two as ZODB's unpickler
 * shares it. Throws a `PickleError` when the data is not two pickles.
 */
export function persistentIds(data: Uint8Array): PickleValue[] {
  const keep = (pid: PickleValue) => pid;
  // Where the class pickle ends (its STOP is the byte before `end`).
  const { end } = readPickle(data, 0, { persistentLoad: keep });
  // The decoder keeps a memo per pickle. To decode the state pickle with the class pickle's
  // memo, decode both as one stream: the class pickle's STOP becomes a POP, which drops the
  // class metadata from the stack and lets decoding go on into the state pickle (a PROTO in
  // the middle of a stream is accepted). Offsets are unchanged.
  const joined = Buffer.from(data);
  joined[end - 1] = Op.POP;
  const pids: PickleValue[] = [];
  readPickle(joined, 0, {
    persistentLoad: (pid) => {
      pids.push(pid);
      return pid;
    },
  });
  return pids;
}

/** Bytes of an oid as a pid holds it: bytes, or (from Python 2 pickles) ASCII text. */
function oidBytes(v: PickleValue | undefined): Buffer | null {
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (typeof v === 'string' && /^[\x00-\xff]*$/.test(v)) return Buffer.from(v, 'latin1');
  return null;
}

function text(v: PickleValue | undefined): string | null {
  return typeof v === 'string' ? v : null;
}

/** Classifies one persistent id. */
export function classifyReference(pid: PickleValue): PersistentReference {
  if (pid instanceof PyTuple) {
    const oid = oidBytes(pid.items[0]);
    if (oid) return { kind: 'oid', oid, pid };
  } else if (Array.isArray(pid)) {
    const [tag, args] = pid;
    const items = args instanceof PyTuple ? args.items : [];
    if (tag === 'w') return { kind: 'weak', oid: oidBytes(items[0]), database: text(items[1]), pid };
    if (tag === 'm' || tag === 'n') return { kind: 'cross-database', oid: oidBytes(items[1]), database: text(items[0]), pid };
    return { kind: 'other', pid };
  } else {
    const oid = oidBytes(pid);
    if (oid) return { kind: 'oid', oid, pid };
  }
  throw new ZrsError('ERR_FS_REFERENCE', 'a persistent id is neither an oid, an (oid, class) tuple nor a list');
}

/** Every persistent id of record data, classified. */
export function persistentReferences(data: Uint8Array): PersistentReference[] {
  return persistentIds(data).map(classifyReference);
}

/**
 * The oids that record data refers to, as ZODB's `referencesf` returns them: one entry per
 * ordinary reference (`oid` or `(oid, class)`), in pickle order, duplicates kept; weak and
 * cross-database references left out. Throws a `PickleError` when the data is not two
 * pickles the safe decoder reads, and a {@link ZrsError} (`ERR_FS_REFERENCE`) for a persistent
 * id of no form ZODB writes.
 */
export function referencedOids(data: Uint8Array): Buffer[] {
  const oids: Buffer[] = [];
  for (const ref of persistentReferences(data)) if (ref.kind === 'oid') oids.push(ref.oid);
  return oids;
}
