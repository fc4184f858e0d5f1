// Golden streams captured from a real zc.zrs primary: our decoder must read them, every
// commit digest must verify, and our encoder must reproduce them byte for byte.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FrameDecoder, PRIMARY_RECEIVE_LIMIT } from '../framing.ts';
import type { BlobMessage, StoreMessage, TransactionMessage } from '../messages.ts';
import { dumpExtension } from '../pickle/encoder.ts';
import { pickleToManifestJson } from '../pickle/json.ts';
import { type OutgoingRecord, StreamDecoder, StreamEncoder } from '../stream.ts';
import { interopFile, interopJson, interopPath, type Manifest, type TranscriptInfo } from './interop.ts';

interface Received {
  begin: TransactionMessage;
  records: (OutgoingRecord & { message: StoreMessage | BlobMessage })[];
  digest: Buffer;
}

function readTranscript(name: string) {
  const sent = new FrameDecoder(PRIMARY_RECEIVE_LIMIT).push(interopFile(`transcripts/${name}.zrs.sent`));
  const [protocol, startTid] = sent;
  const stream = interopFile(`transcripts/${name}.zrs`);
  const frames = new FrameDecoder().push(stream);
  const decoder = new StreamDecoder(startTid!);
  const txns: Received[] = [];
  let current: Received | null = null;
  for (const frame of frames) {
    const e = decoder.push(frame);
    if (!e) continue;
    if (e.kind === 'begin') current = { begin: e.message, records: [], digest: Buffer.alloc(0) };
    else if (e.kind === 'record') current!.records.push({ message: e.message, data: e.data, chunks: [] });
    else if (e.kind === 'chunk') current!.records.at(-1)!.chunks!.push(e.data);
    else {
      current!.digest = e.digest;
      txns.push(current!);
      current = null;
    }
  }
  return { protocol: protocol!.toString('latin1'), startTid: startTid!, stream, frames, txns, open: current };
}


const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));

/** Path of a committed blob in a `bushy` blob directory. */
function bushyBlobPath(dir: string, oid: Uint8Array, tid: Uint8Array): string {
  const parts = [...oid].map((b) => `0x${b.toString(16).padStart(2, '0')}`);
  const digits = Buffer.from(tid).toString('hex').replace(/^(00)+/, '') || '00';
  return path.join(dir, ...parts, `0x${digits}.blob`);
}

const TRANSCRIPTS: { name: string; file: string; skip: number }[] = [
  { name: 'small-from-z64', file: 'small/Data.fs', skip: 0 },
  { name: 'small-after-txn9', file: 'small/Data.fs', skip: 10 },
  { name: 'small-zrs21-from-z64', file: 'small/Data.fs', skip: 0 },
  { name: 'undo-from-z64', file: 'undo/Data.fs', skip: 0 },
  { name: 'packed-from-z64', file: 'packed/Data.fs', skip: 0 },
  { name: 'blobs-from-z64', file: 'blobs/Data.fs', skip: 0 },
];

describe('transcripts of a real zc.zrs primary', () => {
  describe.each(TRANSCRIPTS)('$name', ({ name, file, skip }) => {
    const t = readTranscript(name);
    const info = interopJson<TranscriptInfo>(`transcripts/${name}.zrs.json`);
    const manifest = interopJson<Manifest>(`${file}.json`);

    it('[WIRE-HS-1] handshake: protocol id then the 8-byte start tid', () => {
      expect(t.protocol).toBe(info.proto);
      expect(hex(t.startTid)).toBe(info.start_tid);
    });

    it('[WIRE-SUM-1] [WIRE-SUM-2] [WIRE-SUM-3] [WIRE-SUM-4] decodes every frame and every commit digest verifies', () => {
      expect(t.open).toBeNull();
      expect(t.txns).toHaveLength(info.complete_transactions);
      const records = t.txns.flatMap((x) => x.records);
      expect(records.filter((r) => r.message.type === 'S')).toHaveLength(info.message_counts.S ?? 0);
      expect(records.filter((r) => r.message.type === 'B')).toHaveLength(info.message_counts.B ?? 0);
    });

    it('[WIRE-TXN-1] [WIRE-TXN-5] [WIRE-TXN-6] [WIRE-DATA-1] [WIRE-DATA-2] [WIRE-DATA-3] [WIRE-DATA-4] carries the transactions of the served file, in file order', () => {
      const expected = manifest.transaction_log.slice(skip).filter((x) => x.status !== 'u');
      expect(t.txns.map((x) => hex(x.begin.tid))).toEqual(expected.map((x) => x.tid));
      t.txns.forEach((got, i) => {
        const want = expected[i]!;
        expect(got.begin.status).toBe(want.status);
        expect(hex(got.begin.user)).toBe(want.user_hex);
        expect(hex(got.begin.description)).toBe(want.description_hex);
        expect(pickleToManifestJson(got.begin.extension)).toEqual(want.extension);
        // what a secondary writes for the extension is what ZODB wrote on the primary
        expect(dumpExtension(got.begin.extension).toString('hex')).toBe(want.extension_bytes_hex);
        expect(
          got.records.map((r) => ({
            oid: hex(r.message.oid),
            serial: hex(r.message.tid),
            sha: r.data === null ? null : sha256(r.data),
            dataTxn: hex(r.message.dataTxn),
          })),
        ).toEqual(want.records.map((r) => ({ oid: r.oid, serial: r.serial, sha: r.data_sha256, dataTxn: r.data_txn })));
      });
    });

    it('[WIRE-PICKLE-1] [WIRE-PICKLE-2] [WIRE-PICKLE-3] [WIRE-MSG-2] our encoder reproduces the stream byte for byte', () => {
      const encoder = new StreamEncoder(t.startTid);
      const frames = t.txns.flatMap((x) => encoder.transaction(x.begin, x.records));
      expect(Buffer.concat(frames).equals(t.stream)).toBe(true);
    });

    it.skipIf(!name.startsWith('blobs'))('[WIRE-BLOB-2] [WIRE-BLOB-3] blob chunks are 65536 bytes and hold the blob file', () => {
      const blobDir = interopPath('blobs/blobs');
      let blobs = 0;
      for (const r of t.txns.flatMap((x) => x.records)) {
        if (r.message.type !== 'B') continue;
        blobs++;
        const chunks = r.chunks!;
        expect(chunks).toHaveLength(r.message.blocks);
        chunks.slice(0, -1).forEach((c) => expect(c.length).toBe(65536));
        const file = bushyBlobPath(blobDir, r.message.oid, r.message.tid);
        const content = existsSync(file) ? readFileSync(file) : null;
        if (r.message.blocks === 0) expect(content === null || content.length === 0).toBe(true);
        else expect(Buffer.concat(chunks).equals(content!)).toBe(true);
      }
      expect(blobs).toBe(info.message_counts.B);
    });
  });

  it('[WIRE-HS-8] [WIRE-HS-12] a blob-serving primary refuses zrs2.0 without sending a byte', () => {
    const sent = new FrameDecoder(PRIMARY_RECEIVE_LIMIT).push(interopFile('transcripts/blobs-zrs20-refused.zrs.sent'));
    expect(sent[0]!.toString('latin1')).toBe('zrs2.0');
    expect(interopFile('transcripts/blobs-zrs20-refused.zrs')).toHaveLength(0);
  });
});
