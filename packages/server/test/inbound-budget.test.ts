/**
 * `maxInboundBytesRate` (PROTOCOL.md §10): a token identity's bytes are counted before they are
 * parsed, and past the budget its connections stop being read until it refills — WebSocket frames,
 * and the bodies of upstream POSTs on the HTTP transports (also one forwarded from another node,
 * which waits on the node holding the connection). Nothing is refused or lost; API keys are not
 * counted.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { WebSocket } from 'ws';
import type { Connection } from '../src/connection.ts';
import { BODIES_PER_IDENTITY, InboundBudget } from '../src/inbound-budget.ts';
import { createToken, type MooringServer, type ServerOptions, startServer } from '../src/index.ts';
import { InboundGate } from '../src/websocket-transport.ts';
import { metricsText, metricValue, startFixture, TEST_KEY } from './support/fixture.ts';
import { PollClient, SseClient } from './support/http-client.ts';
import { RawClient } from './support/raw-client.ts';
import { reply, StalledClient } from './support/stalled-client.ts';

describe('InboundBudget', () => {
  it('a burst, then the rate: the pause is what brings the bucket back to zero', () => {
    let now = 0;
    let throttled = 0;
    const budget = new InboundBudget(1000, 2000, { onThrottle: () => throttled++, now: () => now });
    assert.equal(budget.take('a', 500), 0, 'no bucket, nothing counted');
    budget.hold('a');
    assert.equal(budget.take('a', 2000), 0, 'the burst, exactly');
    assert.equal(budget.take('a', 500), 500, '500 bytes over at 1000/s: 500 ms');
    now += 500;
    assert.equal(budget.take('a', 0), 0, 'refilled to zero');
    now += 10_000;
    assert.equal(budget.take('a', 2001), 1, 'refills to the burst, not beyond');
    assert.equal(throttled, 2);
  });

  it("one bucket per identity, shared by its connections, dropped after the last one's release once it refilled", () => {
    let now = 0;
    const budget = new InboundBudget(1000, 1000, { now: () => now });
    budget.hold('a');
    budget.hold('a');
    budget.hold('b');
    assert.equal(budget.take('a', 800), 0);
    assert.equal(budget.take('a', 400), 200, "the second connection draws on the first's bucket");
    assert.equal(budget.take('b', 1000), 0, 'another identity has its own');
    budget.release('a');
    assert.equal(budget.size, 2);
    budget.release('a');
    assert.equal(budget.size, 2, '200 bytes under: kept while it refills');
    now += 1_199;
    assert.equal(budget.size, 2, 'not full yet');
    budget.hold('a');
    assert.equal(
      budget.take('a', 1_000),
      1,
      'held again before it refilled: the same bucket, not a fresh burst',
    );
    budget.release('a');
    now += 1_000;
    assert.equal(budget.size, 2, 'still 1 byte short');
    now += 1;
    assert.equal(budget.size, 1, 'full again: dropped');
    assert.equal(budget.take('a', 10_000), 0, 'released: not counted');
    budget.release('b');
    assert.equal(budget.size, 0, 'a full bucket is dropped at once');
  });

  it('reading: a request counts as one more user while it reads, at the pace of the shared bucket', async () => {
    let now = 0;
    const budget = new InboundBudget(1000, 1000, { now: () => now });
    const paces: number[] = [];
    await budget.reading('a', async (pace) => {
      assert.equal(budget.size, 1);
      paces.push(pace(600), pace(600));
    });
    assert.deepEqual(paces, [0, 200]);
    assert.equal(budget.size, 1, 'kept after the request: the next one draws on it');
    assert.equal(await budget.reading('a', async (pace) => pace(100)), 300);
    now += 300;
    assert.equal(budget.size, 1);
    now += 1000;
    assert.equal(budget.size, 0);
  });
});

describe('bodies read at once per identity', () => {
  it(`at most BODIES_PER_IDENTITY (${BODIES_PER_IDENTITY}) of an identity's bodies are read at once; the next waits for one to finish, first come first served; another identity does not wait`, async () => {
    const budget = new InboundBudget(1000, 1000);
    const started: string[] = [];
    const finish = new Map<string, () => void>();
    const body = (name: string, key = 'a') =>
      budget.reading(key, async () => {
        started.push(name);
        await new Promise<void>((resolve) => finish.set(name, resolve));
        return name;
      });
    const tick = () => new Promise((resolve) => setImmediate(resolve));
    const held = Array.from({ length: BODIES_PER_IDENTITY }, (_, i) => body(`held${i}`));
    const late = [body('late1'), body('late2')];
    const other = body('other', 'b');
    await tick();
    assert.deepEqual(started, [
      ...Array.from({ length: BODIES_PER_IDENTITY }, (_, i) => `held${i}`),
      'other',
    ]);
    finish.get('other')!();
    assert.equal(await other, 'other');
    finish.get('held3')!();
    assert.equal(await held[3], 'held3');
    await tick();
    assert.equal(started.at(-1), 'late1', 'the first waiting takes the slot');
    assert.ok(!started.includes('late2'));
    const extra = body('extra');
    await tick();
    assert.ok(!started.includes('extra'), 'a slot handed on is still taken: eight are read, no more');
    finish.get('late1')!();
    await late[0];
    await tick();
    assert.equal(started.at(-1), 'late2');
    assert.ok(!started.includes('extra'));
    for (const [name, done] of finish) if (name !== 'late2') done();
    finish.get('late2')!();
    await Promise.all([...held, ...late]);
    await tick();
    finish.get('extra')!();
    assert.equal(await extra, 'extra');
    assert.equal(budget.size, 0, 'all done, the buckets full: dropped');
  });

  it('enter, leave and cancel: a slot handed on in turn, a waiter that left the line passed over, a freed slot taken again', () => {
    let waited = 0;
    const budget = new InboundBudget(1000, 1000, { onWait: () => waited++ });
    budget.hold('a');
    const order: string[] = [];
    const waiter = (name: string) => ({ granted: () => order.push(name) });
    for (let i = 0; i < BODIES_PER_IDENTITY; i++) assert.equal(budget.enter('a', waiter(`held${i}`)), true);
    const [first, gone, last] = [waiter('first'), waiter('gone'), waiter('last')];
    assert.equal(budget.enter('a', first), false);
    assert.equal(budget.enter('a', gone), false);
    assert.equal(budget.enter('a', last), false);
    assert.equal(waited, 3);
    budget.cancel('a', gone);
    budget.leave('a');
    budget.leave('a');
    assert.deepEqual(order, ['first', 'last'], 'in turn, without the one that left the line');
    budget.leave('a');
    assert.equal(budget.enter('a', waiter('next')), true, 'a slot given back with nobody waiting is free');
    assert.equal(budget.enter('a', waiter('over')), false, 'and then all eight are taken again');
  });

  it('a WebSocket waiting for a slot stays unread when its bucket refills, and one handed a slot stays unread until its bucket refills', async () => {
    let now = 0;
    const budget = new InboundBudget(1_000_000, 1_000, { now: () => now });
    const socket = () => ({
      OPEN: 1,
      readyState: 1,
      paused: false,
      pause() {
        this.paused = true;
      },
      resume() {
        this.paused = false;
      },
    });
    const connection = () => ({ alive: false }) as unknown as Connection;
    const begun = StalledClient.frame(JSON.stringify({ type: 'ping', data: 'x'.repeat(4_000) })).subarray(
      0,
      2_000,
    );
    // all eight slots taken by messages begun elsewhere
    budget.hold('a');
    for (let i = 0; i < BODIES_PER_IDENTITY; i++)
      assert.equal(budget.enter('a', { granted: () => {} }), true);

    // 1000 bytes over at 1 MB/s: reading stops for 1 ms, and for a slot
    const waiting = socket();
    const gate = new InboundGate(waiting as unknown as WebSocket, connection(), budget, 'a');
    gate.read(begun);
    assert.equal(waiting.paused, true);
    now += 10;
    await new Promise((r) => setTimeout(r, 50)); // the 1 ms refill timer has fired before this one
    assert.equal(waiting.paused, true, 'refilled, but still waiting for a slot: not read on');
    budget.leave('a');
    assert.equal(waiting.paused, false, 'a slot handed to it, and its bucket refilled: read on');
    gate.closed();

    // handed a slot while its bucket is still refilling: not read until it has refilled
    const refilling = socket();
    const second = new InboundGate(refilling as unknown as WebSocket, connection(), budget, 'a');
    assert.equal(budget.enter('a', { granted: () => {} }), true, 'the slot it gave back, taken again');
    budget.take('a', 1_000_000); // a second from refilling
    second.read(begun);
    assert.equal(refilling.paused, true);
    budget.leave('a');
    assert.equal(refilling.paused, true, 'a slot handed to it, but its bucket is still refilling');
    second.closed();
  });

  it("a token's REST bodies left part-sent hold only its own slots: its next publish waits, another token's does not", async () => {
    const fx = await startFixture('memory');
    const stalled: ReturnType<typeof httpRequest>[] = [];
    try {
      const tokenOf = async (clientId: string) => (await createToken(TEST_KEY, { clientId })).token;
      const [slow, other] = await Promise.all([tokenOf('slow'), tokenOf('other')]);
      const url = new URL('/v1/channels/session:s/messages', fx.server.url);
      for (let i = 0; i < BODIES_PER_IDENTITY; i++) {
        const req = httpRequest(url, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${slow}`,
            'content-type': 'application/json',
            'content-length': '100000',
          },
        });
        req.on('error', () => {});
        req.write('{"ops":[{"data":"'); // and nothing more
        stalled.push(req);
      }
      await new Promise((r) => setTimeout(r, 1_500)); // the server has taken them in
      const publish = (token: string) =>
        fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ops: [{ data: 'hi' }] }),
        });
      let answered = false;
      const waiting = publish(slow).then((res) => {
        answered = true;
        return res;
      });
      assert.equal((await publish(other)).status, 200, "another token's publish is not held");
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(answered, false, 'its own next publish waits for a slot');
      const waited = metricValue(await metricsText(fx.server), 'mooring_inbound_bodies_waited_total');
      assert.equal(waited, 1, 'the wait is counted');
      stalled.shift()!.destroy();
      assert.equal((await waiting).status, 200, 'taken once a part-sent body went');
    } finally {
      for (const req of stalled) req.destroy();
      await fx.close();
    }
  });
  it("a token's WebSocket messages left part-sent hold its slots: its next one waits unread, its whole ones and another token's do not", async () => {
    const fx = await startFixture('memory');
    const clients: StalledClient[] = [];
    try {
      const tokenOf = async (clientId: string) => (await createToken(TEST_KEY, { clientId })).token;
      const [slow, other] = await Promise.all([tokenOf('slow'), tokenOf('other')]);
      const open = async (token: string) => {
        const client = await StalledClient.connect(fx.server.url, `/v1/connect?token=${token}`);
        clients.push(client);
        await client.until('"connected"');
        return client;
      };
      const ping = (ref: number) => StalledClient.frame(JSON.stringify({ type: 'ping', ref }));
      // a publish of 80 KB (two operations), sent as its first half and, later, the rest
      const publish = (ref: number) => {
        const data = 'x'.repeat(40_000);
        const frame = StalledClient.frame(
          JSON.stringify({ type: 'publish', channel: 'session:s', ref, ops: [{ data }, { data }] }),
        );
        return { first: frame.subarray(0, 40_000), rest: frame.subarray(40_000) };
      };
      const held: { client: StalledClient; rest: Buffer }[] = [];
      for (let i = 0; i < BODIES_PER_IDENTITY; i++) {
        const client = await open(slow);
        const { first, rest } = publish(100 + i);
        client.write(Buffer.concat([ping(1), first]));
        await client.until(reply('pong', 1)); // read: it holds a slot from here
        held.push({ client, rest });
      }
      await new Promise((r) => setTimeout(r, 200)); // the halves that follow their pongs read too
      // first in line, and gone before a slot frees: it must not take one
      const leaver = await open(slow);
      leaver.write(Buffer.concat([ping(1), publish(150).first]));
      await leaver.until(reply('pong', 1));
      await new Promise((r) => setTimeout(r, 100));
      const ninth = await open(slow);
      const late = publish(200);
      ninth.write(Buffer.concat([ping(1), late.first]));
      await ninth.until(reply('pong', 1));
      ninth.write(Buffer.concat([late.rest, ping(2)]));

      const whole = await open(slow);
      whole.write(ping(3));
      whole.sendText(
        JSON.stringify({ type: 'publish', channel: 'session:s', ref: 4, ops: [{ data: 'hi' }] }),
      );
      await whole.until(reply('ack', 4));
      assert.match(whole.received, reply('pong', 3));

      const another = await open(other);
      const theirs = publish(5);
      another.write(theirs.first);
      await new Promise((r) => setTimeout(r, 100));
      another.write(Buffer.concat([theirs.rest, ping(6)]));
      await another.until(reply('pong', 6));
      await another.until(reply('ack', 5), 5_000); // another token's part-sent message is not held

      assert.doesNotMatch(ninth.received, reply('ack', 200), 'the ninth waits, unread');
      assert.doesNotMatch(ninth.received, reply('pong', 2));
      const waited = metricValue(await metricsText(fx.server), 'mooring_inbound_bodies_waited_total');
      assert.equal(waited, 2, 'the waits are counted');

      leaver.destroy();
      await new Promise((r) => setTimeout(r, 100));
      held.shift()!.client.destroy();
      await ninth.until(reply('pong', 2)); // read once a part-sent message went
      await ninth.until(reply('ack', 200), 5_000);
      for (const { client, rest } of held) client.write(rest);
      await Promise.all(held.map(({ client }, i) => client.until(reply('ack', 101 + i))));
      const again = publish(300);
      ninth.write(again.first);
      await new Promise((r) => setTimeout(r, 100));
      ninth.write(Buffer.concat([again.rest, ping(7)]));
      await ninth.until(reply('pong', 7)); // the slots are given back as their messages end
      await ninth.until(reply('ack', 300), 5_000);
    } finally {
      for (const client of clients) client.destroy();
      await fx.close();
    }
  });
});

describe('maxInboundBytesRate on a server', () => {
  it('a token identity over it is read more slowly, nothing lost; an API key sending the same is not counted', async () => {
    // 256 KiB/s after a burst of 512 KiB; 100 publishes of 12 KB (1.2 MB) sent at once: the last
    // 700 KB take about 2.7 s to be read (less what the node reads in the socket reads that take
    // it over, before it pauses). Only a lower bound on the time is asserted (a loaded machine
    // makes it longer, never shorter).
    const fx = await startFixture('memory', {
      limits: {
        maxInboundBytesRate: 256 * 1024,
        maxFrameSize: 16 * 1024,
        maxPublishBytesRate: 16 * 1024 * 1024,
      },
    });
    try {
      const throttled = async () =>
        metricValue(await metricsText(fx.server), 'mooring_inbound_throttled_total') ?? 0;
      const data = 'x'.repeat(12_000);
      const send = async (c: RawClient, channel: string) => {
        const started = performance.now();
        const answers = await Promise.all(
          Array.from({ length: 100 }, (_, i) =>
            c.request({ type: 'publish', channel, ops: [{ id: `p${i}`, data }] }),
          ),
        );
        return { types: answers.map((a: ServerFrame) => a.type), ms: performance.now() - started };
      };
      const key = await RawClient.connect(fx.server.url, { clientId: 'backend' });
      assert.deepEqual((await send(key, 'session:key')).types, Array(100).fill('ack'));
      assert.equal(await throttled(), 0, 'an API key is not counted');
      const { token } = await createToken(TEST_KEY, { clientId: 'browser' });
      const browser = await RawClient.connect(fx.server.url, { token });
      const sent = await send(browser, 'session:token');
      assert.deepEqual(sent.types, Array(100).fill('ack'), 'every publish stored');
      assert.ok((await throttled()) > 0, 'the token identity went over its budget');
      assert.ok(
        sent.ms >= 1_000,
        `read at its budget, not at once: all answered in ${sent.ms.toFixed(0)} ms`,
      );
      const identities = async () => metricValue(await metricsText(fx.server), 'mooring_inbound_identities');
      assert.equal(await identities(), 1, 'the token identity, not the key');
      await Promise.all([key.close(), browser.close()]);
      const gone = async () => (await identities()) === 0;
      for (let i = 0; i < 100 && !(await gone()); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await identities(), 0, 'its budget is dropped with its last connection');
    } finally {
      await fx.close();
    }
  });
});

/** 256 KiB/s after a burst of 512 KiB, and publishes allowed far beyond it. */
const SLOW_INBOUND: Partial<ServerOptions> = {
  limits: { maxInboundBytesRate: 256 * 1024, maxFrameSize: 16 * 1024, maxPublishBytesRate: 16 * 1024 * 1024 },
};

