/**
 * Budgets and bounded memory (PROTOCOL.md §10): presence per connection, connections per token
 * identity with a reserve for the key, one publish budget per identity across REST and every
 * connection, leases per identity, the frame throttle, and the small HTTP hardening items.
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { redisSkipReason } from '@mooring/testkit';
import { type ConnectionRegistry, LocalConnectionRegistry } from '../src/connection-registry.ts';
import { createToken } from '../src/index.ts';
import { ServerError } from '../src/server-error.ts';
import { rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { PollClient } from './support/http-client.ts';
import { captureLog } from './support/log-capture.ts';
import { RawClient } from './support/raw-client.ts';

const outcome = (f: ServerFrame) => (f.type === 'error' ? f.error.code : 'ok');

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Opens a long-poll connection and never polls again; resolves with the HTTP status. */
async function openUnpolled(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}/v1/connect/poll?token=${token}`);
  await res.arrayBuffer();
  return res.status;
}

describe('presence budget per connection', () => {
  // the same budget, node-local and on Redis (kept by the node holding the connection)
  for (const kind of ['memory', 'redis'] as const)
    it(
      `caps the channels and the bytes of presence one connection holds (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, {
          limits: {
            maxPresenceChannelsPerConnection: 3,
            maxPresenceBytesPerConnection: 1000,
            maxPresenceRate: 1000,
          },
        });
        try {
          const c = await RawClient.connect(fx.server.url, { clientId: 'p' });
          const enter = (channel: string, data?: unknown) =>
            c.request({
              type: 'presence',
              channel,
              action: 'enter',
              ...(data === undefined ? {} : { data }),
            });
          for (const ch of ['a', 'b', 'c']) assert.equal(outcome(await enter(ch)), 'ok');
          assert.equal(outcome(await enter('d')), 'too_many_channels');
          assert.equal(outcome(await enter('a', 'x'.repeat(600))), 'ok', 'an update of a held channel');
          assert.equal(outcome(await enter('b', 'y'.repeat(600))), 'presence_too_large');
          assert.equal(
            outcome(await enter('a', 'x'.repeat(900))),
            'ok',
            'an update replaces the bytes it held',
          );
          // 902 bytes held ("x…" as JSON); 98 more make exactly the cap, 99 one byte over it
          assert.equal(outcome(await enter('b', 'y'.repeat(97))), 'presence_too_large');
          assert.equal(outcome(await enter('b', 'y'.repeat(96))), 'ok', 'up to the cap itself');
          assert.equal(outcome(await c.request({ type: 'presence', channel: 'c', action: 'leave' })), 'ok');
          assert.equal(outcome(await enter('d')), 'ok', 'leaving frees a channel');
          await c.close();
        } finally {
          await fx.close();
        }
      },
    );

  it('rate-limits presence frames per connection', async () => {
    const fx = await startFixture('memory', {
      limits: { maxPresenceRate: 5, maxPresenceChannelsPerConnection: 5 },
    });
    try {
      const c = await RawClient.connect(fx.server.url, { clientId: 'p' });
      const started = performance.now();
      const answers = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          c.request({ type: 'presence', channel: 'r', action: 'update', data: i }),
        ),
      );
      const seconds = (performance.now() - started) / 1000;
      const codes = answers.map(outcome);
      const ok = codes.filter((x) => x === 'ok').length;
      // a bound, not a timing: 5 at once, then 5 per second
      assert.ok(ok <= 5 + 5 * seconds, `${ok} of 30 presence frames accepted in ${seconds} s`);
      assert.ok(codes.every((x) => x === 'ok' || x === 'rate_limited'));
      await c.close();
    } finally {
      await fx.close();
    }
  });

  it('refuses a 1 MiB long-poll POST entering 17,000 channels after the cap, and a bystander still answers', async () => {
    const fx = await startFixture('memory');
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'flood' });
      const flooder = await PollClient.connect(fx.server.url, `token=${token}`);
      const frames = Array.from({ length: 17_000 }, (_, i) => ({
        type: 'presence',
        channel: `p:${i}`,
        action: 'enter',
      }));
      const body = JSON.stringify(frames);
      assert.ok(body.length < 1024 * 1024 && body.length > 900_000);
      const bystander = await RawClient.connect(fx.server.url);
      const res = await flooder.post(frames);
      assert.equal(res.status, 202);
      assert.equal((await bystander.request({ type: 'ping' })).type, 'pong');
      await until(() => flooder.frames.some((f) => f.type === 'disconnect'), 'the flooder is disconnected');
      const acks = flooder.frames.filter((f) => f.type === 'ack').length;
      assert.ok(acks <= 100, `at most maxPresenceChannelsPerConnection entered, got ${acks}`);
      assert.ok(flooder.frames.some((f) => f.type === 'error' && f.error.code === 'rate_limited'));
      const first = await rest(fx.server, '/v1/channels/p:0/presence');
      assert.equal((first.body.members as unknown[]).length, 1);
      const late = await rest(fx.server, '/v1/channels/p:16999/presence');
      assert.equal((late.body.members as unknown[]).length, 0);
      flooder.stop();
      await bystander.close();
    } finally {
      await fx.close();
    }
  });
});

