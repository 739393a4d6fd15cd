// Automatic transport fallback and upgrade (ARCHITECTURE.md §5 "Transports and fallback", PROTOCOL.md §12)
// against a real server behind a real fault proxy: a proxy that refuses WebSocket upgrades, one that
// also buffers streamed responses, the block lifting while messages flow, and a transport switch in
// the middle of a stream. Every test checks that nothing is lost, nothing arrives twice, and the
// order holds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import type { FaultProxy } from '@mooring/testkit';
import type { ConnectionStateChange, TransportChange } from '../src/connection.ts';
import type { Mooring } from '../src/mooring.ts';
import { MemoryStorage } from './helpers/fake-client.ts';
import { client, connected, proxyTo, realServer, waitFor } from './helpers/real-server.ts';

const texts = (messages: Message[]) => messages.map((m) => m.data);

/**
 * Shorter than the defaults so that a buffered stream gives way quickly, yet long enough that a
 * loaded machine never misses a stream that does work (which would pick long-polling instead).
 */
const QUICK = { webSocketOpenTimeout: 3_000, sseOpenTimeout: 1_500 };

/** Publishes `count` messages one after another (each after the previous ack) until done. */
function stream(writer: Mooring, channel: string, count: number, prefix = 'm'): Promise<string[]> {
  const words = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  return (async () => {
    const ch = writer.channels.get(channel);
    for (const word of words) {
      await ch.publish('t', word);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return words;
  })();
}

/**
 * Publishes a sentinel after everything else and waits for it, then takes it out of `got`: whatever
 * arrived before it is all that was going to be delivered (no fixed "nothing more" window).
 */
async function untilSentinel(writer: Mooring, channel: string, got: Message[]): Promise<void> {
  const serial = await writer.channels.get(channel).publish('t', 'sentinel');
  await waitFor(() => got.some((m) => m.serial === serial), { message: 'the sentinel never arrived' });
  assert.equal(got.at(-1)?.serial, serial, 'nothing after the sentinel');
  got.pop();
}

function watch(c: Mooring) {
  const transports: TransportChange[] = [];
  const states: ConnectionStateChange[] = [];
  c.connection.on('transport', (change) => transports.push(change));
  c.connection.on('statechange', (change) => states.push(change));
  return { transports, states };
}

describe('transport fallback', () => {
  it('a proxy refusing the WebSocket upgrade (502): falls back to SSE, nothing lost', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuseUpgrade(502);
    const reader = client(t, proxy.url('/'), {
      ...QUICK,
      transportStorage: new MemoryStorage(),
      autoConnect: false,
    });
    const seen = watch(reader);
    const writer = client(t, server.url);
    const got: Message[] = [];
    await reader.channels.get('session:f').subscribe((m) => got.push(m));
    assert.equal(reader.connection.transport, 'sse');
    assert.deepEqual(seen.transports, [{ previous: undefined, current: 'sse' }]);
    assert.ok(proxy.stats.refused >= 1, 'the WebSocket upgrade was tried first');
    assert.deepEqual(
      seen.states.map((s) => s.current),
      ['connecting', 'connected'],
      'the fallback happens within one connecting state',
    );

    const words = await stream(writer, 'session:f', 20);
    const own = await reader.channels.get('session:f').publish('t', 'from the reader');
    await waitFor(() => got.length === 21);
    assert.deepEqual(texts(got), [...words, 'from the reader']);
    assert.equal(got[20]?.serial, own);
  });

  it('a proxy refusing with its own 403 page is a blocked transport, not bad credentials', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuseUpgrade(403, 'WebSocket blocked by policy');
    const c = client(t, proxy.url('/'), { ...QUICK, transportStorage: null });
    await connected(c);
    assert.equal(c.connection.transport, 'sse');
  });

  it('bad credentials behind such a proxy fail with unauthorized: the SSE request shows the 401', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuseUpgrade(502);
    const c = client(t, proxy.url('/'), { ...QUICK, key: 'test:wrong', transportStorage: null });
    await waitFor(() => c.connection.state === 'failed');
    assert.equal(c.connection.errorReason?.code, 'unauthorized');
    assert.equal(c.connection.errorReason?.status, 401);
  });

  it('a browser-style WebSocket hides the 401 of a bad key; the SSE fallback shows it: failed', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, {
      ...QUICK,
      key: 'test:wrong',
      WebSocket: globalThis.WebSocket, // no access to the refused handshake's status
      transportStorage: null,
    });
    await waitFor(() => c.connection.state === 'failed');
    assert.equal(c.connection.errorReason?.code, 'unauthorized');
    assert.equal(c.connection.errorReason?.status, 401);
  });

  it('remembers the transport that worked: the next client starts from SSE', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuseUpgrade(502);
    const storage = new MemoryStorage();
    const first = client(t, proxy.url('/'), { ...QUICK, transportStorage: storage });
    await connected(first);
    assert.equal(first.connection.transport, 'sse');
    assert.deepEqual([...storage.items.values()], ['sse']);
    const refused = proxy.stats.refused;

    const second = client(t, proxy.url('/'), { ...QUICK, transportStorage: storage });
    await connected(second);
    assert.equal(second.connection.transport, 'sse');
    assert.equal(proxy.stats.refused, refused, 'no WebSocket attempt before SSE');
  });

  it('a proxy that refuses upgrades and buffers streams: long-polling, nothing lost', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuseUpgrade().buffer();
    const reader = client(t, proxy.url('/'), { ...QUICK, transportStorage: null, autoConnect: false });
    const seen = watch(reader);
    const writer = client(t, server.url);
    const got: Message[] = [];
    await reader.channels.get('session:l').subscribe((m) => got.push(m));
    assert.equal(reader.connection.transport, 'longpoll');
    assert.deepEqual(seen.transports, [{ previous: undefined, current: 'longpoll' }]);
    assert.deepEqual(
      seen.states.map((s) => s.current),
      ['connecting', 'connected'],
    );
    const words = await stream(writer, 'session:l', 20);
    const own = await reader.channels.get('session:l').publish('t', 'from the reader');
    await waitFor(() => got.length === 21);
    assert.deepEqual(texts(got), [...words, 'from the reader']);
    assert.equal(got[20]?.serial, own);
  });
});

