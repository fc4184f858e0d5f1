/**
 * What a primary sent on one connection after the handshake, decoded as a secondary decodes it:
 * whole transactions, and, when decoding stopped, the requirement of the primary's that the
 * bytes break (spec wire-protocol §5, §7). Used by the fake secondary as bytes arrive, and by the
 * pair cases on what the fault proxy recorded.
 * @module
 */
import { ZrsError } from '../../reference/errors.ts';
import { FrameDecoder } from '../../reference/framing.ts';
import type { BlobMessage, StoreMessage, TransactionMessage } from '../../reference/messages.ts';
import { StreamDecoder } from '../../reference/stream.ts';
import { digestFault, type SentFrame, streamFault } from './diagnose.ts';

/** A transaction as received. */
export interface ReceivedTransaction {
  begin: TransactionMessage;
  records: { message: StoreMessage | BlobMessage; data: Uint8Array | null; chunks: Uint8Array[] }[];
  digest: Buffer;
}

/** A requirement of the primary's that what it sent breaks, and how. */
export interface StreamFault {
  id: string;
  why: string;
}

export class ReceivedStream {
  private readonly frames = new FrameDecoder();
  private readonly stream: StreamDecoder;
  private current: ReceivedTransaction | null = null;
  /** Frames after the handshake, kept to explain a bad digest. */
  private readonly sent: SentFrame[] = [];
  readonly transactions: ReceivedTransaction[] = [];
  /** The first decoding or checksum error (nothing is decoded after it). */
  error: Error | null = null;
  fault: StreamFault | null = null;

  /** @param protocol and `startTid`: the handshake that began the connection. */
  constructor(
    readonly startTid: Buffer,
    private readonly protocol: Buffer,
  ) {
    this.stream = new StreamDecoder(startTid);
  }

  /** Decodes the next bytes from the primary. */
  push(chunk: Buffer): void {
    if (this.error) return;
    try {
      for (const f of this.frames.push(chunk)) {
        const kind = this.stream.expecting;
        const e = this.stream.push(f);
        const type = kind !== 'message' ? undefined : e?.kind === 'begin' ? 'T' : e?.kind === 'commit' ? 'C' : 'S';
        this.sent.push({ kind, payload: Buffer.from(f), txn: this.transactions.length, ...(type ? { type } : {}) });
        if (!e) continue;
        if (e.kind === 'begin') this.current = { begin: e.message, records: [], digest: Buffer.alloc(0) };
        else if (e.kind === 'record') this.current!.records.push({ message: e.message, data: e.data ? Buffer.from(e.data) : null, chunks: [] });
        else if (e.kind === 'chunk') this.current!.records.at(-1)!.chunks.push(Buffer.from(e.data));
        else {
          this.current!.digest = e.digest;
          this.transactions.push(this.current!);
          this.current = null;
        }
      }
    } catch (e) {
      this.error = e as Error;
      this.fault = this.explain(e);
    }
  }

  /** True when the bytes so far end on a transaction boundary. */
  get atBoundary(): boolean {
    return this.frames.idle && this.current === null && this.stream.inTransaction === null;
  }

  private explain(e: unknown): StreamFault {
    const message = e instanceof Error ? e.message : String(e);
    const why = (s: string) => `what the primary sent does not decode: ${s}`;
    if (!(e instanceof ZrsError) || e.code !== 'ERR_CHECKSUM') return { id: streamFault(e), why: why(message) };
    const digest = /received ([0-9a-f]{32})/.exec(message)?.[1];
    if (!digest) return { id: 'WIRE-MSG-3', why: why(`a C without digest: ${message}`) };
    const fault = digestFault(this.startTid, this.protocol, this.sent, Buffer.from(digest, 'hex'));
    return { id: fault.id, why: why(`${message}: ${fault.why}`) };
  }
}
