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
import { check } from './checks.ts';
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

/** The first difference between what was received and what was expected, and the primary's requirement it breaks. */
export interface Difference {
  id: string;
  message: string;
}

/** Requirements a comparison blames: the first transaction's place, and the order of the others. */
export interface OrderIds {
  /** The first transaction sent is not the one expected (default: `order`). */
  first?: string;
  /** A transaction missing, extra or out of place (default WIRE-TXN-1). */
  order?: string;
}

/**
 * Compares what was received with what was expected, in order; returns the first difference
 * (or null) and the requirements the comparison exercised.
 */
export function compareTransactions(received: ReceivedTransaction[], expected: ManifestTransaction[], ids: OrderIds = {}): { difference: Difference | null; exercised: Set<string> } {
  const order = ids.order ?? 'WIRE-TXN-1';
  const exercised = new Set<string>([ids.first ?? order, order]);
  const differ = (id: string, message: string) => ({ difference: { id, message }, exercised });
  for (let i = 0; i < Math.max(received.length, expected.length); i++) {
    const got = received[i];
    const want = expected[i];
    const place = i === 0 ? (ids.first ?? order) : order;
    if (!got) return differ(place, `transaction #${i} (${want!.tid}) never arrived`);
    if (!want) return differ(place, `transaction #${i} (${hex(got.begin.tid)}) was not expected`);
    const t = got.begin;
    if (hex(t.tid) !== want.tid) return differ(place, `transaction #${i} is ${hex(t.tid)}, expected ${want.tid}`);
    exercised.add('WIRE-TXN-5').add('WIRE-TXN-6');
    const fields: [string, string, unknown, unknown][] = [
      ['WIRE-TXN-5', 'status', t.status, want.status],
      ['WIRE-TXN-6', 'user', hex(t.user), want.user_hex],
      ['WIRE-TXN-6', 'description', hex(t.description), want.description_hex],
      ['WIRE-TXN-6', 'extension', JSON.stringify(pickleToManifestJson(t.extension)), JSON.stringify(want.extension)],
      ['WIRE-TXN-1', 'record count', got.records.length, want.records.length],
    ];
    for (const [id, name, a, b] of fields) if (a !== b) return differ(id, `transaction ${want.tid}: ${name} is ${String(a)}, expected ${String(b)}`);
    for (let j = 0; j < want.records.length; j++) {
      const r = got.records[j]!;
      const w = want.records[j]!;
      const data = r.message.type === 'B' || r.data ? r.data : null;
      // which rule says what this record's data and data_txn must be (WIRE-DATA-2 to 4)
      const rule = w.data_txn !== null ? 'WIRE-DATA-4' : w.data_sha256 === null ? 'WIRE-DATA-3' : 'WIRE-DATA-2';
      exercised.add('WIRE-DATA-1').add(rule);
      const rf: [string, string, unknown, unknown][] = [
        ['WIRE-TXN-1', 'oid', hex(r.message.oid), w.oid],
        ['WIRE-DATA-1', 'tid', hex(r.message.tid), w.serial],
        [rule, 'data', sha(data), w.data_sha256],
        [rule, 'data_txn', hex(r.message.dataTxn), w.data_txn],
      ];
      for (const [id, name, a, b] of rf) if (a !== b) return differ(id, `transaction ${want.tid}, record #${j}: ${name} is ${String(a)}, expected ${String(b)}`);
    }
  }
  return { difference: null, exercised };
}

/** The first difference between what was received and what was expected, as text, or null. */
export function firstDifference(received: ReceivedTransaction[], expected: ManifestTransaction[]): string | null {
  return compareTransactions(received, expected).difference?.message ?? null;
}

/**
 * Checks what a primary sent against what it had to send: the first difference blames the
 * requirement it breaks; without one, each requirement the comparison exercised passes.
 */
export function checkTransactions(received: ReceivedTransaction[], expected: ManifestTransaction[], ids: OrderIds = {}): void {
  const { difference, exercised } = compareTransactions(received, expected, ids);
  if (difference) {
    check(difference.id, () => {
      throw new Error(difference.message);
    });
  }
  for (const id of exercised) check(id, () => undefined);
}
