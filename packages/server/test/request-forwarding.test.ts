/**
 * Requests for an HTTP connection that land on a node not holding it (PROTOCOL.md §12 "No sticky
 * sessions", §15): two or three nodes on one real redis-server, requests sent to a chosen node.
 * Forwarded POSTs and polls are answered as the holder answers them; the route exists before the
 * client learns its connection id; a wrong connection key is refused where the request lands; a
 * holder that is gone gives `unknown_connection` at once, one that does not answer gives a retryable
 * `store_unavailable` after the forward timeout; a forwarded poll whose client leaves is cancelled on
 * the holder, so the frames it would have carried are not lost.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { FaultProxy, type RedisServer, redisSkipReason, startRedis } from '@mooring/testkit';
import type { MooringServer, ServerOptions } from '../src/index.ts';
import { TEST_KEY } from './support/fixture.ts';
import { SseClient } from './support/http-client.ts';
import { redisNode } from './support/redis-fixtures.ts';

const skip = redisSkipReason();

async function redisFor(t: TestContext): Promise<RedisServer> {
  const redis = await startRedis();
  t.after(() => redis.close());
  return redis;
}

async function node(t: TestContext, url: string, extra: Partial<ServerOptions> = {}): Promise<MooringServer> {
  const server = await redisNode(url, extra);
  t.after(() => server.close());
  return server;
}

interface Held {
  connectionId: string;
  connectionKey: string;
}

function post(on: MooringServer, c: Held, frames: unknown): Promise<Response> {
  return fetch(`${on.url}/v1/connections/${c.connectionId}/frames`, {
    method: 'POST',
    signal: AbortSignal.timeout(10_000),
    headers: { 'content-type': 'application/json', 'x-mooring-connection-key': c.connectionKey },
    body: JSON.stringify(frames),
  });
}

function poll(on: MooringServer, c: Held, signal?: AbortSignal): Promise<Response> {
  return fetch(`${on.url}/v1/connections/${c.connectionId}/poll`, {
    headers: { 'x-mooring-connection-key': c.connectionKey },
    ...(signal ? { signal } : {}),
  });
}

/** Opens a long-poll connection on `on`: its `connected` frame. */
async function openPoll(on: MooringServer): Promise<Held> {
  const res = await fetch(`${on.url}/v1/connect/poll?key=${TEST_KEY}`);
  assert.equal(res.status, 200);
  const [connected] = (await res.json()) as ServerFrame[];
  assert.ok(connected?.type === 'connected');
  return connected;
}

async function errorOf(res: Response): Promise<{ code: string; retryable: boolean }> {
  return ((await res.json()) as { error: { code: string; retryable: boolean } }).error;
}

