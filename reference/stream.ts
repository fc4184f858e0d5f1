/**
 * The replication stream, primary to secondary, above the framing: which frame is a control
 * message, which is record data and which is a blob chunk is decided by position alone.
 *
 * Per transaction: `T`, then per record `S` + data or `B` + data + chunks, then `C`.
 * {@link StreamDecoder} checks that grammar and the running checksum;
 * {@link StreamEncoder} produces it. Neither does any I/O.
 * @module
 */
import { ZrsError } from './errors.ts';
import { RunningChecksum } from './checksum.ts';
import { frameHeader } from './framing.ts';
import {
  type BlobMessage,
  type CommitMessage,
  decodeMessage,
  encodeMessage,
  type Message,
  type StoreMessage,
  type TransactionMessage,
} from './messages.ts';
import type { PickleLimits } from './pickle/limits.ts';

/** A primary broke the message grammar or the checksum did not match. */
export class StreamError extends ZrsError {}

/** What a decoded frame meant. */
export type StreamEvent =
  | { kind: 'begin'; message: TransactionMessage }
  | { kind: 'record'; message: StoreMessage | BlobMessage; data: Uint8Array | null }
  | { kind: 'chunk'; message: BlobMessage; index: number; data: Uint8Array }
  | { kind: 'commit'; message: CommitMessage; digest: Buffer };

/** Where the decoder is in the grammar. */
type Expect =
  | { next: 'message' }
  | { next: 'data'; message: StoreMessage | BlobMessage }
  | { next: 'chunk'; message: BlobMessage; index: number };

export interface StreamDecoderOptions {
  /** Refuse a commit whose digest differs from the running one (default true). */
  checkChecksums?: boolean;
  /** Decoding limits of control messages, replacing the defaults (wire-protocol §6.7). */
  pickleLimits?: Partial<PickleLimits>;
}

/** Decodes the frames a primary sends after the handshake. */
export class StreamDecoder {
  private readonly sum: RunningChecksum;
  private expect: Expect = { next: 'message' };
  private open: TransactionMessage | null = null;
  private readonly check: boolean;
  private readonly limits: Partial<PickleLimits> | undefined;

  constructor(startTid: Uint8Array, options: StreamDecoderOptions = {}) {
    this.sum = new RunningChecksum(startTid);
    this.check = options.checkChecksums ?? true;
    this.limits = options.pickleLimits;
  }

  /** What the next frame is, by its position in the grammar. */
  get expecting(): Expect['next'] {
    return this.expect.next;
  }

  /** The transaction begun and not yet committed, if any. */
  get inTransaction(): TransactionMessage | null {
    return this.open;
  }

  /**
   * Interprets one frame payload: returns its event, or `null` for a record header (its
   * record is reported with the data frame that follows). Throws {@link StreamError} or a
   * decoding error.
   */
  push(payload: Uint8Array): StreamEvent | null {
    const e = this.expect;
    if (e.next === 'data') {
      this.sum.update(payload);
      const data = payload.length === 0 ? null : payload;
      const m = e.message;
      this.expect = m.type === 'B' && m.blocks > 0 ? { next: 'chunk', message: m, index: 0 } : { next: 'message' };
      return { kind: 'record', message: m, data };
    }
    if (e.next === 'chunk') {
      this.sum.update(payload);
      const index = e.index;
      this.expect = index + 1 < e.message.blocks ? { ...e, index: index + 1 } : { next: 'message' };
      return { kind: 'chunk', message: e.message, index, data: payload };
    }
    const message = decodeMessage(payload, this.limits);
    const event = this.control(message);
    this.sum.update(payload);
    return event;
  }

  private control(m: Message): StreamEvent | null {
    switch (m.type) {
      case 'T':
        if (this.open) throw new StreamError('ERR_STREAM_NESTED', 'T received inside an open transaction', 'WIRE-TXN-11');
        this.open = m;
        return { kind: 'begin', message: m };
      case 'S':
      case 'B':
        if (!this.open) throw new StreamError('ERR_STREAM_NO_TXN', `${m.type} received outside a transaction`, 'DEV-SEQ-1');
        this.expect = { next: 'data', message: m };
        return null;
      case 'C': {
        if (!this.open) throw new StreamError('ERR_STREAM_NO_TXN', 'C received outside a transaction', 'WIRE-TXN-11');
        const digest = this.sum.digest();
        if (this.check && (m.checksum === null || !digest.equals(m.checksum))) {
          const got = m.checksum === null ? 'none' : Buffer.from(m.checksum).toString('hex');
          throw new StreamError('ERR_CHECKSUM', `bad checksum: received ${got}, computed ${digest.toString('hex')}`, m.checksum === null ? 'WIRE-SUM-9' : 'WIRE-SUM-6');
        }
        this.open = null;
        return { kind: 'commit', message: m, digest };
      }
    }
  }
}

/** A record to send: its header message and data (`null` for none). */
export interface OutgoingRecord {
  message: StoreMessage | BlobMessage;
  data: Uint8Array | null;
  /** Blob content, split into chunk frames by the caller (`B` only). */
  chunks?: Uint8Array[];
}

/** Produces the frames of the stream for one connection, keeping its running checksum. */
export class StreamEncoder {
  private readonly sum: RunningChecksum;

  constructor(startTid: Uint8Array) {
    this.sum = new RunningChecksum(startTid);
  }

  /** Header and payload buffers of one frame; the payload is fed to the checksum. */
  frame(payload: Uint8Array): [Buffer, Uint8Array] {
    this.sum.update(payload);
    return [frameHeader(payload.length), payload];
  }

  /** Frames of a control message. */
  message(m: Message): [Buffer, Uint8Array] {
    return this.frame(encodeMessage(m));
  }

  /** Frames of the commit message, carrying the digest of everything sent before it. */
  commit(): [Buffer, Uint8Array] {
    return this.message({ type: 'C', checksum: this.sum.digest() });
  }

  /** Every frame of one whole transaction, in order. */
  transaction(t: TransactionMessage, records: OutgoingRecord[]): Uint8Array[] {
    const out: Uint8Array[] = [...this.message(t)];
    for (const r of records) {
      out.push(...this.message(r.message), ...this.frame(r.data ?? new Uint8Array(0)));
      for (const chunk of r.chunks ?? []) out.push(...this.frame(chunk));
    }
    out.push(...this.commit());
    return out;
  }
}
