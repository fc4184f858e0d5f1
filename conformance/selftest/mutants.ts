/**
 * Deliberately broken variants of the reference, for the harness's self-test: each breaks one
 * named requirement, by patching the reference in the mutant's own process before it starts.
 * The suite must fail every one of them on that requirement (and pass the unbroken reference).
 * @module
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { Discovery } from '../../reference/discovery/discover.ts';
import { SecondaryApplier } from '../../reference/secondary/applier.ts';
import { RunningChecksum } from '../../reference/checksum.ts';
import { BlobDirectory } from '../../reference/filestorage/blobs.ts';
import { FileStorageReader } from '../../reference/filestorage/reader.ts';
import { FrameDecoder } from '../../reference/framing.ts';
import { PrimaryConnection } from '../../reference/primary/connection.ts';
import { PrimaryHandshake } from '../../reference/primary/handshake.ts';
import { Primary } from '../../reference/primary/primary.ts';
import { CommitSignal } from '../../reference/primary/signal.ts';
import { Secondary } from '../../reference/secondary/secondary.ts';
import { StreamDecoder, StreamEncoder } from '../../reference/stream.ts';
import { compareTids, Z64 } from '../../reference/timestamp.ts';
import { ZrsError } from '../../reference/errors.ts';
import { PICKLE_LIMIT_CEILING } from '../../reference/pickle/limits.ts';

/** A mutation: the requirement it breaks, the role it concerns, and the patch. */
export interface Mutation {
  breaks: string;
  role: 'primary' | 'secondary';
  what: string;
  /** The cases the quick self-test runs (a vitest name pattern); the cases citing `breaks` when absent. */
  filter?: string;
  apply(): void;
}

