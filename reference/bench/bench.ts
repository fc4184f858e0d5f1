/**
 * `npm run bench`: the reference primary and secondary as separate processes over loopback,
 * measured beside baselines taken in the same run on the same bytes. Prints a table and
 * writes reports/bench.json. Figures are medians of several runs (`--quick`: one run, smaller
 * inputs; `--only catch-up,latency,fan-out,memory,harness` picks cases). Inputs are generated
 * into a temporary folder and removed afterwards.
 * @module
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, fsyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BlobDirectory } from '../filestorage/blobs.ts';
import { encodeTxnRecord, MAGIC_FS30 } from '../filestorage/records.ts';
import { hex8, tidFromString } from '../timestamp.ts';
import { generateLog, type LogShape } from './generate.ts';
import { BenchNode, type Event } from './nodes.ts';
import { ProgressLine } from '../cli/progress.ts';

const MB = 1 << 20;
/** The benchmark cases `--only` chooses from. */
const CASES = ['catch-up', 'latency', 'fan-out', 'memory', 'harness'];

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: 'reports/bench.json' },
    only: { type: 'string', default: CASES.join(',') },
  },
});
const ONLY = new Set(opts.only!.split(','));
for (const name of ONLY) {
  if (CASES.includes(name)) continue;
  console.error(`bench: --only: unknown case ${JSON.stringify(name)}; the cases are ${CASES.join(', ')}`);
  process.exit(2);
}
const QUICK = opts.quick!;
const RUNS = QUICK ? 1 : 3;
const work = mkdtempSync(path.join(tmpdir(), 'zrs-bench-'));
const line = ProgressLine.of();
const progress = (text: string) => line?.show(() => text);

interface Row {
  name: string;
  figure: string;
  baseline: string;
  ratio: number | null;
  target: string;
  met: boolean | null;
  detail: Record<string, number | string>;
}
const rows: Row[] = [];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const fmt = (n: number, digits = 1) => n.toFixed(digits);

/** Baseline: one process reading the file and computing MD5 over it, MB/s. */
function md5Rate(file: string, bytes: number): number {
  const buf = Buffer.allocUnsafe(MB);
  const fd = openSync(file, 'r');
  const h = createHash('md5');
  const t0 = performance.now();
  let at = 0;
  for (;;) {
    const n = readSync(fd, buf, 0, MB, at);
    if (!n) break;
    h.update(buf.subarray(0, n));
    at += n;
  }
  h.digest();
  closeSync(fd);
  return bytes / MB / ((performance.now() - t0) / 1000);
}

