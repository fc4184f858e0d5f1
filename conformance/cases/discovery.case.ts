// Registration and discovery through a real ZooKeeper (spec/discovery.md), for IUTs that claim
// the feature `discovery`. The harness runs its own ZooKeeper server (Debian's package) on a
// loopback port, and looks at the tree, or registers fake primaries, with its own session.
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { findZooKeeper, HOW_TO_ENABLE, ZooKeeperServer } from '../../reference/discovery/server.ts';
import { ZooKeeper } from '../../reference/discovery/zookeeper.ts';
import { formatAddress } from '../../reference/net/address.ts';
import { loopback, primaryIut, requires, secondaryIut, startFromConfig, startPrimary, startSecondary, workdir } from '../context.ts';
import { until } from '../wait.ts';
import { accepts } from '../iut/node.ts';
import { FakePrimary } from '../peers/fake-primary.ts';
import { sleep } from '../peers/fake-secondary.ts';

const primary = primaryIut();
const secondary = secondaryIut();
const claimed = primary.features.has('discovery') || secondary.features.has('discovery');

let server: ZooKeeperServer | null = null;
let zk: ZooKeeper | null = null;
let paths = 0;

beforeAll(async () => {
  if (!claimed || !findZooKeeper()) return;
  server = await ZooKeeperServer.start();
  zk = await ZooKeeper.open(server.connectionString);
}, 60_000);
afterAll(async () => {
  zk?.close();
  await server?.close();
});

/** The harness's ZooKeeper, and a fresh provider path in it (created, so DISC-REG-6 plays no part). */
async function place(ctx: TestContext) {
  if (!server || !zk) ctx.skip(`ZooKeeper is not installed; to run these cases, ${HOW_TO_ENABLE}`);
  const providers = `/case${++paths}/replication/providers`;
  await zk!.ensurePath(providers);
  return { zookeeper: server!.connectionString, providers, zk: zk! };
}

describe(`discovery, registering: ${primary.name}`, () => {
  it('[DISC-REG-1] [DISC-REG-2] [DISC-REG-3] [DISC-REG-9] a registering primary: an ephemeral HOST:PORT child of its own session, registered only once the port serves, with its pid as data, and gone when it stops', async (ctx) => {
    requires(ctx, primary, 'primary', 'discovery');
    const { zookeeper, providers, zk } = await place(ctx);
    const listen = await loopback();
    const name = `127.0.0.1:${listen.port}`;
    // watch the path from before the start: the first moment the child exists, the port must accept
    let servedWhenSeen: boolean | null = null;
    const watching = until('the registration node', async () => {
      if (!(await zk.children(providers))?.includes(name)) return null;
      servedWhenSeen = await accepts(listen.port);
      return true;
    }, { timeoutMs: 30_000, everyMs: 10 });
    const p = await startPrimary({ listen, register: { zookeeper, providers } });
    await watching;
    expect(servedWhenSeen, 'the node was registered before its port accepted connections').toBe(true);
    expect(await zk.children(providers)).toEqual([name]);
    const node = (await zk.get(`${providers}/${name}`))!;
    const owner = Buffer.from(node.stat.ephemeralOwner);
    expect(owner.equals(Buffer.alloc(8)), 'the registration node is not ephemeral').toBe(false);
    expect(owner.toString('hex')).not.toBe(zk.sessionId);
    const data = JSON.parse(node.data.toString('utf8')) as Record<string, unknown>;
    expect(data.pid).toBe(p.node.proc.pid);
    // the node is removed at shutdown, not left to the session timeout (10 s here)
    const stopped = Date.now();
    expect((await p.node.stop()).code).toBe(0);
    await until('the registration node to go', async () => (await zk.children(providers))?.length === 0, { timeoutMs: 5_000, everyMs: 10 });
    expect(Date.now() - stopped).toBeLessThan(5_000);
  });

  it('[DISC-REG-8] a primary asked to register a Unix socket address refuses to start', async (ctx) => {
    requires(ctx, primary, 'primary', 'discovery', 'unix');
    const { zookeeper, providers, zk } = await place(ctx);
    const listen = { kind: 'unix' as const, path: `${workdir()}/zrs.sock` };
    // a node ready by port is not waited for when it listens on no TCP port: wait for its exit
    const started = await startPrimary({ listen, register: { zookeeper, providers } }).catch((e: Error) => e);
    if (started instanceof Error) expect(started.message).toMatch(/exited \((?!0\))/);
    else {
      const exit = await Promise.race([started.node.exited, sleep(15_000).then(() => null)]);
      expect(exit, 'still running 15 s after it was asked to register a Unix socket').not.toBeNull();
      expect(exit!.code).not.toBe(0);
    }
    expect(await zk.children(providers)).toEqual([]);
  });
});

