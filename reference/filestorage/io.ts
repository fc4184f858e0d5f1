/** Positioned file reads shared by the reader and the checker. */
import { readSync } from 'node:fs';

/** Reads up to `length` bytes at `offset` of `fd`; fewer only at the end of the file. */
export function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  const got = readInto(fd, buf, offset);
  return got === length ? buf : buf.subarray(0, got);
}

/** Fills `buf` from `offset` of `fd` as far as the file goes; returns the bytes read. */
export function readInto(fd: number, buf: Buffer, offset: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
