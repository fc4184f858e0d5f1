/**
 * The control messages a primary sends: each is a pickled 2-tuple `(type, payload)` whose
 * type is a one-letter text string.
 *
 * | type | payload | followed by |
 * |---|---|---|
 * | `T` | `(tid, status, user, description, extension)` | nothing |
 * | `S` | `(oid, tid, version, data_txn)` | one data frame (empty = no data) |
 * | `B` | `(oid, tid, version, data_txn, blocks)` | one data frame, then `blocks` chunk frames |
 * | `C` | `(md5_digest,)`, or `()` from zc.zrs 2.0 | nothing |
 * @module
 */
import { MessageError, PickleError } from './errors.ts';
import { readPickle } from './pickle/decoder.ts';
import type { PickleLimits } from './pickle/limits.ts';
import { dumpPickle } from './pickle/encoder.ts';
import { isInert, type PickleValue, PyDict, PyTuple } from './pickle/values.ts';
import { encodeFastMessage, matchFastMessage } from './fast-messages.ts';

/** `T`: a transaction begins. */
export interface TransactionMessage {
  type: 'T';
  tid: Uint8Array;
  /** One character: `' '` normally, `'p'` for a transaction rewritten by pack. */
  status: string;
  user: Uint8Array;
  description: Uint8Array;
  /** The unpickled extension dict; values that are not plain data stay inert. */
  extension: PyDict;
}

/** `S`: a data record; the next frame is its data. */
export interface StoreMessage {
  type: 'S';
  oid: Uint8Array;
  tid: Uint8Array;
  /** Always empty in ZODB 3.9 and later. */
  version: string;
  /** Tid of the transaction holding a record with the same data, or `null`. */
  dataTxn: Uint8Array | null;
}

/** `B`: a blob record; the next frame is its data, then `blocks` chunk frames. */
export interface BlobMessage extends Omit<StoreMessage, 'type'> {
  type: 'B';
  blocks: number;
}

/** `C`: the transaction commits; `checksum` is `null` in the legacy form `('C', ())`. */
export interface CommitMessage {
  type: 'C';
  checksum: Uint8Array | null;
}

/** Any control message. */
export type Message = TransactionMessage | StoreMessage | BlobMessage | CommitMessage;

/** Encodes a message exactly as Python 3 zc.zrs does. */
export function encodeMessage(m: Message): Buffer {
  return encodeFastMessage(m) ?? encodePickledMessage(m);
}

/** @internal {@link encodeMessage} through the general pickle encoder alone. */
export function encodePickledMessage(m: Message): Buffer {
  let payload: PickleValue[];
  switch (m.type) {
    case 'T':
      payload = [m.tid, m.status, m.user, m.description, m.extension];
      break;
    case 'S':
      payload = [m.oid, m.tid, m.version, m.dataTxn];
      break;
    case 'B':
      payload = [m.oid, m.tid, m.version, m.dataTxn, BigInt(m.blocks)];
      break;
    case 'C':
      payload = m.checksum === null ? [] : [m.checksum];
      break;
  }
  return dumpPickle(new PyTuple([m.type, new PyTuple(payload)]));
}

/**
 * Decodes a control message, accepting the Python 3 and Python 2 encodings. Fields are
 * read by type: bytes fields accept the Python 2 string forms, text fields accept ASCII
 * bytes. A class reference or call anywhere outside the extension dict is refused. `limits`
 * replace the decoder's defaults (wire-protocol §6.7); the fast path never comes near them.
 */
export function decodeMessage(payload: Uint8Array, limits?: Partial<PickleLimits>): Message {
  return matchFastMessage(payload) ?? decodePickledMessage(payload, limits);
}

