/**
 * HTTP streaming (SSE) and long-polling (PROTOCOL.md §12): the same frames and semantics as
 * WebSocket, through one connection core; and both still work where a proxy refuses WebSocket.
 */
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { type IncomingMessage, request } from 'node:http';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerFrame } from '@mooring/protocol';
import { FaultProxy } from '@mooring/testkit';
import WebSocket from 'ws';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { RolledUpPage } from '../src/store/store.ts';
import { rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { PollClient, SseClient } from './support/http-client.ts';
import { fold, RawClient } from './support/raw-client.ts';

describe('HTTP streaming (SSE)', () => {
  it('attaches, publishes, receives live and acks on the stream, with SSE comment heartbeats', async () => {
    const fx = await startFixture('memory', { heartbeatInterval: 100 });
    try {
      const sse = await SseClient.connect(fx.server.url, 'key=test:secret&clientId=browser');
      const attached = await sse.request({ type: 'attach', channel: 'session:sse' });
      assert.equal(attached.type, 'attached');
      const ws = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      await ws.publish('session:sse', [{ id: 'w1', data: 'from ws' }]);
      const ack = await sse.request({
        type: 'publish',
        channel: 'session:sse',
        ops: [{ id: 's1', data: 'from sse' }],
      });
      assert.equal(ack.type, 'ack');
      await sse.next(() => sse.messages('session:sse').length === 2);
      assert.deepEqual(
        sse.messages('session:sse').map((m) => [m.data, m.clientId]),
        [
          ['from ws', 'agent'],
          ['from sse', 'browser'],
        ],
      );
      await sse.next((f) => f.type === 'heartbeat');
      await waitUntil(() => sse.comments > 0, 'an SSE comment heartbeat');
      const bad = await sse.request({ type: 'attach', channel: 'bad channel' });
      assert.ok(bad.type === 'error' && bad.error.code === 'invalid_channel');
      sse.close();
      await ws.close();
    } finally {
      await fx.close();
    }
  });

  it("a close frame ends the connection's presence and identity at once, as a WebSocket close does", async () => {
    // the stream's end alone reads as a lost connection: the close frame is what tells them apart
    const fx = await startFixture('memory', { presenceGrace: 60_000 });
    try {
      const watcher = await RawClient.connect(fx.server.url, { clientId: 'watcher' });
      await watcher.attach('room');
      const sse = await SseClient.connect(fx.server.url, 'key=test:secret&clientId=browser');
      const connected = sse.frames.find((f) => f.type === 'connected');
      assert.equal((await sse.request({ type: 'presence', channel: 'room', action: 'enter' })).type, 'ack');
      await watcher.next((f) => f.type === 'presence' && f.action === 'enter');
      await sse.post({ type: 'close' });
      const left = await watcher.next((f) => f.type === 'presence' && f.action === 'leave', 5_000);
      assert.ok(
        left.type === 'presence' && left.action === 'leave' && left.member.clientId === 'browser',
        'left at once, not after 60 s',
      );
      const again = await RawClient.connect(fx.server.url, {
        clientId: 'browser',
        recover: connected?.type === 'connected' ? connected.connectionKey : '',
      });
      assert.equal(again.connected.resumed, false, 'nothing left to recover');
      await Promise.all([watcher.close(), again.close()]);
    } finally {
      await fx.close();
    }
  });

  it('drops a stream whose client sends nothing upstream for two heartbeat rounds; one that answers stays', async () => {
    // A client gone behind a middlebox that keeps its stream open (a silently dropped flow) is seen
    // only by its silence: without this its connection, and the leases it holds, would last for ever.
    const fx = await startFixture('memory', { heartbeatInterval: 50 });
    try {
      const silent = await SseClient.connect(fx.server.url, 'key=test:secret&clientId=gone');
      const answering = await SseClient.connect(fx.server.url, 'key=test:secret&clientId=here');
      let answered = 0;
      // every heartbeat answered with a ping, as @mooring/client does on SSE
      for (let round = 0; round < 8; round++) {
        await answering.nextHeartbeat();
        assert.equal((await answering.post({ type: 'ping' })).status, 202);
        answered++;
      }
      assert.equal(answered, 8);
      assert.ok(silent.hasEnded, 'eight heartbeat rounds later the silent stream was ended by the server');
      const pong = await answering.request({ type: 'ping' });
      assert.equal(pong.type, 'pong', 'the answering client is still connected');
      answering.close();
    } finally {
      await fx.close();
    }
  });

  it('an upstream POST whose body takes longer than two heartbeat rounds to arrive keeps its stream', async () => {
    const fx = await startFixture('memory', { heartbeatInterval: 50 });
    try {
      const sse = await SseClient.connect(fx.server.url, 'key=test:secret&clientId=slow');
      const body = `[${' '.repeat(1000)}{"type":"ping","ref":1}]`; // JSON padded with whitespace
      const req = request(`${fx.server.url}/v1/connections/${sse.connectionId}/frames`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mooring-connection-key': sse.connectionKey },
      });
      const answered = new Promise<number>((resolve) =>
        req.on('response', (res) => resolve(res.statusCode ?? 0)),
      );
      // the body in ten pieces, each after the next heartbeat: about ten rounds with no whole frame
      for (let i = 0; i < 10; i++) {
        req.write(body.slice((i * body.length) / 10, ((i + 1) * body.length) / 10));
        await sse.nextHeartbeat();
        assert.equal(sse.hasEnded, false, `stream ended after piece ${i}`);
      }
      req.end();
      assert.equal(await answered, 202);
      assert.equal(sse.hasEnded, false, 'the stream is still open');
      const pong = await sse.next((f) => f.type === 'pong');
      assert.equal(pong.type, 'pong');
      sse.close();
    } finally {
      await fx.close();
    }
  });

  it('a lease held over SSE runs out when the flow is silently dropped (the client gone behind it)', async () => {
    // The soak's stuck runs: an agent on SSE, its flow blackholed, then the agent killed. The proxy
    // keeps the server's side of the stream open, so only the heartbeat rule ends the connection,
    // and then its lease runs out: the run ends `abandoned` and another agent can take it up.
    const fx = await startFixture('memory', { heartbeatInterval: 50 });
    const proxy = await FaultProxy.start({ port: fx.server.port });
    try {
      const channel = 'session:sse-lease';
      const watcher = await RawClient.connect(fx.server.url);
      await watcher.attach(channel);
      const agent = await SseClient.connect(
        `http://127.0.0.1:${proxy.port}`,
        'key=test:secret&clientId=agent',
      );
      const ack = await agent.request({
        type: 'publish',
        channel,
        ops: [{ id: 'run', data: '', headers: { status: 'streaming' }, lease: 100 }],
      });
      assert.equal(ack.type, 'ack');
      proxy.blackhole();
      agent.close(); // the agent dies; nothing of it reaches the server
      await watcher.next(
        (f) => f.type === 'messages' && f.messages.some((m) => m.headers?.status === 'abandoned'),
      );
      await watcher.close();
    } finally {
      await proxy.close();
      await fx.close();
    }
  });

  it('resumes after the stream breaks: same connection identity, exactly the missed messages', async () => {
    const fx = await startFixture('sqlite');
    try {
      const channel = 'session:sse-resume';
      const first = await SseClient.connect(fx.server.url, 'key=test:secret&clientId=u');
      await first.request({ type: 'attach', channel });
      const pub = await RawClient.connect(fx.server.url);
      await pub.publish(channel, [{ id: 'a', data: 'one' }]);
      await first.next(() => first.messages(channel).length === 1);
      const position = first.messages(channel)[0]!.version;
      first.close();
      await first.ended;
      const created = await pub.publish(channel, [{ id: 'b', data: 'two' }]);
      for (let i = 0; i < 5; i++)
        await pub.publish(channel, [
          { action: 'append', serial: created.results[0]!.serial, id: `b${i}`, data: '!' },
        ]);
      const second = await SseClient.connect(
        fx.server.url,
        `key=test:secret&clientId=u&recover=${encodeURIComponent(first.connectionKey)}`,
      );
      const connected = second.frames[0]!;
      assert.ok(connected.type === 'connected' && connected.resumed);
      assert.equal(second.connectionId, first.connectionId);
      const attached = await second.request({ type: 'attach', channel, from: position });
      assert.ok(attached.type === 'attached' && attached.resumed);
      const state = fold([...first.messages(channel), ...second.messages(channel)]);
      assert.deepEqual(
        [...state.values()].map((m) => m.data),
        ['one', 'two!!!!!'],
      );
      second.close();
      await pub.close();
    } finally {
      await fx.close();
    }
  });
});

