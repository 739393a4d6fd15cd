/**
 * A WebSocket's frames are handled at most `FRAMES_PER_TURN` a turn of the event loop: a client that
 * pipelines thousands of frames in one write waits for later turns, in order, while the node reads
 * its other sockets. On real sockets (port 0), with a connection that records what it is handed.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import WebSocket from 'ws';
import type { Connection } from '../src/connection.ts';
import { InboundBudget } from '../src/inbound-budget.ts';
import { startServer } from '../src/index.ts';
import { FRAMES_PER_TURN, WebSocketTransport } from '../src/websocket-transport.ts';
import { metricsText, metricValue, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

/** What the recording connections were handed, in the order handed, and how many in each turn. */
interface Record {
  frames: string[];
  /** Frames handed between two check phases of the event loop, turn after turn. */
  perTurn: number[];
  /** Called as each frame is handed over. */
  onHanded?: () => void;
}

/** A WebSocket endpoint on 127.0.0.1:0 whose connections record what they are handed. */
async function recordingEndpoint(
  t: TestContext,
  options: { inbound?: InboundBudget; handling?: number; onDeferred?: (n: number) => void } = {},
): Promise<{ url: string; record: Record; transport: WebSocketTransport }> {
  const record: Record = { frames: [], perTurn: [] };
  let open = false;
  const handed = (frame: string) => {
    // a frame that takes this long to handle (ms, busy): a backlog handed over across real time
    if (options.handling)
      for (const until = performance.now() + options.handling; performance.now() < until; );
    if (!open) {
      open = true;
      record.perTurn.push(0);
      setImmediate(() => {
        open = false;
      });
    }
    record.perTurn[record.perTurn.length - 1]!++;
    record.frames.push(frame);
    record.onHanded?.();
  };
  let id = 0;
  const transport = new WebSocketTransport({
    maxFrameSize: 65_536,
    accept: () => {
      const name = `c${id++}`;
      options.inbound?.hold(name);
      return {
        alive: true,
        inbound: options.inbound && { budget: options.inbound, key: name },
        receive: (text: string) => handed(`${name}:${text}`),
        receiveUnreadable: () => handed(`${name}:binary`),
      } as unknown as Connection;
    },
    onClose: () => {},
    ...(options.onDeferred ? { onDeferred: options.onDeferred } : {}),
  });
  const server = createServer();
  server.on('upgrade', (req, socket, head) => transport.upgrade(req, socket, head, {} as never));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    transport.wss.close();
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}/`, record, transport };
}

async function open(t: TestContext, url: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  t.after(() => ws.terminate());
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return ws;
}

/** Sends `frames` in one write (the socket corked around them), as a pipelining client does. */
function sendAtOnce(ws: WebSocket, frames: (string | Buffer)[]): void {
  const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
  socket.cork();
  for (const frame of frames) ws.send(frame, { binary: Buffer.isBuffer(frame) });
  socket.uncork();
}

async function until(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`never happened: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/**
 * Sends 3,000 frames in one write on a new connection to `endpoint` and waits until all were handed
 * over, checking that no more than one turn's share was handed over while the socket was being read.
 */
async function burstUnreadMeanwhile(
  t: TestContext,
  endpoint: { url: string; record: Record; transport: WebSocketTransport },
): Promise<{ ws: WebSocket; server: WebSocket | undefined }> {
  const { url, record, transport } = endpoint;
  const ws = await open(t, url);
  const [server] = [...transport.wss.clients];
  let handedWhileReading = 0;
  record.onHanded = () => {
    if (!server?.isPaused) handedWhileReading++;
  };
  sendAtOnce(
    ws,
    Array.from({ length: 3_000 }, (_, i) => `{"n":${i}}`),
  );
  await until(() => record.frames.length === 3_000, 'all 3,000 frames handed over');
  assert.ok(
    handedWhileReading <= FRAMES_PER_TURN,
    `${handedWhileReading} frames were handed over while the socket was read on`,
  );
  return { ws, server };
}

