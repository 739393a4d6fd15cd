/**
 * Presence, leases and recovery keys shared by several nodes on one real redis-server (PROTOCOL.md
 * §15): in-process nodes (`startServer`, port 0) with short sweeps, so a node's death — here its
 * shutdown, which stops its heartbeats and renewals without leaving anything — is seen by the others.
 * The same with `kill -9`ed node processes behind a balancer: redis-node-loss.test.ts. The last suite
 * runs presence, leases and recovery keys on a 3-master Redis Cluster (the keys of each script share
 * one hash slot).
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Message, PresenceFrame, ServerFrame } from '@mooring/protocol';
import {
  FaultProxy,
  type RedisCluster,
  type RedisServer,
  redisCliPath,
  redisSkipReason,
  startRedis,
  startRedisCluster,
  waitFor,
} from '@mooring/testkit';
import pino from 'pino';
import { createClient } from 'redis';
import { createToken, type MooringServer, type ServerOptions } from '../src/index.ts';
import { rest, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { redisNode } from './support/redis-fixtures.ts';

const skip = redisSkipReason();
const GRACE = 1_500;

const isPresence = (channel: string, action?: string) => (f: ServerFrame) =>
  f.type === 'presence' && f.channel === channel && (action === undefined || f.action === action);
const presenceOf = (c: RawClient, channel: string) =>
  c.frames.filter((f): f is PresenceFrame => f.type === 'presence' && f.channel === channel);

/** A node with short sweeps, so another node's death is seen soon. */
function node(
  redis: RedisServer,
  options: Partial<ServerOptions> = {},
  url = redis.url,
): Promise<MooringServer> {
  return redisNode(url, {
    presenceGrace: GRACE,
    sweepInterval: 100,
    nodeTtl: 400,
    heartbeatInterval: 500,
    connectionStateTtl: 5_000,
    ...options,
  });
}

async function members(server: MooringServer, channel: string): Promise<string[]> {
  const res = await rest(server, `/v1/channels/${channel}/presence`);
  return (res.body.members as Array<{ clientId: string }>).map((m) => m.clientId).sort();
}

async function runMessage(server: MooringServer, channel: string): Promise<Message[]> {
  const res = await rest(server, `/v1/channels/${channel}/messages?direction=forwards&limit=100`);
  return res.body.items as Message[];
}

/** A watcher on `b` attached to `channel`, and a client on `a` present in it (its socket left open). */
async function presentOn(
  a: MooringServer,
  b: MooringServer,
  channel: string,
  clientId: string,
): Promise<{ watcher: RawClient; phone: RawClient }> {
  const watcher = await RawClient.connect(b.url, { clientId: 'watcher' });
  await watcher.attach(channel);
  const phone = await RawClient.connect(a.url, { clientId });
  await phone.request({ type: 'presence', channel, action: 'enter' });
  await watcher.next(isPresence(channel, 'enter'));
  return { watcher, phone };
}

/**
 * Past the first node's grace the member recovered as `back` is still there: its update is the
 * only event the watcher sees after its enter (no leave, no enter again).
 */
async function stillPresentAfterGrace(back: RawClient, watcher: RawClient, channel: string): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, GRACE + 300));
  await back.request({ type: 'presence', channel, action: 'update', data: 'still here' });
  // that update itself (an update made by the recovery, a re-enter, would come before it)
  await watcher.next(
    (f) =>
      isPresence(channel, 'update')(f) &&
      f.type === 'presence' &&
      f.action === 'update' &&
      f.member.data === 'still here',
  );
  assert.deepEqual(
    presenceOf(watcher, channel).map((f) => f.action),
    ['sync', 'enter', 'update'],
  );
}

/**
 * Three nodes on a redis-server of their own, started before the suite's tests and stopped after
 * (with any node a test adds to `nodes`).
 */
function threeNodes(options: Partial<ServerOptions> = {}): { redis: RedisServer; nodes: MooringServer[] } {
  const fx = { redis: undefined as RedisServer | undefined, nodes: [] as MooringServer[] };
  before(async () => {
    const redis = await startRedis();
    fx.redis = redis;
    for (let i = 0; i < 3; i++) fx.nodes.push(await node(redis, options));
  });
  after(async () => {
    for (const n of fx.nodes) await n.close().catch(() => {});
    await fx.redis?.close();
  });
  return {
    get redis() {
      if (!fx.redis) throw new Error('redis-server not started yet');
      return fx.redis;
    },
    nodes: fx.nodes,
  };
}

/** The `status` header of one message. */
async function statusOf(server: MooringServer, channel: string, serial: string): Promise<unknown> {
  return (await runMessage(server, channel)).find((m) => m.serial === serial)?.headers?.status;
}

/**
 * Takes a REST lease (1.5 s by default, longer than the other leases of these tests) and waits until
 * it ran out: no connection renews it, so by then the sweeps went past every earlier, shorter deadline.
 */
async function outlastLeases(server: MooringServer, channel: string, lease = 1_500): Promise<void> {
  const res = await rest(server, `/v1/channels/${channel}/messages`, {
    body: { id: 'probe', data: 'p', headers: { status: 'running' }, lease },
  });
  assert.equal(res.status, 200);
  await waitFor(
    async () =>
      (await runMessage(server, channel)).some((m) => m.id === 'probe' && m.headers?.status === 'abandoned'),
    { message: 'the probe lease never ran out' },
  );
}

