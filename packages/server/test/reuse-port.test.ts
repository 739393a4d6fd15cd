/**
 * Several nodes on one port (`reusePort`, SO_REUSEPORT): the kernel spreads new connections over
 * every process listening with it; a port held without it is refused with a typed `ListenError`
 * that says how to share it. `mooring serve --reuse-port` (and MOORING_REUSE_PORT, `reusePort` in
 * the config file) reaches the listen call.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { loadServeConfig } from '../src/config.ts';
import { ListenError, type MooringServer, startServer } from '../src/index.ts';
import { toListenError } from '../src/listen.ts';
import { TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { type ServerProcess, spawnServer } from './support/server-process.ts';

const linux = process.platform === 'linux' ? false : 'SO_REUSEPORT load balancing is tested on Linux';

/** A node on `port`; `reusePort` undefined: the option left out (its default). */
function node(port: number, reusePort: boolean | undefined): Promise<MooringServer> {
  return startServer({
    host: '127.0.0.1',
    port,
    ...(reusePort === undefined ? {} : { reusePort }),
    keys: [TEST_KEY],
    store: { kind: 'memory' },
  });
}

describe('reusePort', { skip: linux }, () => {
  it('two nodes listening on one port with reusePort both accept connections', async () => {
    const a = await node(0, true);
    const b = await node(a.port, true);
    const clients: RawClient[] = [];
    try {
      assert.equal(b.port, a.port);
      // the kernel hashes each connection's addresses and ports over the two sockets: 40 connections
      // all landing on one of two nodes would happen once in 2^39 runs
      for (let i = 0; i < 40; i++) clients.push(await RawClient.connect(a.url));
      assert.equal(a.connections + b.connections, 40);
      assert.ok(a.connections > 0 && b.connections > 0, `spread ${a.connections} / ${b.connections}`);
    } finally {
      for (const c of clients) c.ws.terminate();
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a port held without reusePort is refused with ListenError address_in_use, either way round', async () => {
    const plain = await node(0, false);
    const shared = await node(0, true);
    try {
      for (const [port, reusePort] of [
        [plain.port, false],
        [plain.port, true],
        [shared.port, false],
        [shared.port, undefined], // not shared unless asked
      ] as const) {
        await assert.rejects(node(port, reusePort), (err: unknown) => {
          assert.ok(err instanceof ListenError, String(err));
          assert.equal(err.code, 'address_in_use');
          assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port} is already in use`));
          assert.match(err.message, /--reuse-port/);
          assert.equal((err.cause as NodeJS.ErrnoException).code, 'EADDRINUSE');
          return true;
        });
      }
      // the node that held the port before still serves
      const client = await RawClient.connect(plain.url);
      client.ws.terminate();
    } finally {
      await Promise.all([plain.close(), shared.close()]);
    }
  });

  it(
    'a node that cannot listen closes what it opened: no connection to Redis is left',
    { skip: redisSkipReason() ?? false },
    async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const plain = await node(0, false);
      t.after(() => plain.close());
      const clients = async () =>
        Number(/connected_clients:(\d+)/.exec(await redis.command('INFO', 'clients'))?.[1]);
      const before = await clients();
      const refused = startServer({
        host: '127.0.0.1',
        port: plain.port,
        keys: [TEST_KEY],
        store: { kind: 'redis', url: redis.url },
      });
      await assert.rejects(
        refused,
        (err: unknown) => err instanceof ListenError && err.code === 'address_in_use',
      );
      await waitFor(async () => (await clients()) === before, {
        message: 'the refused node left its connections to Redis open',
      });
    },
  );

  it('mooring serve --reuse-port: two processes share a port; a third without the flag exits with the reason', async (t) => {
    const processes: ServerProcess[] = [];
    // killed whatever fails (a process that did start would otherwise outlive the test run)
    t.after(async () => {
      for (const p of processes) p.child.kill('SIGKILL');
      await Promise.all(processes.map((p) => p.exited));
    });
    const spawn = async (args: string[], env?: Record<string, string>) => {
      const p = await spawnServer(['--store', 'memory', ...args], env);
      processes.push(p);
      return p;
    };
    const first = await spawn(['--reuse-port']);
    const port = new URL(first.url).port;
    const second = await spawn(['--port', port], { MOORING_REUSE_PORT: '1' });
    assert.equal(second.url, first.url);
    await assert.rejects(spawn(['--port', port]), (err: Error) => {
      assert.match(err.message, /server exited before listening/);
      assert.match(err.message, /is already in use: choose another port, or start every node/);
      return true;
    });
  });
});

describe('reusePort refusals and configuration', () => {
  it('names the platform when SO_REUSEPORT is not supported (libuv ENOTSUP)', () => {
    const enotsup = Object.assign(new Error('listen ENOTSUP: operation not supported on socket'), {
      code: 'ENOTSUP',
    });
    const err = toListenError(enotsup, { host: '127.0.0.1', port: 8080, reusePort: true });
    assert.equal(err.code, 'reuse_port_unsupported');
    assert.match(err.message, /cannot spread one port over several processes/);
    assert.match(err.message, /own port behind a load balancer/);
    const other = toListenError(Object.assign(new Error('listen EACCES'), { code: 'EACCES' }), {
      host: '::1',
      port: 80,
      reusePort: false,
    });
    assert.equal(other.code, 'listen_failed');
    assert.match(other.message, /cannot listen on \[::1\]:80: listen EACCES/);
  });

  it('takes reusePort from --reuse-port, MOORING_REUSE_PORT or the file, and refuses it on SQLite', () => {
    const config = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
      const c = loadServeConfig(argv, env);
      assert.notEqual(c, 'help');
      return c as Exclude<typeof c, 'help'>;
    };
    assert.equal(config(['--store', 'memory']).reusePort, false);
    assert.equal(config(['--store', 'memory', '--reuse-port']).reusePort, true);
    assert.equal(config(['--redis', 'redis://r:6379'], { MOORING_REUSE_PORT: 'true' }).reusePort, true);
    assert.equal(config(['--store', 'memory'], { MOORING_REUSE_PORT: '0' }).reusePort, false);
    assert.throws(
      () => config(['--store', 'memory'], { MOORING_REUSE_PORT: 'maybe' }),
      /MOORING_REUSE_PORT is 1 or 0/,
    );
    assert.throws(() => config(['--reuse-port']), /need a store they share \(--store redis\)/);
    const dir = mkdtempSync(join(tmpdir(), 'mooring-reuse-port-'));
    try {
      const file = join(dir, 'mooring.json');
      writeFileSync(file, JSON.stringify({ store: 'memory', reusePort: true }));
      assert.equal(config(['--config', file]).reusePort, true);
      assert.equal(config(['--config', file], { MOORING_REUSE_PORT: '0' }).reusePort, false);
      writeFileSync(file, JSON.stringify({ store: 'memory', reusePort: 'yes' }));
      assert.throws(() => config(['--config', file]), /"reusePort" in the config file is true or false/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
