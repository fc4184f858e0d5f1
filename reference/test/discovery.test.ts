// ZooKeeper registration and discovery (spec/discovery.md), against a real ZooKeeper server
// from Debian's `zookeeper` package, started here on a free loopback port with a temporary
// data folder. Without ZooKeeper these tests are skipped (with a notice), except in CI.
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../cli/main.ts';
import type { Output } from '../cli/output.ts';
import { readZrsConfig } from '../cli/zconfig.ts';
import { choose, Discovery, next, parseProviderName, providers } from '../discovery/discover.ts';
import { fullyQualifiedHostName, isWildcardHost, Registration, registrationData, registrationName } from '../discovery/register.ts';
import { findZooKeeper, HOW_TO_ENABLE, ZooKeeperServer } from '../discovery/server.ts';
import { freePort } from '../net/ports.ts';
import { DiscoveryError, expireSession, ZooKeeper } from '../discovery/zookeeper.ts';
import { Primary } from '../primary/primary.ts';
import { Secondary } from '../secondary/secondary.ts';
import { fileContent, waitFor } from './helpers.ts';
import { NodeProcess, nodeSession, records } from './processes.ts';

const { ws, start } = nodeSession('discovery');
const installed = findZooKeeper() !== null;
const inCI = process.env.CI === 'true' || process.env.CI === '1';
if (!installed && !inCI) console.warn(`ZooKeeper discovery tests skipped: ZooKeeper is not installed; to run them, ${HOW_TO_ENABLE}.`);


async function commit(p: NodeProcess, seed: number): Promise<string> {
  const r = await p.request('commit', { records: records(2, 100, seed), description: `commit ${seed}` });
  expect(r.ok, JSON.stringify(r)).toBe(true);
  return r.tid as string;
}

const fsOf = (n: NodeProcess) => n.proc.spawnargs[n.proc.spawnargs.indexOf('--fs') + 1]!;