describe('connection budget per identity', () => {
  it('a token opening long-poll connections it never polls cannot lock out the API key or other clients', async () => {
    const fx = await startFixture('memory', {
      limits: { maxConnectionsPerKey: 10, maxConnectionsPerClient: 3, keyConnectionReserve: 2 },
      firstPollTimeout: 60_000,
    });
    try {
      const mallory = (
        await createToken(TEST_KEY, { clientId: 'mallory', capability: { 'nope:x': ['subscribe'] } })
      ).token;
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push(await openUnpolled(fx.server.url, mallory));
      assert.deepEqual(statuses, [200, 200, 200, 429, 429, 429]);
      const agent = await RawClient.connect(fx.server.url);
      const alice = await RawClient.connect(fx.server.url, {
        token: (await createToken(TEST_KEY, { clientId: 'alice' })).token,
      });
      assert.equal((await agent.request({ type: 'ping' })).type, 'pong');
      await Promise.all([agent.close(), alice.close()]);
    } finally {
      await fx.close();
    }
  });

  it('holds the anonymous tokens of a key to one connection budget together; named clients keep theirs', async () => {
    const fx = await startFixture('memory', {
      limits: { maxConnectionsPerKey: 10, maxAnonymousConnectionsPerKey: 2, keyConnectionReserve: 2 },
      firstPollTimeout: 60_000,
    });
    try {
      // two holders of anonymous tokens of the key: one budget between them
      const anonymous = await Promise.all([createToken(TEST_KEY), createToken(TEST_KEY)]);
      const statuses: number[] = [];
      for (const { token } of [...anonymous, ...anonymous])
        statuses.push(await openUnpolled(fx.server.url, token));
      assert.deepEqual(statuses, [200, 200, 429, 429]);
      const alice = await RawClient.connect(fx.server.url, {
        token: (await createToken(TEST_KEY, { clientId: 'alice' })).token,
      });
      assert.equal((await alice.request({ type: 'ping' })).type, 'pong');
      await alice.close();
    } finally {
      await fx.close();
    }
  });

  it('keeps a reserve of the key for the key itself, whatever the tokens hold together', async () => {
    const fx = await startFixture('memory', {
      limits: { maxConnectionsPerKey: 20, maxConnectionsPerClient: 6, keyConnectionReserve: 2 },
    });
    try {
      const opened: RawClient[] = [];
      for (const clientId of ['a', 'b', 'c']) {
        const { token } = await createToken(TEST_KEY, { clientId });
        for (let i = 0; i < 6; i++) opened.push(await RawClient.connect(fx.server.url, { token }));
      }
      const { token } = await createToken(TEST_KEY, { clientId: 'd' });
      await assert.rejects(RawClient.connect(fx.server.url, { token }), /HTTP 429/, 'tokens hold 18 of 20');
      const anonymous = (await createToken(TEST_KEY)).token;
      await assert.rejects(RawClient.connect(fx.server.url, { token: anonymous }), /HTTP 429/);
      for (let i = 0; i < 2; i++) opened.push(await RawClient.connect(fx.server.url));
      await assert.rejects(RawClient.connect(fx.server.url), /HTTP 429/, 'the key limit still holds');
      await Promise.all(opened.map((c) => c.close()));
    } finally {
      await fx.close();
    }
  });

  // the identity is claimed alongside the seat (on Redis both are round trips, sent together); a
  // refused seat gives the claim back, or each refused request would keep an identity until its
  // state TTL ran out. The registry is the node-local one in both, to count what it holds.
  for (const kind of ['memory', 'redis'] as const)
    it(
      `a connection request refused by its budget leaves no identity behind in the registry (${kind})`,
      {
        skip: (kind === 'redis' && redisSkipReason()) || false,
      },
      async () => {
        let registry: LocalConnectionRegistry | undefined;
        const fx = await startFixture(kind, {
          limits: { maxConnectionsPerClient: 1 },
          registry: () => {
            registry = new LocalConnectionRegistry(120_000);
            return registry;
          },
        });
        try {
          const { token } = await createToken(TEST_KEY, { clientId: 'one' });
          const first = await RawClient.connect(fx.server.url, { token });
          for (let i = 0; i < 3; i++)
            await assert.rejects(RawClient.connect(fx.server.url, { token }), /HTTP 429/);
          assert.equal(registry?.size, 1, 'only the connection that opened holds an identity');
          await first.close();
        } finally {
          await fx.close();
        }
      },
    );

  it('a connection request whose identity claim fails gives its seat back at once', async () => {
    // the claim fails alone (a registry in Redis that is down, while the counts answer): without the
    // seat given back, each such request would hold a place in the budgets for 30 s
    let failing = 3;
    const fx = await startFixture('memory', {
      limits: { maxConnectionsPerClient: 2 },
      registry: (): ConnectionRegistry => {
        const local = new LocalConnectionRegistry(120_000);
        return {
          open: (identity, recover) =>
            failing-- > 0
              ? Promise.reject(new ServerError('store_unavailable', 'the registry is down (test)'))
              : local.open(identity, recover),
          hold: (id) => local.hold(id),
          release: (id) => local.release(id),
          unclaim: (opened) => local.unclaim(opened),
          discard: (id) => local.discard(id),
          sweep: () => local.sweep(),
        };
      },
    });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'unlucky' });
      for (let i = 0; i < 3; i++)
        await assert.rejects(RawClient.connect(fx.server.url, { token }), /HTTP 503/);
      const opened = await Promise.all([
        RawClient.connect(fx.server.url, { token }),
        RawClient.connect(fx.server.url, { token }),
      ]);
      await Promise.all(opened.map((c) => c.close()));
    } finally {
      await fx.close();
    }
  });

  it('ends a long-poll connection that never polls after firstPollTimeout', async () => {
    const fx = await startFixture('memory', {
      limits: { maxConnectionsPerClient: 2 },
      firstPollTimeout: 200,
    });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'idle' });
      assert.equal(await openUnpolled(fx.server.url, token), 200);
      assert.equal(await openUnpolled(fx.server.url, token), 200);
      assert.equal(await openUnpolled(fx.server.url, token), 429);
      await until(() => fx.server.connections === 0, 'the unpolled connections end');
      assert.equal(await openUnpolled(fx.server.url, token), 200, 'their slots are free again');
      const polling = await PollClient.connect(fx.server.url, `token=${token}`);
      assert.equal((await polling.request({ type: 'ping' })).type, 'pong', 'a polling connection lives on');
      polling.stop();
    } finally {
      await fx.close();
    }
  });
});