/** Baseline: the file copied raw over loopback TCP to another process, MB/s. */
async function tcpRate(file: string, bytes: number): Promise<number> {
  const receiver = spawn(
    process.execPath,
    ['-e', `const s=require('net').createServer(c=>{let n=0;c.on('data',d=>{n+=d.length;if(n>=${bytes}){process.stdout.write('done\\n');process.exit(0)}})});s.listen(0,'127.0.0.1',()=>process.stdout.write(s.address().port+'\\n'))`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = receiver.stdout[Symbol.asyncIterator]();
  const port = Number(String((await lines.next()).value).trim());
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise((r) => socket.once('connect', r));
  const t0 = performance.now();
  createReadStream(file, { highWaterMark: MB }).pipe(socket);
  await lines.next();
  const secs = (performance.now() - t0) / 1000;
  socket.destroy();
  return bytes / MB / secs;
}

/** A secondary catching up from a primary that serves `file`; MB/s, transactions/s, peak memory. */
async function catchUp(file: string, lastTid: string, bytes: number, transactions: number, sync: 'every' | 'group', blobDir?: string) {
  const p = await BenchNode.start(['primary', '--fs', file, '--listen', '127.0.0.1:0', '--follow', ...(blobDir ? ['--blob-dir', blobDir] : [])]);
  const target = path.join(work, `secondary-${Date.now()}.fs`);
  const blobs = blobDir ? ['--blob-dir', `${target}.blobs`] : [];
  const s = await BenchNode.start(['secondary', '--fs', target, '--from', p.ready.listen as string, '--sync', sync, ...blobs]);
  const done = await s.next((e) => e.event === 'committed' && e.tid === lastTid);
  const secs = (done.at - s.ready.at) / 1000;
  const result = { mbps: bytes / MB / secs, tps: transactions / secs, secondaryRss: s.peakRss(), primaryRss: p.peakRss(), secs };
  await s.stop();
  await p.stop();
  for (const f of [target, `${target}.blobs`]) rmSync(f, { force: true, recursive: true });
  return result;
}

/** {@link generateLog}, showing how far it got. */
function generate(label: string, file: string, shape: LogShape) {
  return generateLog(file, shape, (bytes) => progress(`${label}: generating the log, ${Math.floor((100 * bytes) / shape.totalBytes)}%`));
}

async function catchUpCase(label: string, shape: LogShape, targetRatio: number): Promise<void> {
  const file = path.join(work, `${label}.fs`);
  const log = generate(label, file, shape);
  const md5 = median(Array.from({ length: RUNS }, () => md5Rate(file, log.bytes)));
  const tcp = median(await sequence(RUNS, () => tcpRate(file, log.bytes)));
  for (const sync of ['every', 'group'] as const) {
    const runs = await sequence(RUNS, () => {
      progress(`catch-up ${label} (${sync})`);
      return catchUp(file, hex8(log.lastTid), log.bytes, log.transactions, sync);
    });
    const mbps = median(runs.map((r) => r.mbps));
    const ratio = mbps / md5;
    rows.push({
      name: `catch-up, ${label}, fsync ${sync === 'every' ? 'each transaction' : 'per group'}`,
      figure: `${fmt(mbps)} MB/s, ${fmt(median(runs.map((r) => r.tps)), 0)} txn/s; peak RSS secondary ${fmt(median(runs.map((r) => r.secondaryRss)) / MB, 0)} MB, primary ${fmt(median(runs.map((r) => r.primaryRss)) / MB, 0)} MB`,
      baseline: `MD5 ${fmt(md5)} MB/s; raw TCP copy ${fmt(tcp)} MB/s`,
      ratio,
      target: `>= ${targetRatio * 100}% of MD5`,
      met: ratio >= targetRatio,
      detail: {
        megabytes: log.bytes / MB,
        transactions: log.transactions,
        seconds: median(runs.map((r) => r.secs)),
        secondaryPeakRssMB: median(runs.map((r) => r.secondaryRss)) / MB,
        primaryPeakRssMB: median(runs.map((r) => r.primaryRss)) / MB,
        md5MBps: md5,
        tcpMBps: tcp,
      },
    });
  }
  rmSync(file, { force: true });
}

async function sequence<T>(n: number, f: () => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(await f());
  return out;
}

/** Baseline: latency of appending `size` bytes and fsyncing, ms. */
function fsyncLatencies(size: number, n: number): number[] {
  const file = path.join(work, 'fsync.bin');
  const fd = openSync(file, 'w');
  const buf = Buffer.alloc(size, 7);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    writeSync(fd, buf);
    fsyncSync(fd);
    out.push(performance.now() - t0);
  }
  closeSync(fd);
  rmSync(file);
  return out;
}

/**
 * Baseline: how late a 1 ms timer fires in another idle process while `during` runs, ms (p50,
 * p99): the delay the machine itself adds to any wake-up, such as a node's on a commit.
 */
async function timerLateness<T>(during: () => Promise<T>): Promise<{ result: T; p50: number; p99: number }> {
  const watcher = spawn(
    process.execPath,
    ['-e', `let last=performance.now();const l=[];setInterval(()=>{const n=performance.now();l.push(n-last-1);last=n},1);process.stdin.on('end',()=>{l.sort((a,b)=>a-b);const q=p=>l[Math.min(l.length-1,Math.floor(p*l.length))];process.stdout.write(JSON.stringify([q(0.5),q(0.99)]));process.exit(0)}).resume()`],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  let out = '';
  watcher.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise((r) => watcher.once('exit', r));
  const result = await during();
  watcher.stdin.end();
  await exited;
  const [p50, p99] = JSON.parse(out) as [number, number];
  return { result, p50, p99 };
}

/** Commits `count` transactions of 1000 bytes at `rate` a second; their responses, and when it began. */
async function commitSteadily(p: BenchNode, rate: number, count: number): Promise<{ t0: number; responses: Event[] }> {
  const data = Buffer.alloc(1000, 3).toString('hex');
  const ids: number[] = [];
  const t0 = performance.now();
  // paced by timers, not by spinning: the benchmark must not take a core from the nodes
  for (let i = 0; i < count; ) {
    for (const now = performance.now(); i < count && t0 + (i * 1000) / rate <= now; i++) {
      ids.push(p.send('commit', { records: [{ oid: (i % 100).toString(16).padStart(16, '0'), data }] }));
    }
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + (i * 1000) / rate - performance.now())));
  }
  return { t0, responses: await Promise.all(ids.map((id) => p.next((e) => e.id === id))) };
}

