// End to end: an IUT primary and an IUT secondary (possibly of two implementations), through
// the fault proxy, with property-based schedules of commits and faults.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkFile } from '../../reference/filestorage/checker.ts';
import { fileContent, type TransactionContent } from '../../reference/filestorage/content.ts';
import { loopback, primaryIut, PROPERTY_TIMEOUT_MS, propertyParameters, reaches, replayCommand, requires, SEED, secondaryIut, startPrimary, startSecondary, transcriptDir, workdir } from '../context.ts';
import { REPO_ROOT } from '../env.ts';
import { FaultProxy, prng } from '../proxy/fault-proxy.ts';
import { byValue } from '../file-checks.ts';
import { sleep } from '../peers/fake-secondary.ts';

const primary = primaryIut();
const secondary = secondaryIut();
const title = primary === secondary ? primary.name : `${primary.name} → ${secondary.name}`;

/** True when `s` is a prefix of `p`, transaction for transaction. */
function isPrefix(s: TransactionContent[], p: TransactionContent[]): boolean {
  return s.length <= p.length && s.every((t, i) => JSON.stringify(t) === JSON.stringify(p[i]));
}

/**
 * What replication must preserve of a file: every transaction but the `u` ones (never sent),
 * with the extension compared as the value it decodes to (a secondary writes it as ZODB on
 * Python 3 does, whatever pickle the primary's file held: DEV-EXTBYTES-1).
 */
const replicated = (content: TransactionContent[]) => byValue(content.filter((t) => t.status !== 'u'));

