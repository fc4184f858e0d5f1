/**
 * The control channel (spec/conformance.md): JSON lines on standard input and output through
 * which a harness drives a running node. Requests carry an `op` and an optional `id`; every
 * request gets one response with the same `id`; the node also announces events
 * (`ready`, `committed`).
 * @module
 */
import { createInterface } from 'node:readline';
import { ZrsError } from '../errors.ts';
import type { Commit } from '../primary/primary.ts';
import { PyDict, type PickleValue } from '../pickle/values.ts';
import { hex8, tidFromString } from '../timestamp.ts';

/** What a node offers to the control channel. */
export interface ControlTarget {
  role: 'primary' | 'secondary';
  lastTid(): Buffer;
  commit?(c: Commit): Buffer;
  undo?(tid: Buffer, meta: Omit<Commit, 'records'>): Buffer;
  pack?(before: Buffer): void;
  shutdown(): Promise<void>;
}

/** A request the node cannot carry out. */
class RequestError extends ZrsError {}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const hexBytes = (v: unknown, field: string, length?: number): Buffer => {
  if (typeof v !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(v)) throw new RequestError('ERR_REQUEST', `${field} must be a string of hex digits`);
  const b = Buffer.from(v, 'hex');
  if (length !== undefined && b.length !== length) throw new RequestError('ERR_REQUEST', `${field} must be ${length} bytes (${length * 2} hex digits)`);
  return b;
};

/** A tid given as 16 hex digits or as a date. */
const tidArg = (v: unknown, field: string): Buffer => {
  if (typeof v === 'string' && /^[0-9a-fA-F]{16}$/.test(v)) return Buffer.from(v, 'hex');
  if (typeof v === 'string') return tidFromString(v);
  throw new RequestError('ERR_REQUEST', `${field} must be a tid (16 hex digits) or a date`);
};

/** Extension values: JSON data, with `{"$bytes": hex}` for bytes. */
function extensionValue(v: Json): PickleValue {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v;
  if (Array.isArray(v)) return v.map(extensionValue);
  if (typeof v.$bytes === 'string' && Object.keys(v).length === 1) return hexBytes(v.$bytes, '$bytes');
  return new PyDict(Object.entries(v).map(([k, x]) => [k, extensionValue(x)]));
}

function meta(req: Record<string, Json>): Omit<Commit, 'records'> {
  const text = (k: string) => (typeof req[k] === 'string' ? Buffer.from(req[k] as string, 'utf8') : undefined);
  const ext = req.extension;
  if (ext !== undefined && (ext === null || typeof ext !== 'object' || Array.isArray(ext))) {
    throw new RequestError('ERR_REQUEST', 'extension must be an object');
  }
  return { user: text('user'), description: text('description'), extension: ext ? (extensionValue(ext) as PyDict) : undefined };
}

async function handle(target: ControlTarget, req: Record<string, Json>): Promise<Record<string, Json>> {
  const need = <K extends keyof ControlTarget>(k: K): NonNullable<ControlTarget[K]> => {
    const f = target[k];
    if (!f) {
      const why = target.role === 'secondary' ? 'a secondary is read-only' : 'this node does not support it';
      throw new RequestError('ERR_UNSUPPORTED', `${String(req.op)}: ${why}`);
    }
    return (f as (...a: never[]) => unknown).bind(target) as NonNullable<ControlTarget[K]>;
  };
  switch (req.op) {
    case 'last-tid':
      return { tid: hex8(target.lastTid()) };
    case 'commit': {
      if (!Array.isArray(req.records)) throw new RequestError('ERR_REQUEST', 'commit needs records: [{oid, data}]');
      const records = req.records.map((r, i) => {
        if (!r || typeof r !== 'object' || Array.isArray(r)) throw new RequestError('ERR_REQUEST', `records[${i}] must be an object`);
        return { oid: hexBytes(r.oid, `records[${i}].oid`, 8), data: r.data === null ? null : hexBytes(r.data, `records[${i}].data`) };
      });
      return { tid: hex8(need('commit')({ ...meta(req), records })) };
    }
    case 'undo':
      return { tid: hex8(need('undo')(tidArg(req.tid, 'tid'), meta(req))) };
    case 'pack':
      need('pack')(tidArg(req.before, 'before'));
      return {};
    case 'shutdown':
      return {};
    default:
      throw new RequestError('ERR_REQUEST', `unknown op ${JSON.stringify(req.op)}`);
  }
}

/**
 * Serves the control channel on standard input and output until `shutdown` is asked or
 * standard input ends; then shuts the node down gracefully and resolves.
 */
export function serveControl(target: ControlTarget, out: { write(text: string): unknown } = process.stdout): {
  send: (event: Record<string, Json>) => void;
  flush: () => void;
  done: Promise<void>;
} {
  // Messages of one turn of the event loop (a catch-up commits thousands a second) go out
  // in one write, in order, before the next turn.
  let pending: string[] = [];
  const flush = () => {
    if (pending.length) out.write(pending.join(''));
    pending = [];
  };
  const send = (message: Record<string, Json>) => {
    if (!pending.length) setImmediate(flush);
    pending.push(`${JSON.stringify(message)}\n`);
  };
  const done = new Promise<void>((resolve) => {
    const rl = createInterface({ input: process.stdin });
    let stopping = false;
    let queue: Promise<unknown> = Promise.resolve();
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      rl.close();
      await target.shutdown();
      flush();
      resolve();
    };
    rl.on('line', (line) => {
      if (line.trim() === '') return;
      let req: Record<string, Json>;
      try {
        const parsed = JSON.parse(line) as Json;
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
        req = parsed;
      } catch (e) {
        queue = queue.then(() => send({ id: null, ok: false, error: { code: 'ERR_REQUEST', message: `not a JSON object: ${(e as Error).message}` } }));
        return;
      }
      const id = req.id ?? null;
      // One request at a time, answered in order; between two, the node's streams get to run.
      queue = queue
        .then(() => new Promise((r) => setImmediate(r)))
        .then(() => handle(target, req))
        .then(
        (result) => {
          send({ id, ok: true, ...result });
          if (req.op === 'shutdown') void stop();
        },
        (e: unknown) => {
          if (!(e instanceof ZrsError)) throw e;
          send({ id, ok: false, error: { code: e.code, message: e.message } });
        },
      );
    });
    rl.on('close', () => void queue.then(stop, stop)); // answer what was asked, then stop
  });
  return { send, flush, done };
}
