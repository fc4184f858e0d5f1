/**
 * The lock of a FileStorage file that a process writes (spec/file-format.md §7.1): an
 * exclusive flock(2) on `FILE.lock`, the lock real ZODB takes (zc.lockfile), with the pid of
 * the writing process in the lock file as ` PID\n`. Readers take no lock.
 *
 * Node cannot call flock(2), so a helper process holds the lock: util-linux's `flock` takes it
 * and runs `cat` with it, which lives until its standard input, a pipe from this process,
 * closes. The lock thus ends with {@link FileLock.release}, and with this process however it
 * ends (even SIGKILL), since the kernel then closes the pipe. The nodes take it before they
 * open their writer (primary.ts, secondary.ts); `FileStorageWriter` itself takes none.
 * @module
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { Socket } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FileLockError } from '../errors.ts';
import type { Logger } from '../net/log.ts';

/** util-linux's flock(1). */
const FLOCK = '/usr/bin/flock';
/** The helper's exit status when another process holds the lock. */
const CONFLICT = 75;
/** How long a lock whose holder has died is tried again: the holder's helper may still be ending. */
const STALE_RETRY_MS = 2000;

/** An exclusive lock on `FILE.lock`. Event `lost` (a {@link FileLockError}): the helper ended while the lock was held. */
export class FileLock extends EventEmitter<{ lost: [FileLockError] }> {
  private released = false;
  private readonly exited: Promise<void>;

  private constructor(
    /** The FileStorage file. */
    readonly file: string,
    /** Its lock file, `FILE.lock`. */
    readonly lockFile: string,
    private readonly helper: ChildProcessWithoutNullStreams,
  ) {
    super();
    this.exited = new Promise((resolve) => helper.once('exit', () => resolve()));
    helper.once('exit', (code, signal) => {
      helper.stdin.destroy(); // `cat` may outlive a killed `flock`, and still hold the lock
      if (this.released) return;
      const why = signal ?? `exit status ${code}`;
      this.emit('lost', new FileLockError('ERR_FS_LOCK_LOST', `lost the lock of ${file}: its flock process ended (${why})`, null, 'FS-LOCK-5'));
    });
    helper.stdin.on('error', () => undefined); // a helper that is gone shows by its exit
    // the lock does not keep this process alive
    helper.unref();
    for (const s of [helper.stdin, helper.stdout, helper.stderr]) (s as Socket).unref();
  }

  /** When the lock is lost: logs it at error level and calls `close`, which must stop the node's writing (FS-LOCK-5). */
  closeOnLoss(logger: Logger, close: () => Promise<unknown>): void {
    this.once('lost', (e) => {
      logger.log('error', 'lock-lost', e.message, { code: e.code, requirement: e.requirement });
      void close();
    });
  }

  /**
   * Takes the lock of `file`: `FILE.lock`, created when missing, locked, and this process's pid
   * written into it. A file that another process holds is refused with `ERR_FS_LOCKED`, which
   * names the pid found in the lock file (FS-LOCK-3).
   */
  static async acquire(file: string): Promise<FileLock> {
    const lockFile = `${file}.lock`;
    const giveUp = Date.now() + STALE_RETRY_MS;
    for (;;) {
      const helper = await hold(file, lockFile);
      if (helper !== 'conflict') {
        const lock = new FileLock(file, lockFile, helper);
        try {
          writePid(lockFile);
        } catch (e) {
          await lock.release();
          throw e;
        }
        return lock;
      }
      const holder = holderPid(lockFile);
      const live = holder !== null && alive(holder);
      if (live || Date.now() >= giveUp) {
        const by = live ? `process ${holder}` : 'another process';
        throw new FileLockError('ERR_FS_LOCKED', `${file} is locked by ${by} (${path.basename(lockFile)})`, live ? holder : null, 'FS-LOCK-3');
      }
      await sleep(50);
    }
  }

  /** Pid of the `flock` process that holds the lock. */
  get helperPid(): number {
    return this.helper.pid!;
  }

  /** Releases the lock; resolves once the helper has ended. */
  async release(): Promise<void> {
    if (!this.released) {
      this.released = true;
      this.helper.ref();
      this.helper.stdin.end();
    }
    await this.exited;
  }
}

/** Starts a helper on `lockFile`: resolves with it once it holds the lock, or with `conflict`. */
function hold(file: string, lockFile: string): Promise<ChildProcessWithoutNullStreams | 'conflict'> {
  try {
    closeSync(openSync(lockFile, 'a')); // created here, as zc.lockfile does, so that a failure names the file and the errno
  } catch (e) {
    return Promise.reject(new FileLockError('ERR_FS_LOCK', `cannot open ${lockFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`));
  }
  const args = ['--nonblock', '--conflict-exit-code', String(CONFLICT), path.resolve(lockFile), 'sh', '-c', 'echo; exec cat >/dev/null'];
  // its own session: a terminal's Ctrl-C reaches the node, which then releases the lock
  const helper = spawn(FLOCK, args, { stdio: 'pipe', detached: true });
  return new Promise((resolve, reject) => {
    let stderr = '';
    helper.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    helper.stdout.once('data', () => resolve(helper));
    helper.once('error', (e) => reject(new FileLockError('ERR_FS_LOCK', `cannot lock ${file}: ${FLOCK}: ${e.message}`)));
    helper.once('close', (status) => {
      if (status === CONFLICT) resolve('conflict');
      else reject(new FileLockError('ERR_FS_LOCK', `cannot lock ${file}: ${stderr.trim() || `${FLOCK} exited with status ${status}`}`));
    });
  });
}

/** Writes ` PID\n` over the lock file's content, as zc.lockfile does (FS-LOCK-2). */
function writePid(lockFile: string): void {
  const text = Buffer.from(` ${process.pid}\n`);
  const fd = openSync(lockFile, 'r+');
  try {
    writeSync(fd, text, 0, text.length, 0);
    ftruncateSync(fd, text.length);
  } finally {
    closeSync(fd);
  }
}

/** The pid a lock file names, or null. */
function holderPid(lockFile: string): number | null {
  try {
    const pid = Number(/^\s*(\d+)/.exec(readFileSync(lockFile, 'latin1'))?.[1]);
    return pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** True while process `pid` exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