describe('connection requests in flight', () => {
  // A connection is counted from its admission: requests admitted together each count, though the
  // claim of their identity (Redis: a round trip) and the WebSocket upgrade come between
  for (const kind of ['memory', 'redis'] as const)
    it(
      `connection requests of one client sent together count together (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, {
          limits: { maxConnectionsPerClient: 3, maxConnectRate: 1_000 },
        });
        try {
          const { token } = await createToken(TEST_KEY, { clientId: 'many' });
          const tries = await Promise.allSettled(
            Array.from({ length: 10 }, () => RawClient.connect(fx.server.url, { token })),
          );
          const opened = tries.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []));
          assert.equal(opened.length, 3, 'connections opened beyond maxConnectionsPerClient');
          for (const t of tries) if (t.status === 'rejected') assert.match(String(t.reason), /HTTP 429/);
          await Promise.all(opened.map((c) => c.close()));
          // closed, and the refused ones held nothing: three fit again
          await until(() => fx.server.connections === 0, 'the connections are closed');
          const again = await Promise.all(
            Array.from({ length: 3 }, () => RawClient.connect(fx.server.url, { token })),
          );
          await Promise.all(again.map((c) => c.close()));
        } finally {
          await fx.close();
        }
      },
    );

  for (const kind of ['memory', 'redis'] as const)
    it(
      `a client at its limit whose old socket still looks alive recovers at once; a recovery of a connection already gone is checked (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxConnectionsPerClient: 2 } });
        try {
          const { token } = await createToken(TEST_KEY, { clientId: 'moving' });
          const desk = await RawClient.connect(fx.server.url, { token });
          // the phone's network changed: its old socket is silent but open, as far as the server knows
          const phone = await RawClient.connect(fx.server.url, { token });
          const moved = await RawClient.connect(fx.server.url, {
            token,
            recover: phone.connected.connectionKey,
          });
          assert.equal(moved.connected.resumed, true, 'it takes the old transport’s place');
          await phone.closed(); // dropped by the takeover, told so, and told it may reconnect (PROTOCOL.md §5.4)
          assert.deepEqual(
            phone.frames.filter((f) => f.type === 'disconnect'),
            [{ type: 'disconnect', reason: 'replaced', reconnect: true }],
          );
          await until(() => fx.server.connections === 2, 'the old transport still counts');
          await assert.rejects(RawClient.connect(fx.server.url, { token }), /HTTP 429/, 'two of two');
          // a recovery of a connection the server does not know takes no one's place
          await assert.rejects(
            RawClient.connect(fx.server.url, { token, recover: 'c_nobodyknows.0123456789abcdef' }),
            /HTTP 429/,
            'a recovery of an unknown connection went over the limit',
          );
          // a connection whose transport is gone holds no place: recovering it is checked like a new one
          moved.kill();
          await until(() => fx.server.connections === 1, 'the server never saw the loss');
          const tablet = await RawClient.connect(fx.server.url, { token });
          await assert.rejects(
            RawClient.connect(fx.server.url, { token, recover: moved.connected.connectionKey }),
            /HTTP 429/,
            'a recovery of a lost connection went over the limit',
          );
          await Promise.all([desk.close(), tablet.close()]);
        } finally {
          await fx.close();
        }
      },
    );

  it('an HTTP connection request refused for a bad transport id holds no place', async () => {
    const fx = await startFixture('memory', { limits: { maxConnectionsPerClient: 2 } });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'bad-transport' });
      for (let i = 0; i < 4; i++) {
        const res = await fetch(`${fx.server.url}/v1/connect/poll?token=${token}&transport=no%20spaces`);
        assert.equal(res.status, 400);
        await res.arrayBuffer();
      }
      for (let i = 0; i < 2; i++) assert.equal(await openUnpolled(fx.server.url, token), 200);
    } finally {
      await fx.close();
    }
  });

  it(
    'a WebSocket request whose socket closes before the upgrade holds no place',
    { skip: redisSkipReason() || false },
    async () => {
      const fx = await startFixture('redis', { limits: { maxConnectionsPerClient: 3 } });
      try {
        const { token } = await createToken(TEST_KEY, { clientId: 'gone' });
        const { port } = new URL(fx.server.url);
        // upgrade requests whose sockets are closed as soon as they are sent (the admission, with its
        // token check and its Redis claim, is still running): half end theirs (FIN: the server's
        // socket closes when the upgrade finds it unwritable), half reset it (RST: it is destroyed
        // while the admission runs, before the upgrade handler listens for its close)
        const request = `GET /v1/connect?token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
        await Promise.all(
          Array.from(
            { length: 10 },
            (_, i) =>
              new Promise<void>((resolve) => {
                const socket = netConnect(Number(port), '127.0.0.1', () => {
                  if (i % 2 === 0) socket.end(request, () => socket.destroy());
                  else socket.write(request, () => socket.resetAndDestroy());
                });
                socket.on('close', () => resolve());
                socket.on('error', () => {});
              }),
          ),
        );
        const opened: RawClient[] = [];
        for (let i = 0; i < 3; i++)
          await until(
            async () => {
              const c = await RawClient.connect(fx.server.url, { token }).catch(() => undefined);
              if (c) opened.push(c);
              return c !== undefined;
            },
            `connection ${i + 1} of 3 is admitted`,
          );
        await Promise.all(opened.map((c) => c.close()));
      } finally {
        await fx.close();
      }
    },
  );
});

describe('publish budget per identity', () => {
  // Bounds, not timings: a bucket of `rate` per second (burst `rate`) accepts at most
  // rate + rate × seconds operations in `seconds`, however slow the machine is.
  it('is shared by every WebSocket connection of one token', async () => {
    const fx = await startFixture('memory', { limits: { maxPublishRate: 20 } });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'many' });
      const clients = await Promise.all(
        Array.from({ length: 10 }, () => RawClient.connect(fx.server.url, { token })),
      );
      const ops = Array.from({ length: 10 }, (_, i) => ({ data: i }));
      const started = performance.now();
      const answers = await Promise.all(
        clients.map((c) => c.request({ type: 'publish', channel: 'x', ops })),
      );
      const seconds = (performance.now() - started) / 1000;
      const codes = answers.map(outcome);
      const accepted = codes.filter((x) => x === 'ok').length * 10;
      assert.ok(accepted <= 20 + 20 * seconds, `10 × 10 ops at 20/s: ${accepted} accepted in ${seconds} s`);
      assert.ok(codes.every((x) => x === 'ok' || x === 'rate_limited'));
      const other = await RawClient.connect(fx.server.url, {
        token: (await createToken(TEST_KEY, { clientId: 'other' })).token,
      });
      assert.equal(
        outcome(await other.request({ type: 'publish', channel: 'x', ops })),
        'ok',
        'others keep theirs',
      );
      await Promise.all([...clients, other].map((c) => c.close()));
    } finally {
      await fx.close();
    }
  });

  it('holds for REST too, and REST and connections draw from the same budget', async () => {
    const fx = await startFixture('memory', { limits: { maxPublishRate: 20 } });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'rest' });
      const ws = await RawClient.connect(fx.server.url, { token });
      const ops = Array.from({ length: 10 }, (_, i) => ({ data: i }));
      const started = performance.now();
      const [viaRest, viaWs] = await Promise.all([
        Promise.all(
          Array.from({ length: 10 }, () =>
            rest(fx.server, '/v1/channels/x/messages', { key: token, body: ops }),
          ),
        ),
        Promise.all(Array.from({ length: 10 }, () => ws.request({ type: 'publish', channel: 'x', ops }))),
      ]);
      const seconds = (performance.now() - started) / 1000;
      const restOk = viaRest.filter((r) => r.status === 200).length;
      const wsOk = viaWs.filter((f) => outcome(f) === 'ok').length;
      const accepted = (restOk + wsOk) * 10;
      assert.ok(
        accepted <= 20 + 20 * seconds,
        `REST ${restOk} + WS ${wsOk} publishes of 10 accepted in ${seconds} s at 20/s`,
      );
      for (const refused of viaRest.filter((r) => r.status !== 200)) {
        assert.equal(refused.status, 429);
        assert.equal((refused.body.error as { code: string }).code, 'rate_limited');
      }
      await ws.close();
      const keyed = await rest(fx.server, '/v1/channels/x/messages', {
        body: Array.from({ length: 100 }, (_, i) => ({ data: i })),
      });
      assert.equal(keyed.status, 200, 'API keys stay unlimited by default');
    } finally {
      await fx.close();
    }
  });

  it('counts bytes too: one token holder cannot fill the store at its operation rate', async () => {
    // 10 kB per second: far below what 1,000 operations of 64 KiB would be
    const fx = await startFixture('memory', { limits: { maxPublishBytesRate: 10_000 } });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'filler' });
      const ws = await RawClient.connect(fx.server.url, { token });
      const sized = (bytes: number) => [{ name: 'blob', data: 'x'.repeat(bytes - 4) }];
      assert.equal(outcome(await ws.request({ type: 'publish', channel: 'x', ops: sized(6_000) })), 'ok');
      // 4,000 left (and 10 more per ms): 6,000 more are refused whole, over a connection and over REST
      const refused = await ws.request({ type: 'publish', channel: 'x', ops: sized(6_000) });
      assert.ok(
        refused.type === 'error' &&
          refused.error.code === 'rate_limited' &&
          /bytes/.test(refused.error.message) &&
          refused.error.message.includes('clientId filler of key'), // whose budget it is
        JSON.stringify(refused).slice(0, 300),
      );
      const viaRest = await rest(fx.server, '/v1/channels/x/messages', { key: token, body: sized(6_000) });
      assert.equal(viaRest.status, 429);
      // small publishes still fit
      assert.equal(outcome(await ws.request({ type: 'publish', channel: 'x', ops: sized(100) })), 'ok');
      await ws.close();
      // one publish larger than the burst passes when the budget is full; then the identity waits
      const large = await RawClient.connect(fx.server.url, {
        token: (await createToken(TEST_KEY, { clientId: 'large' })).token,
      });
      assert.equal(outcome(await large.request({ type: 'publish', channel: 'x', ops: sized(30_000) })), 'ok');
      assert.equal(
        outcome(await large.request({ type: 'publish', channel: 'x', ops: sized(100) })),
        'rate_limited',
      );
      await large.close();
      const keyed = await rest(fx.server, '/v1/channels/x/messages', { body: sized(60_000) });
      assert.equal(keyed.status, 200, 'API keys are not counted by default');
    } finally {
      await fx.close();
    }
  });

  it('limits the connection requests of one token clientId: connecting and dropping cannot go on without end', async () => {
    // a burst of twice maxConnectionsPerClient (4), then 2 per second
    const fx = await startFixture('memory', { limits: { maxConnectRate: 2, maxConnectionsPerClient: 2 } });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'churner' });
      for (let i = 0; i < 4; i++) {
        const c = await RawClient.connect(fx.server.url, { token });
        c.ws.terminate(); // dropped without a close: the identity stays recoverable
      }
      await assert.rejects(RawClient.connect(fx.server.url, { token }), /HTTP 429/);
      const polled = await fetch(`${fx.server.url}/v1/connect/poll?token=${encodeURIComponent(token)}`);
      assert.equal(polled.status, 429);
      assert.equal(((await polled.json()) as { error: { code: string } }).error.code, 'rate_limited');
      // another clientId and the key itself still connect
      const other = await RawClient.connect(fx.server.url, {
        token: (await createToken(TEST_KEY, { clientId: 'other' })).token,
      });
      const keyed = await RawClient.connect(fx.server.url, {});
      await Promise.all([other.close(), keyed.close()]);
    } finally {
      await fx.close();
    }
  });

  // Each renewal verifies a signature: within the frame budget alone (100 a second per connection),
  // one holder's connections could keep the server doing nothing else.
  for (const kind of ['memory', 'redis'] as const)
    it(
      `counts token renewals with the connection requests of their identity, a key's anonymous tokens together (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        // bursts of twice the connection budgets (4 each), then 1 a second
        const fx = await startFixture(kind, {
          limits: {
            maxConnectRate: 1,
            maxConnectionsPerClient: 2,
            maxAnonymousConnectRate: 1,
            maxAnonymousConnectionsPerKey: 2,
          },
        });
        try {
          const renewAll = async (c: RawClient, tokens: string[]) =>
            (await Promise.all(tokens.map((token) => c.request({ type: 'auth', token })))).map(outcome);
          const { token } = await createToken(TEST_KEY, { clientId: 'renewer' });
          const named = await RawClient.connect(fx.server.url, { token });
          const answers = await renewAll(named, Array(10).fill(token));
          const renewed = answers.filter((a) => a === 'ok').length;
          // the connection took one; a second may have refilled meanwhile
          assert.ok(renewed >= 3 && renewed <= 4, `3 or 4 renewals pass, not ${renewed}: ${answers}`);
          assert.deepEqual(new Set(answers.filter((a) => a !== 'ok')), new Set(['rate_limited']));
          assert.equal(outcome(await named.request({ type: 'ping' })), 'ok', 'the connection stays');

          // two anonymous tokens, one budget: their connections took 2 of 4
          const [a, b] = await Promise.all([createToken(TEST_KEY), createToken(TEST_KEY)]);
          const first = await RawClient.connect(fx.server.url, { token: a.token });
          const second = await RawClient.connect(fx.server.url, { token: b.token });
          const byFirst = await renewAll(first, [a.token, a.token, a.token, a.token]);
          const bySecond = await renewAll(second, [b.token, b.token]);
          const passed = [...byFirst, ...bySecond].filter((x) => x === 'ok').length;
          assert.ok(passed >= 2 && passed <= 3, `2 or 3 anonymous renewals pass, not ${passed}`);
          assert.ok(bySecond.includes('rate_limited'), 'the other token found the budget spent');
          // a key's own connection is not counted
          const keyed = await RawClient.connect(fx.server.url, {});
          await Promise.all([named.close(), first.close(), second.close(), keyed.close()]);
        } finally {
          await fx.close();
        }
      },
    );

  it('caps the active leases of one identity', async () => {
    const fx = await startFixture('memory', { limits: { maxLeasesPerClient: 3 } });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'agent' });
      const publish = (body: unknown) => rest(fx.server, '/v1/channels/l/messages', { key: token, body });
      // one batch counts all the leases it takes: 4 in one publish are over a cap of 3
      const batch = await publish(Array.from({ length: 4 }, (_, i) => ({ data: `run ${i}`, lease: 60_000 })));
      assert.equal(batch.status, 429);
      assert.equal((batch.body.error as { code: string }).code, 'too_many_leases');
      const serials: string[] = [];
      for (let i = 0; i < 3; i++) {
        const res = await publish({ data: `run ${i}`, lease: 60_000 });
        assert.equal(res.status, 200);
        serials.push((res.body.results as Array<{ serial: string }>)[0]!.serial);
      }
      const over = await publish({ data: 'run 3', lease: 60_000 });
      assert.equal(over.status, 429);
      assert.equal((over.body.error as { code: string }).code, 'too_many_leases');
      const renew = await publish({ action: 'update', serial: serials[0], data: 'again', lease: 60_000 });
      assert.equal(renew.status, 200, 'renewing a held lease takes no new one');
      assert.equal(
        (await publish({ action: 'update', serial: serials[1], lease: 0, data: 'done' })).status,
        200,
      );
      assert.equal(
        (await publish({ data: 'run 4', lease: 60_000 })).status,
        200,
        'a released lease frees a slot',
      );
      // at the cap again (runs 0, 2 and 4): a lease taken on a message that exists counts like a
      // new run's, and a create with `lease: 0` takes none
      const plain = await publish({ data: 'a note' });
      const noteSerial = (plain.body.results as Array<{ serial: string }>)[0]!.serial;
      const onExisting = await publish({
        action: 'update',
        serial: noteSerial,
        data: 'a run now',
        lease: 60_000,
      });
      assert.equal(onExisting.status, 429, 'a lease taken on an existing message was not counted');
      assert.equal(
        (await publish({ data: 'not a run', lease: 0 })).status,
        200,
        'lease 0 counted as a lease',
      );
      const other = (await createToken(TEST_KEY, { clientId: 'other' })).token;
      const theirs = await rest(fx.server, '/v1/channels/l/messages', {
        key: other,
        body: { data: 'x', lease: 60_000 },
      });
      assert.equal(theirs.status, 200, 'another identity has its own');
    } finally {
      await fx.close();
    }
  });
});

