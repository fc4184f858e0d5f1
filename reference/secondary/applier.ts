/**
 * Applies a decoded replication stream to a FileStorage (wire-protocol §5.6): `T` begins a
 * transaction with the primary's tid and status, records are restored with their hints,
 * blob chunks go to a temporary file, and `C` (already checked by the stream decoder)
 * commits it durably. Anything else aborts it, leaving the file as it was.
 * @module
 */
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ZrsError } from '../errors.ts';
import type { BlobDirectory } from '../filestorage/blobs.ts';
import type { FileStorageWriter, PendingTransaction } from '../filestorage/writer.ts';
import type { BlobMessage, TransactionMessage } from '../messages.ts';
import type { Logger } from '../net/log.ts';
import { dumpExtension } from '../pickle/encoder.ts';
import type { StreamEvent } from '../stream.ts';
import { compareTids, hex8 } from '../timestamp.ts';
import { type ExtensionPolicy, globalEntries, withoutGlobals } from './extension-policy.ts';

/** The primary sent something this secondary must not apply. */
export class ApplyError extends ZrsError {}

/** A blob being received: its temporary file and where it goes at commit. */
interface IncomingBlob {
  tmp: string;
  fd: number | null;
  target: string;
}

export class SecondaryApplier {
  private txn: PendingTransaction | null = null;
  private begun: TransactionMessage | null = null;
  private blobs: IncomingBlob[] = [];

  constructor(
    private readonly writer: FileStorageWriter,
    private readonly blobDir: BlobDirectory | null,
    private readonly logger: Logger,
    /** Leave the fsync of each commit to the caller's `writer.sync()` (group commit, FS-COMMIT-7). */
    private readonly deferSync = false,
    /** What to store of an extension that names Python globals (WIRE-EXT-1). */
    private readonly extensionPolicy: ExtensionPolicy = 'keep',
  ) {}

  /** True while a transaction is open. */
  get inTransaction(): boolean {
    return this.txn !== null;
  }

  /** Applies one event; returns the tid when it committed (or, deferring syncs, finished) a transaction. */
  apply(e: StreamEvent): Buffer | null {
    switch (e.kind) {
      case 'begin':
        this.begin(e.message);
        return null;
      case 'record': {
        const m = e.message;
        const t = this.begun!;
        if (m.version !== '') throw new ApplyError('ERR_VERSION', `record of ${hex8(m.oid)} has version ${JSON.stringify(m.version)}`, 'DEV-VERSION-2');
        if (compareTids(m.tid, t.tid) !== 0) {
          throw new ApplyError('ERR_RECORD_TID', `record tid ${hex8(m.tid)} differs from its transaction's ${hex8(t.tid)}`, 'DEV-SEQ-2');
        }
        if (m.type === 'B') this.startBlob(m);
        this.txn!.restore({ oid: m.oid, serial: m.tid, data: e.data, dataTxn: m.dataTxn });
        return null;
      }
      case 'chunk': {
        const blob = this.blobs.at(-1)!;
        writeAll(blob.fd!, e.data);
        if (e.index + 1 === e.message.blocks) this.closeBlob(blob);
        return null;
      }
      case 'commit':
        return this.commit();
    }
  }

  private begin(m: TransactionMessage): void {
    if (m.status === 'c' || m.status === 'u') {
      throw new ApplyError('ERR_STATUS', `a transaction cannot arrive with status ${JSON.stringify(m.status)}`, 'DEV-STATUS-2');
    }
    if (compareTids(m.tid, this.writer.lastWritten) <= 0) {
      throw new ApplyError(
        'ERR_DIVERGED',
        `diverged from the primary: it sent ${hex8(m.tid)}, not later than this file's last transaction ${hex8(this.writer.lastWritten)}`,
        'DEV-TIDORDER-1',
      );
    }
    if (m.status !== ' ' && m.status !== 'p') {
      this.logger.log('warn', 'status', `applying transaction ${hex8(m.tid)} with unusual status ${JSON.stringify(m.status)}`, { requirement: 'DEV-STATUS-3' });
    }
    this.txn = this.writer.begin({
      tid: m.tid,
      status: m.status,
      user: m.user,
      description: m.description,
      extension: dumpExtension(this.storedExtension(m)),
    });
    this.begun = m;
  }

  /** The extension to store under the policy: as received, without the entries naming globals, or refused (WIRE-EXT-1). */
  private storedExtension(m: TransactionMessage): TransactionMessage['extension'] {
    if (this.extensionPolicy === 'keep') return m.extension;
    const named = globalEntries(m.extension);
    if (!named.length) return m.extension;
    const shown = named.slice(0, 5).map((e) => `${JSON.stringify(e.key.slice(0, 40))} (${e.global.slice(0, 80)})`);
    const list = shown.join(', ') + (named.length > 5 ? ` and ${named.length - 5} more` : '');
    if (this.extensionPolicy === 'refuse') {
      throw new ApplyError('ERR_EXTENSION_GLOBALS', `transaction ${hex8(m.tid)} refused: its extension names Python globals in ${list}`, 'WIRE-EXT-1');
    }
    this.logger.log('warn', 'extension-stripped', `transaction ${hex8(m.tid)}: extension entries naming Python globals not stored: ${list}`, { requirement: 'WIRE-EXT-1' });
    return withoutGlobals(m.extension);
  }

  private startBlob(m: BlobMessage): void {
    if (!this.blobDir) throw new ApplyError('ERR_NO_BLOBS', 'a blob arrived, but this secondary keeps no blobs', 'WIRE-BLOB-6');
    mkdirSync(this.blobDir.tmp, { recursive: true });
    const tmp = this.blobDir.incomingPath();
    const blob: IncomingBlob = { tmp, fd: openSync(tmp, 'wx'), target: this.blobDir.blobPath(m.oid, m.tid) };
    this.blobs.push(blob);
    // A blob of 0 blocks is an empty file (DEV-BLOB0-1).
    if (m.blocks === 0) this.closeBlob(blob);
  }

  private closeBlob(blob: IncomingBlob): void {
    if (blob.fd !== null) closeSync(blob.fd);
    blob.fd = null;
  }

  private commit(): Buffer {
    const txn = this.txn!;
    const tid = Buffer.from(this.begun!.tid);
    txn.vote();
    for (const b of this.blobs) {
      mkdirSync(path.dirname(b.target), { recursive: true });
      renameSync(b.tmp, b.target); // in place before the commit is final (FS-BLOB-8)
    }
    this.blobs = [];
    txn.finish({ sync: !this.deferSync });
    this.txn = null;
    this.begun = null;
    return tid;
  }

  /** Abandons the open transaction, if any: the file and blob directory stay as they were. */
  abort(): void {
    this.txn?.abort();
    this.txn = null;
    this.begun = null;
    for (const b of this.blobs) {
      this.closeBlob(b);
      rmSync(b.tmp, { force: true }); // DEV-BLOBTMP-1
    }
    this.blobs = [];
  }
}

function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) done += writeSync(fd, data, done, data.length - done);
}