/** A memory store that counts the catch-up pages it reads (`readSince`). */
class CountedPages extends MemoryStore {
  pages = 0;
  override async readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage> {
    this.pages++;
    return super.readSince(channel, after, limit, maxBytes);
  }
}

/**
 * An SSE stream read with node:http (no timers of its own: fetch's, or `SseClient`'s 5 ms waits,
 * would count with the server's), which stops reading after the `connected` frame until `read()`.
 */
function stallingSse(url: string, query: string) {
  const frames: ServerFrame[] = [];
  const listeners = new Set<() => void>();
  let buffer = '';
  let response: IncomingMessage | undefined;
  const req = request(`${url}/v1/connect/sse?${query}`, (res) => {
    response = res;
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffer += chunk;
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (event.startsWith('data: ')) frames.push(JSON.parse(event.slice(6)) as ServerFrame);
      }
      if (frames.some((f) => f.type === 'connected') && !reading) res.pause();
      for (const listener of listeners) listener();
    });
  });
  req.on('error', () => {});
  req.end();
  let reading = false;
  /**
   * Resolves once `test` holds of the frames received, checked at each read (no polling); rejects
   * after `timeoutMs` (its timer made when asked, not while the reader stalls).
   */
  const until = (test: () => boolean, what: string, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`never received ${what}: ${frames.length} frames`));
      }, timeoutMs);
      const check = () => {
        if (!test()) return;
        listeners.delete(check);
        clearTimeout(timer);
        resolve();
      };
      listeners.add(check);
      check();
    });
  return {
    frames,
    until,
    read(): void {
      reading = true;
      response?.resume();
    },
    destroy: () => req.destroy(),
  };
}