describe('presence enters in flight', () => {
  for (const kind of ['memory', 'redis'] as const)
    it(
      `enters sent together on one connection each count against its presence budget (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, {
          limits: { maxPresenceChannelsPerConnection: 3, maxPresenceMembers: 1, maxPresenceRate: 1000 },
        });
        try {
          const c = await RawClient.connect(fx.server.url, { clientId: 'p' });
          const enter = (channel: string) => c.request({ type: 'presence', channel, action: 'enter' });
          const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => enter(`room-${i}`)));
          assert.deepEqual(answers.map(outcome), [
            ...Array(3).fill('ok'),
            ...Array(7).fill('too_many_channels'),
          ]);
          // an enter refused by the channel (full) gives its place in the budget back
          const other = await RawClient.connect(fx.server.url, { clientId: 'q' });
          assert.equal(
            outcome(await other.request({ type: 'presence', channel: 'full', action: 'enter' })),
            'ok',
          );
          assert.equal(
            outcome(await c.request({ type: 'presence', channel: 'room-0', action: 'leave' })),
            'ok',
          );
          assert.equal(outcome(await enter('full')), 'too_many_members');
          assert.equal(outcome(await enter('room-5')), 'ok', 'the refused enter still held a channel');
          await Promise.all([c.close(), other.close()]);
        } finally {
          await fx.close();
        }
      },
    );
});

describe('presence enters in flight, all refused', () => {
  for (const kind of ['memory', 'redis'] as const)
    it(
      `two enters of one channel sent together and both refused hold no place in the budget after (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, {
          limits: { maxPresenceChannelsPerConnection: 2, maxPresenceMembers: 1, maxPresenceRate: 1000 },
        });
        try {
          const other = await RawClient.connect(fx.server.url, { clientId: 'q' });
          assert.equal(
            outcome(await other.request({ type: 'presence', channel: 'full', action: 'enter' })),
            'ok',
          );
          const c = await RawClient.connect(fx.server.url, { clientId: 'p' });
          const enter = (channel: string, data?: string) =>
            c.request({
              type: 'presence',
              channel,
              action: 'enter',
              ...(data === undefined ? {} : { data }),
            });
          // an enter and an update of it, sent without waiting: the channel is full for both
          const answers = await Promise.all([enter('full', 'a'), enter('full', 'ab')]);
          assert.deepEqual(answers.map(outcome), ['too_many_members', 'too_many_members']);
          assert.equal(outcome(await enter('room-1')), 'ok');
          assert.equal(outcome(await enter('room-2')), 'ok', 'a refused enter still holds a channel');
          await Promise.all([c.close(), other.close()]);
        } finally {
          await fx.close();
        }
      },
    );
});