if (skip) {
  describe('request forwarding', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('request forwarding between nodes', () => {
    it('the route exists before the client learns its id: a first request elsewhere finds the holder at once', async (t) => {
      const redis = await redisFor(t);
      // the holder's Redis is slow, so its route is written well after the connection is open
      const slow = await FaultProxy.start({ port: redis.port });
      t.after(() => slow.close());
      const a = await node(t, `redis://127.0.0.1:${slow.port}`);
      const b = await node(t, redis.url);
      slow.delay(150);
      const sse = await SseClient.connect(a.url);
      t.after(() => sse.close());
      const res = await post(b, sse, { type: 'ping', ref: 1 });
      assert.equal(res.status, 202, await res.clone().text());
      await sse.next((f) => f.type === 'pong' && f.ref === 1);
      const held = await openPoll(a);
      const first = poll(b, held);
      assert.equal((await post(b, held, { type: 'ping', ref: 2 })).status, 202);
      const answer = await first;
      assert.equal(answer.status, 200, await answer.clone().text());
      assert.ok(((await answer.json()) as ServerFrame[]).some((f) => f.type === 'pong' && f.ref === 2));
    });

    it('a holder that is gone answers unknown_connection at once; one that does not answer, store_unavailable after the timeout', async (t) => {
      const redis = await redisFor(t);
      const toA = await FaultProxy.start({ port: redis.port });
      t.after(() => toA.close());
      const a = await node(t, `redis://127.0.0.1:${toA.port}`);
      const b = await node(t, redis.url, { forwardTimeout: 300 });
      const c = await node(t, redis.url);
      const onA = await SseClient.connect(a.url);
      t.after(() => onA.close());
      const onC = await SseClient.connect(c.url);
      t.after(() => onC.close());
      assert.equal((await post(b, onA, { type: 'ping', ref: 1 })).status, 202);

      // A's Redis connections go silent: the forwarded request is published, never answered
      toA.blackhole();
      const asked = performance.now();
      const silent = await post(b, onA, { type: 'ping', ref: 2 });
      assert.equal(silent.status, 503);
      // B's own timeout (300 ms), not the default's 5 s: a wide margin, it is not a speed test
      assert.ok(performance.now() - asked < 2_500, 'the forwardTimeout given was not used');
      const error = await errorOf(silent);
      assert.equal(error.code, 'store_unavailable');
      assert.equal(error.retryable, true);

      // C stops: nobody listens on its channel any more
      await c.close();
      const gone = await post(b, onC, { type: 'ping', ref: 3 });
      assert.equal(gone.status, 404);
      assert.equal((await errorOf(gone)).code, 'unknown_connection');
    });

    it('a frame nested too deep is answered invalid_frame by the holder, however the POST reached it (not 503 from the forwarding node)', async (t) => {
      const redis = await redisFor(t);
      const a = await node(t, redis.url);
      const b = await node(t, redis.url);
      const c = await openPoll(a);
      // 200,000 levels: JSON.stringify of the frame itself runs out of stack
      const deep = `[{"type":"ping","ref":"deep","x":${'['.repeat(200_000)}${']'.repeat(200_000)}}]`;
      const send = (on: MooringServer) =>
        fetch(`${on.url}/v1/connections/${c.connectionId}/frames`, {
          method: 'POST',
          signal: AbortSignal.timeout(10_000),
          headers: { 'content-type': 'application/json', 'x-mooring-connection-key': c.connectionKey },
          body: deep,
        });
      for (const [via, on] of [
        ['the holder', a],
        ['another node', b],
      ] as const) {
        const res = await send(on);
        assert.equal(res.status, 202, `via ${via}: ${await res.clone().text()}`);
        const answers = (await (await poll(a, c)).json()) as ServerFrame[];
        const refused = answers.find((f) => f.type === 'error');
        assert.ok(refused?.type === 'error', `via ${via}: ${JSON.stringify(answers)}`);
        assert.equal(refused.ref, 'deep');
        assert.equal(refused.error.code, 'invalid_frame');
        assert.match(refused.error.message, /nested deeper than 64 levels/);
      }
    });

    it('a wrong connection key is refused by the node the request lands on, without asking the holder', async (t) => {
      const redis = await redisFor(t);
      const toA = await FaultProxy.start({ port: redis.port });
      t.after(() => toA.close());
      const a = await node(t, `redis://127.0.0.1:${toA.port}`);
      const b = await node(t, redis.url, { forwardTimeout: 1_000 });
      const onA = await SseClient.connect(a.url);
      t.after(() => onA.close());
      assert.equal((await post(b, onA, { type: 'ping', ref: 1 })).status, 202);
      // the holder cannot answer any more: only B itself can refuse the request
      toA.blackhole();
      const wrong = await post(
        b,
        { ...onA, connectionKey: `${onA.connectionKey}x` },
        { type: 'ping', ref: 2 },
      );
      assert.equal(wrong.status, 404, 'the request went to the holder with a wrong key');
      assert.equal((await errorOf(wrong)).code, 'unknown_connection');
    });

    it('a connection recovered on another node takes its route along: requests through a third node reach it', async (t) => {
      const redis = await redisFor(t);
      const a = await node(t, redis.url);
      const b = await node(t, redis.url);
      const c = await node(t, redis.url);
      const first = await SseClient.connect(a.url);
      first.close(); // the transport is lost; node A keeps the identity for recovery
      await first.ended;
      const again = await SseClient.connect(b.url, `key=${TEST_KEY}&recover=${first.connectionKey}`);
      t.after(() => again.close());
      assert.equal(again.connectionId, first.connectionId, 'the same connection, now held by node B');
      const res = await post(c, again, { type: 'ping', ref: 1 });
      assert.equal(res.status, 202, await res.clone().text());
      await again.next((f) => f.type === 'pong' && f.ref === 1);
    });

    it('forwarded polls: the answer goes back to the client that asked; a poll whose client left loses no frame', async (t) => {
      const redis = await redisFor(t);
      const a = await node(t, redis.url);
      const b = await node(t, redis.url);
      const held = await openPoll(a);
      // a pending poll on B is answered with what A queues for the connection
      const pending = poll(b, held);
      assert.equal((await post(b, held, { type: 'ping', ref: 1 })).status, 202);
      const answer = await pending;
      assert.equal(answer.status, 200);
      assert.deepEqual(
        ((await answer.json()) as ServerFrame[]).map((f) => [f.type, 'ref' in f ? f.ref : undefined]),
        [['pong', 1]],
      );
      // a poll through B whose client goes away: A must not hand it the next frames. A new poll
      // answers the pending one with [], which shows that the new one is pending on A.
      const waiting = poll(b, held);
      const leaving = new AbortController();
      const left = poll(b, held, leaving.signal).catch(() => undefined);
      assert.deepEqual(await (await waiting).json(), []);
      leaving.abort();
      await left;
      assert.equal((await post(b, held, { type: 'ping', ref: 2 })).status, 202);
      const next = await poll(b, held, AbortSignal.timeout(10_000));
      assert.deepEqual(
        ((await next.json()) as ServerFrame[]).map((f) => [f.type, 'ref' in f ? f.ref : undefined]),
        [['pong', 2]],
      );
    });
  });
}
