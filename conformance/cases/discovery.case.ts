// Registration and discovery through a real ZooKeeper (spec/discovery.md), for IUTs that claim
// the feature `discovery`. The harness runs its own ZooKeeper server (Debian's package) on a
// loopback port, and looks at the tree, or registers fake primaries, with its own session.
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { findZooKeeper, HOW_TO_ENABLE, ZooKeeperServer } from '../../reference/discovery/server.ts';
import { ZooKeeper } from '../../reference/discovery/zookeeper.ts';
import { formatAddress } from '../../reference/net/address.ts';
import { check, HarnessError } from '../checks.ts';
import { commitOn, loopback, primaryIut, reaches, refusesToStart, requires, secondaryIut, startFromConfig, startPrimary, startSecondary, workdir } from '../context.ts';
import { until } from '../wait.ts';
import { accepts } from '../iut/node.ts';
import { FakeSecondary } from '../peers/fake-secondary.ts';
import { Z64 } from '../../reference/timestamp.ts';
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
    watching.catch(() => undefined); // judged below
    const p = await startPrimary({ listen, register: { zookeeper, providers } });
    await check('DISC-REG-2', async () => {
      await watching;
      expect(await zk.children(providers), 'the children of the provider path').toEqual([name]);
    });
    check('DISC-REG-1', () => expect(servedWhenSeen, 'the node was registered before its port accepted connections').toBe(true));
    const node = (await zk.get(`${providers}/${name}`))!;
    check('DISC-REG-2', () => {
      const owner = Buffer.from(node.stat.ephemeralOwner);
      expect(owner.equals(Buffer.alloc(8)), 'the registration node is not ephemeral').toBe(false);
      expect(owner.toString('hex'), 'the registration node belongs to the harness\'s session').not.toBe(zk.sessionId);
    });
    check('DISC-REG-3', () => {
      const data = JSON.parse(node.data.toString('utf8')) as Record<string, unknown>;
      expect(data.pid, `the pid in the registration data ${node.data.toString('utf8')}`).toBe(p.node.proc.pid);
    });
    // the node is removed at shutdown, not left to the session timeout (10 s here)
    const stopped = Date.now();
    const exit = await p.node.stop();
    await check('DISC-REG-9', async () => {
      await until('the registration node to go', async () => (await zk.children(providers))?.length === 0, { timeoutMs: 5_000, everyMs: 10 });
      expect(Date.now() - stopped, 'ms from SIGTERM until the registration went').toBeLessThan(5_000);
    });
    check('CONF-PROC-2', () => expect(exit.code, 'exit status after SIGTERM').toBe(0));
  });

  it('[DISC-REG-8] a primary asked to register a Unix socket address refuses to start', async (ctx) => {
    requires(ctx, primary, 'primary', 'discovery', 'unix');
    const { zookeeper, providers, zk } = await place(ctx);
    const listen = { kind: 'unix' as const, path: `${workdir()}/zrs.sock` };
    // it may find out only once it tries to register, after it is ready: it has 15 s to exit
    await refusesToStart(() => startPrimary({ listen, register: { zookeeper, providers }, startFailure: null }), 'DISC-REG-8', {
      took: 'it runs on, asked to register a Unix socket',
      graceMs: 15_000,
    });
    expect(await zk.children(providers), 'what it registered').toEqual([]);
  });
});