if (skip) {
  describe('several nodes: presence, leases, recovery keys', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('several nodes: recovery keys', () => {
    let redis: RedisServer;
    let a: MooringServer;
    let b: MooringServer;
    before(async () => {
      redis = await startRedis();
      a = await node(redis);
      b = await node(redis, { connectionStateTtl: 1_000, heartbeatInterval: 300 });
    });
    after(async () => {
      await a.close();
      await b.close();
      await redis.close();
    });

    it('a recovery key issued by node A recovers the same connection on node B, and only with its secret', async () => {
      const phone = await RawClient.connect(a.url, { clientId: 'phone' });
      const { connectionId, connectionKey } = phone.connected;
      phone.kill();
      const forged = await RawClient.connect(b.url, {
        clientId: 'phone',
        recover: `${connectionId}.not-the-secret`,
      });
      assert.equal(forged.connected.resumed, false, 'a wrong secret recovers nothing');
      assert.notEqual(forged.connected.connectionId, connectionId);
      const impostor = await RawClient.connect(b.url, { clientId: 'someone-else', recover: connectionKey });
      assert.equal(impostor.connected.resumed, false, 'another clientId recovers nothing');
      const back = await RawClient.connect(b.url, { clientId: 'phone', recover: connectionKey });
      assert.equal(back.connected.resumed, true);
      assert.equal(back.connected.connectionId, connectionId);
      await Promise.all([forged.close(), impostor.close(), back.close()]);
    });

    it('a deliberately closed connection cannot be recovered anywhere', async () => {
      const tab = await RawClient.connect(a.url, { clientId: 'tab' });
      await tab.close();
      // a request answered by A after its close handling: the close has been processed
      await waitFor(() => a.connections === 0, { message: 'A never saw the close' });
      // the DEL is sent without waiting for it: the first attempt after it landed recovers nothing
      const again = await waitFor(async () => {
        const attempt = await RawClient.connect(b.url, {
          clientId: 'tab',
          recover: tab.connected.connectionKey,
        });
        await attempt.close();
        return attempt.connected.resumed === false ? attempt : undefined;
      });
      assert.notEqual(again.connected.connectionId, tab.connected.connectionId);
    });

    it('an identity is forgotten one TTL after its transport is gone (Redis expiry)', async () => {
      const phone = await RawClient.connect(b.url, { clientId: 'ttl' });
      phone.kill();
      await waitFor(() => b.connections === 0, { message: 'B never saw the loss' });
      // B's TTL: 1 s (at least 3 heartbeats); Redis removes the key on its own
      const redisClient = createClient({ url: redis.url });
      await redisClient.connect();
      try {
        const key = `mooring:connection:${phone.connected.connectionId}`;
        assert.equal(await redisClient.exists(key), 1);
        await waitFor(async () => (await redisClient.exists(key)) === 0, {
          message: 'the identity never expired',
        });
      } finally {
        await redisClient.close();
      }
      const again = await RawClient.connect(a.url, {
        clientId: 'ttl',
        recover: phone.connected.connectionKey,
      });
      assert.equal(again.connected.resumed, false, 'expired: a new connection');
      await again.close();
    });
  });

  describe('several nodes: a connection recovered while its old transport lives', () => {
    const fx = threeNodes();
    /** Resolves with whether `client`'s socket closed within `ms`. */
    const closesWithin = (client: RawClient, ms: number) =>
      Promise.race([
        client.closed().then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref()),
      ]);

    it('the node that held it drops its transport, as one node does at a takeover; presence moves without a leave', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'session:taken-over';
      // the phone's socket to A is never closed by the phone: A sees a live transport
      const { watcher, phone } = await presentOn(a, b, channel, 'phone');
      const back = await RawClient.connect(b.url, {
        clientId: 'phone',
        recover: phone.connected.connectionKey,
      });
      assert.equal(back.connected.resumed, true);
      assert.equal(
        await closesWithin(phone, 5_000),
        true,
        'A still holds the transport B took the connection over from (its heartbeats would keep it for ever)',
      );
      await waitFor(() => a.connections === 0, { message: 'A still counts the replaced connection' });
      // A ended nothing: past its grace, the member is still there, held by B
      await stillPresentAfterGrace(back, watcher, channel);
      assert.deepEqual(await members(a, channel), ['phone']);
      // and the identity is still in Redis: B's connection can be recovered again, on A
      back.kill();
      await waitFor(() => b.connections === 1, { message: 'B never saw the loss' });
      const again = await RawClient.connect(a.url, {
        clientId: 'phone',
        recover: phone.connected.connectionKey,
      });
      assert.equal(again.connected.resumed, true);
      await Promise.all([again.close(), watcher.close()]);
    });

    it('the run keeps its lease while recovered elsewhere, and ends abandoned once the recovered connection is lost', async () => {
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const channel = 'run:taken-over';
      const agent = await RawClient.connect(a.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [
        { id: 'run', data: 'x', headers: { status: 'running' }, lease: 400 },
      ]);
      const serial = ack.results[0]!.serial;
      const back = await RawClient.connect(b.url, {
        clientId: 'agent',
        recover: agent.connected.connectionKey,
      });
      assert.equal(back.connected.resumed, true);
      assert.equal(await closesWithin(agent, 5_000), true, 'the replaced transport was dropped');
      await outlastLeases(c, channel);
      assert.equal(
        await statusOf(c, channel, serial),
        'running',
        'renewed by B while the connection lives there',
      );
      // the connection is lost on B for good: nobody may renew the lease any more (A forgot it)
      back.kill();
      await waitFor(async () => (await statusOf(c, channel, serial)) === 'abandoned', {
        message:
          'the run never ended abandoned: a node still renews the lease of a connection it no longer holds',
      });
    });

    it('the same key recovered on two nodes at once is held by exactly one of them', async () => {
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      for (let round = 0; round < 3; round++) {
        const tab = await RawClient.connect(a.url, { clientId: `tab${round}` });
        const key = tab.connected.connectionKey;
        const [onB, onC] = await Promise.all([
          RawClient.connect(b.url, { clientId: `tab${round}`, recover: key }),
          RawClient.connect(c.url, { clientId: `tab${round}`, recover: key }),
        ]);
        assert.equal(onB.connected.resumed && onC.connected.resumed, true, 'each recovery matched the key');
        assert.equal(await closesWithin(tab, 5_000), true, 'the replaced transport was dropped');
        // the earlier of the two is told by the later one and dropped
        const first = await Promise.race([
          onB.closed().then(() => onB),
          onC.closed().then(() => onC),
          new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000).unref()),
        ]);
        assert.ok(first, 'both recoveries still hold the connection');
        const last = first === onB ? onC : onB;
        assert.equal(await closesWithin(last, 500), false, 'the last recovery keeps the connection');
        await waitFor(() => a.connections + b.connections + c.connections === 1, {
          message: 'more than one node holds the connection',
        });
        await last.close();
        await waitFor(() => a.connections + b.connections + c.connections === 0);
      }
    });

    it('the node that held it forgets its members: declared dead and back (a Redis outage), it does not take them back', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'session:forgotten';
      const { watcher, phone } = await presentOn(a, b, channel, 'forgotten');
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      try {
        const held = await redisClient.hGet(`mooring:{${channel}}:presence`, phone.connected.connectionId);
        const presenceNodeOfA = held!.split('\n')[0]!;
        const back = await RawClient.connect(b.url, {
          clientId: 'forgotten',
          recover: phone.connected.connectionKey,
        });
        assert.equal(back.connected.resumed, true);
        assert.equal(await closesWithin(phone, 5_000), true, 'the replaced transport was dropped');
        // A is declared dead while alive: it clears the mark and re-takes the members it holds
        const deadMark = `mooring:node-dead:${presenceNodeOfA}`;
        await redisClient.set(deadMark, '0', { PX: 60_000 });
        await waitFor(async () => (await redisClient.exists(deadMark)) === 0, {
          message: 'A never cleared its dead mark',
        });
        await new Promise((resolve) => setTimeout(resolve, 300));
        // held by B: lost there, it leaves after B's grace
        back.kill();
        await watcher.next(isPresence(channel, 'leave'), 4 * GRACE);
      } finally {
        await redisClient.close();
      }
      assert.deepEqual(await members(a, channel), []);
      await watcher.close();
    });

    it('a recovery whose socket closes before its upgrade takes nothing over: the next recovery still drops the old transport', async () => {
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      // the socket reset (destroyed while B's admission runs) or ended (closed when B upgrades it)
      for (const how of ['reset', 'end'] as const) {
        const clientId = `half-moved-${how}`;
        const phone = await RawClient.connect(a.url, { clientId });
        const key = phone.connected.connectionKey;
        // the upgrade request reaches B and its socket goes at once: B's claim runs, nothing opens
        const { port } = new URL(b.url);
        const request = `GET /v1/connect?key=${encodeURIComponent(TEST_KEY)}&clientId=${clientId}&recover=${key} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
        await new Promise<void>((resolve) => {
          const socket = netConnect(Number(port), '127.0.0.1', () => {
            if (how === 'reset') socket.write(request, () => socket.resetAndDestroy());
            else socket.end(request, () => socket.destroy());
          });
          socket.on('close', () => resolve());
          socket.on('error', () => {});
        });
        await new Promise((resolve) => setTimeout(resolve, 300)); // B's admission has run by now
        assert.equal(b.connections, 0);
        const moved = await RawClient.connect(c.url, { clientId, recover: key });
        assert.equal(moved.connected.resumed, true);
        assert.equal(
          await closesWithin(phone, 5_000),
          true,
          `${how}: A was not told (the mark named B's open that never was)`,
        );
        await moved.close();
      }
    });

    type Redis = ReturnType<typeof createClient>;
    /** The holder mark in Redis of connection `id`: the whole mark, its node, its open's number. */
    const markOf = async (redisClient: Redis, id: string) => {
      const { n: mark } = JSON.parse((await redisClient.get(`mooring:connection:${id}`))!) as { n: string };
      const dot = mark.lastIndexOf('.');
      return { mark, node: mark.slice(0, dot), open: Number(mark.slice(dot + 1)) };
    };
    /** Sends `node` a takeover notice naming `holder`; resolves to how many nodes listened. */
    const notice = (redisClient: Redis, node: string, id: string, holder: string) =>
      redisClient.sPublish(`mooring:node:{${node}}`, JSON.stringify({ t: 'replaced', id, holder }));

    it('a takeover notice naming an earlier open of the connection drops nothing', async () => {
      const [a] = fx.nodes as [MooringServer];
      const phone = await RawClient.connect(a.url, { clientId: 'noticed' });
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      try {
        const { connectionId } = phone.connected;
        const { mark, node, open } = await markOf(redisClient, connectionId);
        assert.equal(await notice(redisClient, node, connectionId, `${node}.${open - 1}`), 1, 'A listens');
        assert.equal(await closesWithin(phone, 500), false, 'an older open named: the live one stays');
        await notice(redisClient, node, connectionId, mark);
        assert.equal(await closesWithin(phone, 5_000), true, 'its own open named: dropped');
      } finally {
        await redisClient.close();
      }
    });

    it('a takeover notice that comes before the open it names drops that open once it opens', async () => {
      // Two recoveries at once: C takes over B's mark while B's upgrade is still on its way, and C's
      // notice reaches B first. Staged on one node: the notice names the mark A's next open will get.
      const [a] = fx.nodes as [MooringServer];
      const phone = await RawClient.connect(a.url, { clientId: 'early' });
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      try {
        const { connectionId } = phone.connected;
        const { node, open } = await markOf(redisClient, connectionId);
        const next = `${node}.${open + 1}`;
        assert.equal(await notice(redisClient, node, connectionId, next), 1, 'A listens');
        await new Promise((resolve) => setTimeout(resolve, 100)); // the notice is in before the open
        const late = await RawClient.connect(a.url, {
          clientId: 'early',
          recover: phone.connected.connectionKey,
        });
        assert.equal(
          (await markOf(redisClient, connectionId)).mark,
          next,
          'the recovery got the mark the notice named',
        );
        assert.equal(
          await closesWithin(late, 5_000),
          true,
          'the open the notice named still holds the connection',
        );
      } finally {
        await redisClient.close();
      }
    });
  });

  describe('several nodes: presence', () => {
    const fx = threeNodes();

    it('after a Redis restored from an older snapshot, a member that left since is gone and one that entered since is there', async () => {
      const own = await startRedis();
      const a = await node(own);
      try {
        const channel = 'session:restored';
        const gone = await RawClient.connect(a.url, { clientId: 'gone' });
        await gone.request({ type: 'presence', channel, action: 'enter' });
        await own.command('SAVE');
        await gone.close(); // left after the snapshot
        const there = await RawClient.connect(a.url, { clientId: 'there' });
        await there.request({ type: 'presence', channel, action: 'enter', data: { n: 1 } });
        assert.deepEqual(await members(a, channel), ['there']);
        await own.stop('SIGKILL');
        await own.restart();
        await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200, {
          message: 'the node is ready on the restarted Redis',
        });
        await waitFor(async () => (await members(a, channel)).join() === 'there', {
          message: 'presence stayed as the snapshot had it: `gone` listed, `there` missing',
        });
        const listed = await rest(a, `/v1/channels/${channel}/presence`);
        assert.deepEqual((listed.body.members as Array<{ data: unknown }>)[0]?.data, { n: 1 });
        // the record a recovery reads is back too: the member leaves when its connection closes
        await there.close();
        await waitFor(async () => (await members(a, channel)).length === 0, {
          message: '`there` never left',
        });
      } finally {
        await a.close();
        await own.close();
      }
    });

    it('after a FLUSHALL, the members of live connections are there again', async () => {
      const own = await startRedis();
      const a = await node(own);
      try {
        const channel = 'session:flushed';
        const there = await RawClient.connect(a.url, { clientId: 'there' });
        await there.request({ type: 'presence', channel, action: 'enter' });
        await own.command('FLUSHALL');
        await waitFor(async () => (await members(a, channel)).join() === 'there', {
          message: 'the member of a live connection stayed missing',
        });
        await there.close();
      } finally {
        await a.close();
        await own.close();
      }
    });

    it('a node says in its log that Redis is another instance after a restart, once', async () => {
      const own = await startRedis({ appendonly: 'always' });
      const lines: Array<{ msg?: string; previous?: string; current?: string }> = [];
      const logger = pino(
        { level: 'warn' },
        new Writable({
          write(chunk, _enc, done) {
            lines.push(JSON.parse(String(chunk)) as (typeof lines)[number]);
            done();
          },
        }),
      );
      const a = await node(own, { logger });
      try {
        const said = () => lines.filter((l) => l.msg?.startsWith('Redis is not the instance it was'));
        await new Promise((resolve) => setTimeout(resolve, 300)); // a few beats on the same Redis
        assert.equal(said().length, 0, 'nothing to say while Redis stays the same');
        await own.stop('SIGKILL');
        await own.restart();
        await waitFor(() => said().length === 1, { message: 'the node never said Redis changed' });
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.equal(said().length, 1, 'said once');
        assert.notEqual(said()[0]!.previous, said()[0]!.current);
      } finally {
        await a.close();
        await own.close();
      }
    });

    it('members are visible from every node, and each event reaches subscribers on every node once', async () => {
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const channel = 'session:everywhere';
      const watchers = await Promise.all(
        [a, b, c].map((n, i) => RawClient.connect(n.url, { clientId: `w${i}` })),
      );
      for (const w of watchers) await w.attach(channel);
      const agent = await RawClient.connect(a.url, { clientId: 'agent' });
      await agent.request({ type: 'presence', channel, action: 'enter', data: { typing: false } });
      await agent.request({ type: 'presence', channel, action: 'update', data: { typing: true } });
      // the data as entered, from any node: a late attach's sync, and REST
      const late = await RawClient.connect(c.url, { clientId: 'late' });
      await late.attach(channel);
      const sync = (await late.next(isPresence(channel, 'sync'))) as Extract<
        ServerFrame,
        { type: 'presence' }
      >;
      assert.deepEqual(sync.action === 'sync' && sync.members.map((m) => [m.clientId, m.data]), [
        ['agent', { typing: true }],
      ]);
      const listed = await rest(b, `/v1/channels/${channel}/presence`);
      assert.deepEqual(
        (listed.body.members as Array<{ data: unknown }>).map((m) => m.data),
        [{ typing: true }],
      );
      await late.close();
      await agent.request({ type: 'presence', channel, action: 'leave' });
      for (const w of watchers) await w.next(isPresence(channel, 'leave'));
      assert.deepEqual(await members(c, channel), []);
      await agent.request({ type: 'presence', channel, action: 'enter' });
      assert.deepEqual(await members(b, channel), ['agent']);
      assert.deepEqual(await members(c, channel), ['agent']);
      // the end marker: a last enter by a watcher, seen by everyone after everything before it
      await watchers[2]!.request({ type: 'presence', channel, action: 'enter' });
      for (const w of watchers)
        await w.next(
          (f) =>
            isPresence(channel, 'enter')(f) &&
            f.type === 'presence' &&
            f.action !== 'sync' &&
            f.member.clientId === 'w2',
        );
      for (const w of watchers) {
        assert.deepEqual(
          presenceOf(w, channel).map((f) => f.action),
          ['sync', 'enter', 'update', 'leave', 'enter', 'enter'],
          'every event once, in order, on every node',
        );
        assert.deepEqual(
          presenceOf(w, channel)
            .slice(1, 3)
            .map((f) => f.action !== 'sync' && f.member.data),
          [{ typing: false }, { typing: true }],
          'each event with its data',
        );
      }
      await Promise.all([...watchers, agent].map((x) => x.close()));
    });

    it('a connection recovered on another node keeps its presence: no leave, not even after the first node’s grace', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'session:moved';
      const { watcher, phone } = await presentOn(a, b, channel, 'phone');
      phone.kill();
      await waitFor(() => a.connections === 0, { message: 'A never saw the loss' });
      const back = await RawClient.connect(b.url, {
        clientId: 'phone',
        recover: phone.connected.connectionKey,
      });
      assert.equal(back.connected.resumed, true);
      // A's grace runs out; its leave applies only to members it still holds, and B took them over
      await stillPresentAfterGrace(back, watcher, channel);
      back.kill();
      await watcher.next(isPresence(channel, 'leave'));
      assert.deepEqual(await members(a, channel), []);
      await watcher.close();
    });

    it('a connection that detached hears no more presence of the channel; one still attached on its node does', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'session:detached';
      const watcher = await RawClient.connect(b.url, { clientId: 'watcher' });
      await watcher.attach(channel);
      const stayer = await RawClient.connect(b.url, { clientId: 'stayer' });
      await stayer.attach(channel);
      assert.equal((await watcher.request({ type: 'detach', channel })).type, 'detached');
      const agent = await RawClient.connect(a.url, { clientId: 'agent' });
      await agent.request({ type: 'presence', channel, action: 'enter' });
      await stayer.next(isPresence(channel, 'enter'));
      assert.equal((await watcher.request({ type: 'ping' })).type, 'pong'); // anything sent before has come
      assert.deepEqual(
        presenceOf(watcher, channel).map((f) => f.action),
        ['sync'],
      );
      await Promise.all([watcher.close(), stayer.close(), agent.close()]);
    });

    it('a presence read with no listener subscribes the channel a while (5 s), then lets it go', async () => {
      const [, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'session:read-only';
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      try {
        const bus = `mooring:presence:{${channel}}`;
        const subscribers = async () =>
          Number(((await redisClient.sendCommand(['PUBSUB', 'SHARDNUMSUB', bus])) as unknown[])[1]);
        assert.deepEqual(await members(b, channel), []);
        assert.equal(await subscribers(), 1, 'kept for an attach that usually follows');
        await waitFor(async () => (await subscribers()) === 0, {
          timeout: 15_000,
          message: 'the subscription of a channel nobody listens to was never let go',
        });
      } finally {
        await redisClient.quit();
      }
    });

    it('a connection recovered on another node after its grace enters its members again, with their data', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'session:came-back';
      const watcher = await RawClient.connect(b.url, { clientId: 'watcher' });
      await watcher.attach(channel);
      const phone = await RawClient.connect(a.url, { clientId: 'phone' });
      await phone.request({ type: 'presence', channel, action: 'enter', data: { on: 'phone' } });
      await watcher.next(isPresence(channel, 'enter'));
      phone.kill();
      await watcher.next(isPresence(channel, 'leave'), 4 * GRACE); // the grace ran out
      assert.deepEqual(await members(b, channel), []);
      const back = await RawClient.connect(b.url, {
        clientId: 'phone',
        recover: phone.connected.connectionKey,
      });
      assert.equal(back.connected.resumed, true);
      const again = await watcher.next(
        (f) =>
          isPresence(channel, 'enter')(f) &&
          presenceOf(watcher, channel).filter((p) => p.action === 'enter').length === 2,
      );
      assert.deepEqual(again.type === 'presence' && again.action === 'enter' && again.member.data, {
        on: 'phone',
      });
      assert.deepEqual(await members(a, channel), ['phone']);
      await Promise.all([back.close(), watcher.close()]);
    });

    it('members held by a node that died leave after the grace: not at once, not never, announced once', async () => {
      const [, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      const othersAlive = new Set(await redisClient.keys('mooring:node:*'));
      const doomed = await node(fx.redis);
      fx.nodes.push(doomed); // closed by after() if the test fails first
      const channel = 'session:doomed';
      const watchers = [
        await RawClient.connect(b.url, { clientId: 'wb' }),
        await RawClient.connect(c.url, { clientId: 'wc' }),
      ];
      for (const w of watchers) await w.attach(channel);
      const users = await Promise.all(
        [1, 2, 3].map((i) => RawClient.connect(doomed.url, { clientId: `user${i}` })),
      );
      for (const u of users) await u.request({ type: 'presence', channel, action: 'enter' });
      for (const w of watchers)
        await waitFor(() => presenceOf(w, channel).filter((f) => f.action === 'enter').length === 3);
      try {
        const aliveKeys = await redisClient.keys('mooring:node:*');
        assert.equal(aliveKeys.length, 4, 'four live nodes');
        const id = aliveKeys.find((k) => !othersAlive.has(k))!.slice('mooring:node:'.length);
        const deadMark = `mooring:node-dead:${id}`;
        // declared dead long ago while alive (as after a Redis outage longer than nodeTtl): the node
        // clears the mark itself, so its real death below still gets the full grace
        await redisClient.set(deadMark, '0', { PX: 60_000 });
        await waitFor(async () => (await redisClient.exists(deadMark)) === 0, {
          message: 'a live node never cleared its dead mark',
        });
        assert.deepEqual(await members(b, channel), ['user1', 'user2', 'user3']);
        // the node stops: no heartbeat any more, and nothing left on purpose (as after kill -9)
        await doomed.close();
        await waitFor(async () => (await redisClient.exists(deadMark)) === 1, {
          message: 'no sweeper noticed the dead node',
        });
        // seen dead, still present: the grace runs from here
        assert.ok(Number(await redisClient.get(deadMark)) > Date.now(), 'the grace runs from the death');
        assert.deepEqual(await members(b, channel), ['user1', 'user2', 'user3']);
      } finally {
        await redisClient.close();
      }
      for (const w of watchers)
        await waitFor(() => presenceOf(w, channel).filter((f) => f.action === 'leave').length === 3, {
          message: 'the dead node’s members never left',
        });
      assert.deepEqual(await members(c, channel), []);
      // three sweepers raced (b, c, and the first node): each leave announced once
      await watchers[0]!.request({ type: 'presence', channel, action: 'enter' });
      for (const w of watchers)
        await w.next(
          (f) =>
            isPresence(channel, 'enter')(f) &&
            f.type === 'presence' &&
            f.action !== 'sync' &&
            f.member.clientId === 'wb',
        );
      for (const w of watchers)
        assert.equal(presenceOf(w, channel).filter((f) => f.action === 'leave').length, 3);
      await Promise.all(watchers.map((w) => w.close()));
    });
  });

  describe('several nodes: leases', () => {
    const fx = threeNodes();

    it('a lease held on a live node is renewed: other nodes do not expire it', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'run:kept';
      const agent = await RawClient.connect(a.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [
        { id: 'run', data: 'x', headers: { status: 'running' }, lease: 400 },
      ]);
      const kept = ack.results[0]!.serial;
      // a REST publisher's lease is not renewed by any connection: it runs out, which proves sweeps
      // went past the first lease's deadline several times
      await outlastLeases(b, channel);
      assert.equal(
        await statusOf(b, channel, kept),
        'running',
        'renewed by its node while its connection lives',
      );
      await agent.publish(channel, [
        { action: 'update', serial: kept, id: 'end', headers: { status: 'complete' }, lease: 0 },
      ]);
      await agent.close();
    });

    it('the channel health lists the leases with their deadlines in Redis, from any node', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'run:listed';
      const agent = await RawClient.connect(a.url, { clientId: 'agent' });
      const before = Date.now();
      const ack = await agent.publish(channel, [
        { id: 'one', data: 'x', lease: 60_000 },
        { id: 'two', data: 'y', lease: 30_000 },
      ]);
      const serials = ack.results.map((r) => r.serial).sort();
      type View = { serial: string; clientId?: string; ms: number; held: boolean; deadline?: number };
      const leasesOn = async (server: MooringServer) =>
        ((await rest(server, `/v1/channels/${channel}/health`)).body.leases as View[]) ?? [];
      const onA = await leasesOn(a);
      const onB = await leasesOn(b);
      assert.deepEqual(
        onA.map((l) => [l.serial, l.ms, l.held]),
        [
          [serials[0], 60_000, true],
          [serials[1], 30_000, true],
        ],
        'held on the node of the publisher',
      );
      assert.deepEqual(
        onB.map((l) => [l.serial, l.clientId, l.held]),
        [
          [serials[0], 'agent', false],
          [serials[1], 'agent', false],
        ],
        'seen from another node too',
      );
      for (const [i, l] of onB.entries()) {
        const ms = i === 0 ? 60_000 : 30_000;
        assert.ok(
          l.deadline !== undefined && l.deadline >= before + ms && l.deadline <= Date.now() + ms,
          `the deadline of lease ${i} from Redis (${l.deadline})`,
        );
      }
      await agent.publish(channel, [
        { action: 'update', serial: serials[0]!, id: 'end-1', lease: 0 },
        { action: 'update', serial: serials[1]!, id: 'end-2', lease: 0 },
      ]);
      await agent.close();
    });

    it('a lease whose node died is expired by the others one lease later, exactly once', async () => {
      const [, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const doomed = await node(fx.redis);
      fx.nodes.push(doomed); // closed by after() if the test fails first
      const channel = 'run:orphan';
      const watcher = await RawClient.connect(c.url);
      await watcher.attach(channel);
      const agent = await RawClient.connect(doomed.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [
        { id: 'run', data: 'x', headers: { status: 'running' }, lease: 500 },
      ]);
      const serial = ack.results[0]!.serial;
      await doomed.close(); // renewals stop; the others (three sweepers) race to expire it
      await waitFor(() => watcher.messages(channel).some((m) => m.headers?.status === 'abandoned'), {
        message: 'the run never ended abandoned',
      });
      // another op after it: everything before has been delivered
      const pub = await RawClient.connect(b.url, { clientId: 'marker' });
      await pub.publish(channel, [{ id: 'marker', data: 'end' }]);
      await waitFor(() => watcher.messages(channel).some((m) => m.id === 'marker'));
      const abandoned = watcher
        .messages(channel)
        .filter((m) => m.serial === serial && m.headers?.status === 'abandoned');
      assert.equal(abandoned.length, 1, 'one abandoned update, however many sweepers');
      await Promise.all([watcher.close(), pub.close()]);
    });

    it('the same clientId writing again from another node before expiry takes the lease back', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const doomed = await node(fx.redis);
      fx.nodes.push(doomed); // closed by after() if the test fails first
      const channel = 'run:taken-back';
      const agent = await RawClient.connect(doomed.url, { clientId: 'agent' });
      const ack = await agent.publish(channel, [
        { id: 'run', data: 'x', headers: { status: 'running' }, lease: 1_000 },
      ]);
      const serial = ack.results[0]!.serial;
      await doomed.close();
      const restarted = await RawClient.connect(a.url, { clientId: 'agent' });
      await restarted.publish(channel, [
        { action: 'update', serial, id: 'again', headers: { status: 'running' }, lease: 1_000 },
      ]);
      await outlastLeases(b, channel);
      assert.equal(
        await statusOf(b, channel, serial),
        'running',
        'taken back by the restarted agent: still running',
      );
      await restarted.publish(channel, [
        { action: 'update', serial, id: 'end', headers: { status: 'complete' }, lease: 0 },
      ]);
      await restarted.close();
    });

    it('any write by the same clientId from another node, even without a lease field, moves the lease there', async () => {
      const [a, b] = fx.nodes as [MooringServer, MooringServer];
      const channel = 'run:moved';
      const first = await RawClient.connect(b.url, { clientId: 'mover' });
      const ack = await first.publish(channel, [
        { id: 'run', data: 'x', headers: { status: 'running' }, lease: 1_000 },
      ]);
      const serial = ack.results[0]!.serial;
      first.kill(); // its lease now runs out one lease later, unless the publisher writes again
      const again = await RawClient.connect(a.url, { clientId: 'mover' });
      await again.publish(channel, [{ action: 'update', serial, id: 'u1', headers: { status: 'running' } }]);
      await outlastLeases(b, channel);
      assert.equal(await statusOf(b, channel, serial), 'running', 'held by the new connection on node A');
      await again.publish(channel, [
        { action: 'update', serial, id: 'end', headers: { status: 'complete' }, lease: 0 },
      ]);
      await again.close();
    });

    /** The fields in Redis of connection `id`'s list of leases (what a recovery elsewhere reads). */
    async function listed(id: string): Promise<string[]> {
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      try {
        return (await redisClient.sMembers(`mooring:{leases}:holder:${id}`)).sort();
      } finally {
        await redisClient.quit();
      }
    }

    it("an agent's list of leases names the leases it holds, not every run it ended", async () => {
      // Its runs ended, their leases stayed on the list for as long as the connection held any lease
      // (found by an outside review: 500 runs ended left 501 entries for 1 lease), and a recovery
      // of the connection on another node read them all before renewing the live ones.
      const [a] = fx.nodes as [MooringServer];
      const channel = 'run:many';
      const agent = await RawClient.connect(a.url, { clientId: 'agent' });
      const id = agent.connected.connectionId;
      const lease = { headers: { status: 'running' }, lease: 60_000 };
      const ack = await agent.publish(channel, [{ id: 'bg', data: 'x', ...lease }]);
      const background = JSON.stringify([channel, ack.results[0]!.serial]);
      for (let i = 0; i < 30; i++) {
        const run = await agent.publish(channel, [{ id: `run-${i}`, data: '', ...lease }]);
        const serial = run.results[0]!.serial;
        // ended by an update with `lease: 0`; every third one deleted instead
        await agent.publish(channel, [
          i % 3 === 2
            ? { action: 'delete', serial, id: `del-${i}` }
            : { action: 'update', serial, id: `end-${i}`, headers: { status: 'complete' }, lease: 0 },
        ]);
      }
      // a release reaches Redis after its end is acknowledged
      await waitFor(async () => (await listed(id)).length === 1, {
        message: 'the list still names runs that ended',
      });
      assert.deepEqual(await listed(id), [background]);
      await agent.publish(channel, [
        { action: 'update', serial: ack.results[0]!.serial, id: 'bg-end', lease: 0 },
      ]);
      await waitFor(async () => (await listed(id)).length === 0, { message: 'the last lease stayed listed' });
      await agent.close();
    });

    it('a connection recovered on another node keeps its run when its list is long: each lease is renewed as it is read', async () => {
      // A list left long (50,000 entries of runs ended, as nodes of older versions left them) was
      // walked a round trip per entry before any lease was renewed: the live run read `abandoned`
      // while its agent was connected (outside review: 200,000 entries, 10 s lease, 10.7 s).
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const channel = 'run:long-list';
      const agent = await RawClient.connect(b.url, { clientId: 'agent' });
      const id = agent.connected.connectionId;
      const ack = await agent.publish(channel, [
        { id: 'run', data: 'x', headers: { status: 'streaming' }, lease: 2_000 },
      ]);
      const serial = ack.results[0]!.serial;
      const live = JSON.stringify([channel, serial]);
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      const list = `mooring:{leases}:holder:${id}`;
      try {
        const epoch = serial.slice(0, serial.indexOf('.'));
        for (let start = 0; start < 50_000; start += 5_000) {
          const stale = Array.from({ length: 5_000 }, (_, i) =>
            JSON.stringify([channel, `${epoch}.${String(1_000_000 + start + i).padStart(16, '0')}`]),
          );
          await redisClient.sAdd(list, stale);
        }
        assert.equal(await redisClient.sCard(list), 50_001);
        agent.kill(); // B sets the run's deadline to now + 2 s, and no more
        await waitFor(() => b.connections === 0, { message: 'B never saw the socket go' });
        const back = await RawClient.connect(a.url, {
          clientId: 'agent',
          recover: agent.connected.connectionKey,
        });
        assert.equal(back.connected.resumed, true);
        await outlastLeases(c, channel, 3_000); // past the run's deadline, had A not renewed it
        assert.equal(
          await statusOf(c, channel, serial),
          'streaming',
          'the run ran out while its recovered connection lived',
        );
        assert.deepEqual(
          await redisClient.sMembers(list),
          [live],
          'the entries of ended runs were struck off',
        );
        await back.publish(channel, [
          { action: 'update', serial, id: 'end', headers: { status: 'complete' }, lease: 0 },
        ]);
        await back.close();
      } finally {
        await redisClient.quit();
      }
    });

    it('a run ended by its serial of the new epoch is not marked abandoned by the lease it took under the old one', async () => {
      const own = await startRedis({ appendonly: 'always' });
      const a = await node(own);
      try {
        const channel = 'run:ended-anew';
        const agent = await RawClient.connect(a.url, { clientId: 'agent' });
        const ack = await agent.publish(channel, [
          { id: 'run', data: 'x', headers: { status: 'running' }, lease: 500 },
        ]);
        const old = ack.results[0]!.serial;
        await own.stop('SIGTERM');
        await own.restart();
        await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200, {
          message: 'the node is ready on the restarted Redis',
        });
        await rest(a, `/v1/channels/${channel}/messages`, { body: { id: 'other', data: 'y' } });
        // the run as read after the restart (a client that reloaded, a resent create's answer)
        const now = (await runMessage(a, channel)).find((m) => m.id === 'run')!.serial;
        assert.notEqual(now, old);
        await agent.publish(channel, [
          { action: 'update', serial: now, id: 'end', headers: { status: 'complete' }, lease: 0 },
        ]);
        await agent.close();
        await outlastLeases(a, channel);
        assert.equal(
          (await runMessage(a, channel)).find((m) => m.id === 'run')?.headers?.status,
          'complete',
          'the ended run was marked abandoned when the lease taken under its old serial ran out',
        );
      } finally {
        await a.close();
        await own.close();
      }
    });

    // The lease names the run's serial of the old epoch; its expiry finds the run at the same
    // sequence in the new epoch (ChannelInfo.previous; after several, ChannelInfo.older).
    for (const restarts of [1, 2])
      it(`a run whose lease was taken before ${restarts === 1 ? 'a Redis restart' : 'two Redis restarts in a row'} (nothing lost: AOF always) ends abandoned once its agent is gone`, async () => {
        const own = await startRedis({ appendonly: 'always' });
        const a = await node(own);
        try {
          const channel = 'run:restarted';
          const agent = await RawClient.connect(a.url, { clientId: 'agent' });
          const ack = await agent.publish(channel, [
            { id: 'run', data: 'x', headers: { status: 'running' }, lease: 500 },
          ]);
          assert.equal(ack.results[0]?.duplicate, undefined);
          for (let i = 0; i < restarts; i++) {
            await own.stop('SIGTERM');
            await own.restart();
            await waitFor(async () => (await fetch(`${a.url}/ready`)).status === 200, {
              message: 'the node is ready on the restarted Redis',
            });
            // the channel's first publish on the restarted Redis starts a new epoch (§15): the run
            // keeps its sequence there, and its agent, vanished, never ends it
            await rest(a, `/v1/channels/${channel}/messages`, { body: { id: `other-${i}`, data: 'y' } });
          }
          await agent.close();
          await waitFor(
            async () =>
              (await runMessage(a, channel)).find((m) => m.id === 'run')?.headers?.status === 'abandoned',
            {
              message: 'the run stayed running for ever: its lease expired under the serial of the old epoch',
            },
          );
        } finally {
          await a.close();
          await own.close();
        }
      });
  });
}

