/**
 * The frames of one committed transaction, as a primary sends them (wire-protocol §5): `T`,
 * then per record `S` + data, or `B` + data + chunks of the blob file read one at a time,
 * then `C`. A generator, so that the sender decides when to pull the next frame (and the
 * harness's fake primary can collect, reorder or damage them).
 * @module
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ZrsError } from '../errors.ts';
import { type BlobDirectory, isBlobRecord } from '../filestorage/blobs.ts';
import type { FileStorageReader, TxnInfo } from '../filestorage/reader.ts';
import { loadPickle } from '../pickle/decoder.ts';
import { PyDict } from '../pickle/values.ts';
import type { StreamEncoder } from '../stream.ts';
import { hex8 } from '../timestamp.ts';

/** Blob content goes out in chunks of this size (WIRE-BLOB-3). */
export const BLOB_CHUNK = 65536;

/** One frame: its header and its payload. */
export type Frame = [header: Buffer, payload: Uint8Array];

/** Something the sender may want to log while frames are produced. */
export type FrameNotice = { kind: 'blob-missing'; oid: Buffer; file: string };

/**
 * Yields every frame of `txn`, feeding the encoder's checksum as it goes. Throws a ZrsError
 * for a transaction that cannot be sent (DEV-STATUS-4, DEV-EXTASCII-2, DEV-BLOBSRC-3).
 */
export function* transactionFrames(
  file: FileStorageReader,
  txn: TxnInfo,
  encoder: StreamEncoder,
  blobs: BlobDirectory | null,
  notice: (n: FrameNotice) => void = () => undefined,
): Generator<Frame> {
  if (txn.status.charCodeAt(0) > 0x7f) {
    throw new ZrsError('ERR_STATUS', `transaction ${hex8(txn.tid)} at offset ${txn.offset} has a status byte above 0x7f`, 'DEV-STATUS-4');
  }
  const extension = decodeExtension(txn);
  yield encoder.message({ type: 'T', tid: txn.tid, status: txn.status, user: txn.user, description: txn.description, extension });
  for (const record of file.records(txn)) {
    const { data, dataTxn } = file.resolve(record);
    const path = blobs && isBlobRecord(data) ? blobs.blobPath(record.oid, record.tid) : null;
    const blob = path ? openBlob(path) : null;
    if (path && !blob) notice({ kind: 'blob-missing', oid: record.oid, file: path });
    if (!blob) {
      yield encoder.message({ type: 'S', oid: record.oid, tid: record.tid, version: '', dataTxn });
      yield encoder.frame(data ?? Buffer.alloc(0));
      continue;
    }
    try {
      const blocks = Math.ceil(blob.size / BLOB_CHUNK);
      yield encoder.message({ type: 'B', oid: record.oid, tid: record.tid, version: '', dataTxn, blocks });
      yield encoder.frame(data!);
      for (let i = 0; i < blocks; i++) {
        const length = Math.min(BLOB_CHUNK, blob.size - i * BLOB_CHUNK);
        const chunk = Buffer.allocUnsafe(length);
        const n = readSync(blob.fd, chunk, 0, length, i * BLOB_CHUNK);
        if (n !== length) {
          throw new ZrsError('ERR_BLOB_SHORT', `blob file of ${hex8(record.oid)} ended after ${i * BLOB_CHUNK + n} of ${blob.size} bytes`, 'DEV-BLOBSRC-3');
        }
        yield encoder.frame(chunk);
      }
    } finally {
      closeSync(blob.fd);
    }
  }
  yield encoder.commit();
}

/** The extension dict of a transaction, decoded without running anything (WIRE-TXN-7). */
function decodeExtension(txn: TxnInfo): PyDict {
  if (txn.extension.length === 0) return new PyDict();
  let value;
  try {
    value = loadPickle(txn.extension);
  } catch (e) {
    throw new ZrsError('ERR_EXTENSION', `extension of ${hex8(txn.tid)} at offset ${txn.offset} cannot be decoded: ${(e as Error).message}`, 'DEV-EXTASCII-2');
  }
  if (!(value instanceof PyDict)) {
    throw new ZrsError('ERR_EXTENSION', `extension of ${hex8(txn.tid)} at offset ${txn.offset} is not a dict`, 'DEV-EXTASCII-2');
  }
  return value;
}

function openBlob(file: string): { fd: number; size: number } | null {
  try {
    const fd = openSync(file, 'r');
    return { fd, size: fstatSync(fd).size };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}
