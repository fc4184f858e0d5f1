/**
 * What a primary streams from: the committed transactions of a FileStorage file after a
 * start tid, as they become committed, across packs that replace the file.
 *
 * `next()` never blocks: it answers with the next transaction to send, or `wait` when there
 * is none yet (nothing new, a commit in progress, a tail still being written). The caller
 * asks again when it learns of a commit, or polls.
 * @module
 */
import { FileFormatError } from '../errors.ts';
import { compareTids, hex8 } from '../timestamp.ts';
import { FileStorageReader, type TxnInfo } from './reader.ts';
import { Status } from './records.ts';

/** One answer of {@link FileFollower.next}. */
export type FollowStep = { kind: 'transaction'; txn: TxnInfo } | { kind: 'wait' };

/** Follows one file for one stream. */
export class FileFollower {
  private reader: FileStorageReader;
  /** Offset of the next transaction record, or `null` until positioned. */
  private offset: number | null = null;
  private last: Buffer;
  private sent = false;

  /**
   * @param path the FileStorage file
   * @param startTid the start tid of the handshake
   */
  constructor(
    readonly path: string,
    startTid: Uint8Array,
  ) {
    this.reader = FileStorageReader.open(path);
    this.last = Buffer.from(startTid);
  }

  /** The reader of the current file, to read the records of a transaction. */
  get file(): FileStorageReader {
    return this.reader;
  }

  /** True once the position after the start tid is known. */
  get positioned(): boolean {
    return this.offset !== null;
  }

  /** Committed transactions in the file not returned yet (those this stream still has to send). */
  pending(): number {
    if (this.offset === null) return 0;
    let n = 0;
    for (const t of this.reader.transactions(this.offset)) if (t.status !== Status.UNDONE) n++;
    return n;
  }

  /** Tid of the last transaction returned, or the start tid before the first. */
  get lastTid(): Buffer {
    return this.last;
  }

  /**
   * The next committed transaction to send, or `wait`. Throws `TidTooHighError` when the
   * position cannot exist (WIRE-POS-3, or after a pack removed everything after the last
   * tid sent), and a {@link FileFormatError} when the file is damaged or a tid does not
   * increase (DEV-TRAILER-1, DEV-TIDORDER-3).
   */
  next(): FollowStep {
    if (this.reader.replaced() && !this.reopen()) return { kind: 'wait' };
    if (this.offset === null) {
      this.offset = this.reader.positionAfter(this.last);
      if (this.offset === null) return { kind: 'wait' };
    }
    for (;;) {
      const s = this.reader.scan(this.offset, true);
      if (s.kind !== 'transaction') return { kind: 'wait' };
      this.offset = s.txn.next;
      // 'u' transactions are obsolete: never sent, but passed over (WIRE-TXN-5).
      if (s.txn.status === Status.UNDONE) continue;
      if (this.sent && compareTids(s.txn.tid, this.last) <= 0) {
        throw new FileFormatError(
          'ERR_FS_TID_ORDER',
          `tid ${hex8(s.txn.tid)} does not follow ${hex8(this.last)}`,
          s.txn.offset,
          'DEV-TIDORDER-3',
        );
      }
      this.last = s.txn.tid;
      this.sent = true;
      return { kind: 'transaction', txn: s.txn };
    }
  }

  /**
   * The file was replaced (a pack): continue after the last tid sent (WIRE-TXN-8). Returns
   * false while the path names no file (between the two steps of a replacement).
   */
  private reopen(): boolean {
    let next: FileStorageReader;
    try {
      next = FileStorageReader.open(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
    this.reader.close();
    this.reader = next;
    this.offset = null;
    return true;
  }

  close(): void {
    this.reader.close();
  }
}
