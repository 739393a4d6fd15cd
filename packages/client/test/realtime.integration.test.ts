// The client against a real server on port 0, with faults from a real TCP proxy (ARCHITECTURE.md §14: tests with
// real parts). Recovery tests follow the shape: disconnect, publish while away, reconnect, assert
// exactly the missed messages, once each (ARCHITECTURE.md §4). Reset, blackhole and unacknowledged-resend
// recovery run in transport-conformance.test.ts on every transport, WebSocket included.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClientFrame, Message } from '@mooring/protocol';
import WebSocket from 'ws';
import type { MooringError } from '../src/errors.ts';
import { type WebSocketConstructor, WebSocketTransport } from '../src/websocket-transport.ts';
import { client, connected, KEY, proxyTo, realServer, waitFor } from './helpers/real-server.ts';

const texts = (messages: Message[]) => messages.map((m) => m.data);

describe('client ⇄ server', () => {
  it('publishes and subscribes, with the stamped clientId and a serial per message', async (t) => {
    const server = await realServer(t);
    const reader = client(t, server.url);
    const writer = client(t, server.url, { clientId: 'agent-1' });
    const got: Message[] = [];
    const attached = await reader.channels.get('session:a').subscribe((m) => got.push(m));
    assert.equal(attached.resumed, false);
    const channel = writer.channels.get('session:a');
    const serial = await channel.publish('text', 'Hello');
    await channel.append(serial, ', world');
    await waitFor(() => got.length === 2);
    assert.equal(got[0]?.serial, serial);
    assert.equal(got[0]?.clientId, 'agent-1');
    assert.deepEqual(
      got.map((m) => [m.action, m.data]),
      [
        ['create', 'Hello'],
        ['append', ', world'],
      ],
    );
    assert.equal(reader.channels.get('session:a').position, got[1]?.version);
  });

  it('works with a browser-style WebSocket (the global one: no ws-specific events)', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, { WebSocket: globalThis.WebSocket });
    const got: Message[] = [];
    await c.channels.get('session:g').subscribe((m) => got.push(m));
    await c.channels.get('session:g').publish('t', 'via the global WebSocket');
    await waitFor(() => got.length === 1);
    assert.deepEqual(texts(got), ['via the global WebSocket']);
  });

  it('fails on bad credentials with unauthorized, without retrying', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, { key: 'test:wrong' });
    await waitFor(() => c.connection.state === 'failed');
    assert.equal(c.connection.errorReason?.code, 'unauthorized');
    assert.equal(c.connection.errorReason?.status, 401);
  });

  it('keeps retrying through a proxy that refuses the upgrade, and connects once it stops (WebSocket only)', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuseUpgrade(502);
    const c = client(t, proxy.url('/'), { transports: ['websocket'] }); // no fallback: see fallback.test.ts
    await waitFor(() => proxy.stats.refused >= 2, { message: 'the client did not retry' });
    assert.notEqual(c.connection.state, 'failed');
    proxy.pass();
    await connected(c);
  });

  it('a fresh client continues from a recovery key: same connection identity, only the missed messages', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    const first = client(t, proxy.url('/'));
    const writer = client(t, server.url);
    const seen: Message[] = [];
    await first.channels.get('session:k').subscribe((m) => seen.push(m));
    await writer.channels.get('session:k').publish('t', 'before');
    await waitFor(() => seen.length === 1);
    const key = first.recoveryKey();
    const connectionId = first.connection.id;
    // The page goes away without a goodbye.
    proxy.refuse();
    await proxy.reset();
    await waitFor(() => first.connection.state !== 'connected');
    first.close();
    await writer.channels.get('session:k').publish('t', 'after');

    const second = client(t, server.url, { recover: key });
    const got: Message[] = [];
    const attached = await second.channels.get('session:k').subscribe((m) => got.push(m));
    assert.equal(second.connection.details?.resumed, true);
    assert.equal(second.connection.id, connectionId);
    assert.equal(attached.resumed, true);
    await waitFor(() => got.length === 1);
    assert.deepEqual(texts(got), ['after']);
  });

  for (const transport of ['websocket', 'sse', 'longpoll'] as const)
    it(`two clients started from one recovery key do not take the connection from each other: the replaced one continues as a new connection (${transport})`, async (t) => {
      const server = await realServer(t);
      const writer = client(t, server.url);
      const first = client(t, server.url, { clientId: 'tab', transports: [transport] });
      const firstGot: Message[] = [];
      await first.channels.get(`session:twin-${transport}`).subscribe((m) => firstGot.push(m));
      const key = first.recoveryKey();
      const firstId = first.connection.id;
      let connects = 0;
      first.connection.on('connected', () => connects++);
      // a second tab starts from the same key while the first still lives
      const second = client(t, server.url, { clientId: 'tab', recover: key, transports: [transport] });
      const secondGot: Message[] = [];
      await second.channels.get(`session:twin-${transport}`).subscribe((m) => secondGot.push(m));
      second.connection.on('connected', () => connects++);
      assert.equal(second.connection.id, firstId, 'the second took the connection over');
      await waitFor(() => first.connection.state === 'connected' && first.connection.id !== firstId, {
        message: 'the replaced client did not continue as a new connection',
      });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      assert.ok(
        connects <= 1,
        `the two clients took the connection from each other ${connects} times in 1 s`,
      );
      assert.equal(second.connection.id, firstId);
      // both still follow the channel
      await writer.channels.get(`session:twin-${transport}`).publish('t', 'to both');
      await waitFor(() => texts(firstGot).includes('to both') && texts(secondGot).includes('to both'));
    });

  it('raises continuityLost when the server comes back with a new log (memory store restarted)', async (t) => {
    const first = await realServer(t);
    const port = first.port;
    const c = client(t, first.url);
    const channel = c.channels.get('session:e');
    const lost: string[] = [];
    channel.on('continuityLost', (e) => lost.push(e.reason));
    const got: Message[] = [];
    await channel.subscribe((m) => got.push(m));
    await channel.publish('t', 'old log');
    await waitFor(() => got.length === 1);
    const oldPosition = channel.position;

    await first.close();
    await waitFor(() => c.connection.state !== 'connected');
    const second = await realServer(t, { port }); // same address, empty memory store
    const writer = client(t, second.url);
    await writer.channels.get('session:e').publish('t', 'new log');
    await waitFor(() => lost.length === 1, { message: 'continuityLost was not raised' });
    assert.equal(lost[0], 'epoch_changed');
    assert.notEqual(channel.position.split('.')[0], oldPosition.split('.')[0]);
    await channel.publish('t', 'live again');
    await waitFor(() => texts(got).includes('live again'));
    // 'new log' arrives live when the reader re-attached before it was written, and is part of
    // what the application reloads otherwise: either way nothing is delivered twice
    const expected = texts(got).includes('new log')
      ? ['old log', 'new log', 'live again']
      : ['old log', 'live again'];
    assert.deepEqual(texts(got), expected);
  });

  it('a page reloaded with its recovery key gets its channel back with the connection request: no attach frame, the gap once', async (t) => {
    const server = await realServer(t);
    const writer = client(t, server.url);
    const before = client(t, server.url);
    const seen: Message[] = [];
    await before.channels.get('session:reload').subscribe((m) => seen.push(m));
    await writer.channels.get('session:reload').publish('t', 'before');
    await waitFor(() => seen.length === 1);
    const key = before.recoveryKey();
    before.close();
    await writer.channels.get('session:reload').publish('t', 'during');
    const frames: ClientFrame[] = [];
    const recording = () => {
      const transport = new WebSocketTransport(WebSocket as unknown as WebSocketConstructor);
      const send = transport.send.bind(transport);
      transport.send = (frame) => {
        frames.push(frame);
        send(frame);
      };
      return transport;
    };
    const after = client(t, server.url, { recover: key, transport: recording });
    const got: Message[] = [];
    const attached = await after.channels.get('session:reload').subscribe((m) => got.push(m));
    assert.equal(attached.resumed, true);
    assert.deepEqual(texts(got), ['during']);
    assert.deepEqual(
      frames.map((f) => f.type),
      [],
      'the attach went with the connection request',
    );
    await writer.channels.get('session:reload').publish('t', 'live');
    await waitFor(() => got.length === 2);
    assert.deepEqual(texts(got), ['during', 'live']);
  });

  it('REST publish and paginated history', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, { autoConnect: false });
    const results = await c.rest.publish('session:h', [
      { name: 'a', data: '1' },
      { name: 'b', data: '2' },
    ]);
    await c.rest.publish('session:h', { name: 'c', data: '3' });
    assert.equal(results.length, 2);
    const page = await c.rest.history('session:h', { limit: 2, direction: 'forwards' });
    assert.deepEqual(texts(page.items), ['1', '2']);
    assert.equal(page.hasNext, true);
    const next = await page.next();
    assert.deepEqual(texts(next?.items ?? []), ['3']);
    await assert.rejects(
      c.rest.publish('bad name', { data: 'x' }),
      (e: MooringError) => e.code === 'invalid_channel' && e.status === 400,
    );
    assert.equal(c.connection.state, 'initialized', 'REST does not open a connection');
  });

  it('REST with a key publishes as the client’s clientId, like its realtime connection', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, { autoConnect: false, clientId: 'agent-7' });
    await c.rest.publish('session:rest-id', { name: 'a', data: '1' });
    const page = await c.rest.history('session:rest-id', { limit: 1 });
    assert.equal(page.items[0]?.clientId, 'agent-7');
  });

  it('closes gracefully', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url);
    await connected(c);
    c.close();
    await waitFor(() => c.connection.state === 'closed');
    await waitFor(() => server.connections === 0);
    assert.ok(KEY);
  });
});