if (!skip) {
  describe('several nodes: budgets', () => {
    const fx = threeNodes({ limits: { maxPresenceMembers: 2, maxLeasesPerClient: 3 } });

    it('maxPresenceMembers holds for a channel whose members are on different nodes', async () => {
      const channel = 'session:full';
      const [a, b, c] = await Promise.all(
        fx.nodes.map((n, i) => RawClient.connect(n.url, { clientId: `m${i}` })),
      );
      assert.equal((await a!.request({ type: 'presence', channel, action: 'enter' })).type, 'ack');
      assert.equal((await b!.request({ type: 'presence', channel, action: 'enter' })).type, 'ack');
      const refused = await c!.request({ type: 'presence', channel, action: 'enter' });
      assert.ok(refused.type === 'error' && refused.error.code === 'too_many_members');
      assert.deepEqual(await members(fx.nodes[2]!, channel), ['m0', 'm1']);
      await Promise.all([a!.close(), b!.close(), c!.close()]);
    });

    it('maxLeasesPerClient holds for one identity whose connections are on different nodes', async () => {
      // one agent (one key, one clientId) connected to all three nodes: each node alone sees fewer
      // than the limit, Redis counts them all
      const agents = await Promise.all(fx.nodes.map((n) => RawClient.connect(n.url, { clientId: 'spread' })));
      const [onA, onB, onC] = agents as [RawClient, RawClient, RawClient];
      const channel = 'run:spread';
      const start = (agent: RawClient, id: string) =>
        agent.request({
          type: 'publish',
          channel,
          ops: [{ id, data: id, headers: { status: 'running' }, lease: 60_000 }],
        });
      const serials: string[] = [];
      for (const [agent, id] of [
        [onA, 'r1'],
        [onB, 'r2'],
        [onC, 'r3'],
      ] as const) {
        const ack = await start(agent, id);
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        if (ack.type === 'ack') serials.push(ack.results[0]!.serial);
      }
      for (const agent of agents) {
        const refused = await start(agent, `over-${agents.indexOf(agent)}`);
        assert.ok(
          refused.type === 'error' && refused.error.code === 'too_many_leases',
          `a fourth lease was taken: ${JSON.stringify(refused)}`,
        );
      }
      // A run ended through another node than the one that took it frees its lease everywhere, by
      // the time its end is acknowledged: the owner's next run, through a third node, is not refused
      for (let i = 0; i < 10; i++) {
        const ends = agents[(i + 1) % 3]!;
        await ends.publish(channel, [
          {
            action: 'update',
            serial: serials.shift()!,
            id: `end-${i}`,
            headers: { status: 'complete' },
            lease: 0,
          },
        ]);
        const next = await start(agents[(i + 2) % 3]!, `next-${i}`);
        assert.equal(
          next.type,
          'ack',
          `round ${i}: the ended run's lease still counted (${JSON.stringify(next)})`,
        );
        if (next.type === 'ack') serials.push(next.results[0]!.serial);
        assert.equal((await start(agents[i % 3]!, `over-again-${i}`)).type, 'error');
      }
      await onA.publish(
        channel,
        serials.map((serial, i) => ({ action: 'update' as const, serial, id: `last-${i}`, lease: 0 })),
      );
      await Promise.all(agents.map((agent) => agent.close()));
    });

    it('creates racing through different nodes at once count together against maxLeasesPerClient', async () => {
      // one identity, one connection per node, five leased creates pipelined on each, all sent
      // before any answer: a node that read the count and then wrote would let each node's first
      // three through (nine leases under a limit of three)
      const agents = await Promise.all(fx.nodes.map((n) => RawClient.connect(n.url, { clientId: 'racer' })));
      const channel = 'run:racing';
      for (let round = 0; round < 3; round++) {
        const sent = agents.flatMap((agent, a) =>
          Array.from({ length: 5 }, (_, i) =>
            agent.request({
              type: 'publish',
              channel,
              ops: [{ id: `r${round}-${a}-${i}`, data: 'x', headers: { status: 'running' }, lease: 60_000 }],
            }),
          ),
        );
        const answers = await Promise.all(sent);
        const taken = answers.filter((answer) => answer.type === 'ack');
        const refused = answers.filter(
          (answer) => answer.type === 'error' && answer.error.code === 'too_many_leases',
        );
        assert.equal(
          taken.length,
          3,
          `round ${round}: ${taken.length} leases taken under a limit of 3 (${JSON.stringify(answers.map((a) => a.type))})`,
        );
        assert.equal(refused.length, 12, `round ${round}: every other create is refused`);
        // every refused create gave its reservation back: ending the three frees three places
        const serials = taken.map((answer) => (answer.type === 'ack' ? answer.results[0]!.serial : ''));
        await agents[round % 3]!.publish(
          channel,
          serials.map((serial, i) => ({
            action: 'update' as const,
            serial,
            id: `end-${round}-${i}`,
            lease: 0,
          })),
        );
      }
      await Promise.all(agents.map((agent) => agent.close()));
    });

    it('pipelined publishes of one connection keep their order while their budget is asked of Redis', async () => {
      // maxPublishRate 1,000: a node takes an allowance of 10 at a time from Redis
      const [a] = fx.nodes as [MooringServer];
      const { token } = await createToken(TEST_KEY, { clientId: 'pipeliner' });
      const client = await RawClient.connect(a.url, { token });
      const channel = 'session:rate-order';
      const publish = (tag: string, n: number) =>
        client.request({
          type: 'publish',
          channel,
          ops: Array.from({ length: n }, (_, j) => ({ id: `${tag}-${j}`, data: j })),
        });
      assert.equal((await publish('first', 1)).type, 'ack'); // 9 of the allowance left
      // sent together: 5 from the allowance (4 left), 5 more wait for Redis, and the last 1, which the
      // allowance covers, must wait behind them
      const acks = await Promise.all([publish('p0', 5), publish('p1', 5), publish('p2', 1)]);
      for (const ack of acks) assert.equal(ack.type, 'ack', JSON.stringify(ack));
      assert.deepEqual(
        (await runMessage(a, channel)).map((m) => m.id),
        ['first-0', ...['p0', 'p1'].flatMap((p) => Array.from({ length: 5 }, (_, j) => `${p}-${j}`)), 'p2-0'],
      );
      await client.close();
    });

    it('leases expired by other nodes stop counting against their owner on the node that took them', async () => {
      const [a] = fx.nodes as [MooringServer];
      const channel = 'run:budget';
      const take = (id: string) =>
        rest(a, `/v1/channels/${channel}/messages`, {
          body: { id, data: id, headers: { status: 'running' }, lease: 300 },
        });
      for (const id of ['r1', 'r2', 'r3']) assert.equal((await take(id)).status, 200);
      assert.equal(((await take('r4')).body.error as { code: string }).code, 'too_many_leases');
      await waitFor(
        async () =>
          (await runMessage(a, channel)).filter((m) => m.headers?.status === 'abandoned').length === 3,
        { message: 'the three leases never ran out' },
      );
      // expired by whichever node claimed them; node A forgets them once past their deadline (at
      // once when it claimed them itself, a little later otherwise): three new leases fit again
      for (const id of ['r4', 'r5', 'r6'])
        await waitFor(async () => (await take(id)).status === 200, {
          message: 'the expired leases still count on the node that took them',
        });
    });
  });
}