describe('transport upgrade', () => {
  const blocks: Array<[string, (proxy: FaultProxy) => void, string]> = [
    ['refused upgrades', (proxy) => proxy.refuseUpgrade(502), 'sse'],
    ['refused upgrades and buffered streams', (proxy) => proxy.refuseUpgrade(502).buffer(), 'longpoll'],
  ];

  for (const [name, block, fallback] of blocks) {
    it(`moves back to WebSocket once ${name} stop, while messages flow: each once, in order`, async (t) => {
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      block(proxy);
      const reader = client(t, proxy.url('/'), { ...QUICK, upgradeInterval: 150, transportStorage: null });
      const writer = client(t, server.url);
      const got: Message[] = [];
      const channel = reader.channels.get('session:u');
      await channel.subscribe((m) => got.push(m));
      assert.equal(reader.connection.transport, fallback);
      const id = reader.connection.id;
      const seen = watch(reader);

      // A stream from another client, and the reader's own publishes, across the switch.
      const incoming = stream(writer, 'session:u', 150, 'w');
      const outgoing = stream(reader, 'session:u', 60, 'r');
      await waitFor(() => got.length >= 20);
      proxy.pass();
      await waitFor(() => reader.connection.transport === 'websocket', {
        message: 'the client never moved back to WebSocket',
      });
      const [words, own] = await Promise.all([incoming, outgoing]);
      // A last message, awaited: a duplicate would have been delivered before it.
      await untilSentinel(writer, 'session:u', got);

      assert.equal(got.length, words.length + own.length, 'nothing twice');
      assert.deepEqual(
        texts(got).filter((x) => String(x).startsWith('w')),
        words,
        'every message of the stream once, in order',
      );
      assert.deepEqual(
        texts(got).filter((x) => String(x).startsWith('r')),
        own,
        'the reader’s own publishes stored once each, in order',
      );
      const versions = got.map((m) => m.version);
      assert.deepEqual([...versions].sort(), versions, 'in log order');
      assert.deepEqual(seen.transports, [{ previous: fallback, current: 'websocket' }]);
      assert.deepEqual(seen.states, [], 'the switch does not disconnect');
      assert.equal(reader.connection.id, id, 'same connection identity');
      const history = await writer.rest.history('session:u', { limit: 1000 });
      assert.equal(
        history.items.length,
        words.length + own.length + 1,
        "the stream, the reader's own, the sentinel",
      );
      // The probes and the old transport are gone from the server: the reader and the writer remain.
      await waitFor(() => server.connections === 2, { message: 'a probe or the old transport lingers' });
    });
  }

  it('a failed upgrade leaves the fallback connection alone', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuseUpgrade(502);
    const reader = client(t, proxy.url('/'), { ...QUICK, upgradeInterval: 50, transportStorage: null });
    await connected(reader);
    const seen = watch(reader);
    const refused = proxy.stats.refused;
    await waitFor(() => proxy.stats.refused >= refused + 3, { message: 'no upgrade was tried' });
    assert.equal(reader.connection.transport, 'sse');
    assert.deepEqual(seen.states, []);
    assert.deepEqual(seen.transports, []);
  });
});

