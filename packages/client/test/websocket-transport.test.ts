// The WebSocket transport over a browser-style socket (no `ws` extras): frames in and out, malformed
// input reported (never swallowed), how it ended, and aborts that keep the server-side identity.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import type { TransportCloseInfo } from '../src/transport.ts';
import type { WebSocketLike } from '../src/websocket-transport.ts';
import { WebSocketTransport } from '../src/websocket-transport.ts';
import { flush } from './helpers/fake-transport.ts';

class BrowserSocket implements WebSocketLike {
  static last: BrowserSocket | undefined;
  readyState = 0;
  readonly sent: string[] = [];
  closedWith: [number | undefined, string | undefined] | undefined;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly url: string;
  constructor(url: string) {
    this.url = url;
    BrowserSocket.last = this;
  }
  send(data: string): void {
    this.sent.push(data);
  }
  close(code?: number, reason?: string): void {
    this.closedWith = [code, reason];
  }
}

function open() {
  const frames: ServerFrame[] = [];
  const problems: string[] = [];
  const closes: TransportCloseInfo[] = [];
  const transport = new WebSocketTransport(BrowserSocket);
  transport.open('ws://h/v1/connect?v=1', {
    onOpen: () => {},
    onFrame: (f) => frames.push(f),
    onProtocolError: (m) => problems.push(m),
    onClose: (c) => closes.push(c),
  });
  return { transport, frames, problems, closes };
}

describe('WebSocketTransport', () => {
  it('sends JSON text frames once open, and refuses to send before', async () => {
    const { transport } = open();
    await flush();
    const socket = BrowserSocket.last!;
    assert.throws(() => transport.send({ type: 'ping', ref: 1 }), /not open/);
    socket.readyState = 1;
    socket.onopen?.({});
    transport.send({ type: 'ping', ref: 2 });
    assert.deepEqual(socket.sent, ['{"type":"ping","ref":2}']);
  });

  it('parses frames and reports malformed ones', async () => {
    const { frames, problems } = open();
    await flush();
    const socket = BrowserSocket.last!;
    socket.onmessage?.({ data: '{"type":"heartbeat","serverTime":1}' });
    socket.onmessage?.({ data: 'nope' });
    socket.onmessage?.({ data: '{"type":"surprise"}' });
    socket.onmessage?.({ data: '{"type":"messages","channel":"c"}' });
    socket.onmessage?.({ data: new Uint8Array(1) });
    assert.deepEqual(frames, [{ type: 'heartbeat', serverTime: 1 }]);
    assert.equal(problems.length, 4);
  });

  it('reports how it ended, once', async () => {
    const { closes } = open();
    await flush();
    const socket = BrowserSocket.last!;
    socket.onclose?.({ code: 4001, reason: 'unauthorized' });
    socket.onclose?.({ code: 1006, reason: '' });
    assert.deepEqual(closes, [{ code: 4001, reason: 'unauthorized' }]);
  });

  it('takes the HTTP status of a refused handshake from the error event before the close; an empty error message keeps the first', async () => {
    const { closes } = open();
    await flush();
    const socket = BrowserSocket.last!;
    socket.onerror?.({ message: 'Unexpected server response: 502' });
    socket.onerror?.({ message: '' });
    socket.onerror?.({ message: 7 });
    socket.onclose?.({ code: 1006, reason: '' });
    assert.deepEqual(closes, [
      { code: 1006, reason: '', httpStatus: 502, localError: 'Unexpected server response: 502' },
    ]);
  });

  it('reads the JSON error body of a refused handshake (ws), in text and byte chunks alike', async () => {
    let refused: ((req: unknown, res: unknown) => void) | undefined;
    class WsSocket extends BrowserSocket {
      on(event: string, fn: (req: unknown, res: unknown) => void): void {
        if (event === 'unexpected-response') refused = fn;
      }
    }
    const closes: TransportCloseInfo[] = [];
    const transport = new WebSocketTransport(WsSocket);
    transport.open('ws://h/v1/connect?v=1', {
      onOpen: () => {},
      onFrame: () => {},
      onProtocolError: () => {},
      onClose: (c) => closes.push(c),
    });
    await flush();
    assert.ok(refused, 'listens for the refused handshake');
    const listeners = new Map<string, (chunk?: unknown) => void>();
    refused(
      {},
      {
        statusCode: 401,
        on: (event: string, fn: (chunk?: unknown) => void) => listeners.set(event, fn),
      },
    );
    const body = JSON.stringify({
      error: { code: 'unauthorized', status: 401, retryable: false, message: 'unknown key' },
    });
    listeners.get('data')?.(body.slice(0, 20));
    listeners.get('data')?.(new TextEncoder().encode(body.slice(20)));
    listeners.get('end')?.();
    assert.equal(closes.length, 1);
    assert.equal(closes[0]?.httpStatus, 401);
    assert.equal(closes[0]?.error?.code, 'unauthorized');
    assert.equal(closes[0]?.error?.message, 'unknown key');
  });

  it('aborts with a reconnect close code (not 1000/1005) and reports nothing more', async () => {
    const { transport, closes } = open();
    await flush();
    const socket = BrowserSocket.last!;
    transport.abort();
    assert.deepEqual(socket.closedWith, [4000, 'reconnecting']);
    socket.onclose?.({ code: 4000, reason: '' });
    assert.deepEqual(closes, []);
  });
});

