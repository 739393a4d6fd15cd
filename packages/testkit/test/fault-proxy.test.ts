/**
 * FaultProxy against a real HTTP + WebSocket server, every byte over real loopback sockets. Tests assert
 * what did or did not arrive and in which order, never how long anything took. Where a test must show
 * that something did *not* happen, it first waits until the proxy has provably handled the bytes (its
 * counters), then watches a short quiet window.
 */

import assert from 'node:assert/strict';
import { Agent, get, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WebSocket } from 'ws';
import { FaultProxy } from '../src/fault-proxy.ts';
import { once, waitFor } from '../src/wait.ts';
import { type EchoServer, startEchoServer } from './echo-server.ts';
import { fetchText, openWs } from './http-client.ts';

/** How long a "nothing happened" check watches. Only ever used to show absence, never to time. */
const QUIET_WINDOW_MS = 200;

async function setup(t: { after: (fn: () => Promise<void>) => void }): Promise<{
  server: EchoServer;
  proxy: FaultProxy;
}> {
  const server = await startEchoServer();
  const proxy = await FaultProxy.start({ port: server.port });
  t.after(async () => {
    await proxy.close();
    await server.close();
  });
  return { server, proxy };
}

test('pass: WebSocket echo and HTTP requests go through unchanged', async (t) => {
  const { server, proxy } = await setup(t);
  const client = await openWs(proxy.url('/ws', 'ws'));
  client.ws.send('one');
  client.ws.send('two');
  await waitFor(() => client.received.length === 2);
  assert.deepEqual(client.received, ['one', 'two']);
  assert.deepEqual(server.messages, ['one', 'two']);

  assert.deepEqual(await fetchText(proxy.url('/hello')), { status: 200, body: 'hello' });
  assert.deepEqual(await fetchText(proxy.url('/echo'), { method: 'POST', body: 'ping' }), {
    status: 200,
    body: 'ping',
  });
  const stats = proxy.stats;
  assert.equal(stats.accepted, 3);
  assert.ok(stats.bytesToServer > 0 && stats.bytesToClient > 0);
  assert.equal(stats.bytesFromClient, stats.bytesToServer);
  assert.equal(stats.bytesFromServer, stats.bytesToClient);
});

test('url() builds http and ws addresses on the proxy port', async (t) => {
  const { proxy } = await setup(t);
  assert.equal(proxy.url('/a'), `http://127.0.0.1:${proxy.port}/a`);
  assert.equal(proxy.url('b', 'ws'), `ws://127.0.0.1:${proxy.port}/b`);
});

test('reset: both ends of a WebSocket see the connection die abnormally', async (t) => {
  const { server, proxy } = await setup(t);
  const client = await openWs(proxy.url('/ws', 'ws'));
  await waitFor(() => server.peers.length === 1);
  await proxy.reset();
  await waitFor(() => client.closeCode !== null && server.closes.length === 1);
  assert.equal(client.closeCode, 1006);
  assert.deepEqual(server.closes, [1006]);
  assert.equal(proxy.connections, 0);
  assert.equal(proxy.stats.reset, 1);
});

test('reset: raw sockets on both sides get ECONNRESET, and new connections still work', async (t) => {
  const { server, proxy } = await setup(t);
  const socket = connect(proxy.port, '127.0.0.1');
  socket.write('GET /hello HTTP/1.1\r\nHost: x\r\n'); // an unfinished head keeps both ends waiting
  await waitFor(() => server.sockets.length === 1);
  let clientError: NodeJS.ErrnoException | null = null;
  socket.on('error', (error) => {
    clientError = error;
  });
  await proxy.reset();
  const error = await waitFor(() => clientError, { message: 'client socket saw no error' });
  assert.equal(error.code, 'ECONNRESET');
  await waitFor(() => server.socketErrors.length === 1);
  assert.deepEqual(server.socketErrors, ['ECONNRESET']);
  assert.equal((await fetchText(proxy.url('/hello'))).status, 200);
});

test('blackhole: bytes vanish both ways and neither end sees a close', async (t) => {
  const { server, proxy } = await setup(t);
  const client = await openWs(proxy.url('/ws', 'ws'));
  client.ws.send('before');
  await waitFor(() => client.received.length === 1);

  proxy.blackhole();
  client.ws.send('lost');
  await waitFor(() => proxy.stats.bytesDropped > 0, { message: 'proxy never read the blackholed bytes' });
  const droppedAfterFirst = proxy.stats.bytesDropped;
  await sleep(QUIET_WINDOW_MS);
  assert.deepEqual(server.messages, ['before']);
  assert.deepEqual(client.received, ['before']);
  assert.equal(client.closeCode, null, 'client saw a close through a blackhole');
  assert.deepEqual(server.closes, [], 'server saw a close through a blackhole');

  // Server-to-client is dead too.
  server.peers[0]?.send('from server');
  client.ws.send('also lost');
  await waitFor(() => proxy.stats.bytesDropped > droppedAfterFirst);
  await sleep(QUIET_WINDOW_MS);
  assert.deepEqual(server.messages, ['before']);
  assert.deepEqual(client.received, ['before']);

  // Even the client going away is not passed on.
  client.ws.terminate();
  await sleep(QUIET_WINDOW_MS);
  assert.deepEqual(server.closes, []);
  assert.equal(server.peers[0]?.readyState, WebSocket.OPEN);
});