/** @internal {@link decodeMessage} through the general pickle decoder alone. */
export function decodePickledMessage(payload: Uint8Array, limits?: Partial<PickleLimits>): Message {
  const { value: top, end, leftover } = readPickle(payload, 0, limits);
  if (end !== payload.length) throw new PickleError('ERR_PICKLE_TRAILING', `${payload.length - end} bytes after STOP`, end, 'WIRE-PICKLE-10');
  if (leftover) throw new PickleError('ERR_PICKLE_LEFTOVER', `${leftover} item(s) or mark(s) left on the stack at STOP`, end - 1, 'WIRE-PICKLE-10');
  const shape = (what: string): never => {
    throw new MessageError('ERR_MESSAGE_SHAPE', `not a ZRS control message: ${what}`, 'WIRE-MSG-5');
  };
  if (!(top instanceof PyTuple) || top.items.length !== 2) return shape('expected a (type, payload) tuple');
  const [typeValue, body] = top.items as [PickleValue, PickleValue];
  const type = asText(typeValue, 'message type');
  if (!(body instanceof PyTuple)) return shape(`payload of ${JSON.stringify(type)} is not a tuple`);
  const f = body.items;
  const arity = (n: number) => {
    if (f.length !== n) shape(`${type} carries ${f.length} fields, expected ${n}`);
  };
  switch (type) {
    case 'T': {
      arity(5);
      const status = asText(f[1]!, 'status');
      if (status.length !== 1) shape(`status must be one character, got ${JSON.stringify(status)}`);
      const extension = f[4]!;
      if (!(extension instanceof PyDict)) return shape('extension is not a dict');
      return {
        type,
        tid: asBytes(f[0]!, 'tid', 8),
        status,
        user: asBytes(f[2]!, 'user'),
        description: asBytes(f[3]!, 'description'),
        extension,
      };
    }
    case 'S':
    case 'B': {
      arity(type === 'S' ? 4 : 5);
      const record = {
        oid: asBytes(f[0]!, 'oid', 8),
        tid: asBytes(f[1]!, 'tid', 8),
        version: asText(f[2]!, 'version'),
        dataTxn: f[3] === null ? null : asBytes(f[3]!, 'data_txn', 8),
      };
      if (type === 'S') return { type, ...record };
      const blocks = f[4];
      if (typeof blocks !== 'bigint' || blocks < 0n || blocks > 0xffffffffn) {
        return shape('blocks is not a count');
      }
      return { type, ...record, blocks: Number(blocks) };
    }
    case 'C':
      if (f.length === 0) return { type, checksum: null };
      arity(1);
      return { type, checksum: asBytes(f[0]!, 'checksum', 16) };
    default:
      throw new MessageError('ERR_MESSAGE_TYPE', `unknown message type ${JSON.stringify(type)}`, 'WIRE-MSG-4');
  }
}

function refuseInert(v: PickleValue, field: string): void {
  if (isInert(v)) {
    const where = 'module' in v ? ` ${v.module}.${v.name}` : '';
    throw new PickleError('ERR_PICKLE_GLOBAL', `${field}: object${where} is not allowed in a message`, v.offset, 'WIRE-PICKLE-5');
  }
}

function asText(v: PickleValue, field: string): string {
  refuseInert(v, field);
  if (typeof v === 'string') return v;
  if (v instanceof Uint8Array && v.every((c) => c < 0x80)) return Buffer.from(v).toString('latin1');
  throw new MessageError('ERR_MESSAGE_SHAPE', `${field} is not text`);
}

function asBytes(v: PickleValue, field: string, length?: number): Uint8Array {
  refuseInert(v, field);
  let out: Uint8Array;
  if (v instanceof Uint8Array) out = v;
  // Python 2 strings arrive as ASCII text; ZODB stores text user and description as UTF-8.
  else if (typeof v === 'string') out = Buffer.from(v, 'utf8');
  else throw new MessageError('ERR_MESSAGE_SHAPE', `${field} is not bytes`);
  if (length !== undefined && out.length !== length) {
    throw new MessageError('ERR_MESSAGE_SHAPE', `${field} has ${out.length} bytes, expected ${length}`);
  }
  return out;
}
