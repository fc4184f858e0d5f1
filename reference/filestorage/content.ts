/**
 * The content of a FileStorage file as plain data: each transaction's tid, status, metadata
 * and records with their resolved data. Two files with equal content hold the same history,
 * whatever their back pointers and offsets (what replication must preserve).
 * @module
 */
import { hex8 } from '../timestamp.ts';
import { FileStorageReader } from './reader.ts';

/** One transaction of {@link fileContent}; bytes as hex. */
export interface TransactionContent {
  tid: string;
  status: string;
  user: string;
  description: string;
  extension: string;
  records: { oid: string; tid: string; data: string | null }[];
}

/** Every whole transaction of a file, in order. */
export function fileContent(file: string): TransactionContent[] {
  const r = FileStorageReader.open(file);
  try {
    return [...r.transactions()].map((t) => ({
      tid: hex8(t.tid),
      status: t.status,
      user: t.user.toString('hex'),
      description: t.description.toString('hex'),
      extension: t.extension.toString('hex'),
      records:
        t.status === 'u'
          ? []
          : [...r.records(t)].map((rec) => {
              const { data } = r.resolve(rec);
              return { oid: hex8(rec.oid), tid: hex8(rec.tid), data: data?.toString('hex') ?? null };
            }),
    }));
  } finally {
    r.close();
  }
}
