// No sticky sessions (PROTOCOL.md §12, §15): three Mooring nodes on one real redis-server, behind a
// round-robin TCP balancer, and clients forced onto the HTTP transports. Every HTTP request opens a
// new TCP connection (no keep-alive), so the balancer sends each one to the next node: upstream POSTs
// and polls almost always land on a node that does not hold the connection's downstream, and must be
// forwarded to the one that does. Checks: publish and receive exactly once, in order, on SSE and on
// long-polling; a recovery key works on any node; the holder node killed (SIGKILL) mid-stream → the
// client reconnects through the balancer to another node and resumes with nothing lost or repeated.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import type { TransportKind } from '@mooring/protocol';
import type { MooringServer } from '@mooring/server';
import { Balancer, FaultProxy, type RedisServer, redisSkipReason, startRedis } from '@mooring/testkit';
import type { FetchLike } from '../src/rest.ts';
import { client, connected, realServer, waitFor } from './helpers/real-server.ts';
import { spawnServer } from './helpers/server-process.ts';
import { assertExactlyOnce, exchangeExactlyOnce, publishStream, record } from './helpers/streams.ts';

const skip = redisSkipReason();

/**
 * `fetch` over node:http with a new TCP connection per request (`agent: false`), so a TCP balancer
 * spreads the requests of one client over every node, the worst case for an HTTP transport.
 */
const freshConnectionFetch: FetchLike = (url, init) =>
  new Promise<Response>((resolve, reject) => {
    const headers = new Headers(init.headers);
    const req = request(url, {
      method: init.method ?? 'GET',
      agent: false,
      headers: Object.fromEntries(headers.entries()),
      ...(init.signal ? { signal: init.signal } : {}),
    });
    req.once('error', reject);
    req.once('response', (res) => {
      const responseHeaders = new Headers();
      for (const [name, value] of Object.entries(res.headers))
        if (typeof value === 'string') responseHeaders.set(name, value);
      const body = Readable.toWeb(res) as ReadableStream<Uint8Array>;
      resolve(new Response(body, { status: res.statusCode ?? 0, headers: responseHeaders }));
    });
    req.end(typeof init.body === 'string' ? init.body : undefined);
  });

interface Cluster {
  redis: RedisServer;
  nodes: MooringServer[];
  balancer: Balancer;
}

async function cluster(t: TestContext): Promise<Cluster> {
  const redis = await startRedis();
  t.after(() => redis.close());
  const nodes: MooringServer[] = [];
  for (let i = 0; i < 3; i++) nodes.push(await realServer(t, { store: { kind: 'redis', url: redis.url } }));
  const balancer = await Balancer.start(nodes.map((n) => ({ port: n.port })));
  t.after(() => balancer.close());
  return { redis, nodes, balancer };
}

function httpClient(t: TestContext, balancer: Balancer, transport: TransportKind, extra = {}) {
  return client(t, balancer.url('/'), {
    transports: [transport],
    fetch: freshConnectionFetch,
    ...extra,
  });
}

if (skip) {
  describe('no sticky sessions', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('no sticky sessions: three nodes behind a round-robin balancer', () => {
    for (const transport of ['sse', 'longpoll'] as const) {
      it(`${transport}: a client publishes and receives exactly once, in order, while its requests go to every node`, async (t) => {
        const { nodes, balancer } = await cluster(t);
        const reader = httpClient(t, balancer, transport);
        const writer = httpClient(t, balancer, transport);
        await exchangeExactlyOnce(reader, writer, `session:spread-${transport}`, transport);
        for (const node of nodes)
          assert.ok(balancer.stats({ port: node.port }).forwarded > 3, 'requests reached every node');
      });
    }

    it('a recovery key works on any node: the same connection id, and exactly what was missed', async (t) => {
      const { nodes, balancer } = await cluster(t);
      const channel = 'session:recover-anywhere';
      /** A client whose network can be cut (refused and reset) so it vanishes without a close frame. */
      const cuttable = async (target: { port: number }, transport: TransportKind, recover?: string) => {
        const proxy = await FaultProxy.start(target);
        t.after(() => proxy.close());
        const c = client(t, proxy.url('/'), {
          transports: [transport],
          fetch: freshConnectionFetch,
          ...(recover ? { recover } : {}),
        });
        const got = record(c.channels.get(channel));
        const cut = async () => {
          proxy.refuse();
          await proxy.reset();
          await waitFor(() => c.connection.state !== 'connected', { message: 'the client noticed the cut' });
          c.close();
        };
        return { c, got, cut };
      };
      const first = await cuttable(balancer, 'sse');
      await waitFor(() => first.c.channels.get(channel).state === 'attached');
      const holder = nodes.findIndex((n) => n.connections === 1);
      assert.ok(holder >= 0, 'one node holds the connection');
      const writer = client(t, nodes[holder]!.url).channels.get(channel);
      const before = await publishStream(writer, 'a', 5);
      await waitFor(() => first.got.length === 5);
      const id = first.c.connection.id;
      let key = first.c.recoveryKey();
      let cut = first.cut;
      // every other node in turn: the identity and the positions carried by the key continue there
      for (const [n, node] of nodes.entries()) {
        if (n === holder) continue;
        await cut();
        const missed = await publishStream(writer, 'a', 3);
        const next = await cuttable(node, n % 2 === 0 ? 'longpoll' : 'sse', key);
        await connected(next.c);
        assert.equal(next.c.connection.id, id, `node ${n}: the same connection id`);
        await waitFor(() => next.got.length >= missed.length, { message: `node ${n}: the missed ops` });
        assertExactlyOnce(next.got, missed, `node ${n}`);
        key = next.c.recoveryKey();
        cut = next.cut;
      }
      assertExactlyOnce(first.got, before, 'first');
      await cut();
    });

    it('the holder node is killed mid-stream (SIGKILL): the client reconnects to another node and resumes, nothing lost or twice', async (t) => {
      const redis = await startRedis();
      t.after(() => redis.close());
      const dir = await mkdtemp(join(tmpdir(), 'mooring-no-sticky-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const holder = await spawnServer(dir, 0, ['--store', 'redis', '--redis', redis.url]);
      t.after(() => {
        holder.child.kill('SIGKILL');
      });
      const others = [
        await realServer(t, { store: { kind: 'redis', url: redis.url } }),
        await realServer(t, { store: { kind: 'redis', url: redis.url } }),
      ];
      // only the holder in rotation while the reader opens its stream: its downstream lives there
      const balancer = await Balancer.start([{ port: holder.port }]);
      t.after(() => balancer.close());
      const channel = 'session:holder-lost';
      const reader = httpClient(t, balancer, 'sse');
      const got = record(reader.channels.get(channel));
      await waitFor(() => reader.channels.get(channel).state === 'attached');
      for (const node of others) balancer.add({ port: node.port });
      // the writer publishes over a WebSocket straight to a surviving node
      const writer = client(t, others[0]!.url);
      let killed = false;
      const serials = await publishStream(writer.channels.get(channel), 'w', 200, {
        window: 5,
        before: async (i) => {
          if (i === 100) {
            await waitFor(() => got.length >= 50, { message: 'the reader received the first half' });
            holder.child.kill('SIGKILL');
            await holder.exited;
            killed = true;
          }
        },
      });
      assert.ok(killed);
      await waitFor(() => got.length >= serials.length, {
        message: 'the reader never received every message',
        timeout: 30_000,
      });
      assertExactlyOnce(got, serials, 'reader');
      assert.equal(reader.connection.state, 'connected');
    });
  });
}
