/**
 * Local storage failures (spec/file-format.md §4.2): an error of the operating system while a
 * node writes its data or blob files, such as a full disk (ENOSPC), a quota (EDQUOT), an I/O
 * error (EIO) or a file system remounted read-only (EROFS). They are not bad input: the
 * transaction is abandoned and cut off, and the node tries again later.
 * @module
 */
import { ZrsError } from '../errors.ts';

/** An operating-system error raised while writing a storage. */
export class StorageError extends ZrsError {
  constructor(
    /** The errno name, for example `ENOSPC`. */
    readonly errno: string,
    message: string,
  ) {
    super('ERR_STORAGE', message, 'FS-FAIL-1');
  }
}

/**
 * The {@link StorageError} for `e` when it is an operating-system error (Node's system
 * errors carry a `syscall`), else `null`. `file` names the storage when the error does not.
 */
export function storageFailure(e: unknown, file: string): StorageError | null {
  if (e instanceof StorageError) return e;
  if (!(e instanceof Error)) return null;
  const { code, syscall, path } = e as NodeJS.ErrnoException;
  if (typeof syscall !== 'string' || typeof code !== 'string') return null;
  const reason = e.message.replace(/^[A-Z]+: /, '').replace(/, .*$/, '');
  return new StorageError(code, `cannot ${syscall} ${path ?? file}: ${reason} (${code})`);
}
