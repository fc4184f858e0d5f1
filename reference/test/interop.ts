/**
 * Where the golden interop data lives: `../shared/interop/` beside the repository, made by
 * real ZODB and a real zc.zrs primary (see its README). Tests that need it skip, saying so,
 * when it is absent.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const INTEROP = path.resolve(REPO_ROOT, '../shared/interop');
export const HAS_INTEROP = existsSync(path.join(INTEROP, 'README.md'));
if (!HAS_INTEROP) console.warn(`golden interop data not found at ${INTEROP}: those tests are skipped`);

/** Reads a file of the interop folder. */
export function interopFile(relative: string): Buffer {
  return readFileSync(path.join(INTEROP, relative));
}

/** Reads and parses a JSON file of the interop folder. */
export function interopJson<T>(relative: string): T {
  return JSON.parse(interopFile(relative).toString('utf8')) as T;
}

/** A record as the interop manifests list it. */
export interface ManifestRecord {
  oid: string;
  serial: string;
  data_len: number | null;
  data_sha256: string | null;
  data_txn: string | null;
}

/** A transaction as the interop manifests list it. */
export interface ManifestTransaction {
  tid: string;
  time: string;
  status: string;
  user_hex: string;
  description_hex: string;
  extension: unknown;
  extension_bytes_hex: string;
  records: ManifestRecord[];
}

/** An interop manifest (`<file>.json`), written by real ZODB's FileStorage iterator. */
export interface Manifest {
  magic: string;
  size: number;
  fstest: string;
  transaction_log: ManifestTransaction[];
}

/** Transcript metadata (`<name>.zrs.json`). */
export interface TranscriptInfo {
  proto: string;
  start_tid: string;
  bytes_received: number;
  complete_transactions: number;
  message_counts: Record<string, number>;
}

/** The whole files of the interop set, each with its manifest (`small-as-fs21` has small's). */
export const WHOLE_FILES: [file: string, manifest: string][] = [
  ['small/Data.fs', 'small/Data.fs.json'],
  ['undo/Data.fs', 'undo/Data.fs.json'],
  ['packed/Data.fs', 'packed/Data.fs.json'],
  ['packed/Data.fs.old', 'packed/Data.fs.old.json'],
  ['blobs/Data.fs', 'blobs/Data.fs.json'],
  ['fs21/test-checker.fs', 'fs21/test-checker.fs.json'],
  ['fs21/small-as-fs21.fs', 'small/Data.fs.json'],
];

/** The files whose manifest carries the verdict of ZODB's `fstest` on the file itself. */
export const FSTEST_FILES: string[] = [
  ...WHOLE_FILES.filter(([f, m]) => m === `${f}.json`).map(([f]) => f),
  'incomplete/checkpoint.fs',
  'incomplete/truncated-mid.fs',
  'incomplete/truncated-header.fs',
  'incomplete/checkpoint-truncated.fs',
];