/** Two nodes on a redis-server of the test's own, both with SLOW_INBOUND: `holder` and `other`. */
async function twoSlowNodes(t: TestContext): Promise<{ holder: MooringServer; other: MooringServer }> {
  const redis = await startRedis();
  t.after(() => redis.close());
  const options = { ...SLOW_INBOUND, host: '127.0.0.1', port: 0, keys: [TEST_KEY] };
  const holder = await startServer({ ...options, store: { kind: 'redis', url: redis.url } });
  t.after(() => holder.close());
  const other = await startServer({ ...options, store: { kind: 'redis', url: redis.url } });
  t.after(() => other.close());
  return { holder, other };
}

const throttledOn = async (server: MooringServer) =>
  metricValue(await metricsText(server), 'mooring_inbound_throttled_total') ?? 0;

/**
 * Sends 25 POSTs of four 12 KB publishes each (1.2 MB), one after the other, to `to` (the node of
 * `client`'s connection or another one); resolves with how long until every publish was acked.
 */
async function postPublishes(client: SseClient | PollClient, to: string, channel: string) {
  const data = 'x'.repeat(12_000);
  const started = performance.now();
  for (let post = 0; post < 25; post++) {
    const frames = Array.from({ length: 4 }, (_, i) => ({
      type: 'publish',
      channel,
      ref: post * 4 + i + 1,
      ops: [{ id: `p${post}-${i}`, data }],
    }));
    const res = await fetch(`${to}/v1/connections/${client.connectionId}/frames`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mooring-connection-key': client.connectionKey },
      body: JSON.stringify(frames),
    });
    assert.equal(res.status, 202, await res.text());
  }
  const answers: ServerFrame[] = [];
  for (let ref = 1; ref <= 100; ref++)
    answers.push(await client.next((f) => 'ref' in f && f.ref === ref, 30_000));
  return { types: answers.map((a) => a.type), ms: performance.now() - started };
}