/** Commit-to-replica latency at a steady commit rate, with `n` secondaries. */
async function latencyCase(n: number, rate: number, seconds: number): Promise<void> {
  progress(`latency with ${n} secondar${n === 1 ? 'y' : 'ies'}`);
  const p = await BenchNode.start(['primary', '--create', '--fs', path.join(work, `lat-${n}.fs`), '--listen', '127.0.0.1:0']);
  const secondaries = await Promise.all(
    Array.from({ length: n }, (_, i) => BenchNode.start(['secondary', '--fs', path.join(work, `lat-${n}-${i}.fs`), '--from', p.ready.listen as string])),
  );
  const count = Math.round(rate * seconds);
  const timer = await timerLateness(() => commitSteadily(p, rate, count));
  const { t0, responses } = timer.result;
  const latencies: number[] = [];
  for (const s of secondaries) {
    await s.next((x) => x.event === 'committed' && x.tid === responses.at(-1)!.tid);
    const committedAt = new Map(s.events.filter((x) => x.event === 'committed').map((x) => [x.tid, x.at]));
    for (const r of responses) latencies.push(committedAt.get(r.tid)! - r.at);
  }
  const achieved = count / ((responses.at(-1)!.at - t0) / 1000);
  const fsync = fsyncLatencies(1100, 1000);
  const p99 = pct(latencies, 99);
  const margin = p99 - pct(fsync, 99);
  rows.push({
    name: `commit-to-replica latency, ${n} secondar${n === 1 ? 'y' : 'ies'}, ${rate} txn/s`,
    figure: `p50 ${fmt(pct(latencies, 50), 2)} ms, p99 ${fmt(p99, 2)} ms`,
    baseline: `fsync of 1.1 KB: p50 ${fmt(pct(fsync, 50), 2)} ms, p99 ${fmt(pct(fsync, 99), 2)} ms; 1 ms timer late by p50 ${fmt(timer.p50, 2)} ms, p99 ${fmt(timer.p99, 2)} ms`,
    ratio: null,
    target: n === 1 ? 'p99 < fsync p99 + 2 ms' : '(none)',
    met: n === 1 ? margin < 2 : null,
    detail: { commits: count, achievedRate: achieved, p50: pct(latencies, 50), p99, fsyncP99: pct(fsync, 99), timerLateP50: timer.p50, timerLateP99: timer.p99 },
  });
  await Promise.all(secondaries.map((s) => s.stop()));
  await p.stop();
}

