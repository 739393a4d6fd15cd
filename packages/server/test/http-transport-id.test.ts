/**
 * Each HTTP transport of a connection has its own id (`transport=`, PROTOCOL.md §12). A connection
 * recovered on a new transport (same connection id, same key) acts on no late poll or POST of the
 * transport before it — one the network held back: a POST is refused with `unknown_connection`, a
 * poll is answered with `disconnect { reason: "replaced" }` and nothing else. Otherwise that poll
 * would take the frames meant for the new transport and carry them to a client that stopped
 * listening, and they would be lost. On one node, and forwarded between two nodes on Redis.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import WebSocket from 'ws';
import { type MooringServer, type ServerOptions, startServer } from '../src/index.ts';
import { TEST_KEY } from './support/fixture.ts';

interface Held {
  connectionId: string;
  connectionKey: string;
}

async function server(t: TestContext, options: Partial<ServerOptions> = {}): Promise<MooringServer> {
  const s = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], ...options });
  t.after(() => s.close());
  return s;
}

async function open(on: MooringServer, transport: string, recover?: string): Promise<Held> {
  const query = `key=${TEST_KEY}&transport=${transport}${recover ? `&recover=${recover}` : ''}`;
  const res = await fetch(`${on.url}/v1/connect/poll?${query}`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200, await res.clone().text());
  const [connected] = (await res.json()) as ServerFrame[];
  assert.ok(connected?.type === 'connected', JSON.stringify(connected));
  return connected;
}

function request(on: MooringServer, c: Held, what: 'poll' | 'frames', transport: string, body?: unknown) {
  return fetch(`${on.url}/v1/connections/${c.connectionId}/${what}?transport=${transport}`, {
    method: body === undefined ? 'GET' : 'POST',
    signal: AbortSignal.timeout(10_000),
    headers: { 'content-type': 'application/json', 'x-mooring-connection-key': c.connectionKey },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

/** The connection recovered on a WebSocket (an upgrade, or a reconnect): its frames as they come. */
function recoverOnWebSocket(on: MooringServer, connectionKey: string) {
  const url = new URL('/v1/connect', on.url.replace(/^http/, 'ws'));
  url.searchParams.set('key', TEST_KEY);
  url.searchParams.set('recover', connectionKey);
  const socket = new WebSocket(url);
  const frames: ServerFrame[] = [];
  socket.on('message', (data) => frames.push(JSON.parse(String(data)) as ServerFrame));
  const connected = waitFor(() => frames.find((f) => f.type === 'connected'));
  return { socket, frames, connected };
}

async function scenario(t: TestContext, first: MooringServer, other: MooringServer): Promise<void> {
  const a = await open(first, 'first');
  // the client loses its network, and opens a new transport with its recovery key
  const b = await open(first, 'second', a.connectionKey);
  assert.equal(b.connectionId, a.connectionId, 'the same connection, recovered');
  const attached = await request(other, b, 'frames', 'second', [{ type: 'attach', channel: 'session:late' }]);
  assert.equal(attached.status, 202, await attached.clone().text());

  // the first transport's poll arrives late (it was held by the network): told it was replaced, it
  // takes nothing (a client that did not take the connection over itself goes on as a new one)
  const late = await request(other, a, 'poll', 'first');
  assert.equal(late.status, 200, await late.clone().text());
  assert.deepEqual(await late.json(), [{ type: 'disconnect', reason: 'replaced', reconnect: true }]);
  const latePost = await request(other, a, 'frames', 'first', [{ type: 'detach', channel: 'session:late' }]);
  assert.equal(latePost.status, 404, 'a late POST of the earlier transport is refused too');

  // the frames meant for the new transport are still there for its own poll
  const frames: ServerFrame[] = [];
  while (!frames.some((f) => f.type === 'attached')) {
    const res = await request(other, b, 'poll', 'second');
    assert.equal(res.status, 200, await res.clone().text());
    frames.push(...((await res.json()) as ServerFrame[]));
  }
  assert.ok(frames.some((f) => f.type === 'attached' && f.channel === 'session:late'));
  t.diagnostic(`the new transport got ${frames.map((f) => f.type).join(', ')}`);
}

/** The new transport polls before the old one's late poll: the old transport's last frames are not its. */
async function newTransportPollsFirst(on: MooringServer): Promise<void> {
  const a = await open(on, 'first');
  const b = await open(on, 'second', a.connectionKey);
  const attached = await request(on, b, 'frames', 'second', [{ type: 'attach', channel: 'session:first' }]);
  assert.equal(attached.status, 202, await attached.clone().text());
  const frames: ServerFrame[] = [];
  while (!frames.some((f) => f.type === 'attached')) {
    const res = await request(on, b, 'poll', 'second');
    assert.equal(res.status, 200, await res.clone().text());
    frames.push(...((await res.json()) as ServerFrame[]));
  }
  assert.deepEqual(
    frames.filter((f) => f.type === 'disconnect'),
    [],
    'the new transport got the disconnect meant for the one it replaced',
  );
  const late = await request(on, a, 'poll', 'first');
  assert.deepEqual(await late.json(), [{ type: 'disconnect', reason: 'replaced', reconnect: true }]);
}

