// Resilience (ARCHITECTURE.md §4–5, PROTOCOL.md §5.3–5.4, §6.2): the client against a real server through
// fault-injecting proxies, mid-stream. Every test ends with the same check: each subscriber received
// exactly what was published — each message once, in the channel's order, each publisher's in the
// order it published. Timings are small so that the tests run fast; no assertion depends on them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import type { FaultProxy } from '@mooring/testkit';
import type { ConnectionStateChange } from '../src/connection.ts';
import type { MooringError } from '../src/errors.ts';
import type { Mooring } from '../src/mooring.ts';
import type { TransportKind } from '../src/transport.ts';
import { client, connected, proxyTo, realServer, waitFor } from './helpers/real-server.ts';
import { assertExactlyOnce, publishStream, record, sleep } from './helpers/streams.ts';

const KINDS: TransportKind[] = ['websocket', 'sse', 'longpoll'];

/** The connection's state changes, as `state(reason code)`. */
function statesOf(c: { connection: { on(e: 'statechange', fn: (c: ConnectionStateChange) => void): void } }) {
  const changes: ConnectionStateChange[] = [];
  c.connection.on('statechange', (change) => changes.push(change));
  return changes;
}

/** `promise`, or a rejection saying `what()` once `ms` have passed without it settling. */
async function bounded<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what())), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