/** Aggregate throughput of `n` secondaries catching up at once. */
async function fanOutCase(ns: number[]): Promise<void> {
  const file = path.join(work, 'fanout.fs');
  const log = generate('fan-out', file, { recordSize: 64 << 10, recordsPerTxn: 1, totalBytes: (QUICK ? 20 : 50) * MB });
  const tid = hex8(log.lastTid);
  let single = 0;
  for (const n of ns) {
    progress(`fan-out to ${n}`);
    const p = await BenchNode.start(['primary', '--fs', file, '--listen', '127.0.0.1:0', '--follow']);
    const secondaries = await Promise.all(
      Array.from({ length: n }, (_, i) => BenchNode.start(['secondary', '--fs', path.join(work, `fan-${n}-${i}.fs`), '--from', p.ready.listen as string])),
    );
    const start = Math.min(...secondaries.map((s) => s.ready.at));
    const ends = await Promise.all(secondaries.map((s) => s.next((e) => e.event === 'committed' && e.tid === tid)));
    const secs = (Math.max(...ends.map((e) => e.at)) - start) / 1000;
    const aggregate = (n * log.bytes) / MB / secs;
    if (n === 1) single = aggregate;
    const rss = p.peakRss();
    await Promise.all(secondaries.map((s) => s.stop()));
    await p.stop();
    for (let i = 0; i < n; i++) rmSync(path.join(work, `fan-${n}-${i}.fs`), { force: true });
    rows.push({
      name: `fan-out to ${n} secondar${n === 1 ? 'y' : 'ies'}`,
      figure: `${fmt(aggregate)} MB/s aggregate, primary ${fmt(rss / MB, 0)} MB`,
      baseline: n === 1 ? '(this is the baseline)' : `1 secondary: ${fmt(single)} MB/s`,
      ratio: aggregate / single,
      target: n === 32 ? '>= 70% of 1 secondary' : '(none)',
      met: n === 32 ? aggregate / single >= 0.7 : null,
      detail: { secondaries: n, megabytes: log.bytes / MB, seconds: secs, primaryPeakRssMB: rss / MB },
    });
  }
  rmSync(file, { force: true });
}

/** Peak memory of both processes replicating a large log, and a large blob. */
async function memoryCase(): Promise<void> {
  const size = (QUICK ? 256 : 1024) * MB;
  progress(`memory: a ${size / MB} MiB log`);
  const file = path.join(work, 'large.fs');
  const log = generate('memory', file, { recordSize: 64 << 10, recordsPerTxn: 1, totalBytes: size });
  const r = await catchUp(file, hex8(log.lastTid), log.bytes, log.transactions, 'every');
  rmSync(file, { force: true });
  rows.push({
    name: `memory, replicating a ${size / MB} MiB log`,
    figure: `secondary ${fmt(r.secondaryRss / MB, 0)} MB, primary ${fmt(r.primaryRss / MB, 0)} MB`,
    baseline: '(none)',
    ratio: null,
    target: 'secondary < 150 MB',
    met: r.secondaryRss < 150 * MB,
    detail: { megabytes: size / MB, seconds: r.secs, secondaryPeakRssMB: r.secondaryRss / MB, primaryPeakRssMB: r.primaryRss / MB },
  });
  progress(`memory: a ${size / MB} MiB blob`);
  const blob = blobStore(size);
  const b = await catchUp(blob.file, blob.tid, size, 1, 'every', blob.dir);
  rows.push({
    name: `memory, replicating a ${size / MB} MiB blob`,
    figure: `secondary ${fmt(b.secondaryRss / MB, 0)} MB, primary ${fmt(b.primaryRss / MB, 0)} MB`,
    baseline: '(none)',
    ratio: null,
    target: 'both < 150 MB',
    met: b.secondaryRss < 150 * MB && b.primaryRss < 150 * MB,
    detail: { megabytes: size / MB, seconds: b.secs, secondaryPeakRssMB: b.secondaryRss / MB, primaryPeakRssMB: b.primaryRss / MB },
  });
}

