/**
 * The file a `zrs primary` serves must exist unless `--create` is given, so that a mistyped
 * `--fs` does not start a new, empty database under a name no secondary expects.
 * @module
 */
import { existsSync } from 'node:fs';
import { ZrsError } from '../errors.ts';
import { FileLock } from '../filestorage/lock.ts';
import { FileStorageWriter } from '../filestorage/writer.ts';

/** Raised when the file to serve does not exist and `--create` was not given. */
export const ERR_NO_FILE = 'ERR_NO_FILE';

/**
 * Throws {@link ERR_NO_FILE} when `file` does not exist and `create` is not set. With `create`,
 * a follower (which only reads) gets a new, empty FileStorage here, written under the file's
 * lock like any other write (FS-LOCK-1); a primary that writes its file creates it when it opens it.
 */
export async function checkServedFile(file: string, create: boolean, follow: boolean): Promise<void> {
  if (existsSync(file)) return;
  if (!create) throw new ZrsError(ERR_NO_FILE, `${file} does not exist (--create makes a new, empty one)`);
  if (!follow) return;
  const lock = await FileLock.acquire(file);
  try {
    FileStorageWriter.open(file).close();
  } finally {
    await lock.release();
  }
}
