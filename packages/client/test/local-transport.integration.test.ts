/**
 * The in-process transport (`transport: server.localTransport`, PROTOCOL.md §5.5): a client in the
 * server's own process gets a connection like any other — authenticated, counted, acknowledged,
 * in order, resumable — without a socket. Its peers on WebSocket see no difference.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import type { MooringError } from '../src/errors.ts';
import { client, connected, KEY, realServer, waitFor } from './helpers/real-server.ts';

const texts = (messages: Message[]) => messages.map((m) => m.data);

describe('the in-process transport', () => {
  it('publishes to WebSocket readers and reads theirs, acknowledged, with its clientId stamped', async (t) => {
    const server = await realServer(t);
    const agent = client(t, server.url, { clientId: 'agent-1', transport: server.localTransport });
    const user = client(t, server.url, { clientId: 'user-1' });
    const seenByUser: Message[] = [];
    const seenByAgent: Message[] = [];
    await user.channels.get('session:l').subscribe((m) => seenByUser.push(m));
    const attached = await agent.channels.get('session:l').subscribe((m) => seenByAgent.push(m));
    assert.equal(attached.resumed, false);
    assert.equal(agent.connection.transport, 'local');
    assert.equal(server.connections, 2, 'the in-process connection is counted like the others');

    const serial = await agent.channels.get('session:l').publish('text', 'Hello');
    await agent.channels.get('session:l').append(serial, ', world');
    await user.channels.get('session:l').publish('input', 'hi');
    await waitFor(() => seenByUser.length === 3 && seenByAgent.length === 3);
    assert.equal(seenByUser[0]?.clientId, 'agent-1');
    assert.deepEqual(texts(seenByUser), ['Hello', ', world', 'hi']);
    assert.deepEqual(
      seenByAgent.map((m) => m.serial),
      seenByUser.map((m) => m.serial),
    );
  });

  it('a publish repeated with the same op id is stored once and acknowledged as a duplicate', async (t) => {
    const server = await realServer(t);
    const channel = client(t, server.url, { transport: server.localTransport }).channels.get('session:dup');
    const op = { id: 'op-1', name: 'text', data: 'once' };
    const [first] = await channel.publishResults([op]);
    const [again] = await channel.publishResults([op]);
    assert.equal(first?.duplicate, undefined);
    assert.deepEqual(again, { serial: first?.serial, duplicate: true });
    const page = await channel.history();
    assert.deepEqual(
      page.items.map((m) => m.data),
      ['once'],
    );
  });

  it('keeps the order of a burst of publishes made without waiting', async (t) => {
    const server = await realServer(t);
    const agent = client(t, server.url, { transport: server.localTransport });
    const user = client(t, server.url);
    const got: Message[] = [];
    await user.channels.get('session:o').subscribe((m) => got.push(m));
    const channel = agent.channels.get('session:o');
    const words = Array.from({ length: 200 }, (_, i) => `w${i}`);
    const serials = await Promise.all(words.map((w) => channel.publish('t', w)));
    assert.deepEqual([...serials].sort(), serials, 'stored in the order published');
    await waitFor(() => got.length === words.length);
    assert.deepEqual(texts(got), words);
    assert.equal(user.channels.get('session:o').gapsRepaired, 0);
  });

  it('resumes after the server drops it: what was published meanwhile arrives once, in order, same identity', async (t) => {
    // a connection that floods frames is dropped (close 4028 rate_limited) and comes back
    const server = await realServer(t, { limits: { maxFrameRate: 2, maxFrameBurst: 2 } });
    const reader = client(t, server.url, { transport: server.localTransport });
    const writer = client(t, server.url);
    const got: Message[] = [];
    await reader.channels.get('session:r').subscribe((m) => got.push(m));
    await writer.channels.get('session:r').publish('t', 'before');
    await waitFor(() => got.length === 1);
    const id = reader.connection.id;
    let drops = 0;
    reader.connection.on('disconnected', () => {
      drops++;
    });
    const pings = Array.from({ length: 8 }, () => reader.connection.ping().catch(() => undefined));
    await waitFor(() => drops > 0, { message: 'the flooding connection was never dropped' });
    await writer.channels.get('session:r').publish('t', 'while away');
    await Promise.all(pings);
    await waitFor(() => reader.connection.state === 'connected');
    await writer.channels.get('session:r').publish('t', 'after');
    await waitFor(() => got.length === 3);
    assert.deepEqual(texts(got), ['before', 'while away', 'after']);
    assert.equal(reader.connection.id, id, 'the same connection, recovered');
  });

  it('fails on bad credentials with unauthorized (401), without retrying', async (t) => {
    const server = await realServer(t);
    let opened = 0;
    const c = client(t, server.url, {
      key: 'test:wrong',
      transport: () => {
        opened++;
        return server.localTransport();
      },
    });
    await waitFor(() => c.connection.state === 'failed');
    assert.equal(c.connection.errorReason?.code, 'unauthorized');
    assert.equal(c.connection.errorReason?.status, 401);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(opened, 1, 'no retry after a permanent error');
    assert.equal(server.connections, 0);
  });

  it('as a transport: refuses to send before it opened and after it closed, and reports a refused open once', async (t) => {
    const server = await realServer(t);
    const closes: number[] = [];
    const handlers = (onOpen: () => void = () => {}) => ({
      onOpen,
      onFrame: () => {},
      onProtocolError: () => {},
      onClose: ({ code }: { code: number }) => closes.push(code),
    });
    const ping = { type: 'ping' } as const;
    const transport = server.localTransport();
    assert.throws(() => transport.send(ping), /not open/);
    let opened = false;
    transport.open(
      `${server.url.replace('http', 'ws')}/v1/connect?v=1&key=${KEY}`,
      handlers(() => {
        opened = true;
      }),
    );
    await waitFor(() => opened);
    await waitFor(() => server.connections === 1);
    transport.close();
    assert.throws(() => transport.send(ping), /not open/, 'a closed transport took a frame');
    await waitFor(() => closes.length === 1 && server.connections === 0);

    const refused = server.localTransport();
    refused.open(`${server.url.replace('http', 'ws')}/v1/connect?v=1&key=test:wrong`, handlers());
    await waitFor(() => closes.length === 2);
    refused.close();

    // an aborted transport is silent: it takes no frame and reports no close
    const aborted = server.localTransport();
    let abortedOpen = false;
    aborted.open(
      `${server.url.replace('http', 'ws')}/v1/connect?v=1&key=${KEY}`,
      handlers(() => {
        abortedOpen = true;
      }),
    );
    await waitFor(() => abortedOpen && server.connections === 1);
    aborted.abort();
    assert.throws(() => aborted.send(ping), /not open/, 'an aborted transport took a frame');
    await waitFor(() => server.connections === 0);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(
      closes,
      [1000, 1006],
      'a refused open reported its close again, or an abort reported one',
    );
  });

  it('as a transport: takes a frame of exactly maxFrameSize bytes, and closes with 1009 on one byte more', async (t) => {
    const max = 4096;
    const server = await realServer(t, { limits: { maxFrameSize: max } });
    const url = `${server.url.replace('http', 'ws')}/v1/connect?v=1&key=${KEY}`;
    const frameOf = (bytes: number) => {
      const frame = { type: 'presence', channel: 'room:x', action: 'enter', ref: 'r1', data: '' };
      frame.data = 'a'.repeat(bytes - JSON.stringify(frame).length);
      assert.equal(JSON.stringify(frame).length, bytes);
      return frame as Parameters<ReturnType<typeof server.localTransport>['send']>[0];
    };
    for (const [bytes, closed] of [
      [max, false],
      [max + 1, true],
    ] as const) {
      const frames: string[] = [];
      const closes: number[] = [];
      let opened = false;
      const transport = server.localTransport();
      transport.open(url, {
        onOpen: () => {
          opened = true;
        },
        onFrame: (frame) => frames.push(frame.type),
        onProtocolError: () => {},
        onClose: ({ code }) => closes.push(code),
      });
      await waitFor(() => opened && frames.includes('connected'));
      transport.send(frameOf(bytes));
      await waitFor(() => closes.length > 0 || frames.some((type) => type === 'ack' || type === 'error'));
      assert.deepEqual(closes, closed ? [1009] : [], `a frame of ${bytes} bytes (maxFrameSize ${max})`);
      if (!closed) transport.close();
    }
  });

  it('an idle in-process client is not dropped for missing heartbeats (it cannot go silent)', async (t) => {
    const server = await realServer(t, { heartbeatInterval: 20 });
    const c = client(t, server.url, { transport: server.localTransport });
    await connected(c);
    const changes: string[] = [];
    c.connection.on('statechange', ({ current }) => changes.push(current));
    await new Promise((resolve) => setTimeout(resolve, 300)); // 15 heartbeat rounds, nothing sent
    assert.deepEqual(changes, [], 'the server dropped an idle in-process connection');
  });

  it('as a transport: hears the server close it, with the code', async (t) => {
    const server = await realServer(t);
    const closes: number[] = [];
    let opened = false;
    const transport = server.localTransport();
    transport.open(`${server.url.replace('http', 'ws')}/v1/connect?v=1&key=${KEY}`, {
      onOpen: () => {
        opened = true;
      },
      onFrame: () => {},
      onProtocolError: () => {},
      onClose: ({ code }) => closes.push(code),
    });
    await waitFor(() => opened && server.connections === 1);
    await server.close();
    await waitFor(() => closes.length > 0, { message: 'the server closed it and the client never heard' });
    assert.equal(closes.length, 1);
  });

  it('is held to the connection budget of its key', async (t) => {
    const server = await realServer(t, { limits: { maxConnectionsPerKey: 1 } });
    const first = client(t, server.url, { transport: server.localTransport });
    await connected(first);
    const second = client(t, server.url, { transport: server.localTransport });
    await waitFor(() => second.connection.errorReason?.code === 'too_many_connections', {
      message: 'the second connection of a key limited to one was not refused',
    });
    assert.equal(server.connections, 1);
  });

  it('closes gracefully: the server discards the connection', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, { transport: server.localTransport });
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

  it('hears the server shut down (shutting_down), and the server forgets the connection', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, { transport: server.localTransport, key: KEY });
    await connected(c);
    const id = c.connection.id;
    assert.ok(id);
    await server.close();
    assert.equal(server.connections, 0);
    await waitFor(() => c.connection.state !== 'connected');
    assert.notEqual(c.connection.state, 'connected');
  });

  it('carries the attaches asked for before it opened in its connection request, as a WebSocket does', async (t) => {
    const server = await realServer(t);
    const writer = client(t, server.url);
    await writer.channels.get('session:pre').publish('text', 'already there');
    const types: string[] = [];
    const transport = () => {
      const inner = server.localTransport();
      const send = inner.send.bind(inner);
      inner.send = (frame) => {
        types.push(frame.type);
        send(frame);
      };
      return inner;
    };
    const agent = client(t, server.url, { transport });
    const got: Message[] = [];
    const attached = await agent.channels.get('session:pre', { start: true }).subscribe((m) => got.push(m));
    assert.equal(attached.resumed, false);
    assert.deepEqual(texts(got), ['already there']);
    assert.deepEqual(types, [], 'no attach frame: the address carried it');
  });

  it('hands the server its own copy of a publish: operations changed after the call change nothing stored', async (t) => {
    const server = await realServer(t);
    const agent = client(t, server.url, { clientId: 'agent-1', transport: server.localTransport });
    await connected(agent);
    const channel = agent.channels.get('session:copy');
    const ops = [{ id: 'op-1', name: 'text', data: 'original' }];
    const stored = channel.publishBatch(ops); // sent within the call (the connection is up)
    ops[0]!.data = 'changed';
    ops[0]!.name = 'other';
    ops.push({ id: 'op-2', name: 'text', data: 'extra' });
    const [serial] = await stored;
    const appendOps = [{ id: 'op-3', action: 'append' as const, serial: serial!, data: ' text' }];
    const appended = channel.publishBatch(appendOps);
    appendOps[0]!.data = ' CHANGED';
    await appended;
    const page = await channel.history();
    assert.deepEqual(
      page.items.map((m) => [m.name, m.data]),
      [['text', 'original text']],
    );
  });

  it('closes with 1009 on a publish above maxFrameSize, as a WebSocket would; smaller ones are stored', async (t) => {
    const server = await realServer(t, { limits: { maxFrameSize: 4096 } });
    const closes: number[] = [];
    let current: ReturnType<typeof server.localTransport> | undefined;
    // the client's transport, with its close codes recorded
    const transport = () => {
      const inner = server.localTransport();
      current = inner;
      return {
        kind: inner.kind,
        open: (url: string, handlers: Parameters<typeof inner.open>[1]) =>
          inner.open(url, {
            ...handlers,
            onClose: (info) => {
              closes.push(info.code);
              handlers.onClose(info);
            },
          }),
        send: (frame: Parameters<typeof inner.send>[0]) => inner.send(frame),
        close: (code?: number, reason?: string) => inner.close(code, reason),
        abort: () => inner.abort(),
      };
    };
    const agent = client(t, server.url, { transport });
    const channel = agent.channels.get('session:big');
    await channel.publish('t', 'x'.repeat(100)); // sent as a copy
    await channel.publish('t', 'y'.repeat(3000)); // 3,000 chars could be 18 KB of JSON: measured, fits
    assert.deepEqual(closes, []);
    // the client itself never sends a frame above the announced maxFrameSize (PROTOCOL.md §9)…
    await assert.rejects(channel.publish('t', 'z'.repeat(5000)), { code: 'frame_too_large' });
    assert.deepEqual(closes, []);
    // …so the transport gets one straight
    current?.send({
      type: 'publish',
      ref: 'big',
      channel: 'session:big',
      ops: [{ action: 'create', id: 'big', name: 't', data: 'z'.repeat(5000) }],
    });
    await waitFor(() => closes.length > 0);
    assert.equal(closes[0], 1009);
    agent.close();
  });
});