type Any = Record<string, unknown> & { [k: string]: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Patches a method of a class, keeping the original for the replacement to call. */
function patch<T extends object>(cls: { prototype: T }, name: string, make: (original: (...a: unknown[]) => unknown) => (this: Any, ...a: unknown[]) => unknown): void {
  const proto = cls.prototype as Any;
  const original = proto[name] as (...a: unknown[]) => unknown;
  proto[name] = make(original);
}

/** Rewrites the bytes a secondary writes on its connections. */
function rewriteWrites(f: (bytes: Buffer, first: boolean) => Buffer): void {
  const seen = new WeakSet<net.Socket>();
  patch(net.Socket, 'write', (original) =>
    function (this: Any, data: unknown, ...rest: unknown[]) {
      const first = !seen.has(this as unknown as net.Socket);
      seen.add(this as unknown as net.Socket);
      const bytes = Buffer.isBuffer(data) ? f(data, first) : data;
      return original.call(this, bytes, ...rest);
    },
  );
}

export const MUTATIONS: Record<string, Mutation> = {
  'checksum-seed': {
    breaks: 'WIRE-SUM-1',
    role: 'primary',
    what: 'seeds the running MD5 with z64 whatever the start tid',
    apply() {
      const shadows = new WeakMap<object, ReturnType<typeof createHash>>();
      const shadow = (o: object) => {
        let h = shadows.get(o);
        if (!h) shadows.set(o, (h = createHash('md5').update(Z64)));
        return h;
      };
      patch(RunningChecksum, 'update', (original) => function (this: Any, p: unknown) {
        shadow(this).update(p as Buffer);
        return original.call(this, p);
      });
      patch(RunningChecksum, 'digest', () => function (this: Any) {
        return shadow(this).copy().digest();
      });
    },
  },
  'hash-length-prefixes': {
    breaks: 'WIRE-SUM-2',
    role: 'primary',
    what: 'feeds the 4-byte length prefixes into the MD5 too',
    apply() {
      patch(StreamEncoder, 'frame', (original) => function (this: Any, payload: unknown) {
        const frame = original.call(this, payload) as [Buffer, Uint8Array];
        this.sum.update(frame[0]);
        return frame;
      });
    },
  },
  'resume-at-start-tid': {
    breaks: 'WIRE-POS-2',
    role: 'primary',
    what: 'starts with the transaction equal to the start tid instead of after it',
    apply() {
      patch(FileStorageReader, 'positionAfter', (original) => function (this: Any, startTid: unknown) {
        const at = original.call(this, startTid) as number | null;
        if (at === null || at <= 4) return at;
        // step back one transaction when it is the start tid itself
        for (const t of this.transactions(4)) if (t.next === at && compareTids(t.tid, startTid as Buffer) === 0) return t.offset;
        return at;
      });
    },
  },
  'no-abort-on-disconnect': {
    breaks: 'WIRE-CLOSE-6',
    role: 'secondary',
    what: 'keeps what it had of a transaction when the connection drops, and commits it',
    apply() {
      patch(SecondaryApplier, 'abort', () => function (this: Any) {
        const txn = this.txn;
        if (!txn) return;
        try {
          txn.vote();
          txn.finish();
        } catch {
          txn.abort();
        }
        this.txn = null;
        this.begun = null;
      });
    },
  },
  'keep-alive-in-handshake': {
    breaks: 'WIRE-HS-4',
    role: 'secondary',
    what: 'sends a keep-alive before the protocol id',
    apply() {
      rewriteWrites((bytes, first) => (first ? Buffer.concat([Buffer.alloc(4), bytes]) : bytes));
    },
  },
  'no-reconnect': {
    breaks: 'WIRE-RECON-1',
    role: 'secondary',
    what: 'never connects again after its first connection ends',
    apply() {
      patch(Secondary, 'connect', (original) => function (this: Any) {
        if (this.mutantConnected) return;
        this.mutantConnected = true;
        return original.call(this);
      });
    },
  },
  'accept-9-byte-frames': {
    breaks: 'WIRE-FRAME-5',
    role: 'primary',
    what: 'accepts frames of 9 bytes from secondaries',
    apply() {
      patch(FrameDecoder, 'push', (original) => function (this: Any, chunk: unknown) {
        if (this.limit === 8) Object.defineProperty(this, 'limit', { value: 9 });
        return original.call(this, chunk);
      });
    },
  },
  'send-u-transactions': {
    breaks: 'WIRE-TXN-5',
    role: 'primary',
    what: 'sends transactions with status u',
    apply() {
      patch(FileStorageReader, 'scan', (original) => function (this: Any, offset: unknown) {
        const s = original.call(this, offset) as { kind: string; txn?: { status: string } };
        if (s.kind === 'transaction' && s.txn!.status === 'u') s.txn!.status = ' ';
        return s;
      });
    },
  },
  'blobs-as-plain-records': {
    breaks: 'WIRE-BLOB-2',
    role: 'primary',
    what: 'sends blob records as S, without their blob content',
    apply() {
      patch(BlobDirectory, 'blobPath', () => () => '/nonexistent/blob');
    },
  },
  'zrs20-to-blob-primary': {
    breaks: 'WIRE-HS-8',
    role: 'primary',
    what: 'accepts zrs2.0 although it serves blobs',
    apply() {
      patch(PrimaryHandshake, 'frame', (original) => function (this: Any, payload: unknown) {
        Object.defineProperty(this, 'servesBlobs', { value: false });
        return original.call(this, payload);
      });
    },
  },
  'no-catch-up-on-protocol-error': {
    breaks: 'WIRE-HS-14',
    role: 'primary',
    what: 'closes at once on a non-empty frame after the handshake instead of catching up',
    apply() {
      patch(PrimaryConnection, 'drain', () => function (this: Any) {
        return this.destroy();
      });
    },
  },
  'ignore-checksums': {
    breaks: 'WIRE-SUM-7',
    role: 'secondary',
    what: 'commits transactions whose digest is wrong',
    apply() {
      patch(StreamDecoder, 'push', (original) => function (this: Any, payload: unknown) {
        Object.defineProperty(this, 'check', { value: false });
        return original.call(this, payload);
      });
    },
  },
  'no-live-commits': {
    breaks: 'WIRE-TXN-3',
    role: 'primary',
    what: 'never wakes its streams: a transaction committed while a secondary waits is not sent',
    apply() {
      patch(CommitSignal, 'notify', () => () => undefined);
    },
  },
  'zrs21-without-blobs': {
    breaks: 'WIRE-HS-2',
    role: 'secondary',
    what: 'asks for zrs2.1 although it keeps no blobs',
    apply() {
      rewriteWrites((bytes) => {
        const at = bytes.indexOf('zrs2.0');
        if (at < 0) return bytes;
        const b = Buffer.from(bytes);
        b.write('zrs2.1', at);
        return b;
      });
    },
  },
  'protocol-id-any-case': {
    breaks: 'WIRE-HS-9',
    role: 'primary',
    what: 'matches the protocol id without regard to case',
    apply() {
      patch(PrimaryHandshake, 'frame', (original) => function (this: Any, payload: unknown) {
        const p = payload as Buffer;
        return original.call(this, this.state === 'id' ? Buffer.from(p.toString('latin1').toLowerCase(), 'latin1') : p);
      });
    },
  },
  'drain-wait-ignores-close': {
    breaks: 'WIRE-CLOSE-4',
    role: 'primary',
    what: 'waits for the socket to drain without noticing that the secondary went away meanwhile',
    apply() {
      patch(PrimaryConnection, 'drained', () => async function (this: Any) {
        this.socket.uncork();
        await new Promise((r) => this.socket.once('drain', r));
        this.socket.cork();
      });
    },
  },
  'shutdown-without-catch-up': {
    breaks: 'WIRE-SHUT-1',
    role: 'primary',
    what: 'closes its connections at once when told to stop, without catching them up',
    apply() {
      patch(Primary, 'shutdown', (original) => function (this: Any, timeoutMs: unknown) {
        for (const c of this.connections) c.destroy();
        return original.call(this, timeoutMs);
      });
    },
  },
  'keep-alive-only-when-idle': {
    breaks: 'WIRE-KA-2',
    role: 'secondary',
    what: 'starts its keep-alive period again whenever the primary sends something, so that a busy stream gets none',
    apply() {
      patch(Secondary, 'startKeepAlive', (original) => function (this: Any, socket: unknown) {
        original.call(this, socket);
        (socket as net.Socket).on('data', () => {
          this.stopKeepAlive();
          original.call(this, socket);
        });
      });
    },
  },
  'reconnect-delay-in-ms': {
    breaks: 'WIRE-RECON-1',
    role: 'secondary',
    what: 'reads its reconnect delay as milliseconds, not seconds',
    apply() {
      patch(Secondary, 'connect', (original) => function (this: Any) {
        if (!this.mutantScaled) {
          this.mutantScaled = true;
          this.options.reconnectDelay = (this.options.reconnectDelay ?? 60) / 1000;
        }
        return original.call(this);
      });
    },
  },
  'chunks-to-first-blob': {
    breaks: 'WIRE-BLOB-5',
    role: 'secondary',
    what: 'writes every chunk of a transaction to its first blob',
    apply() {
      patch(SecondaryApplier, 'apply', (original) => function (this: Any, e: unknown) {
        const blobs = this.blobs as unknown[];
        if ((e as { kind: string }).kind !== 'chunk' || blobs.length < 2) return original.call(this, e);
        this.blobs = [...blobs, blobs[0]];
        try {
          return original.call(this, e);
        } finally {
          this.blobs = blobs;
        }
      });
    },
  },
  'apply-status-c-and-u': {
    breaks: 'DEV-STATUS-2',
    role: 'secondary',
    what: 'commits a T whose status is c or u (as zc.zrs does), as a plain transaction',
    apply() {
      patch(SecondaryApplier, 'begin', (original) => function (this: Any, m: unknown) {
        const t = m as { status: string };
        return original.call(this, t.status === 'c' || t.status === 'u' ? { ...t, status: ' ' } : t);
      });
    },
  },
  'storage-failure-exits': {
    breaks: 'FS-FAIL-1',
    role: 'secondary',
    what: 'exits on a local storage failure (a full disk) instead of abandoning the transaction and going on',
    apply() {
      patch(Secondary, 'storageFailed', () => function () {
        process.exit(1);
      });
    },
  },
  'shallow-extensions': {
    breaks: 'WIRE-PICKLE-16',
    role: 'secondary',
    what: 'refuses an extension whose values nest deeper than 300 levels, under the floor of 500',
    apply() {
      patch(SecondaryApplier, 'begin', (original) => function (this: Any, m: unknown) {
        const depth = (v: unknown): number => (Array.isArray(v) ? 1 + Math.max(0, ...v.map(depth)) : 0);
        for (const [, v] of (m as { extension: { entries: [unknown, unknown][] } }).extension.entries) {
          if (depth(v) > 300) throw new ZrsError('ERR_PICKLE_TOO_DEEP', 'extension nested deeper than 300');
        }
        return original.call(this, m);
      });
    },
  },
  'lenient-decoding': {
    breaks: 'WIRE-PICKLE-20',
    role: 'secondary',
    what: 'decodes control messages with every limit at its ceiling instead of the limits its descriptor states',
    apply() {
      patch(StreamDecoder, 'push', (original) => function (this: Any, payload: unknown) {
        this.limits = PICKLE_LIMIT_CEILING;
        return original.call(this, payload);
      });
    },
  },
  'repeated-keys': {
    breaks: 'WIRE-PICKLE-21',
    role: 'secondary',
    what: 'stores every pair of an extension that sets a key again, as a decoder that appends each pair would',
    apply() {
      patch(SecondaryApplier, 'begin', (original) => function (this: Any, m: unknown) {
        const t = m as { extension: { entries: unknown[] } };
        // the pairs Python's dict merged: each entry twice stands for them
        if (t.extension.entries.length > 2) t.extension.entries.push(...t.extension.entries);
        return original.call(this, m);
      });
    },
  },
  'discovery-reads-once': {
    breaks: 'DISC-FIND-1',
    role: 'secondary',
    what: 'reads the provider path once at start and ignores every later change',
    apply() {
      patch(Discovery, 'update', (original) => function (this: Any, children: unknown) {
        if (this.mutantRead) return;
        this.mutantRead = true;
        return original.call(this, children);
      });
    },
  },
};