describe('provider names, order and choice (no server needed)', () => {
  it('[DISC-FIND-2] [DISC-FIND-3] reads HOST:PORT, [IPV6]:PORT and the unbracketed IPv6 form, ignores the rest', () => {
    expect(parseProviderName('127.0.0.1:5000')?.address).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 5000 });
    expect(parseProviderName('DB1.Example.com:6000')?.address).toEqual({ kind: 'tcp', host: 'db1.example.com', port: 6000 });
    expect(parseProviderName('[::1]:5000')?.address).toEqual({ kind: 'tcp', host: '::1', port: 5000 });
    expect(parseProviderName('[fe80::1%eth0]:5000')?.address).toEqual({ kind: 'tcp', host: 'fe80::1%eth0', port: 5000 });
    // What zc.zk would have written for an IPv6 host (zc.zrs's own split on ':' failed on it).
    expect(parseProviderName('::1:5000')?.address).toEqual({ kind: 'tcp', host: '::1', port: 5000 });
    for (const bad of ['localhost', ':5000', 'host:', 'host:0', 'host:65536', 'host:5x', '[::1]5000', '[::1]:', 'a b:1', 'lock-0000000001']) {
      expect(parseProviderName(bad), bad).toBeNull();
    }
    expect(providers(['b:1', 'junk', 'a:2']).ignored).toEqual(['junk']);
  });

  it('[DISC-FIND-4] orders providers by host, then by port as a number, whatever order ZooKeeper lists them in', () => {
    const names = ['b.example:80', '127.0.0.1:10000', '127.0.0.1:9000', '[::1]:7', 'a.example:443'];
    const sorted = providers(names).providers.map((p) => p.name);
    expect(sorted).toEqual(['127.0.0.1:9000', '127.0.0.1:10000', '[::1]:7', 'a.example:443', 'b.example:80']);
    expect(providers([...names].reverse()).providers.map((p) => p.name)).toEqual(sorted);
  });

  it('[DISC-FIND-4] [DISC-FIND-8] keeps the current provider while it is registered, else takes the first; keeps it when none is left', () => {
    const list = providers(['h:3', 'h:1', 'h:2']).providers;
    expect(choose(list, null)).toBe('h:1');
    expect(choose(list, 'h:2')).toBe('h:2');
    expect(choose(list, 'h:9')).toBe('h:1');
    expect(choose([], 'h:2')).toBe('h:2');
    expect(choose([], null)).toBeNull();
  });

  it('[DISC-FIND-5] fails over to the next provider in order, wrapping around', () => {
    const list = providers(['h:3', 'h:1', 'h:2']).providers;
    expect(next(list, 'h:1')).toBe('h:2');
    expect(next(list, 'h:3')).toBe('h:1');
    expect(next(list, 'h:4')).toBe('h:1');
    // gone: the first one after where it sorted (ports compare as numbers)
    expect(next(providers(['h:3', 'h:1', 'h:10']).providers, 'h:2')).toBe('h:3');
    expect(next(providers(['h:3', 'h:1', 'h:10']).providers, 'h:4')).toBe('h:10');
    expect(next([], 'h:4')).toBe('h:4');
  });

  it('[DISC-REG-2] [DISC-REG-4] [DISC-REG-5] [DISC-REG-8] [DISC-REG-1] names the registration node HOST:PORT', async () => {
    expect(registrationName({ kind: 'tcp', host: '127.0.0.1', port: 5000 }, 'm.example')).toBe('127.0.0.1:5000');
    expect(registrationName({ kind: 'tcp', host: 'DB.Example', port: 5000 }, 'm.example')).toBe('db.example:5000');
    expect(registrationName({ kind: 'tcp', host: '::1', port: 5000 }, 'm.example')).toBe('[::1]:5000');
    for (const all of ['', '0.0.0.0', '::']) {
      expect(isWildcardHost(all)).toBe(true);
      expect(registrationName({ kind: 'tcp', host: all, port: 5000 }, 'm.example')).toBe('m.example:5000');
    }
    expect(() => registrationName({ kind: 'unix', path: '/tmp/p.sock' }, 'm')).toThrow(DiscoveryError);
    expect(() => registrationName({ kind: 'tcp', host: '127.0.0.1', port: 0 }, 'm')).toThrow(/real port/);
    const fqdn = await fullyQualifiedHostName();
    expect(fqdn).toMatch(/^[a-z0-9.-]+$/);
  });

  it('[DISC-REG-3] the node data is compact JSON with the process id', () => {
    expect(registrationData(5340).toString()).toBe('{"pid":5340}');
    expect(JSON.parse(registrationData().toString())).toEqual({ pid: process.pid });
  });

  it('[DISC-CONF-1] [DISC-CONF-2] [DISC-CONF-3] [DISC-CONF-4] reads the ZooKeeper keys of a <zrs> section', () => {
    const conf = (keys: string) => {
      const f = ws.file('zk.conf');
      writeFileSync(f, `%import zc.zrs\n<zrs>\n${keys}  <filestorage>\n    path data.fs\n  </filestorage>\n</zrs>\n`);
      return f;
    };
    // zkconfig.test of zc.zrs: a primary registered under /to, a secondary discovering /from.
    expect(readZrsConfig(conf('  zookeeper zookeeper.example.com:2181\n  replicate-to /to\n  replicate-from /from\n  keep-alive-delay 42\n'))).toEqual({
      replicateTo: { kind: 'tcp', host: '', port: 0 },
      replicateFrom: null,
      keepAliveDelay: 42,
      fs: 'data.fs',
      blobDir: null,
      readOnly: false,
      zookeeper: { connect: 'zookeeper.example.com:2181', registerPath: '/to', discoverConnect: 'zookeeper.example.com:2181', discoverPath: '/from' },
    });
    // replicate-from-zookeeper, when given, is used to discover; zookeeper still registers.
    expect(readZrsConfig(conf('  zookeeper zookeeper.example.com:2181\n  replicate-from-zookeeper zk.example.com:2181\n  replicate-to /to\n  replicate-from /from\n')).zookeeper).toEqual({
      connect: 'zookeeper.example.com:2181',
      registerPath: '/to',
      discoverConnect: 'zk.example.com:2181',
      discoverPath: '/from',
    });
    // replicate-from-zookeeper alone: replicate-to stays an address.
    expect(readZrsConfig(conf('  replicate-from-zookeeper zk:2181\n  replicate-to 5001\n  replicate-from /from\n'))).toMatchObject({
      replicateTo: { kind: 'tcp', host: '', port: 5001 },
      replicateFrom: null,
      zookeeper: { connect: null, registerPath: null, discoverConnect: 'zk:2181', discoverPath: '/from' },
    });
    expect(readZrsConfig(conf('  zookeeper zk:2181\n  replicate-from /db/replication/providers\n'))).toMatchObject({ replicateTo: null, zookeeper: { discoverPath: '/db/replication/providers' } });
    expect(() => readZrsConfig(conf('  zookeeper zk:2181\n  replicate-to 5000\n'))).toThrow(/:4: replicate-to: with ZooKeeper this is a ZooKeeper path/);
    expect(() => readZrsConfig(conf('  zookeeper zk:2181\n  replicate-from /a//b\n'))).toThrow(/:4: replicate-from: with ZooKeeper/);
    expect(() => readZrsConfig(conf('  zookeeper zk:2181\n  replicate-to /same\n  replicate-from /same\n'))).toThrow(/must be different/);
    expect(() => readZrsConfig(conf('  zookeeper\n  replicate-to /to\n'))).toThrow(/:3: zookeeper: "" is not a ZooKeeper connection string/);
  });

  it('[DISC-REG-8] zrs primary refuses to register a Unix socket', async () => {
    const sock = `${ws.dir}/p.sock`;
    const n = await NodeProcess.start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', sock, '--zookeeper', '127.0.0.1:1', '--register', '/p']).catch((e: Error) => e);
    expect(n).toBeInstanceOf(Error);
    expect((n as Error).message).toMatch(/exited with 2[\s\S]*cannot register the Unix socket/);
  });

  it('zrs refuses ZooKeeper options that do not go together', async () => {
    let stderr = '';
    const out: Output = { stdout: { write: () => true }, stderr: { write: (t: string) => (stderr += t) } };
    for (const [args, message] of [
      [['primary', '--fs', 'p.fs', '--zookeeper', 'zk:2181'], /--zookeeper is used with --register or --discover/],
      [['primary', '--fs', 'p.fs', '--register', '/p'], /--register needs --zookeeper/],
      [['primary', '--fs', 'p.fs', '--zookeeper', 'zk:2181', '--register', 'p'], /--register takes a ZooKeeper path/],
      [['primary', '--fs', 'p.fs', '--zookeeper', 'zk:2181', '--register', '/db//p'], /--register takes a ZooKeeper path .*"\/db\/\/p"/],
      [['secondary', '--fs', 's.fs', '--zookeeper', 'zk:2181', '--discover', '/db/../p'], /--discover takes a ZooKeeper path .*"\/db\/\.\.\/p"/],
      [['secondary', '--fs', 's.fs', '--discover', '/p'], /--discover needs --zookeeper/],
      [['secondary', '--fs', 's.fs', '--from', '5000', '--zookeeper', 'zk:2181', '--discover', '/p'], /either --from or --discover/],
    ] as const) {
      stderr = '';
      expect(await main([...args], out), args.join(' ')).toBe(2);
      expect(stderr, args.join(' ')).toMatch(message);
    }
  });
});