if (!skip) {
  describe('several nodes: connection budgets', () => {
    const fx = threeNodes({ limits: { maxConnectionsPerClient: 4 } });
    const tokenOf = async (clientId: string) => (await createToken(TEST_KEY, { clientId })).token;
    const total = async (clientId: string): Promise<number> => {
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      try {
        return Number(
          (await redisClient.hGet('mooring:{conns}:open', `client\u0000test\u0000${clientId}`)) ?? 0,
        );
      } finally {
        await redisClient.close();
      }
    };

    it('maxConnectionsPerClient counts the client’s connections on every node, and a close anywhere frees a place', async () => {
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const token = await tokenOf('spread-tabs');
      const tabs = [
        await RawClient.connect(a.url, { token }),
        await RawClient.connect(a.url, { token }),
        await RawClient.connect(b.url, { token }),
        await RawClient.connect(c.url, { token }),
      ];
      for (const n of [a, b, c])
        await assert.rejects(
          RawClient.connect(n.url, { token }),
          /HTTP 429/,
          'a fifth connection of the client, on a node that holds fewer than four',
        );
      assert.equal(await total('spread-tabs'), 4);
      // a refused request's identity, claimed beside its budget check, is not left behind (it would
      // expire with the recovery window, 5 s here: looked for well within it)
      const redisClient = createClient({ url: fx.redis.url });
      await redisClient.connect();
      try {
        await waitFor(async () => (await redisClient.keys('mooring:connection:*')).length === 4, {
          timeout: 1_000,
          message: 'the refused requests left their identities in Redis',
        });
      } finally {
        await redisClient.close();
      }
      await tabs.shift()!.close();
      // the place is given back without waiting: the next request, on another node, fits
      const again = await waitFor(async () => RawClient.connect(c.url, { token }).catch(() => undefined), {
        message: 'the closed connection still counts',
      });
      tabs.push(again);
      await assert.rejects(RawClient.connect(b.url, { token }), /HTTP 429/);
      await Promise.all(tabs.map((tab) => tab.close()));
      await waitFor(async () => (await total('spread-tabs')) === 0, {
        message: 'the closes were not counted down',
      });
    });

    it('a client at its limit recovers a connection whose old socket still looks alive on another node; one already gone is checked', async () => {
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const token = await tokenOf('roaming');
      const tabs = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(a.url, { token })));
      // the phone (tabs[0]) changed networks: A still holds its silent socket; it recovers on B
      const moved = await RawClient.connect(b.url, { token, recover: tabs[0]!.connected.connectionKey });
      assert.equal(moved.connected.resumed, true, 'it takes the old transport’s place');
      await tabs[0]!.closed(); // dropped by A when B told it
      await waitFor(async () => (await total('roaming')) === 4, {
        message: 'the old transport still counts',
      });
      await assert.rejects(RawClient.connect(c.url, { token }), /HTTP 429/, 'four of four');
      // lost on B for good, then the client opens another: the lost one's key recovers nothing over the limit
      moved.kill();
      await waitFor(async () => (await total('roaming')) === 3, { message: 'B never saw the loss' });
      tabs[0] = await RawClient.connect(c.url, { token });
      await assert.rejects(
        RawClient.connect(a.url, { token, recover: moved.connected.connectionKey }),
        /HTTP 429/,
        'a recovery of a lost connection went over the limit',
      );
      await Promise.all(tabs.map((tab) => tab.close()));
      await waitFor(async () => (await total('roaming')) === 0, {
        message: 'the closes were not counted down',
      });
    });

    it('connection requests racing through three nodes at once count together: exactly the limit opens', async () => {
      for (let round = 0; round < 3; round++) {
        const token = await tokenOf(`racing-tabs-${round}`);
        const tries = await Promise.allSettled(
          fx.nodes.flatMap((n) => Array.from({ length: 4 }, () => RawClient.connect(n.url, { token }))),
        );
        const opened = tries.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []));
        assert.equal(opened.length, 4, `round ${round}: ${opened.length} of 12 opened under a limit of 4`);
        for (const t of tries) if (t.status === 'rejected') assert.match(String(t.reason), /HTTP 429/);
        await Promise.all(opened.map((tab) => tab.close()));
      }
    });

    it('a count lost to a failed command is written right by the node’s next sweep', async (t) => {
      const proxy = await FaultProxy.start({ port: fx.redis.port });
      t.after(() => proxy.close());
      // a liveness key that outlives the outage: nobody reclaims the node's share meanwhile
      const flaky = await redisNode(
        `redis://127.0.0.1:${proxy.port}`,
        { sweepInterval: 100, nodeTtl: 60_000, heartbeatInterval: 500, presenceGrace: GRACE },
        300,
      );
      fx.nodes.push(flaky); // closed by after()
      const token = await tokenOf('flaky');
      const tabs = await Promise.all(
        Array.from({ length: 3 }, () => RawClient.connect(flaky.url, { token })),
      );
      assert.equal(await total('flaky'), 3);
      proxy.blackhole();
      await tabs[0]!.close(); // its give-back misses the command deadline
      await waitFor(() => flaky.connections === 2, { message: 'the node never saw the close' });
      await new Promise((resolve) => setTimeout(resolve, 600));
      proxy.pass();
      await waitFor(async () => (await total('flaky')) === 2, {
        message: 'the lost give-back still counts in Redis',
      });
      await Promise.all(tabs.slice(1).map((tab) => tab.close()));
      await waitFor(async () => (await total('flaky')) === 0, {
        message: 'the closes were not counted down',
      });
    });

    it('the share of a node cut off from Redis is given back by the others, and written again once it is back', async (t) => {
      const proxy = await FaultProxy.start({ port: fx.redis.port });
      t.after(() => proxy.close());
      const cut = await node(fx.redis, {}, `redis://127.0.0.1:${proxy.port}`);
      fx.nodes.push(cut); // closed by after()
      const [a] = fx.nodes as [MooringServer];
      const token = await tokenOf('cut-off');
      const onCut = await Promise.all(Array.from({ length: 4 }, () => RawClient.connect(cut.url, { token })));
      await assert.rejects(RawClient.connect(a.url, { token }), /HTTP 429/);
      proxy.blackhole();
      // its liveness key expires (400 ms): a sweep of another node gives its four places back
      const onA: RawClient[] = [];
      await waitFor(
        async () => {
          const tab = await RawClient.connect(a.url, { token }).catch(() => undefined);
          if (tab) onA.push(tab);
          return onA.length === 4;
        },
        { message: 'the cut-off node’s share was never given back' },
      );
      await assert.rejects(RawClient.connect(a.url, { token }), /HTTP 429/);
      // back: the node finds itself unlisted and writes its share again (over the limit now, so
      // nothing more opens until enough close)
      proxy.pass();
      await waitFor(async () => (await total('cut-off')) === 8, {
        message: 'the node back from its outage did not write its share again',
      });
      await Promise.all([...onA, ...onCut].map((tab) => tab.close()));
      await waitFor(async () => (await total('cut-off')) === 0, {
        message: 'the closes were not counted down',
      });
    });
  });

  describe('several nodes: rate budgets', () => {
    const fx = threeNodes({ limits: { maxPublishRate: 10, maxConnectRate: 1, maxConnectionsPerClient: 2 } });

    it('maxPublishRate counts the identity’s publishes on every node, connections and REST together', async () => {
      const [a, b, c] = fx.nodes as [MooringServer, MooringServer, MooringServer];
      const { token } = await createToken(TEST_KEY, { clientId: 'spread-writer' });
      const onA = await RawClient.connect(a.url, { token });
      const onB = await RawClient.connect(b.url, { token });
      const ops = (n: number, tag: string) =>
        Array.from({ length: n }, (_, i) => ({ id: `${tag}-${i}`, data: i }));
      const channel = 'session:rate';
      const first = await onA.request({ type: 'publish', channel, ops: ops(8, 'a') });
      assert.equal(first.type, 'ack', JSON.stringify(first));
      // 2 of 10 left (a tenth of a token more per 10 ms): 8 more through another node are refused
      // whole, over a connection as over REST
      const second = await onB.request({ type: 'publish', channel, ops: ops(8, 'b') });
      assert.ok(
        second.type === 'error' && second.error.code === 'rate_limited',
        `B published past the identity's rate: ${JSON.stringify(second)}`,
      );
      const viaRest = await rest(c, `/v1/channels/${channel}/messages`, { key: token, body: ops(8, 'c') });
      assert.equal(viaRest.status, 429, JSON.stringify(viaRest.body));
      assert.deepEqual(
        (await runMessage(c, channel)).map((m) => m.id),
        ops(8, 'a').map((op) => op.id),
      );
      await Promise.all([onA.close(), onB.close()]);
    });

    it('maxConnectRate counts the connection requests of a clientId on every node', async () => {
      // a burst of twice maxConnectionsPerClient (4), then 1 per second, for all nodes together
      const { token } = await createToken(TEST_KEY, { clientId: 'churner' });
      for (let i = 0; i < 4; i++) {
        const c = await RawClient.connect(fx.nodes[i % 3]!.url, { token });
        c.ws.terminate();
      }
      for (const n of fx.nodes)
        await assert.rejects(RawClient.connect(n.url, { token }), /HTTP 429/, 'a fifth request, on any node');
    });
  });
}