describe('WebSocketTransport over `ws` (Node)', () => {
  it('frames sent in one callback leave in one write, and all have left once the callback is done', async (t) => {
    const { default: WebSocket, WebSocketServer } = await import('ws');
    const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    t.after(() => server.close());
    await new Promise((resolve) => server.once('listening', resolve));
    const received: string[] = [];
    server.on('connection', (peer) => peer.on('message', (data) => received.push(data.toString())));
    const { port } = server.address() as { port: number };
    let socket: InstanceType<typeof WebSocket> | undefined;
    class Captured extends WebSocket {
      constructor(url: string) {
        super(url);
        socket = this;
      }
    }
    let opened: () => void = () => {};
    const open = new Promise<void>((resolve) => {
      opened = resolve;
    });
    const transport = new WebSocketTransport(
      Captured as unknown as ConstructorParameters<typeof WebSocketTransport>[0],
    );
    t.after(() => transport.abort());
    transport.open(`ws://127.0.0.1:${port}/`, {
      onOpen: () => opened(),
      onFrame: () => {},
      onProtocolError: () => {},
      onClose: () => {},
    });
    await open;
    // count the calls that reach the TCP socket's own write functions: one each is one system call
    const raw = (socket as unknown as { _socket: Record<string, unknown> })._socket;
    let writes = 0;
    for (const name of ['_write', '_writev']) {
      const original = raw[name] as ((...args: unknown[]) => unknown) | undefined;
      if (typeof original !== 'function') continue;
      raw[name] = function (this: unknown, ...args: unknown[]) {
        writes++;
        return original.apply(this, args);
      };
    }
    for (let ref = 1; ref <= 5; ref++) transport.send({ type: 'ping', ref });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(writes, 1, 'five frames sent in one callback, one write');
    const expected = [1, 2, 3, 4, 5].map((ref) => `{"type":"ping","ref":${ref}}`);
    const deadline = Date.now() + 5_000;
    while (received.length < 5 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(received, expected, 'all of them, in order');
    // and so in every later callback: each one's frames leave once it is done
    for (const ref of [6, 7]) {
      writes = 0;
      transport.send({ type: 'ping', ref });
      transport.send({ type: 'ping', ref: ref * 10 });
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(writes, 1, `the frames of a later callback (${ref}), one write`);
    }
    while (received.length < 9 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    assert.deepEqual(received.slice(5), [
      '{"type":"ping","ref":6}',
      '{"type":"ping","ref":60}',
      '{"type":"ping","ref":7}',
      '{"type":"ping","ref":70}',
    ]);
  });
});