describe('maxInboundBytesRate over HTTP', () => {
  const skip = redisSkipReason();
  // These have servers (and a Redis) of their own and assert only lower bounds on a pace, and most
  // of each is waiting for a budget to refill: they run at once. The last test, whose second POST
  // must come while a budget is still spent, runs after them, alone as before.
  describe('each identity read at its pace', { concurrency: true }, () => {
    for (const transport of ['sse', 'longpoll'] as const) {
      it(`a token identity's upstream POSTs are read at its budget on ${transport}, nothing lost; an API key's are not counted`, async () => {
        const fx = await startFixture('memory', SLOW_INBOUND);
        const open = (query: string) =>
          transport === 'sse'
            ? SseClient.connect(fx.server.url, query)
            : PollClient.connect(fx.server.url, query);
        const clients: (SseClient | PollClient)[] = [];
        try {
          const key = await open(`key=${TEST_KEY}`);
          clients.push(key);
          assert.deepEqual(
            (await postPublishes(key, fx.server.url, 'session:key')).types,
            Array(100).fill('ack'),
          );
          assert.equal(await throttledOn(fx.server), 0, 'an API key is not counted');
          const { token } = await createToken(TEST_KEY, { clientId: 'browser' });
          const browser = await open(`token=${token}`);
          clients.push(browser);
          const sent = await postPublishes(browser, fx.server.url, 'session:token');
          assert.deepEqual(sent.types, Array(100).fill('ack'), 'every publish stored');
          assert.ok((await throttledOn(fx.server)) > 0, 'the token identity went over its budget');
          // about 2.7 s at the budget; only a lower bound is asserted (a loaded machine makes it longer)
          assert.ok(
            sent.ms >= 1_000,
            `read at its budget, not at once: all acked in ${sent.ms.toFixed(0)} ms`,
          );
        } finally {
          for (const c of clients) c instanceof SseClient ? c.close() : c.stop();
          await fx.close();
        }
      });
    }

    it("a token identity's REST publishes and Durable Streams writes draw on the same budget, nothing lost; an API key's are not counted", async () => {
      const fx = await startFixture('memory', SLOW_INBOUND);
      try {
        const { token } = await createToken(TEST_KEY, {
          clientId: 'writer',
          capability: {
            'session:*': ['publish'],
            'stream:*': ['stream-create', 'stream-append', 'stream-read'],
          },
        });
        const data = 'x'.repeat(12_000);
        /** 25 bodies of 48 KB (1.2 MB), one after the other: how long until all were answered. */
        const send = async (
          path: string,
          credential: string,
          body: (i: number) => string,
          ok: number,
          type = 'application/json',
        ) => {
          const started = performance.now();
          for (let i = 0; i < 25; i++) {
            const res = await fetch(`${fx.server.url}${path}`, {
              method: 'POST',
              headers: { authorization: `Bearer ${credential}`, 'content-type': type },
              body: body(i),
            });
            assert.equal(res.status, ok, await res.text());
          }
          return performance.now() - started;
        };
        const ops = (i: number) =>
          JSON.stringify({ ops: Array.from({ length: 4 }, (_, j) => ({ id: `p${i}-${j}`, data })) });
        await send('/v1/channels/session:key/messages', TEST_KEY, ops, 200);
        assert.equal(await throttledOn(fx.server), 0, 'an API key is not counted');

        const rest = await send('/v1/channels/session:token/messages', token, ops, 200);
        assert.ok((await throttledOn(fx.server)) > 0, 'the token identity went over its budget');
        assert.ok(rest >= 1_000, `REST publishes read at the budget, not at once: ${rest.toFixed(0)} ms`);
        const info = await fetch(`${fx.server.url}/v1/channels/session:token`, {
          headers: { authorization: `Bearer ${TEST_KEY}` },
        });
        assert.equal(((await info.json()) as { messages: number }).messages, 100, 'every publish stored');

        const created = await fetch(`${fx.server.url}/v1/stream/stream:paced`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
        });
        assert.equal(created.status, 201);
        const throttled = await throttledOn(fx.server);
        const streamed = await send(
          '/v1/stream/stream:paced',
          token,
          () => data.repeat(4),
          204,
          'text/plain',
        );
        assert.ok((await throttledOn(fx.server)) > throttled, 'its stream writes went over the budget too');
        assert.ok(streamed >= 1_000, `stream writes read at the budget: ${streamed.toFixed(0)} ms`);
        let length = 0;
        for (let offset = '-1', upToDate = false; !upToDate; ) {
          const read = await fetch(`${fx.server.url}/v1/stream/stream:paced?offset=${offset}`, {
            headers: { authorization: `Bearer ${token}` },
          });
          length += (await read.text()).length;
          offset = read.headers.get('stream-next-offset') ?? '';
          upToDate = read.headers.get('stream-up-to-date') === 'true';
        }
        assert.equal(length, 25 * 48_000, 'every write stored');
      } finally {
        await fx.close();
      }
    });

    it(
      "a POST forwarded from another node is read at its identity's pace where it lands (an API key's is not counted there), and waits on the holder for its bytes",
      { skip },
      async (t) => {
        const { holder, other } = await twoSlowNodes(t);
        const backend = await SseClient.connect(holder.url, `key=${TEST_KEY}`);
        t.after(() => backend.close());
        const byKey = await postPublishes(backend, other.url, 'session:key');
        assert.deepEqual(byKey.types, Array(100).fill('ack'));
        assert.equal(await throttledOn(other), 0, 'an API key is not counted where its POSTs land');
        assert.equal(await throttledOn(holder), 0, 'nor on the holder');
        const { token } = await createToken(TEST_KEY, { clientId: 'browser' });
        const browser = await SseClient.connect(holder.url, `token=${token}`);
        t.after(() => browser.close());
        const sent = await postPublishes(browser, other.url, 'session:forwarded');
        assert.deepEqual(sent.types, Array(100).fill('ack'), 'every publish stored');
        assert.ok((await throttledOn(holder)) > 0, 'the holder counted the forwarded bytes');
        assert.ok(
          (await throttledOn(other)) > 0,
          'the node the POSTs landed on read them at the pace of the identity the route names',
        );
        assert.ok(sent.ms >= 1_000, `read at its budget, not at once: all acked in ${sent.ms.toFixed(0)} ms`);
      },
    );
  });

  it(
    "a POST forwarded from another node draws there on the budget its identity's own connections on that node use",
    { skip },
    async (t) => {
      const { holder, other } = await twoSlowNodes(t);
      const { token } = await createToken(TEST_KEY, { clientId: 'browser' });
      const here = await SseClient.connect(other.url, `token=${token}`);
      t.after(() => here.close());
      const there = await SseClient.connect(holder.url, `token=${token}`);
      t.after(() => there.close());
      const data = 'x'.repeat(12_000);
      const frames = (count: number, channel: string) =>
        Array.from({ length: count }, (_, i) => ({
          type: 'publish',
          channel,
          ops: [{ id: `${channel}-${i}`, data }],
        }));
      const postFrames = async (client: SseClient, body: unknown[]) => {
        const res = await fetch(`${other.url}/v1/connections/${client.connectionId}/frames`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-mooring-connection-key': client.connectionKey },
          body: JSON.stringify(body),
        });
        assert.equal(res.status, 202, await res.text());
      };
      // the identity's connection on `other` spends its burst (512 KiB) there, and 700 KB more
      for (let post = 0; post < 25; post++) await postFrames(here, frames(4, `session:here${post}`));
      const spent = await throttledOn(other);
      assert.ok(spent > 0, 'the local POSTs went over the budget');
      // 480 KB through `other` for its connection on `holder`: under a fresh burst, over a spent one
      await postFrames(there, frames(40, 'session:there'));
      assert.ok(
        (await throttledOn(other)) > spent,
        "the forwarded POST was read on a budget of its own, not on its identity's",
      );
    },
  );
});
