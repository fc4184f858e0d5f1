// The lock of a written FileStorage (`FILE.lock`, spec/file-format.md §7.1), with real
// processes: our nodes against each other, against real ZODB, and the read-only tools.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { FileLockError } from '../errors.ts';
import { FileLock } from '../filestorage/lock.ts';
import { Secondary } from '../secondary/secondary.ts';
import { nodeSession, records, ZRS_BIN } from './processes.ts';

const { ws, start } = nodeSession('lock');

// Real ZODB, where a Python with ZODB is named by ZRS_PYTHON (CI installs one).
const python = process.env.ZRS_PYTHON;
if (!python && process.env.CI) throw new Error('ZRS_PYTHON is not set: CI must check the lock against real ZODB');
if (!python) console.warn('ZRS_PYTHON is not set: the lock tests against real ZODB are skipped');

interface Ended {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end (killed after 20 s). */
function run(command: string, args: string[]): Promise<Ended> {
  const p = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => p.once('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr }))));
}

const zrs = (...args: string[]) => run(process.execPath, [ZRS_BIN, ...args]);

/** A primary of ours on a new file `f`, with one transaction committed; resolves with it and the tid. */
async function primaryWithData(f: string): Promise<{ p: Awaited<ReturnType<typeof start>>; tid: string }> {
  const p = await start(['primary', '--create', '--fs', f, '--listen', '127.0.0.1:0']);
  const r = await p.request('commit', { records: records(2, 10, 1) });
  expect(r.ok, JSON.stringify(r)).toBe(true);
  return { p, tid: r.tid as string };
}

/** What a node refused to start on a locked `f` must show: exit 2, one line naming the holder, `f` as it was. */
function expectRefused(r: Ended, f: string, holder: number, before: Buffer | null): void {
  expect(r.code, r.stderr).toBe(2);
  const name = f.slice(f.lastIndexOf('/') + 1);
  expect(r.stderr).toMatch(new RegExp(`^zrs (primary|secondary): \\S+ is locked by process ${holder} \\(${name}\\.lock\\)\\n$`));
  if (before) expect(readFileSync(f).equals(before), 'the file was changed').toBe(true);
  else expect(existsSync(f), 'the file was created').toBe(false);
}

/** Pid of the `flock` helper that process `pid` started. */
function helperOf(pid: number): number {
  const line = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.trim().endsWith(' flock'));
  if (!line) throw new Error(`process ${pid} has no flock helper`);
  return Number(line.trim().split(/\s+/)[0]);
}

describe('FileLock', () => {
  it('[FS-LOCK-1] [FS-LOCK-2] [FS-LOCK-3] holds FILE.lock with " PID\\n" in it, refuses a second holder naming the first, and is free again once released', async () => {
    const f = ws.file('Data.fs');
    const a = await FileLock.acquire(f);
    expect(a.lockFile).toBe(`${f}.lock`);
    expect(readFileSync(`${f}.lock`, 'latin1')).toBe(` ${process.pid}\n`);
    const e = await FileLock.acquire(f).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FileLockError);
    expect(e).toMatchObject({ code: 'ERR_FS_LOCKED', holder: process.pid, requirement: 'FS-LOCK-3' });
    expect((e as Error).message).toMatch(/is locked by process \d+ \(\d+-Data\.fs\.lock\)$/);
    // flock(1) here sees the same lock as flock(2) anywhere
    expect(() => execFileSync('/usr/bin/flock', ['--nonblock', `${f}.lock`, 'true'])).toThrow();
    await a.release();
    execFileSync('/usr/bin/flock', ['--nonblock', `${f}.lock`, 'true']);
    await (await FileLock.acquire(f)).release();
  });

  it('[FS-LOCK-5] reports a helper that ends while the lock is held as lost', async () => {
    const f = ws.file('Data.fs');
    const a = await FileLock.acquire(f);
    const lost = new Promise<FileLockError>((r) => a.once('lost', r));
    process.kill(a.helperPid, 'SIGKILL');
    expect(await lost).toMatchObject({ code: 'ERR_FS_LOCK_LOST', requirement: 'FS-LOCK-5' });
    await a.release();
    await (await FileLock.acquire(f)).release();
  });

  it('[FS-LOCK-3] a secondary whose file is locked does not start and does not create the file', async () => {
    const f = ws.file('Data.fs');
    const a = await FileLock.acquire(f);
    await expect(Secondary.start({ fs: f, from: null })).rejects.toMatchObject({ code: 'ERR_FS_LOCKED' });
    expect(existsSync(f)).toBe(false);
    await a.release();
    const s = await Secondary.start({ fs: f, from: null });
    await s.close();
    execFileSync('/usr/bin/flock', ['--nonblock', `${f}.lock`, 'true']); // released by close
  });
});

