// The client's core promises on every transport (ARCHITECTURE.md §14: "the same behaviour on every transport"):
// the same tests, run with each transport forced, against a real server through a real fault proxy
// (PROTOCOL.md §5, §6, §12). Shape of the recovery tests: disconnect, publish while away, reconnect,
// assert exactly the missed messages, once each.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import WebSocket from 'ws';
import type { MooringError } from '../src/errors.ts';
import type { TransportKind } from '../src/transport.ts';
import { client, connected, proxyTo, realServer, waitFor } from './helpers/real-server.ts';

const texts = (messages: Message[]) => messages.map((m) => m.data);
const KINDS: TransportKind[] = ['websocket', 'sse', 'longpoll'];

for (const kind of KINDS) {
  describe(`on ${kind} (forced)`, () => {
    const on = { transports: [kind] };

    it('publishes and subscribes, with the stamped clientId and a serial per message', async (t) => {
      const server = await realServer(t);
      const reader = client(t, server.url, on);
      const writer = client(t, server.url, { ...on, clientId: 'agent-1' });
      const got: Message[] = [];
      const attached = await reader.channels.get('session:a').subscribe((m) => got.push(m));
      assert.equal(attached.resumed, false);
      assert.equal(reader.connection.transport, kind);
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
      assert.equal(writer.connection.transport, kind);
    });

    it('asks for compact messages frames unless told not to, and reads the same messages either way', async (t) => {
      const server = await realServer(t);
      /** The connection requests a client made, and how many compact frames reached it over WebSocket. */
      const spy = () => {
        const seen = { requests: [] as string[], compact: 0 };
        const fetchSpy = (url: string, init: RequestInit) => {
          seen.requests.push(url);
          return fetch(url, init);
        };
        class WebSocketSpy extends WebSocket {
          constructor(url: string, protocols?: string | string[]) {
            super(url, protocols);
            seen.requests.push(url);
            this.on('message', (data) => {
              if (String(data).startsWith('{"type":"m",')) seen.compact++;
            });
          }
        }
        return { seen, options: { fetch: fetchSpy, WebSocket: WebSocketSpy as never } };
      };
      const asked = spy();
      const declined = spy();
      const compact = client(t, server.url, { ...on, ...asked.options });
      const plain = client(t, server.url, { ...on, ...declined.options, compactFrames: false });
      const got = { compact: [] as Message[], plain: [] as Message[] };
      await compact.channels.get('session:compact').subscribe((m) => got.compact.push(m));
      await plain.channels.get('session:compact').subscribe((m) => got.plain.push(m));
      const writer = client(t, server.url, { clientId: 'agent-1' }).channels.get('session:compact');
      const serial = await writer.publish('text', 'Hel', { headers: { state: 'streaming' } });
      await writer.append(serial, 'lo');
      await waitFor(() => got.compact.length === 2 && got.plain.length === 2);
      assert.deepEqual(got.compact, got.plain);
      assert.deepEqual(
        got.compact.map((m) => [m.action, m.data, m.clientId]),
        [
          ['create', 'Hel', 'agent-1'],
          ['append', 'lo', 'agent-1'],
        ],
      );
      // the opening requests (/v1/connect, /v1/connect/sse, /v1/connect/poll), not a connection's polls
      const connects = (requests: string[]) =>
        requests.filter((u) => /^\/v1\/connect(\/|$)/.test(new URL(u).pathname));
      assert.ok(connects(asked.seen.requests).length > 0);
      for (const url of connects(asked.seen.requests))
        assert.equal(new URL(url).searchParams.get('frames'), 'compact');
      for (const url of connects(declined.seen.requests))
        assert.equal(new URL(url).searchParams.get('frames'), null);
      if (kind === 'websocket') {
        assert.ok(asked.seen.compact >= 2, `${asked.seen.compact} compact frames`);
        assert.equal(declined.seen.compact, 0);
      }
    });

    it('pings the server: the round trip crosses the network both ways', async (t) => {
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      const reader = client(t, proxy.url('/'), { ...on, realtimeRequestTimeout: 1000 });
      await connected(reader);
      proxy.delay(40); // every chunk, each way: a round trip through the server takes at least 80 ms
      const rtt = await reader.connection.ping();
      assert.ok(rtt >= 75, `a ping answered through a 40 ms delay each way took ${rtt} ms`);
      proxy.blackhole(); // no answer from the server, no pong: a ping is never answered locally
      await assert.rejects(reader.connection.ping(), (e: MooringError) =>
        ['timeout', 'disconnected'].includes(e.code),
      );
    });

    it('keeps the order of a burst of publishes made without waiting (one upstream request at a time)', async (t) => {
      const server = await realServer(t);
      const reader = client(t, server.url, on);
      const writer = client(t, server.url, on);
      const got: Message[] = [];
      await reader.channels.get('session:o').subscribe((m) => got.push(m));
      await connected(writer);
      const channel = writer.channels.get('session:o');
      const words = Array.from({ length: 60 }, (_, i) => `w${i}`);
      const serials = await Promise.all(words.map((w) => channel.publish('t', w)));
      assert.deepEqual([...serials].sort(), serials, 'stored in the order published');
      await waitFor(() => got.length === words.length);
      assert.deepEqual(texts(got), words);
      assert.equal(reader.channels.get('session:o').gapsRepaired, 0, 'the live stream had no hole');
    });

    it('resumes after a reset: the missed messages arrive once each, in order, same identity', async (t) => {
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      const reader = client(t, proxy.url('/'), on);
      const writer = client(t, server.url);
      const got: Message[] = [];
      await reader.channels.get('session:r').subscribe((m) => got.push(m));
      const id = reader.connection.id;
      const ch = writer.channels.get('session:r');
      await ch.publish('t', 'one');
      await ch.publish('t', 'two');
      await waitFor(() => got.length === 2);

      proxy.refuse();
      await proxy.reset();
      await waitFor(() => reader.connection.state !== 'connected');
      await ch.publish('t', 'three');
      await ch.publish('t', 'four');
      proxy.pass();
      await waitFor(() => got.length >= 4, { message: 'missed messages never arrived' });
      await ch.publish('t', 'five');
      await waitFor(() => got.length >= 5);
      assert.deepEqual(texts(got), ['one', 'two', 'three', 'four', 'five']);
      assert.equal(new Set(got.map((m) => m.version)).size, 5);
      assert.equal(reader.connection.id, id, 'the connection identity was recovered');
      assert.equal(reader.connection.details?.resumed, true);
      assert.equal(reader.connection.transport, kind);
    });

    it('detects a silently dead connection (blackhole) by its heartbeats and resumes', async (t) => {
      const server = await realServer(t, { heartbeatInterval: 100 });
      const proxy = await proxyTo(t, server);
      const reader = client(t, proxy.url('/'), { ...on, idleGrace: 200, realtimeRequestTimeout: 2_000 });
      const writer = client(t, server.url);
      const got: Message[] = [];
      const reasons: string[] = [];
      reader.connection.on('disconnected', (c) => reasons.push(c.reason?.code ?? ''));
      await reader.channels.get('session:b').subscribe((m) => got.push(m));
      proxy.blackhole();
      await writer.channels.get('session:b').publish('t', 'while dead');
      proxy.pass(); // new connections work again; the blackholed ones stay dead
      await waitFor(() => got.length === 1, { message: 'the dead connection was never replaced' });
      assert.equal(reasons[0], 'timeout');
      assert.deepEqual(texts(got), ['while dead']);
      await writer.channels.get('session:b').publish('t', 'live again');
      await waitFor(() => got.length === 2);
      assert.deepEqual(texts(got), ['while dead', 'live again']);
    });

    it('resends an unacknowledged publish with the same id: one stored message', async (t) => {
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      const writer = client(t, proxy.url('/'), on);
      const inspector = client(t, server.url, { autoConnect: false });
      await connected(writer);
      proxy.buffer({ bytes: 1 << 20, responses: false }); // the ack will be held in the proxy
      const published = writer.channels.get('session:w').publish('t', 'exactly once');
      await waitFor(
        async () => (await inspector.rest.history('session:w').catch(() => undefined))?.items.length,
      );
      proxy.refuse();
      await proxy.reset(); // the held ack dies with the connection
      proxy.pass();
      const serial = await published;
      const history = await inspector.rest.history('session:w');
      assert.equal(history.items.length, 1);
      assert.equal(history.items[0]?.serial, serial);
    });

    it('comes back after a server restart (shutting_down) and raises continuityLost for a lost log', async (t) => {
      const first = await realServer(t);
      const port = first.port;
      const c = client(t, first.url, on);
      const channel = c.channels.get('session:e');
      const lost: string[] = [];
      const reasons: string[] = [];
      channel.on('continuityLost', (e) => lost.push(e.reason));
      c.connection.on('disconnected', (e) => reasons.push(e.reason?.code ?? ''));
      const got: Message[] = [];
      await channel.subscribe((m) => got.push(m));
      await channel.publish('t', 'old log');
      await waitFor(() => got.length === 1);

      await first.close();
      await waitFor(() => c.connection.state !== 'connected');
      if (kind === 'longpoll') {
        // Between two polls there is no request to answer: the server closes the idle keep-alive
        // socket, so the client may see a failed poll instead of the `disconnect` frame.
        assert.ok(['shutting_down', 'disconnected'].includes(reasons[0] ?? ''), reasons[0]);
      } else {
        assert.equal(reasons[0], 'shutting_down');
      }
      const second = await realServer(t, { port }); // same address, empty memory store
      await client(t, second.url).channels.get('session:e').publish('t', 'new log');
      await waitFor(() => lost.length === 1, { message: 'continuityLost was not raised' });
      assert.equal(lost[0], 'epoch_changed');
      await channel.publish('t', 'live again');
      await waitFor(() => texts(got).includes('live again'));
      // 'new log' arrives live when the client re-attached (continuity lost) before it was published,
      // and not at all when it re-attached after: both are right; nothing twice, in order
      const seen = texts(got);
      assert.deepEqual(
        seen.filter((t) => t !== 'new log'),
        ['old log', 'live again'],
      );
      assert.ok(seen.filter((t) => t === 'new log').length <= 1);
      assert.equal(c.connection.transport, kind);
    });

    it('fails on bad credentials with unauthorized, without retrying', async (t) => {
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      const c = client(t, proxy.url('/'), { ...on, key: 'test:wrong' });
      await waitFor(() => c.connection.state === 'failed');
      assert.equal(c.connection.errorReason?.code, 'unauthorized');
      assert.equal(c.connection.errorReason?.status, 401);
      const accepted = proxy.stats.accepted;
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(proxy.stats.accepted, accepted, 'no retry after a permanent error');
    });

    it('closes gracefully: the server discards the connection', async (t) => {
      const server = await realServer(t);
      const c = client(t, server.url, on);
      await connected(c);
      assert.equal(server.connections, 1);
      c.close();
      await waitFor(() => c.connection.state === 'closed');
      await waitFor(() => server.connections === 0);
      await assert.rejects(
        c.channels.get('session:x').publish('t', 'after close'),
        (e: MooringError) => e.code === 'connection_closed',
      );
    });
  });
}
