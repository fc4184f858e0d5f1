// Conformance of a node as the one writer of its file: the lock of `FILE.lock`
// (spec/file-format.md §7.1). The harness takes and tests the lock with flock(1), as any
// other process would.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileLockError } from '../../reference/errors.ts';
import { FileLock } from '../../reference/filestorage/lock.ts';
import { check } from '../checks.ts';
import { loopback, primaryIut, refusesToStart, requires, secondaryIut, startPrimary, startSecondary, workdir } from '../context.ts';
import { FIXTURES } from '../env.ts';

const primary = primaryIut();
const secondary = secondaryIut();
const both = primary === secondary ? primary.name : `${primary.name} / ${secondary.name}`;
const small = readFileSync(path.join(FIXTURES, 'small', 'Data.fs'));

describe(`the lock of a written file: ${both}`, () => {
  it.for(['primary', 'secondary'] as const)('[FS-LOCK-1] [FS-LOCK-2] a running %s holds the lock of its file, and the lock file names a process', async (role, ctx) => {
    requires(ctx, role === 'primary' ? primary : secondary, role);
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, small);
    await (role === 'primary' ? startPrimary({ fs }) : startSecondary({ fs, from: await loopback() }));
    const tried = await FileLock.acquire(fs).then(
      (l) => l.release().then(() => null),
      (e: unknown) => e,
    );
    check('FS-LOCK-1', () => expect(tried instanceof FileLockError && tried.code === 'ERR_FS_LOCKED', `another process could lock ${fs}.lock while the ${role} ran`).toBe(true), role);
    check('FS-LOCK-2', () => expect(readFileSync(`${fs}.lock`, 'latin1'), 'the content of the lock file').toMatch(/^ [1-9][0-9]*\n$/), role);
  });

  it.for(['primary', 'secondary'] as const)('[FS-LOCK-3] [CONF-PROC-3] a %s started on a file whose lock another process holds refuses it: non-zero exit, the lock file named, the file untouched', async (role, ctx) => {
    requires(ctx, role === 'primary' ? primary : secondary, role);
    const fs = path.join(workdir(), 'Data.fs');
    writeFileSync(fs, small);
    const lock = await FileLock.acquire(fs);
    try {
      const address = await loopback(); // where the primary is to listen; nothing listens there for the secondary
      await refusesToStart(() => (role === 'primary' ? startPrimary({ fs, listen: address, startFailure: null }) : startSecondary({ fs, from: address, startFailure: null })), 'FS-LOCK-3', {
        took: 'it runs on a file that another process holds locked',
        names: 'Data.fs.lock',
        also: () => expect(readFileSync(fs).equals(small), 'the file was changed').toBe(true),
      });
    } finally {
      await lock.release();
    }
  });
});