describe('leases in flight', () => {
  // Publishes pipelined on one connection are checked before any of them is stored; each counts
  // the others' leases, on every store (Redis: read from the shared count, the others reserved here)
  for (const kind of ['memory', 'sqlite', 'redis'] as const)
    it(
      `pipelined creates of one identity count together against maxLeasesPerClient (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxLeasesPerClient: 3 } });
        try {
          const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
          const answers = await Promise.all(
            Array.from({ length: 10 }, (_, i) =>
              agent.request({
                type: 'publish',
                channel: 'run:pipelined',
                ops: [{ id: `run-${i}`, data: `run ${i}`, lease: 60_000 }],
              }),
            ),
          );
          assert.deepEqual(
            answers.map(outcome),
            [...Array(3).fill('ok'), ...Array(7).fill('too_many_leases')],
            'the first three in order are taken, the rest refused',
          );
          // a refused publish stored nothing, and gave its reservation back: ending one run frees one
          const serial = (answers[0] as { results: Array<{ serial: string }> }).results[0]!.serial;
          await agent.publish('run:pipelined', [{ action: 'update', serial, id: 'end', lease: 0 }]);
          assert.equal(
            outcome(
              await agent.request({
                type: 'publish',
                channel: 'run:pipelined',
                ops: [{ id: 'run-10', data: 'again', lease: 60_000 }],
              }),
            ),
            'ok',
          );
          const history = await rest(fx.server, '/v1/channels/run:pipelined/messages');
          const stored = (history.body.items as Array<{ data: string }>).map((m) => m.data).sort();
          assert.deepEqual(stored, ['again', 'run 0', 'run 1', 'run 2'], 'the refused runs stored nothing');
          await agent.close();
        } finally {
          await fx.close();
        }
      },
    );

  for (const kind of ['memory', 'sqlite', 'redis'] as const)
    it(
      `one publish that would take more leases than maxLeasesPerClient is refused whole, with none held yet (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxLeasesPerClient: 2 } });
        try {
          const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
          const runs = (ids: string[]) =>
            agent.request({
              type: 'publish',
              channel: 'run:many',
              ops: ids.map((id) => ({ id, data: id, lease: 60_000 })),
            });
          const refused = await runs(['a', 'b', 'c']);
          assert.equal(outcome(refused), 'too_many_leases', JSON.stringify(refused));
          assert.match(
            refused.type === 'error' ? refused.error.message : '',
            /clientId agent already holds 0 message leases \(limit 2\)/,
          );
          assert.equal(outcome(await runs(['d', 'e'])), 'ok', 'the limit itself fits');
          const history = await rest(fx.server, '/v1/channels/run:many/messages');
          assert.deepEqual((history.body.items as Array<{ data: string }>).map((m) => m.data).sort(), [
            'd',
            'e',
          ]);
          await agent.close();
        } finally {
          await fx.close();
        }
      },
    );

  for (const kind of ['memory', 'sqlite', 'redis'] as const)
    it(
      `a publish the store refuses after its leases were reserved gives them back (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxLeasesPerClient: 2 } });
        try {
          const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
          const publish = (ops: unknown[]) =>
            agent.request({ type: 'publish', channel: 'run:refused', ops } as never);
          // two leased creates and an append to a message that does not exist: the store refuses
          // the whole publish, after the check reserved both leases
          const refused = await publish([
            { id: 'a', data: 'a', lease: 60_000 },
            { id: 'b', data: 'b', lease: 60_000 },
            { action: 'append', id: 'c', serial: 'zzzzzzzzzzzz.0000000000000999', data: 'c' },
          ]);
          assert.equal(refused.type, 'error', JSON.stringify(refused));
          for (const id of ['d', 'e'])
            assert.equal(
              outcome(await publish([{ id, data: id, lease: 60_000 }])),
              'ok',
              'the refused publish still holds its reserved leases',
            );
          await agent.close();
        } finally {
          await fx.close();
        }
      },
    );
});

describe('frame throttle', () => {
  it('a ping flood from one connection is refused and dropped; a bystander keeps answering', async () => {
    const fx = await startFixture('memory');
    try {
      const bystander = await RawClient.connect(fx.server.url);
      const flooder = await RawClient.connect(fx.server.url);
      const ping = JSON.stringify({ type: 'ping' });
      const flood = async () => {
        for (let i = 0; i < 20_000 && flooder.ws.readyState === flooder.ws.OPEN; i++) {
          flooder.ws.send(ping);
          if (i % 500 === 0) await new Promise((r) => setImmediate(r));
        }
      };
      const floodStarted = performance.now();
      const flooding = flood();
      const rtts: number[] = [];
      for (let i = 0; i < 20; i++) {
        const started = performance.now();
        assert.equal((await bystander.request({ type: 'ping' })).type, 'pong');
        rtts.push(performance.now() - started);
      }
      await flooding;
      const code = await Promise.race([
        flooder.closed(),
        new Promise((resolve) => setTimeout(() => resolve('still open after 10 s'), 10_000).unref()),
      ]);
      assert.equal(code, 4028, 'the flooder is disconnected (rate_limited)');
      assert.ok(flooder.frames.some((f) => f.type === 'error' && f.error.code === 'rate_limited'));
      const disconnect = flooder.frames.find((f) => f.type === 'disconnect');
      assert.deepEqual(
        disconnect?.type === 'disconnect' && [
          disconnect.reason,
          disconnect.reconnect,
          disconnect.error?.code,
        ],
        ['rate_limited', true, 'rate_limited'],
        'told why, and that it may come back',
      );
      const seconds = (performance.now() - floodStarted) / 1000;
      const pongs = flooder.frames.filter((f) => f.type === 'pong').length;
      assert.ok(pongs <= 1_000 + 100 * seconds, `answered at most a burst and its refill, got ${pongs}`);
      // a generous bound: without the throttle the 20,000 pings are all answered first
      assert.ok(Math.max(...rtts) < 5_000, `bystander RTTs ${rtts.map((x) => x.toFixed(0)).join(',')}`);
      assert.equal((await bystander.request({ type: 'ping' })).type, 'pong');
      await bystander.close();
    } finally {
      await fx.close();
    }
  });
});

describe('frame throttle (what it leaves alone)', () => {
  it('publishes and a close draw nothing from the frame budget', async () => {
    const fx = await startFixture('memory', { limits: { maxFrameRate: 1, maxFrameBurst: 2 } });
    try {
      const client = await RawClient.connect(fx.server.url);
      for (let i = 0; i < 10; i++) {
        const ack = await client.request({ type: 'publish', channel: 'x', ops: [{ data: i }] });
        assert.equal(ack.type, 'ack', `publish ${i} has the identity's budget, not the frame budget`);
      }
      // the burst of two other frames, then a refusal
      for (const expected of ['pong', 'pong', 'error'])
        assert.equal((await client.request({ type: 'ping' })).type, expected);
      client.ws.send(JSON.stringify({ type: 'close' }));
      const code = await Promise.race([
        client.closed(),
        new Promise((resolve) => setTimeout(() => resolve('still open after 5 s'), 5_000).unref()),
      ]);
      assert.equal(code, 1000, 'a close is always heard');
    } finally {
      await fx.close();
    }
  });
});

