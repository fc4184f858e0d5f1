/**
 * The golden interop data: FileStorage files written by real ZODB and streams captured from
 * a real zc.zrs primary. The project keeps a copy in `fixtures/real/` (see its README); the
 * one file it may not copy, ZODB's own `fs21/test-checker.fs`, is read from
 * `../shared/interop/` beside the repository, and the tests that need it skip, saying so,
 * when it is absent.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The committed copy of the interop data. */
export const INTEROP = path.join(REPO_ROOT, 'fixtures/real');
/** The shared interop folder, for the file the project does not copy. */
export const SHARED_INTEROP = path.resolve(REPO_ROOT, '../shared/interop');
/** The FS21 file of ZODB's own repository (read in place, never copied). */
export const TEST_CHECKER = 'fs21/test-checker.fs';
export const HAS_TEST_CHECKER = existsSync(path.join(SHARED_INTEROP, TEST_CHECKER));
if (!HAS_TEST_CHECKER) console.warn(`${path.join(SHARED_INTEROP, TEST_CHECKER)} not found: the tests of that FS21 file are skipped`);

/** Absolute path of an interop file, given relative to the interop folder. */
export function interopPath(relative: string): string {
  return relative.startsWith(TEST_CHECKER) ? path.join(SHARED_INTEROP, relative) : path.join(INTEROP, relative);
}

/** Reads a file of the interop data. */
export function interopFile(relative: string): Buffer {
  return readFileSync(interopPath(relative));
}

/** Reads and parses a JSON file of the interop data. */
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
  ...(HAS_TEST_CHECKER ? [[TEST_CHECKER, `${TEST_CHECKER}.json`] as [string, string]] : []),
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