describe('HTTP streaming (SSE) with a reader that stops reading', () => {
  it('its catch-up waits for the stream to drain, with no timer running meanwhile, and goes on once it reads', async (t) => {
    // 12 MB: more than the kernel buffers of a loopback connection take, plus the catch-up's queue
    const store = new CountedPages();
    const fx = await startFixture('memory', { store });
    t.after(() => fx.close());
    const channel = 'session:sse-drain';
    const backend = await RawClient.connect(fx.server.url);
    t.after(() => backend.close());
    const data = 'd'.repeat(60_000);
    const total = 200;
    for (let i = 0; i < total; i += 20)
      await Promise.all(
        Array.from({ length: 20 }, (_, k) => backend.publish(channel, [{ id: `m${i + k}`, data }])),
      );
    const attach = encodeURIComponent(JSON.stringify([{ ref: 1, channel, start: true }]));
    const sse = stallingSse(fx.server.url, `key=${TEST_KEY}&attach=${attach}`);
    t.after(() => sse.destroy());
    await sse.until(() => sse.frames.some((f) => f.type === 'connected'), 'connected');
    // the reader stopped: wait until the catch-up reads no more pages (one second unchanged)
    for (let still = 0, last = -1; still < 10; ) {
      await sleep(100);
      still = store.pages === last ? still + 1 : 0;
      last = store.pages;
    }
    const delivered = sse.frames.flatMap((f) => (f.type === 'messages' ? f.messages : [])).length;
    t.diagnostic(`stalled after ${store.pages} catch-up pages, ${delivered} messages read`);
    assert.ok(store.pages > 0 && delivered < total, 'the catch-up is waiting for its reader');

    // While it waits, nothing polls: count the timers and immediates made in the process for a while
    // (a catch-up looking at the queue every 5 ms makes 200 a second)
    let timers = 0;
    const hook = createHook({
      init(_id, type) {
        if (type === 'Timeout' || type === 'Immediate') timers++;
      },
    }).enable();
    const pagesBefore = store.pages;
    await sleep(1_000);
    hook.disable();
    t.diagnostic(`timers made while the reader stalled: ${timers}`);
    assert.ok(timers <= 10, `${timers} timers made in a second while the catch-up waited`);
    assert.equal(store.pages, pagesBefore, 'no page read while the queue is full');

    // the reader reads again: the stream drains, and the catch-up goes on to its end
    sse.read();
    await sse.until(() => sse.frames.some((f) => f.type === 'attached'), 'the end of the catch-up');
    const ids = sse.frames.flatMap((f) => (f.type === 'messages' ? f.messages.map((m) => m.id) : []));
    assert.deepEqual(
      ids,
      Array.from({ length: total }, (_, i) => `m${i}`),
      'every message once, in order',
    );
  });
});