describe('HTTP transport ids', () => {
  it('a late poll or POST of an earlier transport of a recovered connection is not acted on; the new one gets its frames', async (t) => {
    const s = await server(t);
    await scenario(t, s, s);
  });

  it('the new transport does not get the frames of the transport it replaced, when it polls first', async (t) => {
    await newTransportPollsFirst(await server(t));
  });

  it('a late POST of an earlier transport is refused when the connection was recovered on a WebSocket', async (t) => {
    const s = await server(t);
    const a = await open(s, 'first');
    await request(s, a, 'frames', 'first', [{ type: 'attach', ref: 1, channel: 'session:ws' }]);
    // the client moves to a WebSocket with its recovery key (an upgrade, or a reconnect)
    const url = new URL('/v1/connect', s.url.replace(/^http/, 'ws'));
    url.searchParams.set('key', TEST_KEY);
    url.searchParams.set('recover', a.connectionKey);
    const ws = new WebSocket(url);
    t.after(() => ws.terminate());
    const frames: ServerFrame[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(String(data)) as ServerFrame));
    const connected = await new Promise<ServerFrame>((resolve) =>
      ws.once('message', (d) => resolve(JSON.parse(String(d)))),
    );
    assert.ok(connected.type === 'connected' && connected.connectionId === a.connectionId, 'recovered');
    ws.send(JSON.stringify({ type: 'attach', ref: 2, channel: 'session:ws' }));
    await waitFor(() => frames.some((f) => f.type === 'attached' && f.ref === 2));
    // the earlier transport's detach, held back by the network, arrives now: refused, not acted on
    const latePost = await request(s, a, 'frames', 'first', [
      { type: 'detach', ref: 3, channel: 'session:ws' },
    ]);
    assert.equal(latePost.status, 404, await latePost.clone().text());
    ws.send(JSON.stringify({ type: 'ping', ref: 4 }));
    await waitFor(() => frames.some((f) => f.type === 'pong'));
    assert.ok(!frames.some((f) => f.type === 'detached'), 'the WebSocket attachment is still there');
  });

  it('a POST of an earlier transport whose body was still arriving when the connection moved to a WebSocket is refused', async (t) => {
    const s = await server(t);
    const a = await open(s, 'first');
    await request(s, a, 'frames', 'first', [{ type: 'attach', ref: 1, channel: 'session:slow' }]);
    // a POST of the first transport is under way: its head has arrived (checked: the transport is
    // current), its body not yet
    const post = httpRequest(`${s.url}/v1/connections/${a.connectionId}/frames?transport=first`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-mooring-connection-key': a.connectionKey,
        expect: '100-continue',
      },
    });
    const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
      post.on('response', (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      post.on('error', reject);
    });
    // `100 Continue` is written by the server just before it hands the request to its handler
    const continued = new Promise((resolve) => post.once('continue', resolve));
    post.flushHeaders();
    await continued;
    post.write('[{"type":"detach","ref":3,');
    // meanwhile the client moves to a WebSocket and attaches there
    const ws = recoverOnWebSocket(s, a.connectionKey);
    t.after(() => ws.socket.terminate());
    await ws.connected;
    ws.socket.send(JSON.stringify({ type: 'attach', ref: 2, channel: 'session:slow' }));
    await waitFor(() => ws.frames.some((f) => f.type === 'attached' && f.ref === 2));
    // the rest of the body arrives: refused, its detach not acted on
    post.end('"channel":"session:slow"}]');
    const reply = await answered;
    assert.equal(reply.status, 404, reply.body);
    assert.equal((JSON.parse(reply.body) as { error: { code: string } }).error.code, 'unknown_connection');
    ws.socket.send(JSON.stringify({ type: 'ping', ref: 4 }));
    await waitFor(() => ws.frames.some((f) => f.type === 'pong'));
    assert.ok(!ws.frames.some((f) => f.type === 'detached'), 'the WebSocket attachment is still there');
  });

  it('a transport id that is not 1–64 URL-safe characters is a bad_request', async (t) => {
    const s = await server(t);
    const res = await fetch(`${s.url}/v1/connect/poll?key=${TEST_KEY}&transport=${'x'.repeat(65)}`);
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'bad_request');
  });

  const skip = redisSkipReason();
  it('the same when the requests land on another node and are forwarded', { skip }, async (t) => {
    const redis = await startRedis();
    t.after(() => redis.close());
    const options = { store: { kind: 'redis' as const, url: redis.url } };
    const holder = await server(t, options);
    const other = await server(t, options);
    await scenario(t, holder, other);
  });
});