describe('frame throttle (frames that are not JSON)', () => {
  for (const [what, frame] of [
    ['text that is not JSON', 'not json'],
    ['binary', Buffer.from([1])],
  ] as const)
    it(`a flood of frames that are not JSON (${what}) draws on the same budget: the flooder is dropped`, async () => {
      const fx = await startFixture('memory');
      try {
        const flooder = await RawClient.connect(fx.server.url);
        for (let i = 0; i < 20_000 && flooder.ws.readyState === flooder.ws.OPEN; i++) {
          flooder.ws.send(frame);
          if (i % 500 === 0) await new Promise((r) => setImmediate(r));
        }
        // frames are handled in order: a ping after the flood is answered only if the flood was
        const end = await Promise.race([
          flooder.closed(),
          flooder.request({ type: 'ping' }).then(
            (f) => f.type,
            () => 'no answer',
          ),
        ]);
        assert.equal(end, 4028, 'the flooder is disconnected (rate_limited)');
        assert.ok(flooder.frames.some((f) => f.type === 'error' && f.error.code === 'rate_limited'));
      } finally {
        await fx.close();
      }
    });
});

describe('HTTP upstream slices', () => {
  it('handles the frames of one POST a slice at a time: answers flow out before the POST is done', async () => {
    const fx = await startFixture('memory', {
      limits: { maxFrameRate: 1_000_000, maxFrameBurst: 1_000_000 },
    });
    try {
      const open = await fetch(`${fx.server.url}/v1/connect/poll?key=${TEST_KEY}`);
      const [connected] = (await open.json()) as Array<{ connectionId: string; connectionKey: string }>;
      const headers = { 'x-mooring-connection-key': connected!.connectionKey };
      const pollUrl = `${fx.server.url}/v1/connections/${connected!.connectionId}/poll`;
      const poll = async () => (await (await fetch(pollUrl, { headers })).json()) as ServerFrame[];
      // a second poll answers the first with []: once it has, the second is surely pending
      const first = poll();
      const second = poll();
      assert.deepEqual(await first, []);
      const frames = Array.from({ length: 10_000 }, (_, ref) => ({ type: 'ping', ref }));
      const posted = fetch(`${fx.server.url}/v1/connections/${connected!.connectionId}/frames`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify(frames),
      });
      const batch = (await second).filter((f) => f.type === 'pong').length;
      assert.ok(batch > 0 && batch < 10_000, `the first answer carried ${batch} of 10,000 pongs`);
      assert.equal((await posted).status, 202);
      let pongs = batch;
      while (pongs < 10_000) pongs += (await poll()).filter((f) => f.type === 'pong').length;
      assert.equal(pongs, 10_000, 'every frame handled, in order, once');
    } finally {
      await fx.close();
    }
  });
});