/** A blob storage with one transaction holding one blob of `size` bytes. */
function blobStore(size: number): { file: string; dir: string; tid: string } {
  const file = path.join(work, 'blob.fs');
  const dir = path.join(work, 'blobs');
  const tid = tidFromString('2026-01-01 00:00:00');
  const oid = Buffer.alloc(8);
  oid[7] = 1;
  const data = Buffer.from('8003635a4f44422e626c6f620a426c6f620a71002e80034e2e', 'hex'); // ZODB.blob.Blob, then None
  writeFileSync(file, Buffer.concat([Buffer.from(MAGIC_FS30), encodeTxnRecord({ tid, status: ' ', user: Buffer.alloc(0), description: Buffer.alloc(0), extension: Buffer.alloc(0), records: [{ oid, tid, prev: 0, tloc: 4, vlen: 0, data, back: 0 }] })]));
  const target = new BlobDirectory(dir, { create: true }).blobPath(oid, tid);
  mkdirSync(path.dirname(target), { recursive: true });
  const fd = openSync(target, 'w');
  const chunk = Buffer.alloc(MB, 5);
  for (let i = 0; i < size / MB; i++) writeSync(fd, chunk);
  closeSync(fd);
  return { file, dir, tid: hex8(tid) };
}

/** Runs per second of the main fault-schedule property of the harness, against the reference. */
async function harnessCase(): Promise<void> {
  progress('harness speed');
  const reportDir = path.join(work, 'conformance');
  const t0 = performance.now();
  const code = await new Promise<number | null>((resolve) => {
    const p = spawn(path.resolve('node_modules/.bin/tsx'), ['conformance/cli.ts', '--full', '--seed', '1', '--filter', 'random commits', '--report-dir', reportDir], { stdio: 'ignore' });
    p.on('exit', resolve);
  });
  const total = (performance.now() - t0) / 1000;
  type Report = { cases: { name: string; state: string; durationMs: number; runs?: number }[] };
  let report: Report = { cases: [] };
  try {
    report = JSON.parse(readFileSync(path.join(reportDir, 'conformance.json'), 'utf8')) as Report;
  } catch {
    // no report: the row says the run failed
  }
  const c = report.cases.find((x) => x.name.includes('random commits') && x.state !== 'skipped');
  const runs = c?.runs ?? 0;
  const secs = (c?.durationMs ?? 0) / 1000;
  rows.push({
    name: 'harness: random commits x random faults property',
    figure: `${fmt(runs / secs, 2)} runs/s (${runs} runs in ${fmt(secs)} s; the whole command ${fmt(total)} s)`,
    baseline: '(none)',
    ratio: null,
    target: '(none)',
    met: code === 0 && c?.state === 'passed' ? null : false,
    detail: { runs, seconds: secs, commandSeconds: total, exit: code ?? -1 },
  });
}

async function main(): Promise<void> {
  try {
    const size = (QUICK ? 50 : 200) * MB;
    if (ONLY.has('catch-up')) {
      await catchUpCase('64 KiB records', { recordSize: 64 << 10, recordsPerTxn: 1, totalBytes: size }, 0.4);
      await catchUpCase('1 KiB records, 10 a transaction', { recordSize: 1 << 10, recordsPerTxn: 10, totalBytes: size }, 0.2);
    }
    if (ONLY.has('latency')) {
      await latencyCase(1, 1000, QUICK ? 1 : 3);
      await latencyCase(10, 1000, QUICK ? 1 : 3);
    }
    if (ONLY.has('fan-out')) await fanOutCase(QUICK ? [1, 8] : [1, 8, 32]);
    if (ONLY.has('memory')) await memoryCase();
    if (ONLY.has('harness')) await harnessCase();
  } finally {
    rmSync(work, { recursive: true, force: true });
    line?.clear();
  }
  const header = ['case', 'figure', 'baseline (same run)', 'ratio', 'target', 'met'];
  const table = [header, ...rows.map((r) => [r.name, r.figure, r.baseline, r.ratio === null ? '' : `${fmt(r.ratio * 100, 0)}%`, r.target, r.met === null ? '' : r.met ? 'yes' : 'NO'])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  console.log(table.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join('  ')).join('\n'));
  mkdirSync(path.dirname(opts.out!), { recursive: true });
  writeFileSync(opts.out!, `${JSON.stringify({ date: new Date().toISOString(), quick: QUICK, runs: RUNS, node: process.version, rows }, null, 2)}\n`);
  console.log(`\n${rows.length} figures; JSON in ${opts.out}`);
}

await main();
