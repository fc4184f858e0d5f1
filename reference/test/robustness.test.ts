// Hostile input of every kind gives a typed error (a ZrsError), never a crash, a hang or an
// allocation the input cannot justify.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fc, test } from '@fast-check/vitest';
import { afterAll, describe, expect } from 'vitest';
import { ZrsError } from '../errors.ts';
import { checkFile } from '../filestorage/checker.ts';
import { FileFollower } from '../filestorage/follower.ts';
import { FileStorageReader } from '../filestorage/reader.ts';
import { FileStorageWriter } from '../filestorage/writer.ts';
import { FrameDecoder, PRIMARY_RECEIVE_LIMIT } from '../framing.ts';
import { StreamDecoder } from '../stream.ts';
import { Z64 } from '../timestamp.ts';
import { interopFile } from './interop.ts';

const work = mkdtempSync(path.join(tmpdir(), 'zrs-robust-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;

/** Runs `f`; any error must be a ZrsError. */
function typedOnly(f: () => void): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof ZrsError)) throw e;
  }
}

/** Reads everything a reader can see in a file: transactions, records, resolved data. */
function readAll(file: string): void {
  typedOnly(() => {
    const r = FileStorageReader.open(file);
    try {
      for (const t of r.transactions()) for (const rec of r.records(t)) r.resolve(rec);
    } finally {
      r.close();
    }
  });
  typedOnly(() => {
    const f = new FileFollower(file, Z64);
    try {
      for (let i = 0; i < 10_000 && f.next().kind === 'transaction'; i++);
    } finally {
      f.close();
    }
  });
}

describe('hostile bytes', () => {
  test.prop([fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 1, max: 64 })], { numRuns: 500 })(
    'a primary frame decoder fed garbage: frames or a FramingError',
    (bytes, step) => {
      const d = new FrameDecoder(PRIMARY_RECEIVE_LIMIT);
      typedOnly(() => {
        for (let i = 0; i < bytes.length; i += step) for (const f of d.push(bytes.subarray(i, i + step))) expect(f.length).toBeLessThanOrEqual(8);
      });
    },
  );

  test.prop([fc.array(fc.uint8Array({ maxLength: 120 }), { maxLength: 20 })], { numRuns: 500 })(
    'a stream decoder fed garbage frames: events or a typed error',
    (frames) => {
      const d = new StreamDecoder(Z64);
      typedOnly(() => {
        for (const f of frames) d.push(f);
      });
    },
  );

  test.prop([fc.uint8Array({ maxLength: 600 })], { numRuns: 300 })('a file of garbage after the magic', (bytes) => {
    const file = path.join(work, `g${n++}.fs`);
    writeFileSync(file, Buffer.concat([Buffer.from('FS30'), bytes]));
    readAll(file);
    expect(() => checkFile(file)).not.toThrow();
    typedOnly(() => FileStorageWriter.open(file).close());
  });
});

describe('hostile changes to a real file', () => {
  const changes = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 });
  test.prop([changes], { numRuns: 300 })('a few bytes changed', (edits) => {
    const bytes = Buffer.from(interopFile('undo/Data.fs'));
    for (const [at, value] of edits) bytes[at % bytes.length] = value;
    const file = path.join(work, `m${n++}.fs`);
    writeFileSync(file, bytes);
    readAll(file);
    expect(() => checkFile(file)).not.toThrow();
    typedOnly(() => FileStorageWriter.open(file).close());
  });
});