describe('zrs nodes on one file', () => {
  it('[FS-LOCK-1] [FS-LOCK-3] a second node on a file that a node writes refuses to start, naming the holder, and leaves the file alone', async () => {
    const f = ws.file('Data.fs');
    const { p } = await primaryWithData(f);
    const before = readFileSync(f);
    expect(readFileSync(`${f}.lock`, 'latin1')).toBe(` ${p.proc.pid}\n`);
    expectRefused(await zrs('secondary', '--fs', f, '--from', p.ready.listen as string), f, p.proc.pid!, before);
    expectRefused(await zrs('primary', '--fs', f, '--listen', '127.0.0.1:0'), f, p.proc.pid!, before);

    const sf = ws.file('copy.fs');
    const s = await start(['secondary', '--fs', sf, '--from', p.ready.listen as string, '--reconnect-delay', '0.1']);
    expectRefused(await zrs('secondary', '--fs', sf, '--from', p.ready.listen as string), sf, s.proc.pid!, readFileSync(sf));
    await s.request('shutdown');
    await p.request('shutdown');
    expect((await s.exited).code).toBe(0);
    expect((await p.exited).code).toBe(0);
  }, 60_000);

  it('[FS-LOCK-1] the lock of a node killed with SIGKILL is free: the next node on the file starts', async () => {
    const f = ws.file('Data.fs');
    const { p, tid } = await primaryWithData(f);
    await p.kill();
    const again = await start(['primary', '--fs', f, '--listen', '127.0.0.1:0']);
    expect(again.ready.lastTid).toBe(tid);
    expect(readFileSync(`${f}.lock`, 'latin1')).toBe(` ${again.proc.pid}\n`);
    await again.request('shutdown');
  }, 60_000);

  it('[FS-LOCK-5] a node whose lock helper dies stops, with exit status 1', async () => {
    const f = ws.file('Data.fs');
    const { p } = await primaryWithData(f);
    const s = await start(['secondary', '--fs', ws.file('copy.fs'), '--from', p.ready.listen as string, '--reconnect-delay', '0.1']);
    process.kill(helperOf(s.proc.pid!), 'SIGKILL');
    expect((await s.exited).code).toBe(1);
    expect(s.stderr).toMatch(/lost the lock of \S+: its flock process ended \(SIGKILL\)/);
    await p.request('shutdown');
  }, 60_000);

  it('[FS-LOCK-4] read-only tools and a following primary work on a file that a node holds', async () => {
    const f = ws.file('Data.fs');
    const { p, tid } = await primaryWithData(f);
    const fsck = await zrs('fsck', f);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    const dump = await zrs('fsdump', f);
    expect(dump.code, dump.stderr).toBe(0);
    expect(dump.stdout).toContain(tid);
    const lag = await zrs('lag', '-m', f, f);
    expect(lag.code, lag.stdout + lag.stderr).toBe(0);
    expect(lag.stdout).toMatch(/^Secondary up to date\./);
    const follower = await start(['primary', '--follow', '--fs', f, '--listen', '127.0.0.1:0']);
    expect(follower.ready.lastTid).toBe(tid);
    await follower.request('shutdown');
    await p.request('shutdown');
  }, 60_000);
});

describe('the lock against real ZODB', () => {
  /** A real ZODB process with FileStorage `f` open for writing, until its standard input closes. */
  async function zodbHolding(f: string): Promise<{ pid: number; close: () => Promise<void> }> {
    const script = 'import os, sys, ZODB.FileStorage\nfs = ZODB.FileStorage.FileStorage(sys.argv[1])\nprint(os.getpid(), flush=True)\nsys.stdin.read()\nfs.close()\n';
    const p = spawn(python!, ['-c', script, f], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = new Promise((r) => p.once('exit', r));
    const [line] = await Promise.race([
      new Promise<string[]>((r) => createInterface({ input: p.stdout }).once('line', (l) => r([l]))),
      exited.then(() => {
        throw new Error('ZODB ended before it opened the file');
      }),
    ]);
    return { pid: Number(line), close: async () => void (p.stdin.end(), await exited) };
  }

  it.skipIf(!python)('[FS-LOCK-1] [FS-LOCK-3] our secondary and primary refuse a file that real ZODB has open, naming its pid', async () => {
    const f = ws.file('Data.fs');
    const zodb = await zodbHolding(f);
    const before = readFileSync(f);
    expectRefused(await zrs('secondary', '--fs', f, '--from', '127.0.0.1:1'), f, zodb.pid, before);
    expectRefused(await zrs('primary', '--fs', f, '--listen', '127.0.0.1:0'), f, zodb.pid, before);
    await zodb.close();
  }, 60_000);

  it.skipIf(!python)('[FS-LOCK-1] [FS-LOCK-4] real ZODB cannot open a file our primary writes (LockError), and opens it read-only', async () => {
    const f = ws.file('Data.fs');
    const { p, tid } = await primaryWithData(f);
    const script = [
      'import sys, zc.lockfile, ZODB.FileStorage',
      'try:',
      '    ZODB.FileStorage.FileStorage(sys.argv[1])',
      "    print('opened')",
      'except zc.lockfile.LockError as e:',
      "    print('LockError', e)",
      'fs = ZODB.FileStorage.FileStorage(sys.argv[1], read_only=True)',
      "print('read-only', fs.lastTransaction().hex())",
      'fs.close()',
    ].join('\n');
    const r = await run(python!, ['-c', script, f]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`LockError Couldn't lock '${f}.lock'\nread-only ${tid}\n`);
    await p.request('shutdown');
  }, 60_000);
});