describe(`discovery, discovering: ${secondary.name}`, () => {
  it('[DISC-FIND-1] [DISC-FIND-2] [DISC-FIND-6] [DISC-FIND-9] a discovering secondary connects nowhere while no primary is registered, connects to one once it registers, follows the list when it changes, whatever the registration data', async (ctx) => {
    requires(ctx, secondary, 'secondary', 'discovery');
    const { zookeeper, providers, zk } = await place(ctx);
    const [a, b, c] = (await Promise.all([0, 1, 2].map(() => FakePrimary.listen(() => undefined)))) as [FakePrimary, FakePrimary, FakePrimary];
    const nodeOf = (f: FakePrimary) => `${providers}/${formatAddress(f.address)}`;
    try {
      const s = await startSecondary({ discover: { zookeeper, providers }, reconnectDelay: 0.1 });
      await sleep(1000);
      check('DISC-FIND-6', () => expect(a.connections.length + b.connections.length + c.connections.length, 'connections with no provider registered').toBe(0));
      await zk.createEphemeral(nodeOf(a), Buffer.from('{"pid":1}'));
      const connected = await a
        .connection(0, 10_000)
        .then((c) => c.handshakeWithin())
        .then(() => null, (e: Error) => e);
      if (connected) {
        // no connection: a second secondary, started now, tells a provider it cannot use from a change it did not see
        await startSecondary({ discover: { zookeeper, providers }, reconnectDelay: 0.1 });
        const atStart = await a.connection(0, 10_000).then(() => true, () => false);
        check(atStart ? 'DISC-FIND-1' : ['DISC-FIND-6', 'DISC-FIND-2'], () => {
          throw new Error(atStart ? `it did not see the provider registered after it started (one started after it connects): ${connected.message}` : `it does not connect to a provider registered as HOST:PORT: ${connected.message}`);
        });
      }
      check(['DISC-FIND-6', 'DISC-FIND-2'], () => undefined);
      // a takes its leave, b registers: the next connection goes to b
      await zk.createEphemeral(nodeOf(b), Buffer.from('{"pid":2}'));
      await zk.remove(nodeOf(a));
      await sleep(200);
      a.close();
      await check('DISC-FIND-1', async () => {
        await b.connection(0, 15_000);
        expect(s.node.proc.exitCode, 'the secondary exited').toBeNull();
      });
      // c registers with data that is not JSON, b goes: the next connection goes to c all the same
      await zk.createEphemeral(nodeOf(c), Buffer.from('not JSON \xff', 'latin1'));
      await zk.remove(nodeOf(b));
      await sleep(200);
      b.close();
      await check('DISC-FIND-9', async () => {
        await c.connection(0, 15_000);
        expect(s.node.proc.exitCode, 'the secondary exited').toBeNull();
      });
    } finally {
      for (const f of [a, b, c]) f.close();
    }
  });

  it('[DISC-ZK-2] ZooKeeper restarted under running nodes: replication goes on, the registration is still there and the watch still follows changes', async (ctx) => {
    requires(ctx, primary, 'primary', 'discovery', 'control');
    requires(ctx, secondary, 'secondary', 'discovery');
    const { zookeeper, providers, zk } = await place(ctx);
    const listen = await loopback();
    const name = `127.0.0.1:${listen.port}`;
    const p = await startPrimary({ listen, register: { zookeeper, providers } });
    const other = await FakePrimary.listen(() => undefined);
    const s = await startSecondary({ discover: { zookeeper, providers }, reconnectDelay: 0.1 });
    const commit = (n: number) => commitOn(p.node, { records: [{ oid: '0000000000000001', data: Buffer.alloc(100, n).toString('hex') }] });
    /** Does the primary serve `tid`? (A scripted secondary of the harness's asks it from z64.) */
    const serves = async (tid: string) => {
      const f = await FakeSecondary.connect(listen).catch(() => null);
      if (!f) return false;
      f.handshake('zrs2.0', Z64);
      await f.waitForTransactions(99, 3000);
      f.close();
      return f.transactions.some((t) => Buffer.from(t.begin.tid).toString('hex') === tid);
    };
    try {
      const t1 = await commit(1);
      await reaches(s, t1).catch(async (e: Error) => {
        const registered = (await zk.children(providers))?.includes(name);
        check(registered ? 'DISC-FIND-6' : 'DISC-REG-2', () => {
          throw new Error(`${registered ? 'the primary is registered and' : 'the primary did not register, and'} the secondary does not replicate from it: ${e.message}`);
        }, registered ? 'secondary' : 'primary');
      });
      await server!.restart();
      const t2 = await commit(2); // replication does not need ZooKeeper
      await reaches(s, t2).catch(async (e: Error) => {
        const served = await serves(t2);
        check('DISC-ZK-2', () => {
          throw new Error(`with ZooKeeper restarted, ${served ? 'the primary goes on serving but the secondary stopped replicating' : 'the primary stopped serving'}: ${e.message}`);
        }, served ? 'secondary' : 'primary');
      });
      await zk.waitConnected(20_000).catch((e: Error) => {
        throw new HarnessError(`the harness's own ZooKeeper session did not come back: ${e.message}`);
      });
      await check('DISC-ZK-2', () => until('the registration after the restart', async () => (await zk.children(providers))?.includes(name), { timeoutMs: 20_000 }), 'primary');
      // another provider registers and the first one's node goes: the secondary follows the change
      await zk.createEphemeral(`${providers}/${formatAddress(other.address)}`, Buffer.alloc(0));
      await zk.remove(`${providers}/${name}`);
      await sleep(200);
      // the primary goes: the secondary's next connection is to the latest list's choice
      await p.node.stop();
      await check('DISC-ZK-2', () => other.connection(0, 20_000), 'secondary');
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
    const owner = async () => {
      const n = await look!.get(`${providers}/${name}`);
      return n && Buffer.from(n.stat.ephemeralOwner).toString('hex');
    };
    const before = await check('DISC-REG-2', () => until('the registration node', owner, { timeoutMs: 20_000 }));
    await pausePastExpiry(p.node.proc);
    // the node of the old session vanishes with it; one of a new session takes its place
    await check('DISC-ZK-3', () =>
      until('the registration in a new session', async () => {
        const now = await owner();
        return now !== null && now !== before;
      }, { timeoutMs: 20_000 }),
    );
  });

  it('[DISC-ZK-3] a secondary whose session expired reads and watches its provider path again', async (ctx) => {
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

  const refusal = (rule: string) => async ([role, , settings]: readonly ['primary' | 'secondary', string, readonly string[]], ctx: TestContext) => {
    requires(ctx, role === 'primary' ? primary : secondary, role, 'discovery', 'zconfig');
    const { zookeeper } = await place(ctx);
    await expectRefused(rule, role, [`zookeeper ${zookeeper}`, ...settings]);
  };
  it.for([
    ['primary', 'a relative provider path', ['replicate-to db/replication/providers']],
    ['primary', 'a provider path with an empty component', ['replicate-to /db//providers']],
    ['secondary', 'a provider path with a .. component', ['replicate-from /db/../providers']],
  ] as const)('[DISC-CONF-3] [CONF-PROC-3] a %s configured with ZooKeeper and %s refuses to start', refusal('DISC-CONF-3'));
  it.for([['secondary', 'equal replicate-to and replicate-from paths', ['replicate-from /db/providers', 'replicate-to /db/providers']]] as const)(
    '[DISC-CONF-4] [CONF-PROC-3] a %s configured with ZooKeeper and %s refuses to start',
    refusal('DISC-CONF-4'),
  );

  it.for(['primary', 'secondary'] as const)('[DISC-CONF-5] a %s that does not offer discovery refuses a configuration with the zookeeper key', async (role, ctx) => {
    const iut = role === 'primary' ? primary : secondary;
    requires(ctx, iut, role, 'zconfig');
    if (iut.features.has('discovery')) ctx.skip(`not applicable: ${iut.name} offers discovery`);
    const setting = role === 'primary' ? 'replicate-to /db/providers' : 'replicate-from /db/providers';
    await expectRefused('DISC-CONF-5', role, ['zookeeper 127.0.0.1:2181', setting]);
  });
});

/**
 * A node started from a configuration whose `<zrs>` section holds `settings` refuses to start:
 * it exits before it is ready (`rule`), with a non-zero status and a message on standard error
 * (CONF-PROC-3). Only an exit counts as a refusal: a node neither ready nor gone gives no verdict.
 */
async function expectRefused(rule: string, role: 'primary' | 'secondary', settings: string[]): Promise<void> {
  await refusesToStart(() => startFromConfig(role, settings), rule, { took: `it started with ${settings.join('; ')}` });
}