describe('HTTP hardening', () => {
  it('an aborted request body is not an internal error: not logged as one, not counted', async () => {
    const { logger, lines, errors } = captureLog('debug');
    const fx = await startFixture('memory', { logger });
    try {
      const socket = netConnect(fx.server.port, '127.0.0.1');
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write(
        `POST /v1/channels/x/messages HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TEST_KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"data":`,
      );
      await new Promise((r) => setTimeout(r, 20)); // let the server start reading the body
      socket.destroy();
      // the server saw the abort: as what it is (debug), or as a failure (error)
      await until(
        () => lines.some((l) => l.msg === 'request aborted by the client' || l.level >= 50),
        'the abort is seen',
      );
      assert.deepEqual(errors(), [], 'nothing logged as an error');
      const metrics = await (await fetch(`${fx.server.url}/metrics?key=${TEST_KEY}`)).text();
      assert.doesNotMatch(metrics, /mooring_errors_total\{code="internal"\}/);
    } finally {
      await fx.close();
    }
  });

  it("the history next link never echoes the caller's token or key", async () => {
    const fx = await startFixture('memory');
    try {
      await rest(fx.server, '/v1/channels/h/messages', { body: [{ data: 1 }, { data: 2 }, { data: 3 }] });
      const { token } = await createToken(TEST_KEY, { clientId: 'reader' });
      for (const credential of [`token=${token}`, `key=${TEST_KEY}`]) {
        const res = await fetch(`${fx.server.url}/v1/channels/h/messages?limit=1&${credential}`);
        const body = (await res.json()) as { next?: string };
        assert.ok(body.next, 'there is a next page');
        assert.doesNotMatch(body.next, /token=|key=/);
        assert.match(body.next, /limit=1/);
      }
    } finally {
      await fx.close();
    }
  });

  it('every route sends nosniff and refuses framing; the dashboard allows no inline script', async () => {
    const fx = await startFixture('memory');
    try {
      const paths = [
        '/health',
        '/ready',
        '/metrics',
        '/nope',
        '/v1/channels/x',
        '/v1/connect/sse',
        '/v1/connect/poll',
      ];
      for (const path of [...paths, '/dashboard', '/dashboard.js']) {
        const res = await fetch(fx.server.url + path);
        await res.arrayBuffer();
        assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
        assert.equal(res.headers.get('x-frame-options'), 'DENY', path);
        assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, path);
      }
      // a Durable Stream keeps its creator's content type: one of text/html must not run as a page
      // of this origin, beside the dashboard (sandboxed: no script, no request, no frame)
      const auth = { authorization: `Basic ${Buffer.from(TEST_KEY).toString('base64')}` };
      const streamed = '<script>alert(document.domain)</script>';
      const made = await fetch(`${fx.server.url}/v1/stream/page`, {
        method: 'PUT',
        headers: { ...auth, 'content-type': 'text/html' },
        body: streamed,
      });
      assert.equal(made.status, 201);
      for (const res of [made, await fetch(`${fx.server.url}/v1/stream/page?offset=-1`, { headers: auth })]) {
        await res.arrayBuffer();
        const streamCsp = res.headers.get('content-security-policy') ?? '';
        for (const directive of ['sandbox', "default-src 'none'", "frame-ancestors 'none'"])
          assert.ok(
            streamCsp.split(';').some((d) => d.trim() === directive),
            `${directive} in ${streamCsp}`,
          );
      }
      const page = await fetch(`${fx.server.url}/dashboard`);
      const csp = page.headers.get('content-security-policy') ?? '';
      const scriptSrc = /script-src ([^;]*)/.exec(csp)?.[1] ?? '';
      assert.doesNotMatch(scriptSrc, /unsafe-inline|unsafe-eval/);
      const html = await page.text();
      assert.doesNotMatch(html, /<script>/, 'no inline script');
      const script = await (await fetch(`${fx.server.url}/dashboard.js`)).text();
      assert.doesNotMatch(
        script,
        /innerHTML|outerHTML|insertAdjacentHTML/,
        'label values are written as text',
      );
      // a refused WebSocket upgrade is written straight to the socket: same headers
      const socket = netConnect(fx.server.port, '127.0.0.1');
      let answer = '';
      socket.on('data', (chunk) => {
        answer += String(chunk);
      });
      const ended = new Promise((resolve) => socket.once('close', resolve));
      socket.write(
        'GET /v1/connect HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
      await ended;
      assert.match(answer, /^HTTP\/1.1 401/);
      assert.match(answer, /x-content-type-options: nosniff/);
    } finally {
      await fx.close();
    }
  });
});