describe.skipIf(!installed && !inCI)('with a real ZooKeeper server', () => {
  let server: ZooKeeperServer;
  let zk: ZooKeeper; // the tests' own session, to look at the tree

  beforeAll(async () => {
    server = await ZooKeeperServer.start();
    zk = await ZooKeeper.open(server.connectionString);
  });
  afterAll(async () => {
    zk?.close();
    await server?.close();
  });

  it('[DISC-ZK-1] gives up connecting to an unreachable ZooKeeper after a bounded wait', async () => {
    const port = await freePort();
    const t = Date.now();
    await expect(ZooKeeper.open(`127.0.0.1:${port}`, { connectTimeout: 500 })).rejects.toThrow(/could not connect to ZooKeeper at 127\.0\.0\.1:\d+ within 500 ms/);
    expect(Date.now() - t).toBeLessThan(3000);
  });

  it('[DISC-REG-1] [DISC-REG-2] [DISC-REG-3] [DISC-REG-6] [DISC-REG-9] zrs primary --zookeeper --register: an ephemeral HOST:PORT node with the pid, gone at shutdown', async () => {
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--zookeeper', server.connectionString, '--register', '/reg/db/replication/providers']);
    const listen = p.ready.listen as string;
    expect(listen).toMatch(/^127\.0\.0\.1:[1-9][0-9]*$/);
    expect(p.ready.registered).toBe(`/reg/db/replication/providers/${listen}`);
    expect(await zk.children('/reg/db/replication/providers')).toEqual([listen]);
    const node = (await zk.get(`/reg/db/replication/providers/${listen}`))!;
    expect(node.data.toString()).toBe(`{"pid":${p.proc.pid}}`);
    expect(node.stat.ephemeralOwner.equals(Buffer.alloc(8))).toBe(false); // ephemeral
    expect((await zk.get('/reg/db/replication'))!.stat.ephemeralOwner.equals(Buffer.alloc(8))).toBe(true); // the path is persistent
    await p.request('shutdown');
    expect((await p.exited).code).toBe(0);
    expect(await zk.children('/reg/db/replication/providers')).toEqual([]);
    // Unregistered before the primary stopped listening.
    expect(p.stderr.indexOf(' unregistered: ')).toBeGreaterThan(-1);
    expect(p.stderr.indexOf(' unregistered: ')).toBeLessThan(p.stderr.indexOf(' stopped: '));
  });

  it('[DISC-FIND-6] [DISC-FIND-7] [DISC-FIND-1] a secondary started before any primary (and before the path exists) connects once one registers', async () => {
    const path = '/early/replication/providers';
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--zookeeper', server.connectionString, '--discover', path, '--reconnect-delay', '0.1']);
    expect(s.ready.from).toBeNull();
    expect(s.ready.discover).toBe(path);
    await new Promise((r) => setTimeout(r, 300));
    expect(s.stderr).not.toMatch(/connected: replicating/); // nowhere to connect to
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--zookeeper', server.connectionString, '--register', path]);
    const tid = await commit(p, 1);
    await s.committed(tid, 10_000);
    expect(s.stderr).toContain(`replicating from ${p.ready.listen as string} (found under ${path})`);
    await s.request('shutdown');
    await p.request('shutdown');
  });

  it('[DISC-FIND-1] [DISC-FIND-8] [WIRE-RECON-4] a primary restarted on a new port is found again, with nothing lost', async () => {
    const path = '/moving/providers';
    const pfs = ws.file('p.fs');
    const primaryArgs = ['primary', '--create', '--fs', pfs, '--listen', '127.0.0.1:0', '--zookeeper', server.connectionString, '--register', path];
    let p = await start(primaryArgs);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--zookeeper', server.connectionString, '--discover', path, '--reconnect-delay', '0.1']);
    const tids = [await commit(p, 1), await commit(p, 2)];
    await s.committed(tids[1]!);
    const ports = [p.ready.listen];
    for (let round = 3; round < 6; round++) {
      await p.request('shutdown');
      await p.exited;
      p = await start(primaryArgs);
      ports.push(p.ready.listen);
      tids.push(await commit(p, round));
      await s.committed(tids.at(-1)!, 15_000);
    }
    expect(new Set(ports).size).toBeGreaterThan(1); // new ports (the system picks them; a repeat is allowed)
    await s.request('shutdown');
    await p.request('shutdown');
    await Promise.all([s.exited, p.exited]);
    expect(fileContent(fsOf(s))).toEqual(fileContent(pfs));
    expect(fileContent(pfs).map((t) => t.tid)).toEqual(tids);
  });

  it('[DISC-FIND-4] [DISC-REG-2] chained secondaries register under their own path; a secondary of theirs picks the first in order', async () => {
    const up = '/chain/db/replication/providers';
    const down = '/chain/db/secondary/replication/providers';
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--zookeeper', server.connectionString, '--register', up]);
    const chained = await Promise.all(
      [0, 1, 2].map(() =>
        start(['secondary', '--fs', ws.file('c.fs'), '--zookeeper', server.connectionString, '--discover', up, '--listen', '127.0.0.1:0', '--register', down, '--reconnect-delay', '0.1']),
      ),
    );
    const names = chained.map((c) => c.ready.listen as string);
    expect((await zk.children(down))!.sort()).toEqual([...names].sort());
    for (const c of chained) expect(c.ready.from).toBe(p.ready.listen);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--zookeeper', server.connectionString, '--discover', down, '--reconnect-delay', '0.1']);
    const smallest = [...names].sort((a, b) => Number(a.split(':')[1]) - Number(b.split(':')[1]))[0];
    expect(s.ready.from).toBe(smallest);
    const tid = await commit(p, 7);
    await s.committed(tid);
    await Promise.all([s, ...chained, p].map((n) => n.request('shutdown')));
    await Promise.all([s, ...chained, p].map((n) => n.exited));
    expect(await zk.children(down)).toEqual([]);
  });

  it('[DISC-FIND-5] [DISC-REG-7] [DISC-FIND-9] fails over from a stale registration (a crashed primary whose session has not ended) to a live one', async () => {
    const path = '/stale/providers';
    await zk.ensurePath(path);
    // A node that nobody listens on, sorting before any real port: the secondary tries it first.
    const dead = `127.0.0.1:${await freePort()}`;
    await zk.createEphemeral(`${path}/${dead}`, Buffer.from('not JSON: the data plays no part'));
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--zookeeper', server.connectionString, '--discover', path, '--reconnect-delay', '0.1']);
    expect(s.ready.from).toBe(dead);
    const p = await start(['primary', '--create', '--fs', ws.file('p.fs'), '--listen', '127.0.0.1:0', '--zookeeper', server.connectionString, '--register', path]);
    const tid = await commit(p, 1);
    await s.committed(tid, 10_000);
    expect(s.stderr).toContain(`replicating from ${p.ready.listen as string}`);
    await s.request('shutdown');
    await p.request('shutdown');
    await zk.remove(`${path}/${dead}`);

    // A primary restarted on the same port while its old node lingers replaces that node.
    const primary = await Primary.start({ fs: ws.file('q.fs'), listen: { kind: 'tcp', host: '127.0.0.1', port: 0 } });
    const port = (primary.address as { port: number }).port;
    await zk.createEphemeral(`${path}/127.0.0.1:${port}`, registrationData(1));
    const r = await Registration.start({ zookeeper: server.connectionString, path, address: primary.address });
    const node = (await zk.get(r.node))!;
    expect(JSON.parse(node.data.toString())).toEqual({ pid: process.pid });
    expect(node.stat.ephemeralOwner.toString('hex')).toBe(r.zk.sessionId);
    await r.close();
    await primary.close();
  });

  it('[DISC-CONF-1] [DISC-CONF-2] zrs run --config with zookeeper, replicate-to and replicate-from paths', async () => {
    const conf = (name: string, body: string) => {
      const f = ws.file(name);
      writeFileSync(f, `%import zc.zrs\n<zrs>\n  zookeeper ${server.connectionString}\n${body}  <filestorage>\n    path ${ws.file(`${name}.fs`)}\n  </filestorage>\n</zrs>\n`);
      return f;
    };
    const p = await start(['run', '--config', conf('p.conf', '  replicate-to /zconfig/replication/providers\n'), '--register-listen', '127.0.0.1:0']);
    expect(p.ready.registered).toBe(`/zconfig/replication/providers/${p.ready.listen as string}`);
    const c = await start([
      'run',
      '--config',
      conf('c.conf', '  replicate-from /zconfig/replication/providers\n  replicate-to /zconfig/secondary/replication/providers\n'),
      '--register-listen',
      '127.0.0.1:0',
    ]);
    expect(c.ready.from).toBe(p.ready.listen);
    const s = await start(['run', '--config', conf('s.conf', '  replicate-from /zconfig/secondary/replication/providers\n')]);
    expect(s.ready.from).toBe(c.ready.listen);
    const tid = await commit(p, 3);
    await s.committed(tid);
    await Promise.all([s, c, p].map((n) => n.request('shutdown')));
  });

  it('[DISC-ZK-2] [DISC-FIND-1] ZooKeeper restarted under running nodes: replication goes on, registration and watch survive', async () => {
    const path = '/restart/providers';
    const pfs = ws.file('p.fs');
    const primaryArgs = ['primary', '--create', '--fs', pfs, '--listen', '127.0.0.1:0', '--zookeeper', server.connectionString, '--register', path];
    let p = await start(primaryArgs);
    const s = await start(['secondary', '--fs', ws.file('s.fs'), '--zookeeper', server.connectionString, '--discover', path, '--reconnect-delay', '0.1']);
    await s.committed(await commit(p, 1));
    await server.stop();
    // ZooKeeper is down: the nodes replicate all the same.
    await s.committed(await commit(p, 2));
    await server.resume();
    const listed = async () => (await zk.children(path).catch(() => null)) ?? [];
    const until = Date.now() + 15_000;
    while (!(await listed()).includes(p.ready.listen as string) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(await listed()).toEqual([p.ready.listen]);
    // The secondary's watch still works: the primary moves and is found.
    await p.request('shutdown');
    await p.exited;
    p = await start(primaryArgs);
    const tid = await commit(p, 3);
    await s.committed(tid, 15_000);
    await s.request('shutdown');
    await p.request('shutdown');
  });

  it('[DISC-ZK-3] [DISC-ZK-4] session expiry: the registrant registers again and the discoverer watches again, in new sessions', async () => {
    const path = '/expiry/providers';
    const pfs = ws.file('p.fs');
    let primary = await Primary.start({ fs: pfs, listen: { kind: 'tcp', host: '127.0.0.1', port: 0 } });
    let reg = await Registration.start({ zookeeper: server.connectionString, path, address: primary.address });
    const secondary = await Secondary.start({ fs: ws.file('s.fs'), from: null, reconnectDelay: 0.1 });
    const found = await Discovery.start({ zookeeper: server.connectionString, path, secondary });
    expect(found.chosen).toBe(reg.name);
    expect(reg.zk.sessionTimeout).toBe(10_000);
    let committed: Buffer | null = null;
    secondary.on('committed', (tid: Buffer) => (committed = tid));

    // The registrant's session ends: its node vanishes, then comes back from a new session.
    await expireSession(reg.zk, 30_000);
    const until = Date.now() + 15_000;
    let node = await zk.get(reg.node);
    while ((!node || node.stat.ephemeralOwner.toString('hex') !== reg.zk.sessionId) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
      node = await zk.get(reg.node);
    }
    expect(node?.stat.ephemeralOwner.toString('hex')).toBe(reg.zk.sessionId);
    expect(JSON.parse(node!.data.toString())).toEqual({ pid: process.pid });

    // The discoverer's session ends: it watches again, and follows a primary that moves.
    await expireSession(found.zk, 30_000);
    await reg.close();
    await primary.close();
    primary = await Primary.start({ fs: pfs, listen: { kind: 'tcp', host: '127.0.0.1', port: 0 } });
    reg = await Registration.start({ zookeeper: server.connectionString, path, address: primary.address });
    await waitFor('the discoverer to choose the moved primary', () => found.chosen === reg.name, 15_000);
    const tid = primary.commit({ records: [{ oid: Buffer.alloc(8), data: Buffer.from('x') }] });
    await waitFor('the secondary to replicate from the moved primary', () => committed !== null && committed.equals(tid), 15_000);

    found.close();
    await secondary.close();
    await reg.close();
    await primary.close();
  });
});
