/**
 * What a primary must send for a fixture store, from the store's manifest (written by real
 * ZODB), and a comparison that names the first difference.
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pickleToManifestJson } from '../reference/pickle/json.ts';
import { FIXTURES } from './env.ts';
import type { ReceivedTransaction } from './peers/fake-secondary.ts';

interface ManifestTransaction {
  tid: string;
  status: string;
  user_hex: string;
  description_hex: string;
  extension: unknown;
  records: { oid: string; serial: string; data_sha256: string | null; data_txn: string | null }[];
}

/** The transactions a primary serving `store` sends after `startTid` (hex), `u` excluded. */
export function expectedTransactions(store: string, startTid = '0000000000000000'): ManifestTransaction[] {
  const m = JSON.parse(readFileSync(path.join(FIXTURES, store, 'Data.fs.json'), 'utf8')) as { transaction_log: ManifestTransaction[] };
  return m.transaction_log.filter((t) => t.tid > startTid && t.status !== 'u');
}


const hex = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString('hex'));
const sha = (b: Uint8Array | null) => (b === null ? null : createHash('sha256').update(b).digest('hex'));

/** The first difference between what was received and what was expected, or null. */
export function firstDifference(received: ReceivedTransaction[], expected: ManifestTransaction[]): string | null {
  for (let i = 0; i < Math.max(received.length, expected.length); i++) {
    const got = received[i];
    const want = expected[i];
    if (!got) return `transaction #${i} (${want!.tid}) never arrived`;
    if (!want) return `transaction #${i} (${hex(got.begin.tid)}) was not expected`;
    const t = got.begin;
    const fields: [string, unknown, unknown][] = [
      ['tid', hex(t.tid), want.tid],
      ['status', t.status, want.status],
      ['user', hex(t.user), want.user_hex],
      ['description', hex(t.description), want.description_hex],
      ['extension', JSON.stringify(pickleToManifestJson(t.extension)), JSON.stringify(want.extension)],
      ['record count', got.records.length, want.records.length],
    ];
    for (const [name, a, b] of fields) if (a !== b) return `transaction ${want.tid}: ${name} is ${String(a)}, expected ${String(b)}`;
    for (let j = 0; j < want.records.length; j++) {
      const r = got.records[j]!;
      const w = want.records[j]!;
      const data = r.message.type === 'B' || r.data ? r.data : null;
      const rf: [string, unknown, unknown][] = [
        ['oid', hex(r.message.oid), w.oid],
        ['tid', hex(r.message.tid), w.serial],
        ['data', sha(data), w.data_sha256],
        ['data_txn', hex(r.message.dataTxn), w.data_txn],
      ];
      for (const [name, a, b] of rf) if (a !== b) return `transaction ${want.tid}, record #${j}: ${name} is ${String(a)}, expected ${String(b)}`;
    }
  }
  return null;
}