describe('WebSocket frames, a share per turn', () => {
  it('3,000 frames in one write are handed over at most FRAMES_PER_TURN a turn, in order, a binary one in its place', async (t) => {
    const { url, record } = await recordingEndpoint(t);
    const ws = await open(t, url);
    const frames: (string | Buffer)[] = Array.from({ length: 3_000 }, (_, i) => `{"n":${i}}`);
    frames[1_500] = Buffer.from([1, 2, 3]);
    sendAtOnce(ws, frames);
    await until(() => record.frames.length === 3_000, 'all 3,000 frames handed over');
    assert.deepEqual(
      record.frames,
      frames.map((f) => (typeof f === 'string' ? `c0:${f}` : 'c0:binary')),
      'every frame, once, in the order sent',
    );
    const most = Math.max(...record.perTurn);
    assert.ok(most <= FRAMES_PER_TURN, `at most ${FRAMES_PER_TURN} in one turn, not ${most}`);
    assert.ok(record.perTurn.length >= 3_000 / FRAMES_PER_TURN, `${record.perTurn.length} turns`);
  });

  it("another connection's frame is handed over while a pipelining one still has most of its burst to come", async (t) => {
    const { url, record } = await recordingEndpoint(t);
    const burst = await open(t, url);
    const other = await open(t, url);
    sendAtOnce(
      burst,
      Array.from({ length: 3_000 }, (_, i) => `{"n":${i}}`),
    );
    other.send('{"ping":1}');
    await until(() => record.frames.length === 3_001, 'all frames handed over');
    const at = record.frames.indexOf('c1:{"ping":1}');
    assert.ok(at >= 0 && at < 1_000, `the other frame came ${at}th, after ${at} of the burst's 3,000`);
  });

  it('while frames wait their turn the socket is not read, and reading goes on once they are handed over', async (t) => {
    const endpoint = await recordingEndpoint(t);
    const { ws, server } = await burstUnreadMeanwhile(t, endpoint);
    ws.send('{"after":1}');
    await until(() => endpoint.record.frames.length === 3_001, 'a frame sent after the burst handed over');
    assert.equal(server?.isPaused, false);
  });

  it("a token's socket its inbound budget holds stays unread when the backlog has been handed over", async (t) => {
    // 1,000 bytes a second after a burst of 1,000: the burst's first read is ~30 s over
    const { url, record, transport } = await recordingEndpoint(t, {
      inbound: new InboundBudget(1_000, 1_000),
    });
    const ws = await open(t, url);
    const [server] = [...transport.wss.clients];
    sendAtOnce(
      ws,
      Array.from({ length: 3_000 }, (_, i) => `{"n":${i}}`),
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    const read = record.frames.length; // what its first read brought (64 KiB at most)
    assert.ok(read > FRAMES_PER_TURN, `${read} frames: the backlog of the first read handed over`);
    ws.send('{"later":1}');
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(server?.isPaused, true, 'its budget refills for ~30 s: not read');
    assert.equal(record.frames.length, read, 'nothing read past the budget');
  });

  it('a budget that refills while frames wait their turn does not read the socket on before they are handed over', async (t) => {
    // ~1 ms over its budget; each frame takes 0.05 ms to handle, so the backlog takes ~150 ms
    const endpoint = await recordingEndpoint(t, {
      inbound: new InboundBudget(30_000_000, 1_000),
      handling: 0.05,
    });
    const { ws } = await burstUnreadMeanwhile(t, endpoint);
    ws.send('{"after":1}');
    await until(() => endpoint.record.frames.length === 3_001, 'read on once the backlog was handed over');
  });

  it('each turn brings a new share: a connection sending its share again and again, a turn apart, never waits', async (t) => {
    let deferred = 0;
    const { url, record } = await recordingEndpoint(t, {
      onDeferred: (n) => {
        deferred += n;
      },
    });
    const ws = await open(t, url);
    for (let round = 0; round < 5; round++) {
      sendAtOnce(
        ws,
        Array.from({ length: FRAMES_PER_TURN }, (_, i) => `{"round":${round},"n":${i}}`),
      );
      await until(() => record.frames.length === (round + 1) * FRAMES_PER_TURN, `round ${round} handed over`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(deferred, 0, 'no frame waited for a later turn');
  });

  it('a server counts the frames that waited for a later turn in mooring_frames_deferred_total, and answers them all', async (t) => {
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store: { kind: 'memory' },
    });
    t.after(() => server.close());
    const client = await RawClient.connect(server.url);
    t.after(() => client.close());
    const before = metricValue(await metricsText(server), 'mooring_frames_deferred_total') ?? 0;
    sendAtOnce(
      client.ws,
      Array.from({ length: 900 }, (_, i) => JSON.stringify({ type: 'ping', ref: i })),
    );
    await until(() => client.frames.filter((f) => f.type === 'pong').length === 900, 'every ping answered');
    const deferred = (metricValue(await metricsText(server), 'mooring_frames_deferred_total') ?? 0) - before;
    assert.ok(deferred > 0 && deferred <= 900 - FRAMES_PER_TURN, `${deferred} frames counted as deferred`);
  });
});