describe('resume across a transport switch', () => {
  it('WebSocket dies mid-stream and upgrades are now refused: resumes on SSE, then back on WebSocket', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    const reader = client(t, proxy.url('/'), { ...QUICK, upgradeInterval: 150, transportStorage: null });
    const writer = client(t, server.url);
    const got: Message[] = [];
    await reader.channels.get('session:s').subscribe((m) => got.push(m));
    assert.equal(reader.connection.transport, 'websocket');
    const id = reader.connection.id;
    const seen = watch(reader);

    const incoming = stream(writer, 'session:s', 200);
    await waitFor(() => got.length >= 30);
    proxy.refuseUpgrade(502);
    await proxy.reset(); // mid-stream; the reconnect cannot use WebSocket
    await waitFor(() => reader.connection.transport === 'sse', { message: 'never resumed on SSE' });
    const onSse = got.length;
    await waitFor(() => got.length >= onSse + 20);
    proxy.pass();
    await waitFor(() => reader.connection.transport === 'websocket', { message: 'never moved back' });
    const words = await incoming;
    await untilSentinel(writer, 'session:s', got);
    assert.deepEqual(texts(got), words, 'every message once, in order');
    assert.deepEqual(
      seen.transports.map((c) => c.current),
      ['sse', 'websocket'],
    );
    assert.equal(reader.connection.id, id, 'same connection identity throughout');
  });
});

describe('heartbeats on HTTP streaming', () => {
  it('keep an SSE connection alive through a short idle limit: no reconnect over many periods', async (t) => {
    // The idle limit of a proxy is emulated by the client's own dead-connection rule, made tight:
    // silence for heartbeatInterval (200) + idleGrace (150) ms would count as dead.
    const server = await realServer(t, { heartbeatInterval: 200 });
    const c = client(t, server.url, { transports: ['sse'], idleGrace: 150 });
    await connected(c);
    const seen = watch(c);
    const got: Message[] = [];
    await c.channels.get('session:h').subscribe((m) => got.push(m));
    await new Promise((resolve) => setTimeout(resolve, 2_000)); // ten heartbeat periods, nothing else
    assert.equal(c.connection.state, 'connected');
    assert.deepEqual(seen.states, [], 'no reconnect');
    await c.channels.get('session:h').publish('t', 'still here');
    await waitFor(() => got.length === 1);
  });
});
