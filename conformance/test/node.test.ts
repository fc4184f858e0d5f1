// How the harness starts the nodes of an implementation under test (spec/conformance.md §4.1),
// on small stand-in nodes written for the occasion.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startPrimary, startSecondary } from '../context.ts';
import { ENV } from '../env.ts';
import { readDescriptor } from '../iut/descriptor.ts';
import { IutNode, NodeStartError } from '../iut/node.ts';
import { FakePrimary } from '../peers/fake-primary.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'zrs-node-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A descriptor whose roles run `script` (JavaScript, run by this Node) with `args`. */
function standIn(name: string, script: string, args: unknown[], ready: unknown, role: 'primary' | 'secondary' = 'primary'): string {
  const js = path.join(dir, `${name}.mjs`);
  writeFileSync(js, script);
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ name, [role]: { command: process.execPath, args: [js, ...args], ready } }));
  return file;
}

/** Listens on HOST:PORT after `ms`, then stays until killed. */
const LISTEN_LATE = `
import net from 'node:net';
const [host, port] = process.argv[2].split(':');
setTimeout(() => net.createServer(() => {}).listen(Number(port), host), Number(process.argv[3]));
setInterval(() => {}, 1000);
`;

describe('starting nodes', () => {
  it('[CONF-READY-1] "port": ready only once the listen address accepts, not when the process starts', async () => {
    process.env[ENV.primary] = standIn('late', LISTEN_LATE, ['{listen}', '700'], 'port');
    const t0 = Date.now();
    const p = await startPrimary();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(650);
    expect(p.address.kind === 'tcp' && (await accept(p.address.port))).toBe(true);
    await p.node.kill();
  });

  it('[CONF-READY-1] "port" for a secondary that listens nowhere: ready once its handshake reaches the primary, through a relay', async () => {
    const fake = await FakePrimary.listen(() => undefined);
    const connectLate = `
import net from 'node:net';
const [host, port] = process.argv[2].split(':');
setTimeout(() => {
  const s = net.connect(Number(port), host);
  const frame = (b) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  s.on('connect', () => s.write(Buffer.concat([frame(Buffer.from('zrs2.0')), frame(Buffer.alloc(8))])));
  s.on('error', () => {});
}, 600);
setInterval(() => {}, 1000);
`;
    process.env[ENV.secondary] = standIn('connect-late', connectLate, ['{from}'], 'port', 'secondary');
    const t0 = Date.now();
    const s = await startSecondary({ from: fake.address });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);
    const c = await fake.connection(0, 5000);
    expect((await c.handshake).protocol).toBe('zrs2.0');
    await s.node.kill();
    fake.close();
  });

  it('[CONF-READY-1] a stderr pattern: ready once a line of standard error matches', async () => {
    const file = standIn('says', `setTimeout(() => console.error('serving on port 5'), 500); setInterval(() => {}, 1000);`, [], { stderr: 'serving on port \\d+' });
    const t0 = Date.now();
    const node = await IutNode.start(readDescriptor(file), 'primary', {});
    expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
    await node.kill();
  });

  it('[CONF-READY-2] a node that exits before it is ready fails at once, with its command line and standard error', async () => {
    const file = standIn('dies', `console.error('cannot open Data.fs: no such file'); process.exit(3);`, ['--fs', '{fs}'], 'port');
    const t0 = Date.now();
    const e = await IutNode.start(readDescriptor(file), 'primary', { fs: '/nowhere/Data.fs' }, { signal: { port: 9 } }).catch((x: unknown) => x);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(e).toBeInstanceOf(NodeStartError);
    expect((e as Error).message).toMatch(/dies primary exited \(3\) before it was ready: .*dies\.mjs --fs \/nowhere\/Data\.fs\ncannot open Data\.fs: no such file/);
  });

  it('[CONF-READY-2] a program that cannot be run fails at once, naming it', async () => {
    const file = path.join(dir, 'missing.json');
    writeFileSync(file, JSON.stringify({ name: 'missing', primary: { command: '/nonexistent/python3', args: [], ready: 'port' } }));
    const e = await IutNode.start(readDescriptor(file), 'primary', {}, { signal: { port: 9 } }).catch((x: unknown) => x);
    expect((e as Error).message).toMatch(/missing primary could not be started \(spawn \/nonexistent\/python3 ENOENT\)/);
  });

  it('[CONF-READY-3] a node whose port another process took between the choice and the start is started again on a new port', async () => {
    // The first start plays the other process: a child of its own takes the port, then it exits.
    const marker = path.join(dir, 'first-port');
    const script = `
import net from 'node:net';
import { existsSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
const [host, port] = process.argv[2].split(':');
if (!existsSync(process.argv[3])) {
  writeFileSync(process.argv[3], port);
  // through a shell that exits at once, so that the squatter is no child of this node
  const js = \`require('net').createServer().listen(Number('\${port}'), '\${host}'); setTimeout(() => process.exit(), 8000)\`;
  spawn('sh', ['-c', \`'\${process.execPath}' -e "\${js}" &\`], { stdio: 'ignore' });
  // once the squatter listens, fail as a node does whose port is taken
  const poll = () => net.connect(Number(port), host).on('connect', () => { console.error('EADDRINUSE ' + port); process.exit(1); }).on('error', () => setTimeout(poll, 20));
  poll();
} else {
  net.createServer(() => {}).listen(Number(port), host);
  setInterval(() => {}, 1000);
}
`;
    process.env[ENV.primary] = standIn('squatted', script, ['{listen}', marker], 'port');
    const p = await startPrimary();
    expect(existsSync(marker)).toBe(true);
    expect(p.address.kind === 'tcp' && String(p.address.port)).not.toBe(readFileSync(marker, 'utf8'));
    await p.node.kill();
  });
});

function accept(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}