describe('long-polling', () => {
  it('delivers connected, acks and live messages through polls', async () => {
    const fx = await startFixture('memory');
    try {
      const poll = await PollClient.connect(fx.server.url, 'key=test:secret&clientId=lp');
      assert.ok(poll.connectionId);
      const attached = await poll.request({ type: 'attach', channel: 'session:lp' });
      assert.equal(attached.type, 'attached');
      const pub = await RawClient.connect(fx.server.url);
      for (let i = 0; i < 20; i++) await pub.publish('session:lp', [{ id: `m${i}`, data: i }]);
      const ack = await poll.request({
        type: 'publish',
        channel: 'session:lp',
        ops: [{ data: 'from poll' }],
      });
      assert.equal(ack.type, 'ack');
      await poll.next(() => poll.messages('session:lp').length === 21);
      assert.deepEqual(
        poll.messages('session:lp').map((m) => m.data),
        [...Array.from({ length: 20 }, (_, i) => i), 'from poll'],
      );
      // each path takes its own method
      const base = `${fx.server.url}/v1/connections/${poll.connectionId}`;
      const headers = { 'x-mooring-connection-key': poll.connectionKey };
      for (const [method, path] of [
        ['POST', 'poll'],
        ['GET', 'frames'],
        ['PUT', 'frames'],
      ] as const) {
        const res = await fetch(`${base}/${path}`, { method, headers });
        assert.equal(res.status, 405, `${method} ${path}`);
        const { error } = (await res.json()) as { error: { message: string } };
        assert.equal(error.message, path === 'poll' ? 'use GET to poll' : 'use POST to send frames');
      }
      poll.stop();
      await pub.close();
    } finally {
      await fx.close();
    }
  });

  it('a catch-up larger than the queue goes on at each poll: its waits end when a poll takes the queue', async () => {
    // a catch-up leaves at most maxSendBuffer / 2 (128 KiB) queued, then waits for a poll to take it
    const fx = await startFixture('memory', { limits: { maxSendBuffer: 256 * 1024 } });
    try {
      const channel = 'session:lp-catchup';
      const pub = await RawClient.connect(fx.server.url);
      const big = 'x'.repeat(40_000);
      for (let i = 0; i < 25; i++) await pub.publish(channel, [{ id: `m${i}`, data: `${i}${big}` }]);
      const poll = await PollClient.connect(fx.server.url, 'key=test:secret&clientId=lp');
      const attached = await poll.request({ type: 'attach', channel, start: true });
      assert.equal(attached.type, 'attached', JSON.stringify(attached));
      assert.deepEqual(
        poll.messages(channel).map((m) => Number.parseInt(String(m.data), 10)),
        Array.from({ length: 25 }, (_, i) => i),
      );
      poll.stop();
      await pub.close();
    } finally {
      await fx.close();
    }
  });

  it('answers requests for unknown connections or with a wrong key with unknown_connection', async () => {
    const fx = await startFixture('memory');
    try {
      const poll = await PollClient.connect(fx.server.url);
      const wrongKey = await fetch(`${fx.server.url}/v1/connections/${poll.connectionId}/frames`, {
        method: 'POST',
        headers: { 'x-mooring-connection-key': `${poll.connectionId}.nope` },
        body: '{"type":"ping"}',
      });
      assert.equal(wrongKey.status, 404);
      assert.equal(((await wrongKey.json()) as { error: { code: string } }).error.code, 'unknown_connection');
      const unknown = await fetch(`${fx.server.url}/v1/connections/c_nothing/poll`);
      assert.equal(unknown.status, 404);
      const noAuth = await fetch(`${fx.server.url}/v1/connect/sse`);
      assert.equal(noAuth.status, 401);
      poll.stop();
      const gone = await rest(fx.server, '/health');
      assert.equal(gone.status, 200);
    } finally {
      await fx.close();
    }
  });
});

