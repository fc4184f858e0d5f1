/**
 * ZRS framing: every message, in both directions, is a 4-byte big-endian unsigned length
 * followed by exactly that many payload bytes. No type byte, no trailer; an empty payload is
 * a legal frame.
 * @module
 */
import { FramingError } from './errors.ts';

/** What a receiver accepts at one point of the stream, and what it calls a refusal. */
export interface FrameBound {
  /** The largest payload accepted. */
  max: number;
  /** Error code and requirement ID of a refusal. */
  code: string;
  requirement: string;
  /** What the frame is, for the message: `control message`, `record data frame`. */
  what: string;
}

/** A frame header announced more than the receiver accepts. */
export class FrameTooLargeError extends FramingError {
  /** Frames completed in the same `push` before the oversized header, in order. */
  completed: Buffer[] = [];

  constructor(
    readonly length: number,
    readonly limit: number,
    bound: Omit<FrameBound, 'max'> = { code: 'ERR_FRAME_TOO_LARGE', requirement: 'WIRE-FRAME-5', what: 'frame' },
  ) {
    super(bound.code, `${bound.what} of ${length} bytes exceeds the receive limit of ${limit}`, bound.requirement);
  }
}

/** Bytes in a frame header. */
export const HEADER_SIZE = 4;
/** The largest payload a header can announce. */
export const MAX_FRAME = 0xffffffff;
/** A primary refuses any frame from a secondary longer than this (protocol id ≤ 6, tid = 8). */
export const PRIMARY_RECEIVE_LIMIT = 8;
/** A secondary's default limit on a control message, checked before it is decoded (WIRE-FRAME-8). */
export const DEFAULT_MAX_MESSAGE_SIZE = 1 << 20;
/** A secondary's default limit on a record data frame or a blob chunk (WIRE-FRAME-9). */
export const DEFAULT_MAX_RECORD_SIZE = 64 << 20;

/** The 4-byte header of a frame with `length` payload bytes. */
export function frameHeader(length: number): Buffer {
  if (!Number.isInteger(length) || length < 0 || length > MAX_FRAME) {
    throw new FramingError('ERR_FRAME_LENGTH', `a frame cannot carry ${length} bytes`, 'WIRE-FRAME-7');
  }
  const h = Buffer.allocUnsafe(HEADER_SIZE);
  h.writeUInt32BE(length, 0);
  return h;
}

/** One whole frame (header and payload) as a single buffer. */
export function encodeFrame(payload: Uint8Array): Buffer {
  return Buffer.concat([frameHeader(payload.length), payload]);
}

/** The largest payload accepted: fixed, or asked of the caller at each header (limits by state). */
export type FrameLimit = number | (() => FrameBound);

/**
 * Incremental frame decoder. Feed it bytes as they arrive, split anywhere; it yields every
 * frame completed so far, in order, including empty ones. The receive limit is checked as
 * soon as a header is complete, before any of the payload is awaited, and a payload that
 * spans chunks is gathered into one buffer of its announced size.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private headerFill = 0;
  /** Payload length of the frame being received, or -1 while reading a header. */
  private expected = -1;
  /** The payload being gathered across chunks, and how much of it has arrived. */
  private partial: Buffer | null = null;
  private partialFill = 0;
  private failure: FramingError | undefined;

  /**
   * @param limit the largest payload accepted; larger headers raise {@link FrameTooLargeError}.
   * A function is called at each header, after every earlier frame has been delivered.
   */
  constructor(readonly limit: FrameLimit = MAX_FRAME) {}

  /** True when no partial frame is buffered. */
  get idle(): boolean {
    return this.headerFill === 0 && this.expected < 0;
  }

  /**
   * Consumes `chunk` and returns the payloads it completed. Payloads may share memory with
   * `chunk`. An oversized header throws {@link FrameTooLargeError}, carrying the frames
   * completed before it; after an error, every later call throws the same error.
   */
  push(chunk: Uint8Array): Buffer[] {
    const frames: Buffer[] = [];
    try {
      this.feed(chunk, (f) => frames.push(f));
    } catch (e) {
      if (e instanceof FrameTooLargeError) e.completed = frames;
      throw e;
    }
    return frames;
  }

  /**
   * Consumes `chunk`, handing each completed payload to `onFrame` before the next header is
   * read, so that a limit function sees what that frame changed. Errors as {@link push}.
   */
  feed(chunk: Uint8Array, onFrame: (payload: Buffer) => void): void {
    if (this.failure) throw this.failure;
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let pos = 0;
    while (pos < data.length) {
      if (this.expected < 0) {
        if (this.headerFill === 0 && data.length - pos >= HEADER_SIZE) {
          this.start(data.readUInt32BE(pos));
          pos += HEADER_SIZE;
        } else {
          const n = Math.min(HEADER_SIZE - this.headerFill, data.length - pos);
          data.copy(this.header, this.headerFill, pos, pos + n);
          this.headerFill += n;
          pos += n;
          if (this.headerFill < HEADER_SIZE) break;
          this.headerFill = 0;
          this.start(this.header.readUInt32BE(0));
        }
        if (this.expected === 0) {
          this.expected = -1;
          onFrame(Buffer.alloc(0));
        }
        continue;
      }
      const want = this.expected - this.partialFill;
      const take = Math.min(want, data.length - pos);
      if (this.partial === null && take === want) {
        this.expected = -1;
        pos += take;
        onFrame(data.subarray(pos - take, pos));
        continue;
      }
      this.partial ??= Buffer.allocUnsafe(this.expected);
      data.copy(this.partial, this.partialFill, pos, pos + take);
      this.partialFill += take;
      pos += take;
      if (this.partialFill === this.expected) {
        const payload = this.partial;
        this.partial = null;
        this.partialFill = 0;
        this.expected = -1;
        onFrame(payload);
      }
    }
  }

  private start(length: number): void {
    if (typeof this.limit === 'number') {
      if (length > this.limit) throw (this.failure = new FrameTooLargeError(length, this.limit));
    } else {
      const bound = this.limit();
      if (length > bound.max) throw (this.failure = new FrameTooLargeError(length, bound.max, bound));
    }
    this.expected = length;
  }
}