/** Saves what went through the proxy, for a failing case. */
function saveTranscript(name: string, proxy: FaultProxy): string {
  const dir = transcriptDir();
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name.replace(/[^\w.-]+/g, '_').slice(0, 80)}.zrs`);
  writeFileSync(file, Buffer.concat(proxy.transcript.down));
  writeFileSync(`${file}.sent`, Buffer.concat(proxy.transcript.up));
  return file;
}

/** One step of a schedule: commits on the primary, or a change of faults. */
type Step =
  | { kind: 'commit'; records: number; size: number }
  | { kind: 'partition'; ms: number }
  | { kind: 'reset' }
  | { kind: 'cut'; afterBytes: number }
  | { kind: 'slice'; maxBytes: number }
  | { kind: 'latency'; ms: number; jitter: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('commit' as const), records: fc.integer({ min: 0, max: 4 }), size: fc.integer({ min: 1, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('partition' as const), ms: fc.integer({ min: 50, max: 400 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), afterBytes: fc.integer({ min: 1, max: 30_000 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('slice' as const), maxBytes: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('latency' as const), ms: fc.integer({ min: 0, max: 20 }), jitter: fc.integer({ min: 0, max: 20 }) }) },
);

let oidCounter = 0;
const records = (n: number, size: number) =>
  Array.from({ length: n }, () => ({ oid: (oidCounter++ % 50).toString(16).padStart(16, '0'), data: Buffer.alloc(size, oidCounter % 251).toString('hex') }));

describe(`end to end: ${title}`, () => {
  it.for(['small', 'undo', 'packed'])('[WIRE-TXN-1] [WIRE-TXN-10] [FS-COMMIT-2] %s replicates through real nodes; the secondary file is valid and equal in content', async (store, ctx) => {
    requires(ctx, primary, 'primary');
    requires(ctx, secondary, 'secondary', 'control');
    const p = await startPrimary({ store });
    const s = await startSecondary({ from: p.address });
    const want = fileContent(p.fs);
    await reaches(s, want.at(-1)!.tid);
    await s.node.stop();
    expect(checkFile(s.fs).violation).toBeNull();
    expect(fileContent(s.fs)).toEqual(want);
  });

  const generated = readdirSync(path.join(REPO_ROOT, 'fixtures/logs')).filter((f) => f.endsWith('.fs') && f !== 'bad-extension.fs');
  it.for(generated)('[WIRE-TXN-1] [WIRE-TXN-5] [WIRE-TXN-10] [WIRE-DATA-4] [DEV-EXTBYTES-1] fixtures/logs/%s replicates through real nodes; the secondary file is valid and holds the same transactions', async (name, ctx) => {
    requires(ctx, primary, 'primary');
    requires(ctx, secondary, 'secondary', 'control');
    const p = await startPrimary({ file: path.join(REPO_ROOT, 'fixtures/logs', name) });
    const s = await startSecondary({ from: p.address });
    const want = replicated(fileContent(p.fs));
    if (want.length) await reaches(s, want.at(-1)!.tid);
    await s.node.stop();
    expect(checkFile(s.fs).violation).toBeNull();
    expect(replicated(fileContent(s.fs))).toEqual(want);
  });

  it('[WIRE-CHAIN-1] [WIRE-CHAIN-2] [WIRE-CHAIN-3] a chain of three: each link passes on what it committed', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'chaining', 'control');
    const p = await startPrimary({ store: 'small' });
    const middle = await startSecondary({ from: p.address, listen: await loopback() });
    const listen = middle.node.ready?.listen as string;
    const leaf = await startSecondary({ from: { kind: 'tcp', host: '127.0.0.1', port: Number(listen.split(':').pop()) } });
    const r = await p.node.request('commit', { records: records(2, 100) });
    await reaches(leaf, r.tid as string);
    await leaf.node.stop();
    expect(fileContent(leaf.fs)).toEqual(fileContent(p.fs));
  });

  it('[WIRE-TXN-3] [WIRE-RECON-1] [WIRE-RECON-2] [WIRE-CLOSE-6] [WIRE-FRAME-3] random commits and random faults: the secondary always holds a prefix of the primary, and converges once they heal', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'control');
    // the proxy of the latest failing run: the one whose counterexample fast-check reports
    let failing: FaultProxy | null = null;
    const result = await fc.check(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
        const p = await startPrimary();
        const proxy = await FaultProxy.start(p.address, SEED);
        const s = await startSecondary({ from: proxy.address, reconnectDelay: 0.1 });
        let ok = false;
        try {
          let lastTid = '0000000000000000';
          for (const st of steps) {
            switch (st.kind) {
              case 'commit':
                lastTid = (await p.node.request('commit', { records: records(st.records, st.size) })).tid as string;
                break;
              case 'partition':
                proxy.set({ up: { partition: true }, down: { partition: true } });
                await sleep(st.ms);
                proxy.heal();
                break;
              case 'reset':
                proxy.resetAll();
                break;
              case 'cut':
                proxy.set({ up: {}, down: { closeAfterBytes: st.afterBytes } });
                await sleep(100);
                proxy.heal();
                break;
              case 'slice':
                proxy.set({ up: {}, down: { slice: { maxBytes: st.maxBytes } } });
                break;
              case 'latency':
                proxy.set({ up: { latency: { ms: st.ms, jitter: st.jitter } }, down: { latency: { ms: st.ms, jitter: st.jitter } } });
                break;
            }
            // observation: never a partial or duplicated transaction, always a prefix
            if (!isPrefix(fileContent(s.fs), fileContent(p.fs))) return false;
          }
          proxy.heal();
          await reaches(s, lastTid, 10_000);
          ok = JSON.stringify(fileContent(s.fs)) === JSON.stringify(fileContent(p.fs)) && checkFile(s.fs).ok;
          return ok;
        } finally {
          if (!ok) failing = proxy;
          await s.node.stop();
          await p.node.stop();
          await proxy.stop();
        }
      }),
      propertyParameters(4, 25),
    );
    ctx.task.meta.runs = result.numRuns; // for the report (and the benchmark of the harness)
    if (result.failed) {
      const transcript = failing ? saveTranscript(ctx.task.name, failing) : '(none)';
      const replay = replayCommand(result.counterexamplePath ?? '', 'random commits and random faults');
      throw new Error(`counterexample: ${JSON.stringify(result.counterexample)}\nreplay: ${replay}\nwire transcript: ${transcript}\n${result.errorInstance ?? ''}`);
    }
  }, PROPERTY_TIMEOUT_MS);

  it('[WIRE-KA-1] [WIRE-KA-2] behind a middlebox that kills idle connections, keep-alives keep the connection; without them it dies, and the secondary reconnects and resumes', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'control');
    const fractional = secondary.features.has('fractionalDelays');
    const idle = fractional ? 700 : 2500;
    for (const keepAlive of [true, false]) {
      const p = await startPrimary();
      const proxy = await FaultProxy.start(p.address, SEED);
      proxy.set({ idleTimeoutMs: idle });
      const s = await startSecondary({
        from: proxy.address,
        reconnectDelay: fractional ? 0.2 : 1,
        ...(keepAlive ? { keepAliveDelay: fractional ? 0.2 : 1 } : {}),
      });
      await sleep(idle * 3);
      const r = await p.node.request('commit', { records: records(1, 10) });
      await reaches(s, r.tid as string);
      if (keepAlive) expect(proxy.accepted).toBe(1);
      else expect(proxy.accepted).toBeGreaterThan(1);
      await s.node.stop();
      await proxy.stop();
      await p.node.stop();
    }
  });

  it('[FS-RECOVER-1] [DEV-RESUME-1] [WIRE-CLOSE-6] kill -9 of the secondary at random moments of a live replication, then restarts: nothing lost, nothing twice', async (ctx) => {
    requires(ctx, primary, 'primary', 'control');
    requires(ctx, secondary, 'secondary', 'control');
    const p = await startPrimary();
    const fs = path.join(workdir(), 'Data.fs');
    const random = prng(SEED);
    let lastTid = '';
    for (let round = 0; round < 4; round++) {
      const s = await startSecondary({ from: p.address, fs });
      for (let i = 0; i < 5; i++) lastTid = (await p.node.request('commit', { records: records(3, 30_000) })).tid as string;
      await sleep(Math.floor(random() * 150));
      await s.node.kill();
      const check = checkFile(fs);
      expect([null, 'FS-CHECK-6', 'FS-CHECK-7', 'FS-CHECK-4']).toContain(check.violation?.rule ?? null); // at worst a cut or unfinished tail
    }
    const s = await startSecondary({ from: p.address, fs });
    await reaches(s, lastTid);
    await s.node.stop();
    expect(checkFile(fs).violation).toBeNull();
    expect(fileContent(fs)).toEqual(fileContent(p.fs));
  });
});