describe('resilience', () => {
  it('blackhole mid-stream: noticed by heartbeats (no OS timeout), reconnects, every message once in order', async (t) => {
    const server = await realServer(t, { heartbeatInterval: 300 });
    const proxy = await proxyTo(t, server);
    // idleGrace: dead after maxIdleInterval (300) + 300 ms of silence. realtimeRequestTimeout: a retry
    // made while the network is still a black hole is itself silent; give up on it quickly.
    const reader = client(t, proxy.url('/'), { idleGrace: 300, realtimeRequestTimeout: 1_000 });
    const writer = client(t, server.url);
    const changes = statesOf(reader);
    const channel = reader.channels.get('stream:blackhole');
    const got = record(channel);
    await channel.attach();

    const published = await publishStream(writer.channels.get('stream:blackhole'), 'w', 300, {
      before: async (i) => {
        if (i === 100) proxy.blackhole();
        if (i === 200) {
          await waitFor(() => reader.connection.state !== 'connected', {
            message: 'the silent connection was never declared dead',
          });
          proxy.pass();
        }
      },
    });
    await waitFor(() => got.length >= published.length, { message: 'the missed messages never arrived' });

    const lost = changes.find((c) => c.previous === 'connected');
    assert.equal(lost?.current, 'disconnected');
    assert.equal(lost?.reason?.code, 'timeout');
    assert.match(lost?.reason?.message ?? '', /no frame from the server for 600 ms/);
    assert.equal(changes.at(-1)?.current, 'connected');
    assert.ok(proxy.stats.bytesDropped > 0, 'the black hole swallowed traffic');
    assertExactlyOnce(got, published);
    assert.equal(channel.position, published.at(-1));
  });

  for (const kind of KINDS)
    it(`a storm of resets during 2,000 messages from 4 publishers on ${kind}: every subscriber gets each once, in order`, async (t) => {
      const on = { transports: [kind] };
      const server = await realServer(t);
      const CHANNELS = ['storm:a', 'storm:b'];
      const PER_PUBLISHER = 500;
      const subscriberProxies: FaultProxy[] = [];
      const subscribers: {
        client: Mooring;
        got: Map<string, Message[]>;
        connects: ConnectionStateChange[];
      }[] = [];
      for (let i = 0; i < 3; i++) {
        const proxy = await proxyTo(t, server);
        subscriberProxies.push(proxy);
        const c = client(t, proxy.url('/'), on);
        const got = new Map(CHANNELS.map((name) => [name, record(c.channels.get(name))]));
        subscribers.push({ client: c, got, connects: statesOf(c) });
      }
      await bounded(
        Promise.all(subscribers.flatMap((s) => CHANNELS.map((name) => s.client.channels.get(name).attach()))),
        30_000,
        () =>
          `the subscribers never attached: ${subscribers.map((s) => s.client.connection.state).join(', ')}`,
      );
      // Publishers share a proxy that resets too: their unacknowledged publishes are resent (same ids).
      const publisherProxy = await proxyTo(t, server);
      const publishers = [0, 1, 2, 3].map((i) => {
        const c = client(t, publisherProxy.url('/'), on);
        return { client: c, channel: c.channels.get(CHANNELS[i % 2] ?? ''), prefix: `p${i}`, next: 0 };
      });
      // What is stuck, if anything is: every wait below is bounded and says this when it gives up.
      const stuck = () =>
        [
          ...publishers.map(
            (p) =>
              `publisher ${p.prefix}: publishing #${p.next}, connection ${p.client.connection.state} ` +
              `on ${p.client.connection.transport} (${p.client.connection.id})`,
          ),
          ...subscribers.map(
            (s, i) =>
              `subscriber ${i}: connection ${s.client.connection.state} on ${s.client.connection.transport} ` +
              `(${s.client.connection.id}), ${[...s.got].map(([name, got]) => `${name} ${s.client.channels.get(name).state} got ${got.length}`).join(', ')}`,
          ),
          `${resets} resets, ${server.connections} connections open on the server`,
        ].join('\n');

      const connectsOf = (s: { connects: ConnectionStateChange[] }) =>
        s.connects.filter((c) => c.current === 'connected').length;
      // Random resets, bounded in number: an endless storm faster than a reconnect is a livelock, not a test.
      let storming = true;
      let resets = 0;
      const storm = async (proxy: FaultProxy, pause: number, count: number) => {
        for (let n = 0; n < count && storming; n++) {
          await sleep(pause / 2 + Math.random() * pause);
          if (!storming) break;
          await proxy.reset();
          resets += 1;
        }
      };
      const storms = [...subscriberProxies.map((p) => storm(p, 60, 15)), storm(publisherProxy, 200, 5)];
      // Besides the random storm, resets tied to progress, so that every run has plenty of them.
      const streams = await bounded(
        Promise.all(
          publishers.map((p, n) =>
            publishStream(p.channel, p.prefix, PER_PUBLISHER, {
              window: 20,
              before: async (i) => {
                p.next = i;
                if (i % 40 === 20) {
                  // Wait for the reconnect this reset causes, so that every run has that many reconnects
                  // however slow the machine is (a reset landing on a connection still reconnecting
                  // causes none).
                  // A reset can also find no flow of the subscriber's open (a long-poll between two
                  // requests on a fresh socket): then reset again, a bounded number of times.
                  const k = ((i / 40 + n) % 3) | 0;
                  const s = subscribers[k];
                  const connects = s ? connectsOf(s) : 0;
                  for (let attempt = 1; ; attempt++) {
                    await subscriberProxies[k]?.reset();
                    resets += 1;
                    if (!s) break;
                    try {
                      await waitFor(() => connectsOf(s) > connects, { timeout: 5_000 });
                      break;
                    } catch (err) {
                      if (attempt === 6)
                        throw new Error(`subscriber ${k} never reconnected after 6 resets\n${stuck()}`, {
                          cause: err,
                        });
                    }
                  }
                }
                if (n === 0 && i % 100 === 50) {
                  await publisherProxy.reset();
                  resets += 1;
                }
              },
            }),
          ),
        ),
        60_000,
        () => `publishing did not complete:\n${stuck()}`,
      );
      storming = false;
      await bounded(Promise.all(storms), 30_000, () => 'a storm never ended (a proxy reset hung)');

      const publishedOn = new Map(CHANNELS.map((name) => [name, [] as string[]]));
      for (const [i, serials] of streams.entries()) publishedOn.get(CHANNELS[i % 2] ?? '')?.push(...serials);
      assert.equal(streams.flat().length, 2_000);
      for (const [i, s] of subscribers.entries()) {
        for (const [name, got] of s.got) {
          const published = publishedOn.get(name) ?? [];
          await waitFor(() => got.length >= published.length, {
            timeout: 30_000,
            message: `subscriber ${i} on ${name}: ${got.length} of ${published.length}\n${stuck()}`,
          });
          assertExactlyOnce(got, published, `subscriber ${i} on ${name}`);
        }
        const reconnects = connectsOf(s) - 1;
        // Each subscriber gets about 17 progress resets, each waited for; up to four publishers may
        // wait on the same reconnect, so 3 is the floor that proves a storm on any machine.
        assert.ok(reconnects >= 3, `subscriber ${i} reconnected only ${reconnects} times: no storm`);
      }
      for (const s of subscribers) assert.equal(s.client.connection.transport, kind);
      t.diagnostic(`${resets} resets`);
    });

  // A long-poll answer (or, on SSE, the stream's next events) that the server wrote and the client
  // never read: the server cannot tell, so the client's resume from its position must bring them.
  for (const kind of ['longpoll', 'sse'] as const)
    for (const partly of [false, true])
      it(`${kind}: frames carrying messages lost in flight (${partly ? 'partly delivered' : 'all held by the network'}), then a reset: nothing lost, twice or out of order`, async (t) => {
        const server = await realServer(t);
        const proxy = await proxyTo(t, server);
        const reader = client(t, proxy.url('/'), { transports: [kind] });
        const writer = client(t, server.url);
        const channel = reader.channels.get('lp:lost');
        const publisher = writer.channels.get('lp:lost');
        const got = record(channel);
        await channel.attach();
        const first = await publishStream(publisher, 'a', 5);
        await waitFor(() => got.length === 5);

        // The server answers the pending poll with the next messages; the network holds that answer
        // (a buffering middlebox) or lets a few bytes through (a thin link), then resets the connection.
        if (partly) proxy.bandwidth(64);
        else proxy.buffer({ responses: false });
        const sent = proxy.stats;
        const lost = await publishStream(publisher, 'b', 5);
        await waitFor(() => proxy.stats.bytesFromServer > sent.bytesFromServer + 100, {
          message: 'the server never sent the messages',
        });
        if (partly) await waitFor(() => proxy.stats.bytesToClient > sent.bytesToClient);
        assert.equal(got.length, 5, 'the answer has not reached the client yet');
        await proxy.reset();
        proxy.pass();

        const after = await publishStream(publisher, 'c', 5);
        // a last message, awaited: anything delivered twice would have arrived before it
        const sentinel = await publishStream(publisher, 'z', 1);
        await waitFor(() => got.some((m) => m.serial === sentinel[0]), {
          message: 'the sentinel never arrived',
        });
        assertExactlyOnce(got, [...first, ...lost, ...after, ...sentinel]);
        assert.equal(reader.connection.transport, kind);
      });

  it('disconnected → suspended after connectionStateTtl; connect() then resumes with nothing lost', async (t) => {
    // The server forgets the connection identity after 500 ms: the log outlives it.
    const server = await realServer(t, { heartbeatInterval: 100, connectionStateTtl: 500 });
    const proxy = await proxyTo(t, server);
    const reader = client(t, proxy.url('/'), { connectionStateTtl: 1_000 });
    const writer = client(t, server.url);
    const changes = statesOf(reader);
    const channel = reader.channels.get('stream:suspend');
    const got = record(channel);
    const lost: unknown[] = [];
    channel.on('continuityLost', (e) => lost.push(e));
    await channel.attach();
    const before = await publishStream(writer.channels.get('stream:suspend'), 'w', 20);
    await waitFor(() => got.length === 20);
    const firstId = reader.connection.id;

    proxy.refuse();
    await proxy.reset();
    const during = publishStream(writer.channels.get('stream:suspend'), 'x', 100);
    await waitFor(() => reader.connection.state === 'suspended', {
      message: 'never suspended',
      timeout: 15_000,
    });
    assert.ok(changes.some((c) => c.current === 'disconnected'));
    await assert.rejects(
      reader.channels.get('stream:suspend').publish('r', 'offline'),
      (e: MooringError) => e.code === 'connection_suspended',
    );
    const missed = await during;
    assert.equal(channel.state, 'suspended');

    proxy.pass();
    reader.connection.connect(); // retries now instead of after suspendedRetryTimeout
    await connected(reader);
    await waitFor(() => got.length >= 120, { message: 'the missed messages never arrived' });
    assert.equal(reader.connection.details?.resumed, false, 'the identity expired on the server');
    assert.notEqual(reader.connection.id, firstId);
    assert.deepEqual(lost, [], 'channel continuity does not depend on the connection identity');
    assertExactlyOnce(got, [...before, ...missed]);
  });

  it('a fresh client instance (page reload) continues from a recovery key: across both, each message once', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    const writer = client(t, server.url);
    const names = ['reload:a', 'reload:b'];
    const first = client(t, proxy.url('/'));
    const firstGot = names.map((name) => record(first.channels.get(name)));
    await Promise.all(names.map((name) => first.channels.get(name).attach()));

    let key = '';
    let secondGot: ReturnType<typeof record>[] = [];
    let second: ReturnType<typeof client> | undefined;
    const streams = await Promise.all(
      names.map((name, n) =>
        publishStream(writer.channels.get(name), `w${n}`, 200, {
          window: 5,
          before: async (i) => {
            if (n !== 0 || i !== 80) return;
            // The page goes away mid-stream: nothing more reaches it (pagehide), its recovery key is
            // saved, and it dies without telling the server.
            proxy.blackhole();
            await sleep(100); // let bytes already delivered to this process be handled
            key = first.recoveryKey();
            first.close();
            second = client(t, server.url, { recover: key });
            secondGot = names.map((name) => record(second!.channels.get(name)));
          },
        }),
      ),
    );
    assert.ok(second, 'the reload happened');
    const reloaded = second;
    for (const [n, published] of streams.entries()) {
      await waitFor(() => (firstGot[n]?.length ?? 0) + (secondGot[n]?.length ?? 0) >= published.length, {
        message: `${names[n]}: messages missing after the reload`,
      });
      assert.ok((firstGot[n]?.length ?? 0) > 0 && (secondGot[n]?.length ?? 0) > 0, 'both instances received');
      assertExactlyOnce([...(firstGot[n] ?? []), ...(secondGot[n] ?? [])], published, names[n]);
    }
    assert.equal(reloaded.connection.details?.resumed, true);
    assert.equal(reloaded.connection.id, first.connection.id);
  });
});