test('blackhole: new connections are accepted but never reach the server', async (t) => {
  const { server, proxy } = await setup(t);
  proxy.blackhole();
  const ws = new WebSocket(proxy.url('/ws', 'ws'));
  let opened = false;
  ws.on('open', () => {
    opened = true;
  });
  ws.on('error', () => {});
  await waitFor(() => proxy.stats.bytesDropped > 0, { message: 'proxy never read the upgrade request' });
  await sleep(QUIET_WINDOW_MS);
  assert.equal(opened, false);
  assert.equal(server.sockets.length, 0);
  assert.equal(proxy.connections, 1);
  ws.terminate();
});

test('blackhole then pass: new connections work, blackholed ones stay dead', async (t) => {
  const { server, proxy } = await setup(t);
  const old = await openWs(proxy.url('/ws', 'ws'));
  proxy.blackhole();
  proxy.pass();
  const fresh = await openWs(proxy.url('/ws', 'ws'));
  old.ws.send('old');
  fresh.ws.send('fresh');
  await waitFor(() => fresh.received.length === 1);
  await waitFor(() => proxy.stats.bytesDropped > 0);
  await sleep(QUIET_WINDOW_MS);
  assert.deepEqual(server.messages, ['fresh']);
  assert.deepEqual(old.received, []);
});

test('delay: chunks are held back but keep their order, on an already open connection', async (t) => {
  const { server, proxy } = await setup(t);
  const client = await openWs(proxy.url('/ws', 'ws'));

  proxy.delay(300);
  const before = proxy.stats.bytesFromClient;
  client.ws.send('late');
  await waitFor(() => proxy.stats.bytesFromClient > before);
  assert.deepEqual(server.messages, [], 'a delayed chunk reached the server at once');
  await waitFor(() => client.received.length === 1);

  proxy.delay(5, 40);
  const sent = Array.from({ length: 50 }, (_, i) => `m${i}`);
  for (const message of sent) client.ws.send(message);
  await waitFor(() => client.received.length === 51);
  assert.deepEqual(server.messages, ['late', ...sent]);
  assert.deepEqual(client.received, ['late', ...sent]);
});

test('refuseUpgrade: WebSocket gets the status while plain HTTP, SSE and POST go through', async (t) => {
  const { server, proxy } = await setup(t);
  proxy.refuseUpgrade(503, 'no websockets here');

  const ws = new WebSocket(proxy.url('/ws', 'ws'));
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(res.statusCode, 503);
  let body = '';
  for await (const chunk of res) body += String(chunk);
  assert.equal(body, 'no websockets here');
  ws.on('error', () => {});
  ws.terminate();
  assert.equal(server.upgrades, 0);
  assert.equal(server.sockets.length, 0, 'the refused upgrade reached the server');
  assert.equal(proxy.stats.refused, 1);

  assert.deepEqual(await fetchText(proxy.url('/hello')), { status: 200, body: 'hello' });
  assert.deepEqual(await fetchText(proxy.url('/echo'), { method: 'POST', body: 'posted' }), {
    status: 200,
    body: 'posted',
  });

  const sse = get(proxy.url('/sse'));
  const [response] = (await once(sse, 'response')) as [IncomingMessage];
  assert.equal(response.headers['content-type'], 'text/event-stream');
  const [first] = (await once(response, 'data')) as [Buffer];
  assert.equal(first.toString(), 'data: 1\n\n');
  sse.destroy();
});

test('refuseUpgrade: default 502, and keep-alive connections carry several requests', async (t) => {
  const { server, proxy } = await setup(t);
  proxy.refuseUpgrade();
  const ws = new WebSocket(proxy.url('/ws', 'ws'));
  ws.on('error', () => {});
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
  assert.equal(res.statusCode, 502);
  ws.terminate();

  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const acceptedBefore = proxy.stats.accepted;
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(await fetchText(proxy.url('/hello'), { agent }), { status: 200, body: 'hello' });
  }
  assert.equal(proxy.stats.accepted - acceptedBefore, 1, 'requests did not share one connection');
  assert.equal(server.sockets.length, 1);
});

test('buffer: an SSE event is held until the response ends, then everything arrives', async (t) => {
  const { server, proxy } = await setup(t);
  proxy.buffer();
  const chunks: string[] = [];
  let gotResponse = false;
  const req = get(proxy.url('/sse'), (res) => {
    gotResponse = true;
    res.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  });
  req.on('error', () => {});
  const ended = once(req, 'close');

  await waitFor(() => server.sse.length === 1);
  await waitFor(() => proxy.stats.bytesFromServer > 0, { message: 'proxy never read the SSE head' });
  await sleep(QUIET_WINDOW_MS);
  assert.equal(gotResponse, false, 'the buffered response head reached the client');
  assert.equal(proxy.stats.bytesToClient, 0);

  const sse = server.sse[0]!;
  sse.write('data: 2\n\n');
  sse.end();
  await ended;
  assert.equal(gotResponse, true);
  assert.equal(chunks.join(''), 'data: 1\n\ndata: 2\n\n');
});