const clusterSkip = skip ?? (redisCliPath() ? undefined : 'redis-cli is not installed');
if (!clusterSkip) {
  describe('several nodes on a Redis Cluster: presence, leases, recovery keys', () => {
    let cluster: RedisCluster;
    let a: MooringServer;
    let b: MooringServer;
    before(async () => {
      cluster = await startRedisCluster({ masters: 3 });
      a = await redisNode(cluster.url, { sweepInterval: 100, limits: { maxConnectionsPerClient: 2 } });
      b = await redisNode(cluster.url, { sweepInterval: 100, limits: { maxConnectionsPerClient: 2 } });
    });
    after(async () => {
      await a?.close();
      await b?.close();
      await cluster?.close();
    });

    it('works with channels spread over the masters', async () => {
      const channels = ['session:c1', 'session:c2', 'session:c3', 'session:c4', 'session:c5', 'session:c6'];
      const watcher = await RawClient.connect(b.url, { clientId: 'watcher' });
      for (const channel of channels) await watcher.attach(channel);
      const phone = await RawClient.connect(a.url, { clientId: 'phone' });
      for (const channel of channels) await phone.request({ type: 'presence', channel, action: 'enter' });
      for (const channel of channels) {
        await watcher.next(isPresence(channel, 'enter'));
        assert.deepEqual(await members(b, channel), ['phone']);
      }
      phone.kill();
      const back = await RawClient.connect(b.url, {
        clientId: 'phone',
        recover: phone.connected.connectionKey,
      });
      assert.equal(back.connected.resumed, true, 'the recovery key works on the other node');
      for (const channel of channels) {
        const res = await rest(a, `/v1/channels/${channel}/messages`, {
          body: { id: 'run', data: 'x', headers: { status: 'running' }, lease: 300 },
        });
        assert.equal(res.status, 200);
      }
      await waitFor(
        async () => {
          for (const channel of channels)
            if (!(await runMessage(b, channel)).some((m) => m.headers?.status === 'abandoned')) return false;
          return true;
        },
        { message: 'leases on some master never ran out' },
      );
      await back.close();
      for (const channel of channels) await watcher.next(isPresence(channel, 'leave'));
      await watcher.close();
    });

    it('counts connection budgets across the nodes', async () => {
      const { token } = await createToken(TEST_KEY, { clientId: 'cluster-tabs' });
      const tabs = [await RawClient.connect(a.url, { token }), await RawClient.connect(b.url, { token })];
      await assert.rejects(RawClient.connect(a.url, { token }), /HTTP 429/);
      await tabs[0]!.close();
      tabs[0] = await waitFor(async () => RawClient.connect(b.url, { token }).catch(() => undefined));
      await Promise.all(tabs.map((tab) => tab.close()));
    });
  });
}
