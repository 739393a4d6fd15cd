/**
 * `ConnectionManager.replacedElsewhere` for a connection this node no longer holds: its transport
 * closed here just after its client recovered on another node, and the takeover notice came after
 * that close. The drop started here what a lost connection starts (a presence grace, a count in its
 * clientId's ledger of dropped connections, its leases' lost holder); the notice must end it, since
 * the other node holds the connection now. Two nodes' managers on one real redis-server (registry,
 * presence and leases in Redis), the race ordered by hand: B's recovery (its notice held back), A's
 * close, then the notice.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { DEFAULT_LIMITS } from '@mooring/protocol';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import pino from 'pino';
import { createClient } from 'redis';
import type { ChannelService } from '../src/channel-service.ts';
import type { TransportSink } from '../src/connection.ts';
import { ConnectionManager, type Seat } from '../src/connection-manager.ts';
import type { Identity } from '../src/connection-registry.ts';
import type { RateBudgets } from '../src/identity-budgets.ts';
import { RedisLeases } from '../src/redis-leases.ts';
import { RedisPresence } from '../src/redis-presence.ts';
import { RedisConnectionRegistry } from '../src/redis-registry.ts';
import { connectRedis } from '../src/store/redis-connection.ts';

const identity: Identity = {
  keyName: 'app',
  clientId: 'phone',
  access: { allows: () => true } as Identity['access'],
  viaToken: true,
};
const CHANNEL = 'session:moved';
const SERIAL = 'mi9x2k0a7q3f.0000000000000001';

/** A transport that takes every frame and never closes by itself. */
function transport(): TransportSink {
  return {
    kind: 'websocket',
    answersHeartbeats: true,
    send: () => {},
    bufferedAmount: () => 0,
    whenDrained: (drained) => queueMicrotask(drained),
    close: () => {},
    terminate: () => {},
  };
}

const noMetric = { inc: () => {}, dec: () => {} };

/**
 * A node: its registry, presence and leases in Redis (long graces and recovery windows: nothing
 * runs out during the test), and a connection manager over them whose takeover notices are kept in
 * `notices` for the test to deliver.
 */
async function twoNodes(t: TestContext) {
  const redis = await startRedis();
  t.after(() => redis.close());
  const errors: unknown[] = [];
  const onError = (err: unknown) => errors.push(err);
  const node = async (id: string) => {
    const connection = await connectRedis(redis.url, onError);
    const registry = new RedisConnectionRegistry({
      connection,
      prefix: 'moved',
      ttl: 60_000,
      refreshEvery: 1_000,
      nodeId: id,
      onError,
    });
    const presence = new RedisPresence({
      connection,
      prefix: 'moved',
      grace: 60_000,
      maxMembers: 100,
      maxChannelsPerConnection: 10,
      maxBytesPerConnection: 10_000,
      recoverWithin: 60_000,
      maxDroppedBytesPerClient: 100_000,
      onError,
    });
    const leases = new RedisLeases({
      connection,
      prefix: 'moved',
      expire: async () => true,
      sweepInterval: 60_000,
      holderTtl: 60_000,
      onError,
    });
    t.after(async () => {
      await leases.close();
      await presence.close();
      await connection.close();
    });
    const notices: Array<{ holder: string; connectionId: string }> = [];
    const channels = {
      leases,
      metrics: {
        connections: noMetric,
        connectionsOpened: noMetric,
        connectionsClosed: noMetric,
        health: { connectionEnded: () => {} },
      },
    } as unknown as ChannelService;
    const manager = new ConnectionManager({
      channels,
      presence,
      registry,
      limits: DEFAULT_LIMITS,
      budgets: {} as RateBudgets,
      logger: pino({ level: 'silent' }),
      heartbeatInterval: 15_000,
      connectionStateTtl: 60_000,
      verifyToken: () => Promise.reject(new Error('no tokens here')),
      nodes: { id, tellReplaced: (holder, connectionId) => notices.push({ holder, connectionId }) },
    });
    return { registry, presence, leases, manager, notices };
  };
  const inspect = createClient({ url: redis.url });
  inspect.on('error', () => {}); // Redis stops first at the end
  await inspect.connect();
  t.after(() => inspect.destroy());
  return { a: await node('node-a'), b: await node('node-b'), inspect, errors };
}

describe('ConnectionManager.replacedElsewhere', { skip: redisSkipReason() ?? false }, () => {
  it('a connection whose transport closed here just after it recovered on another node: the notice ends its presence grace, its count among its clientId’s dropped connections and its leases here', async (t) => {
    const { a, b, inspect, errors } = await twoNodes(t);
    const admit = async (manager: ConnectionManager) => (await manager.admit(identity, true)) as Seat;

    // the phone is connected to A, present in the channel, and holds a run's lease
    const opened = await a.registry.open(identity);
    const onA = a.manager.open(transport(), {
      identity,
      opened,
      attaches: undefined,
      seat: await admit(a.manager),
      compact: false,
    });
    await a.presence.enter(CHANNEL, opened.connectionId, 'phone', { device: 'phone' });
    await a.leases.hold(CHANNEL, SERIAL, opened.connectionId, 60_000, 'phone');

    // its client recovers on B while A's transport still holds it: B takes the presence and the
    // lease over and would tell A (the notice is held back here)
    const recovered = await b.registry.open(identity, opened.connectionKey);
    assert.equal(recovered.resumed, true);
    assert.equal(recovered.replaced, opened.holder, "B's claim took A's open's mark over");
    b.manager.open(transport(), {
      identity,
      opened: recovered,
      attaches: undefined,
      seat: await admit(b.manager),
      compact: false,
    });
    assert.deepEqual(b.notices, [{ holder: opened.holder, connectionId: opened.connectionId }]);
    await waitFor(() => b.presence.channelsOf(opened.connectionId).includes(CHANNEL), {
      message: 'B never took the member over',
    });
    await waitFor(() => b.leases.has(CHANNEL, SERIAL), { message: 'B never took the lease over' });

    // A's transport closes now (a loss, not a close by the client), before the notice reaches it:
    // its drop counts the connection among the phone's dropped ones, after B took it out
    a.manager.closed(onA, false);
    const ledger = 'moved:{presence-dropped:phone}';
    await waitFor(async () => (await inspect.zScore(ledger, opened.connectionId)) !== null, {
      message: "A's drop was never counted",
    });
    assert.equal(a.leases.has(CHANNEL, SERIAL), true, 'A still lists the lease of its lost holder');
    assert.deepEqual(a.presence.channelsOf(opened.connectionId), [CHANNEL]);

    // then the notice
    const [notice] = b.notices;
    a.manager.replacedElsewhere(notice!.connectionId, notice!.holder);
    assert.deepEqual(
      a.presence.channelsOf(opened.connectionId),
      [],
      'A still holds the members (presence.connectionMoved was not called)',
    );
    await waitFor(async () => (await inspect.zScore(ledger, opened.connectionId)) === null, {
      message:
        "the connection stays counted among the phone's dropped ones (presence.connectionMoved was not called)",
    });
    assert.equal(
      a.leases.has(CHANNEL, SERIAL),
      false,
      'A still lists the lease B holds now (leases.holderMoved was not called)',
    );
    // B holds them as before
    assert.deepEqual(b.presence.channelsOf(opened.connectionId), [CHANNEL]);
    assert.equal(b.leases.has(CHANNEL, SERIAL), true);
    assert.equal(a.manager.size, 0);
    assert.equal(b.manager.size, 1);
    assert.deepEqual(errors, []);
  });
});