describe('ending long-polling connections', () => {
  it('answers the pending poll on a close frame, and delivers a server disconnect to the next poll', async () => {
    const fx = await startFixture('memory');
    try {
      const poll = await PollClient.connect(fx.server.url);
      await poll.request({ type: 'ping' });
      const pollsBefore = poll.polls;
      await poll.post({ type: 'close' });
      await waitUntil(() => poll.polls > pollsBefore, 'the pending poll was answered');
      await waitUntil(() => fx.server.connections === 0, 'the connection ended');

      const { createToken } = await import('../src/index.ts');
      // Long enough to connect on a loaded machine; the disconnect comes when it runs out.
      const { token } = await createToken(TEST_KEY, { clientId: 'short', ttl: 4_000 });
      const expiring = await PollClient.connect(fx.server.url, `token=${encodeURIComponent(token)}`);
      const bye = await expiring.next((f) => f.type === 'disconnect', 20_000);
      assert.ok(bye.type === 'disconnect' && bye.reason === 'token_expired');
      expiring.stop();
    } finally {
      await fx.close();
    }
  });
});

describe('ending long-polling connections (frames after a close)', () => {
  it('handles none of the frames a POST carries after a close frame', async () => {
    const fx = await startFixture('memory');
    try {
      const poll = await PollClient.connect(fx.server.url);
      const before = { type: 'publish', ref: 1, channel: 'x', ops: [{ id: 'before', data: 1 }] };
      const after = { type: 'publish', ref: 2, channel: 'x', ops: [{ id: 'after', data: 2 }] };
      assert.equal((await poll.post([before, { type: 'close' }, after])).status, 202);
      await waitUntil(() => fx.server.connections === 0, 'the connection ended');
      const history = await rest(fx.server, '/v1/channels/x/messages');
      assert.deepEqual(
        (history.body.items as Array<{ id: string }>).map((m) => m.id),
        ['before'],
        'nothing after the close is published',
      );
      poll.stop();
    } finally {
      await fx.close();
    }
  });
});

describe('a long-polling client between polls', () => {
  it('stays connected through a heartbeat round in which it has no poll waiting', async () => {
    // its grace is a heartbeat and 10 s; a pause over two rounds would be a stalled queue instead
    const fx = await startFixture('memory', { heartbeatInterval: 1_000 });
    try {
      const { headers, poll } = await rawPoll(fx.server.url);
      for (let i = 0; i < 2; i++) {
        // 1.5 s without a poll waiting: at least one round, at most two
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        const answer = await fetch(poll, { headers });
        assert.equal(answer.status, 200, `poll ${i}`);
        await answer.json();
      }
      assert.equal(fx.server.connections, 1, 'still connected');
    } finally {
      await fx.close();
    }
  });
});