describe(`discovery, discovering: ${secondary.name}`, () => {
  it('[DISC-FIND-1] [DISC-FIND-2] [DISC-FIND-6] [DISC-FIND-9] a discovering secondary connects nowhere while no primary is registered, connects to one once it registers (whatever its data), and follows the list when it changes', async (ctx) => {
    requires(ctx, secondary, 'secondary', 'discovery');
    const { zookeeper, providers, zk } = await place(ctx);
    const a = await FakePrimary.listen(() => undefined);
    const b = await FakePrimary.listen(() => undefined);
    try {
      const s = await startSecondary({ discover: { zookeeper, providers }, reconnectDelay: 0.1 });
      await sleep(1000);
      expect(a.connections.length + b.connections.length, 'connected with no provider registered').toBe(0);
      const nodeOf = (f: FakePrimary) => `${providers}/${formatAddress(f.address)}`;
      await zk.createEphemeral(nodeOf(a), Buffer.from('not JSON \xff', 'latin1'));
      const first = await a.connection(0, 10_000);
      expect((await first.handshake).protocol).toMatch(/^zrs2\.[01]$/);
      // a takes its leave, b registers: the next connection goes to b
      await zk.createEphemeral(nodeOf(b), Buffer.alloc(0));
      await zk.remove(nodeOf(a));
      await sleep(200);
      a.close();
      await b.connection(0, 15_000);
      expect(s.node.proc.exitCode, 'the secondary exited').toBeNull();
    } finally {
      a.close();
      b.close();
    }
  });

  it('[DISC-ZK-2] [DISC-FIND-1] ZooKeeper restarted under running nodes: the registration is still there and the watch still follows changes', async (ctx) => {
    requires(ctx, primary, 'primary', 'discovery', 'control');
    requires(ctx, secondary, 'secondary', 'discovery', 'control');
    const { zookeeper, providers, zk } = await place(ctx);
    const listen = await loopback();
    const p = await startPrimary({ listen, register: { zookeeper, providers } });
    const other = await FakePrimary.listen(() => undefined);
    const commit = async (n: number) => {
      const tid = (await p.node.request('commit', { records: [{ oid: '0000000000000001', data: Buffer.alloc(100, n).toString('hex') }] })).tid as string;
      await until(`the secondary to hold ${tid}`, async () => (await s.node.lastTid()) === tid);
    };
    const s = await startSecondary({ discover: { zookeeper, providers }, reconnectDelay: 0.1 });
    try {
      await commit(1);
      await server!.restart();
      await commit(2); // replication does not need ZooKeeper
      await zk.waitConnected(20_000);
      await until('the registration after the restart', async () => (await zk.children(providers))?.includes(`127.0.0.1:${listen.port}`), { timeoutMs: 20_000 });
      // another provider registers and the first one's node goes: the secondary follows the change
      await zk.createEphemeral(`${providers}/${formatAddress(other.address)}`, Buffer.alloc(0));
      await zk.remove(`${providers}/127.0.0.1:${listen.port}`);
      await sleep(200);
      // the primary goes: the secondary's next connection is to the latest list's choice
      await p.node.stop();
      await other.connection(0, 20_000);
    } finally {
      other.close();
    }
  });
});

