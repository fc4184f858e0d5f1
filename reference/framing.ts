/**
 * ZRS framing: every message, in both directions, is a 4-byte big-endian unsigned length
 * followed by exactly that many payload bytes. No type byte, no trailer; an empty payload is
 * a legal frame.
 * @module
 */
import { FramingError } from './errors.ts';

/** A frame header announced more than the receiver accepts. */
export class FrameTooLargeError extends FramingError {
  /** Frames completed in the same `push` before the oversized header, in order. */
  completed: Buffer[] = [];

  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super('ERR_FRAME_TOO_LARGE', `frame of ${length} bytes exceeds the receive limit of ${limit}`, 'WIRE-FRAME-5');
  }
}

/** Bytes in a frame header. */
export const HEADER_SIZE = 4;
/** The largest payload a header can announce. */
export const MAX_FRAME = 0xffffffff;
/** A primary refuses any frame from a secondary longer than this (protocol id ≤ 6, tid = 8). */
export const PRIMARY_RECEIVE_LIMIT = 8;

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

/**
 * Incremental frame decoder. Feed it bytes as they arrive, split anywhere; it returns every
 * frame completed so far, in order, including empty ones. The receive limit is checked as
 * soon as a header is complete, before any of the payload is awaited.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(HEADER_SIZE);
  private headerFill = 0;
  /** Payload length of the frame being received, or -1 while reading a header. */
  private expected = -1;
  private parts: Buffer[] = [];
  private partsLength = 0;
  private failure: FramingError | undefined;

  /** @param limit the largest payload accepted; larger headers raise {@link FrameTooLargeError}. */
  constructor(readonly limit: number = MAX_FRAME) {}

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
    if (this.failure) throw this.failure;
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const frames: Buffer[] = [];
    try {
      this.consume(data, frames);
    } catch (e) {
      if (e instanceof FrameTooLargeError) e.completed = frames;
      throw e;
    }
    return frames;
  }

  private consume(data: Buffer, frames: Buffer[]): void {
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
          frames.push(Buffer.alloc(0));
          this.expected = -1;
        }
        continue;
      }
      const want = this.expected - this.partsLength;
      const take = Math.min(want, data.length - pos);
      if (this.partsLength === 0 && take === want) {
        frames.push(data.subarray(pos, pos + take));
      } else {
        this.parts.push(data.subarray(pos, pos + take));
        this.partsLength += take;
        if (this.partsLength === this.expected) {
          frames.push(Buffer.concat(this.parts, this.partsLength));
          this.parts = [];
          this.partsLength = 0;
        }
      }
      pos += take;
      if (this.partsLength === 0) this.expected = -1;
    }
  }

  private start(length: number): void {
    if (length > this.limit) {
      this.failure = new FrameTooLargeError(length, this.limit);
      throw this.failure;
    }
    this.expected = length;
  }
}