test('buffer: a short response on a keep-alive connection arrives whole', async (t) => {
  const { proxy } = await setup(t);
  proxy.buffer();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  assert.deepEqual(await fetchText(proxy.url('/hello'), { agent }), { status: 200, body: 'hello' });
  assert.deepEqual(await fetchText(proxy.url('/echo'), { agent, method: 'POST', body: 'x'.repeat(1000) }), {
    status: 200,
    body: 'x'.repeat(1000),
  });
  assert.equal(proxy.connections, 1, 'the keep-alive connection should still be open');
});

test('buffer: held bytes are released once the byte threshold is reached', async (t) => {
  const { server, proxy } = await setup(t);
  proxy.buffer({ bytes: 4096 });
  const chunks: string[] = [];
  const req = get(proxy.url('/sse'), (res) =>
    res.on('data', (chunk: Buffer) => chunks.push(chunk.toString())),
  );
  req.on('error', () => {});
  t.after(() => req.destroy());
  await waitFor(() => server.sse.length === 1);
  const big = `data: ${'y'.repeat(5000)}\n\n`;
  server.sse[0]!.write(big);
  await waitFor(() => chunks.join('').includes(big), { message: 'threshold did not release the stream' });
  assert.ok(chunks.join('').startsWith('data: 1\n\n'));
});

test('buffer lifted by pass(): held bytes are released', async (t) => {
  const { server, proxy } = await setup(t);
  proxy.buffer();
  const chunks: string[] = [];
  const req = get(proxy.url('/sse'), (res) =>
    res.on('data', (chunk: Buffer) => chunks.push(chunk.toString())),
  );
  req.on('error', () => {});
  t.after(() => req.destroy());
  await waitFor(() => server.sse.length === 1);
  await waitFor(() => proxy.stats.bytesFromServer > 0);
  assert.deepEqual(chunks, []);
  proxy.pass();
  await waitFor(() => chunks.join('') === 'data: 1\n\n');
});

test('refuse: new connections are reset before reaching the server; open ones continue', async (t) => {
  const { server, proxy } = await setup(t);
  const open = await openWs(proxy.url('/ws', 'ws'));
  proxy.refuse();
  await assert.rejects(fetchText(proxy.url('/hello')), (error: NodeJS.ErrnoException) => {
    assert.equal(error.code, 'ECONNRESET');
    return true;
  });
  assert.equal(proxy.stats.refused, 1);
  assert.equal(server.sockets.length, 1, 'only the WebSocket reached the server');
  open.ws.send('still here');
  await waitFor(() => open.received.length === 1);

  proxy.pass();
  assert.equal((await fetchText(proxy.url('/hello'))).status, 200);
});

test('bandwidth: a large transfer completes intact and is counted both ways', async (t) => {
  const { proxy } = await setup(t);
  proxy.bandwidth(400_000);
  const body = Buffer.alloc(100_000, 'z');
  const result = await fetchText(proxy.url('/echo'), { method: 'POST', body });
  assert.equal(result.status, 200);
  assert.equal(result.body, body.toString());
  const stats = proxy.stats;
  assert.ok(stats.bytesToServer > body.length, `bytesToServer ${stats.bytesToServer}`);
  assert.ok(stats.bytesToClient > body.length, `bytesToClient ${stats.bytesToClient}`);
  assert.equal(stats.bytesFromClient, stats.bytesToServer);
  assert.equal(stats.bytesFromServer, stats.bytesToClient);
});

test('faults compose and pass() clears them all', async (t) => {
  const { proxy } = await setup(t);
  proxy.refuseUpgrade().buffer().delay(1);
  assert.notEqual(proxy.faults.refuseUpgrade, null);
  assert.notEqual(proxy.faults.buffer, null);
  assert.deepEqual(proxy.faults.delay, { ms: 1, jitterMs: 0 });
  assert.deepEqual(await fetchText(proxy.url('/hello')), { status: 200, body: 'hello' });
  proxy.pass();
  assert.deepEqual(proxy.faults, {
    blackhole: false,
    refuse: false,
    delay: null,
    bandwidth: null,
    refuseUpgrade: null,
    buffer: null,
  });
  assert.throws(() => proxy.delay(-1), RangeError);
  assert.throws(() => proxy.bandwidth(0), RangeError);
});

test('close: destroys open connections and stops listening', async (t) => {
  const { server, proxy } = await setup(t);
  const client = await openWs(proxy.url('/ws', 'ws'));
  await waitFor(() => server.peers.length === 1);
  await proxy.close();
  await waitFor(() => client.closeCode !== null && server.closes.length === 1);
  assert.equal(proxy.connections, 0);
  await assert.rejects(fetchText(proxy.url('/hello')), (error: NodeJS.ErrnoException) => {
    assert.equal(error.code, 'ECONNREFUSED');
    return true;
  });
});