describe(`discovery, session expiry: ${primary.name} / ${secondary.name}`, () => {
  // A ZooKeeper of its own whose sessions last at most 2 s (20 ticks of 100 ms): a node paused
  // for 5 s comes back to an expired session, whatever timeout it asked for.
  let brief: ZooKeeperServer | null = null;
  let look: ZooKeeper | null = null;
  beforeAll(async () => {
    if (!claimed || !findZooKeeper()) return;
    brief = await ZooKeeperServer.start({ tickTime: 100 });
    look = await ZooKeeper.open(brief.connectionString);
  }, 60_000);
  afterAll(async () => {
    look?.close();
    await brief?.close();
  });

  /** Pauses a node past its session's end, then lets it go on. */
  async function pausePastExpiry(proc: { pid?: number }) {
    process.kill(proc.pid!, 'SIGSTOP');
    try {
      await sleep(5000);
    } finally {
      process.kill(proc.pid!, 'SIGCONT');
    }
  }

  it('[DISC-ZK-3] [DISC-REG-2] a primary whose session expired opens a new one and registers again', async (ctx) => {
    requires(ctx, primary, 'primary', 'discovery');
    if (!brief || !look) ctx.skip(`ZooKeeper is not installed; to run these cases, ${HOW_TO_ENABLE}`);
    const providers = `/expiry${++paths}/providers`;
    await look!.ensurePath(providers);
    const listen = await loopback();
    const name = `127.0.0.1:${listen.port}`;
    const p = await startPrimary({ listen, register: { zookeeper: brief!.connectionString, providers } });
    const before = Buffer.from((await look!.get(`${providers}/${name}`))!.stat.ephemeralOwner).toString('hex');
    await pausePastExpiry(p.node.proc);
    // the node of the old session vanishes with it; one of a new session takes its place
    await until('the registration in a new session', async () => {
      const n = await look!.get(`${providers}/${name}`);
      return n !== null && Buffer.from(n.stat.ephemeralOwner).toString('hex') !== before;
    }, { timeoutMs: 20_000 });
  });

  it('[DISC-ZK-3] [DISC-FIND-1] a secondary whose session expired watches its provider path again', async (ctx) => {
    requires(ctx, secondary, 'secondary', 'discovery');
    if (!brief || !look) ctx.skip(`ZooKeeper is not installed; to run these cases, ${HOW_TO_ENABLE}`);
    const providers = `/expiry${++paths}/providers`;
    await look!.ensurePath(providers);
    const fake = await FakePrimary.listen(() => undefined);
    try {
      const s = await startSecondary({ discover: { zookeeper: brief!.connectionString, providers }, reconnectDelay: 0.1 });
      await sleep(500);
      await pausePastExpiry(s.node.proc);
      await sleep(3000); // time to find out and open a new session
      await look!.createEphemeral(`${providers}/${formatAddress(fake.address)}`, Buffer.alloc(0));
      await fake.connection(0, 20_000);
    } finally {
      fake.close();
    }
  });
});

describe(`discovery, configuration files: ${primary.name} / ${secondary.name}`, () => {
  it.for(['zookeeper', 'replicate-from-zookeeper'] as const)(
    '[DISC-CONF-2] a secondary whose configuration has %s takes replicate-from as a provider path and connects to the primary registered there',
    async (key, ctx) => {
      requires(ctx, secondary, 'secondary', 'discovery', 'zconfig');
      const { zookeeper, providers, zk } = await place(ctx);
      const fake = await FakePrimary.listen(() => undefined);
      try {
        await zk.createEphemeral(`${providers}/${formatAddress(fake.address)}`, Buffer.from('{"pid":1}'));
        await startFromConfig('secondary', [`${key} ${zookeeper}`, `replicate-from ${providers}`], { reconnectDelay: 0.1 });
        await fake.connection(0, 15_000);
      } finally {
        fake.close();
      }
    },
  );

  const refused = [
    ['primary', 'a relative provider path', ['replicate-to db/replication/providers']],
    ['primary', 'a provider path with an empty component', ['replicate-to /db//providers']],
    ['secondary', 'a provider path with a .. component', ['replicate-from /db/../providers']],
    ['secondary', 'equal replicate-to and replicate-from paths', ['replicate-from /db/providers', 'replicate-to /db/providers']],
  ] as const;
  it.for(refused)('[DISC-CONF-3] [DISC-CONF-4] [CONF-PROC-3] a %s configured with ZooKeeper and %s refuses to start', async ([role, , settings], ctx) => {
    requires(ctx, role === 'primary' ? primary : secondary, role, 'discovery', 'zconfig');
    const { zookeeper } = await place(ctx);
    await expect(startFromConfig(role, [`zookeeper ${zookeeper}`, ...settings])).rejects.toThrow(/exited \((?!0\))/);
  });

  it.for(['primary', 'secondary'] as const)('[DISC-CONF-5] a %s that does not offer discovery refuses a configuration with the zookeeper key', async (role, ctx) => {
    const iut = role === 'primary' ? primary : secondary;
    requires(ctx, iut, role, 'zconfig');
    if (iut.features.has('discovery')) ctx.skip(`unsupported: ${iut.name} offers discovery`);
    const setting = role === 'primary' ? 'replicate-to /db/providers' : 'replicate-from /db/providers';
    await expect(startFromConfig(role, ['zookeeper 127.0.0.1:2181', setting])).rejects.toThrow(/exited \((?!0\))/);
  });
});
