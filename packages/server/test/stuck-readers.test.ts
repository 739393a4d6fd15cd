// Stuck readers (PROTOCOL.md §8, §10): an SSE client that stops reading while attached from the
// start of a large channel is dropped as a slow consumer — by the stall rule (its queue wrote
// nothing for two heartbeat rounds, so the catch-up waiting for room ends), or at once when the live
// deliveries held for it while it catches up pass `maxSendBuffer` bytes. Others are unaffected.
import assert from 'node:assert/strict';
import { type IncomingMessage, request } from 'node:http';
import { describe, it, type TestContext } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { type MooringServer, startServer } from '../src/index.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { metricsText, metricValue, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { StalledClient } from './support/stalled-client.ts';

const MIB = 1024 * 1024;

/**
 * An SSE connection read through a raw socket, so that pausing it really stops reading. Its upstream
 * stays alive (a `ping` POST every 100 ms until the server drops it, as a client whose page still runs
 * but whose stream is stuck): what ends it is the stall rule, not the rule for a client gone silent.
 */
async function stuckSse(server: MooringServer, channel: string, t: TestContext): Promise<void> {
  const req = request(`${server.url}/v1/connect/sse?key=${TEST_KEY}`);
  req.on('error', () => {});
  const res: IncomingMessage = await new Promise((resolve) => {
    req.on('response', resolve);
    req.end();
  });
  const connected = await new Promise<Extract<ServerFrame, { type: 'connected' }>>((resolve) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString();
      const m = /data: (\{"type":"connected".*)\n\n/.exec(text);
      if (m) {
        res.off('data', onData);
        resolve(JSON.parse(m[1]!));
      }
    };
    res.on('data', onData);
  });
  // from here on nothing is read: the server's writes fill the socket buffers and stay queued
  res.pause();
  res.socket.pause();
  const post = await fetch(`${server.url}/v1/connections/${connected.connectionId}/frames`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-mooring-connection-key': connected.connectionKey },
    body: JSON.stringify({ type: 'attach', ref: 1, channel, start: true }),
  });
  assert.equal(post.status, 202);
  const pings = setInterval(() => {
    fetch(`${server.url}/v1/connections/${connected.connectionId}/frames`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mooring-connection-key': connected.connectionKey },
      body: JSON.stringify({ type: 'ping' }),
    }).then(
      (res) => {
        if (res.status !== 202) clearInterval(pings); // dropped
      },
      () => clearInterval(pings),
    );
  }, 100);
  t.after(() => clearInterval(pings));
}

async function fill(server: MooringServer, channel: string, messages: number): Promise<void> {
  for (let i = 0; i < messages; i++)
    await server.store.append(
      channel,
      [{ action: 'create', publisher: '', id: `m${i}`, data: 'x'.repeat(MIB) }],
      {
        maxMessageSize: 4 * MIB,
      },
    );
}

async function slowConsumers(server: MooringServer, transport = 'sse'): Promise<number> {
  const series = `mooring_connections_closed_total{transport="${transport}",reason="slow_consumer"} `;
  return metricValue(await metricsText(server), series) ?? 0;
}

/** Waits until the server counted a slow SSE consumer (the paused client cannot see its close). */
async function droppedAsSlow(server: MooringServer, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while ((await slowConsumers(server)) === 0) {
    if (Date.now() > deadline) throw new Error('timed out: the stuck SSE connection was not dropped');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('stuck readers', () => {
  it('an SSE client that stops reading during a large catch-up is dropped as slow_consumer after two heartbeat rounds', async (t) => {
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store: new MemoryStore(),
      heartbeatInterval: 200,
    });
    t.after(() => server.close());
    await fill(server, 'big', 24);
    const bystander = await RawClient.connect(server.url);
    t.after(() => bystander.kill());
    await bystander.attach('big');
    await stuckSse(server, 'big', t);
    // the stuck reader's catch-up never gets room; the stall rule ends it
    await droppedAsSlow(server, 10_000);
    assert.equal(await slowConsumers(server), 1);
    assert.equal(server.connections, 1, 'only the bystander is left');
    // the bystander is unaffected
    const ack = await bystander.publish('big', [{ name: 't', data: 'after' }]);
    const got = await bystander.next(
      (f) => f.type === 'messages' && f.messages.some((m) => m.version === ack.results[0]!.serial),
    );
    assert.equal(got.type, 'messages');
  });

  it('live deliveries held for a catching-up SSE client are bounded in bytes: beyond maxSendBuffer it is dropped at once', async (t) => {
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store: new MemoryStore(),
      // heartbeats far apart: only the held-bytes bound can end the stuck reader within the test
      heartbeatInterval: 50_000,
      limits: { maxSendBuffer: 2 * MIB },
    });
    t.after(() => server.close());
    await fill(server, 'big', 24);
    const bystander = await RawClient.connect(server.url);
    t.after(() => bystander.kill());
    await bystander.attach('big');
    await stuckSse(server, 'big', t);
    // live traffic while the stuck reader is still catching up: 60 KB operations, 4 MiB in all
    let published = 0;
    const serials: string[] = [];
    while ((await slowConsumers(server)) === 0 && published < 200) {
      const ack = await bystander.publish('big', [{ name: 'live', data: 'y'.repeat(60_000) }]);
      serials.push(ack.results[0]!.serial);
      published++;
    }
    await droppedAsSlow(server, 10_000);
    assert.ok(published * 60_000 < 6 * MIB, `dropped once held bytes passed the bound (${published} ops)`);
    assert.equal(await slowConsumers(server), 1);
    // the bystander got every live operation, in order, once
    const last = serials[serials.length - 1]!;
    await bystander.next((f) => f.type === 'messages' && f.messages.some((m) => m.version === last));
    const live = bystander.messages('big').filter((m) => m.name === 'live');
    assert.deepEqual(
      live.map((m) => m.version),
      serials,
    );
  });

  it('a reader that is slow but keeps reading is not stalled, however long its queue stays full', async (t) => {
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store: new MemoryStore(),
      heartbeatInterval: 1_000,
    });
    t.after(() => server.close());
    await fill(server, 'big', 20);
    const slow = await StalledClient.connect(server.url, `/v1/connect?key=${TEST_KEY}`);
    t.after(() => slow.destroy());
    slow.sendText(JSON.stringify({ type: 'attach', ref: 1, channel: 'big', start: true }));
    // one chunk (at most 64 KB) every 10 ms: the kernel's buffers and the server's queue stay full
    // for many heartbeat rounds; a ping frame every 50 ms answers for the pongs it never sends
    let read = 0;
    const paused = new Set<NodeJS.Timeout>();
    slow.socket.on('data', (chunk: Buffer) => {
      read += chunk.length;
      slow.socket.pause();
      const timer = setTimeout(() => {
        paused.delete(timer);
        slow.socket.resume();
      }, 10);
      paused.add(timer);
    });
    const pinging = setInterval(() => slow.sendText('{"type":"ping"}'), 50);
    t.after(() => {
      clearInterval(pinging);
      for (const timer of paused) clearTimeout(timer);
    });
    const deadline = Date.now() + 30_000;
    while (read < 20 * MIB && !slow.socket.destroyed && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.ok(read >= 20 * MIB, `the whole catch-up arrived (${read} bytes)`);
    assert.equal(await slowConsumers(server, 'websocket'), 0, 'never taken for a stalled reader');
    assert.equal(server.connections, 1);
  });
});