describe('a long-polling connection that never polls', () => {
  it('ends after firstPollTimeout; one that polled and has no poll waiting at that moment does not', async () => {
    const fx = await startFixture('memory', { heartbeatInterval: 5_000, firstPollTimeout: 300 });
    try {
      const idle = await rawPoll(fx.server.url);
      const active = await rawPoll(fx.server.url);
      // two polls, both answered (the second by the pong of a ping), so none waits at 300 ms
      const first = fetch(active.poll, { headers: active.headers });
      const second = fetch(active.poll, { headers: active.headers });
      assert.deepEqual(await (await first).json(), []);
      const ping = { ...active.headers, 'content-type': 'application/json' };
      await fetch(active.frames, { method: 'POST', headers: ping, body: '{"type":"ping"}' });
      assert.equal(((await (await second).json()) as ServerFrame[])[0]?.type, 'pong');
      await new Promise((resolve) => setTimeout(resolve, 600));
      assert.equal((await fetch(idle.poll, { headers: idle.headers })).status, 404, 'never polled: ended');
      const later = fetch(active.poll, { headers: active.headers });
      await fetch(active.frames, { method: 'POST', headers: ping, body: '{"type":"ping"}' });
      assert.equal((await later).status, 200, 'polled: still there');
      // ended by the server, not closed by its client: its identity is kept for a recovery
      const back = await RawClient.connect(fx.server.url, { recover: idle.key });
      assert.equal(back.connected.resumed, true, 'the connection that never polled is recovered');
      assert.equal(back.connected.connectionId, idle.id);
      await back.close();
    } finally {
      await fx.close();
    }
  });
});

describe('a long-polling connection that ended between polls', () => {
  it('keeps its last frames for one more poll; a request of the wrong method does not use them up', async () => {
    const fx = await startFixture('memory');
    try {
      const { createToken } = await import('../src/index.ts');
      const { token } = await createToken(TEST_KEY, { clientId: 'short', ttl: 2_000 });
      const { headers, poll } = await rawPoll(fx.server.url, `token=${encodeURIComponent(token)}`);
      // no poll is pending when the token runs out: the disconnect waits for the next one
      await waitUntil(() => fx.server.connections === 0, 'the token expired');
      const wrong = await fetch(poll, { method: 'POST', headers, body: '[]' });
      assert.equal(wrong.status, 405);
      const last = await fetch(poll, { headers });
      assert.equal(last.status, 200);
      const frames = (await last.json()) as ServerFrame[];
      assert.deepEqual(
        frames.map((f) => (f.type === 'disconnect' ? `${f.type} ${f.reason}` : f.type)),
        ['disconnect token_expired'],
      );
      const after = await fetch(poll, { headers });
      assert.equal(after.status, 404, 'kept for one poll only');
    } finally {
      await fx.close();
    }
  });
});

describe('through a proxy that refuses WebSocket upgrades', () => {
  it('WebSocket is refused with 502 while SSE and long-polling work through the same proxy', async () => {
    const fx = await startFixture('memory');
    const proxy = await FaultProxy.start({ port: fx.server.port });
    try {
      proxy.refuseUpgrade(502);
      const refused = await new Promise<number>((resolve) => {
        const ws = new WebSocket(proxy.url('/v1/connect?key=test:secret', 'ws'));
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => resolve(101));
        ws.on('error', () => {});
      });
      assert.equal(refused, 502);
      const base = proxy.url('').replace(/\/$/, '');
      const sse = await SseClient.connect(base);
      assert.equal((await sse.request({ type: 'ping' })).type, 'pong');
      const poll = await PollClient.connect(base);
      assert.equal((await poll.request({ type: 'ping' })).type, 'pong');
      sse.close();
      poll.stop();
    } finally {
      await proxy.close();
      await fx.close();
    }
  });
});

async function waitUntil(test: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A long-polling connection opened by hand: its id, key, header and the URLs of its two paths. */
async function rawPoll(url: string, query = `key=${TEST_KEY}`) {
  const open = await fetch(`${url}/v1/connect/poll?${query}`);
  const [connected] = (await open.json()) as ServerFrame[];
  if (connected?.type !== 'connected') throw new Error(`not connected: ${JSON.stringify(connected)}`);
  const base = `${url}/v1/connections/${connected.connectionId}`;
  return {
    id: connected.connectionId,
    key: connected.connectionKey,
    headers: { 'x-mooring-connection-key': connected.connectionKey },
    poll: `${base}/poll`,
    frames: `${base}/frames`,
  };
}
