/**
 * Heartbeats, dead peers, slow consumers, oversized frames and graceful shutdown
 * (PROTOCOL.md §5.3 and §8), with real sockets.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import WebSocket from 'ws';
import { createToken, MemoryStore, startServer } from '../src/index.ts';
import { BrokenStore } from './support/broken-store.ts';
import { rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { GatedStore } from './support/gated-store.ts';
import { captureLog } from './support/log-capture.ts';
import { fold, RawClient } from './support/raw-client.ts';
import { reply, StalledClient } from './support/stalled-client.ts';

describe('connection lifecycle', () => {
  it('sends heartbeats and drops a peer that stops answering pings', async () => {
    const fx = await startFixture('memory', { heartbeatInterval: 100 });
    try {
      const healthy = await RawClient.connect(fx.server.url);
      assert.equal(healthy.connected.maxIdleInterval, 100);
      // a peer whose pongs never come back (ws answers pings automatically unless told not to)
      const url = `${fx.server.url.replace('http', 'ws')}/v1/connect?key=${TEST_KEY}`;
      const dead = new WebSocket(url, { autoPong: false });
      const code = await new Promise<number>((resolve) => dead.on('close', (c) => resolve(c)));
      assert.equal(code, 1006, 'dropped without a close handshake');
      await healthy.next((f) => f.type === 'heartbeat');
      assert.equal(healthy.closeCode, undefined, 'a peer that answers pings stays connected');
      await healthy.close();
    } finally {
      await fx.close();
    }
  });

  it('a token connection receiving one long frame on a slow uplink stays past two heartbeat rounds: its bytes are heard, though no pong can come between them', async () => {
    const fx = await startFixture('memory', { heartbeatInterval: 100 });
    try {
      const { token } = await createToken(TEST_KEY, { clientId: 'slow-uplink' });
      // a raw socket: it never answers the transport's pings
      const client = await StalledClient.connect(fx.server.url, `/v1/connect?token=${token}`);
      await client.until('"connected"');
      const frame = StalledClient.frame(
        JSON.stringify({
          type: 'publish',
          channel: 'session:up',
          ref: 1,
          ops: [{ data: 'x'.repeat(60_000) }],
        }),
      );
      // in 20 pieces, 50 ms apart: a second, ten heartbeat rounds, for one frame
      for (let at = 0; at < frame.length; at += Math.ceil(frame.length / 20)) {
        client.write(frame.subarray(at, at + Math.ceil(frame.length / 20)));
        await new Promise((r) => setTimeout(r, 50));
      }
      await client.until(reply('ack', 1), 5_000);
      assert.equal(client.socket.destroyed, false, 'still connected');
      client.destroy();
    } finally {
      await fx.close();
    }
  });

  it('a peer silent from the start has two whole rounds to answer; one that sends frames but no pongs stays', async () => {
    const fx = await startFixture('memory', { heartbeatInterval: 100 });
    try {
      const url = `${fx.server.url.replace('http', 'ws')}/v1/connect?key=${TEST_KEY}`;
      const open = (): { socket: WebSocket; heartbeats: () => number } => {
        const socket = new WebSocket(url, { autoPong: false });
        let count = 0;
        socket.on('message', (data) => {
          if ((JSON.parse(String(data)) as { type: string }).type === 'heartbeat') count += 1;
        });
        return { socket, heartbeats: () => count };
      };
      const talker = open();
      // a ping frame every 30 ms: the connection hears from its peer, though never a pong
      const pinging = setInterval(() => {
        if (talker.socket.readyState === WebSocket.OPEN) talker.socket.send('{"type":"ping"}');
      }, 30);
      try {
        const silent = open();
        const code = await new Promise<number>((resolve) => silent.socket.on('close', (c) => resolve(c)));
        assert.equal(code, 1006);
        // rounds 1 and 2 send a heartbeat (and a ping); round 3 finds two unanswered and drops it
        assert.equal(silent.heartbeats(), 2, 'dropped at the third round, not the second');
        while (talker.heartbeats() < 5 && talker.socket.readyState === WebSocket.OPEN)
          await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal(talker.socket.readyState, WebSocket.OPEN, 'frames count as answers');
        talker.socket.close();
      } finally {
        clearInterval(pinging);
      }
    } finally {
      await fx.close();
    }
  });

  it('a frame whose handling fails unexpectedly is answered `internal` and logged with its error; refusals are not logged as errors', async () => {
    const { logger, errors } = captureLog();
    const fx = await startFixture('memory', { logger, store: new BrokenStore() });
    try {
      const client = await RawClient.connect(fx.server.url);
      const failed = await client.request({ type: 'publish', channel: 'broken', ops: [{ data: 1 }] });
      assert.equal(failed.type === 'error' && failed.error.code, 'internal');
      const refused = await client.request({ type: 'detach', channel: 'never-attached' });
      assert.equal(refused.type === 'error' && refused.error.code, 'not_attached');
      assert.equal(
        refused.type === 'error' && refused.channel,
        'never-attached',
        'an error names the channel of the frame it answers',
      );
      assert.equal('channel' in failed && failed.channel, 'broken');
      const bad = await client.request({ type: 'ping', extra: true });
      assert.ok(bad.type === 'error' && !('channel' in bad), 'and no channel for a frame without one');
      assert.deepEqual(
        errors().map((l) => [l.msg, l.err?.message]),
        [['frame handler failed', 'disk on fire']],
        'the failure once, with its cause; the refusal not at all',
      );
      await client.close();
    } finally {
      await fx.close();
    }
  });

  it('heartbeat rounds in slices reach every connection, round after round, and drop a dead peer', async () => {
    // 2 connections per turn: a round over 6 is spread over 3 turns of the event loop
    const fx = await startFixture('memory', { heartbeatInterval: 100, heartbeatSlice: 2 });
    try {
      const healthy = await Promise.all(Array.from({ length: 5 }, () => RawClient.connect(fx.server.url)));
      const url = `${fx.server.url.replace('http', 'ws')}/v1/connect?key=${TEST_KEY}`;
      const dead = new WebSocket(url, { autoPong: false });
      const code = await new Promise<number | 'still open'>((resolve) => {
        dead.on('close', (c) => resolve(c));
        setTimeout(() => resolve('still open'), 10_000).unref();
      });
      assert.equal(code, 1006, 'dropped without a close handshake (it is the last of three slices)');
      for (const [i, client] of healthy.entries()) {
        await client.next(() => client.frames.filter((f) => f.type === 'heartbeat').length >= 3);
        assert.equal(client.closeCode, undefined, `connection ${i} answers pings and stays connected`);
      }
      await Promise.all(healthy.map((c) => c.close()));
    } finally {
      await fx.close();
    }
  });

  it('refuses a heartbeat slice that is not a whole number of connections', async () => {
    await assert.rejects(startFixture('memory', { heartbeatSlice: 0 }), /heartbeatSlice must be/);
    await assert.rejects(startFixture('memory', { heartbeatSlice: 2.5 }), /heartbeatSlice must be/);
    const fx = await startFixture('memory', { heartbeatSlice: 1 }); // one connection per slice
    await fx.close();
  });

  it('refuses a heartbeat interval that is not above 0 and below 60 s (idle-timeout proxies close at 60 s)', async () => {
    for (const heartbeatInterval of [0, -1, 60_000, Number.NaN])
      await assert.rejects(
        startFixture('memory', { heartbeatInterval }),
        /heartbeatInterval must be between 0 and 60,000 ms/,
        String(heartbeatInterval),
      );
    const fx = await startFixture('memory', { heartbeatInterval: 59_999 });
    await fx.close();
  });

  it('refuses durations that are not finite, negative, or 0 where 0 would spin a timer', async () => {
    for (const [options, message] of [
      [
        { connectionStateTtl: Number.POSITIVE_INFINITY },
        /connectionStateTtl must be a number of ms at least 0, got Infinity/,
      ],
      [{ presenceGrace: -1 }, /presenceGrace must be a number of ms at least 0, got -1/],
      [{ firstPollTimeout: 0 }, /firstPollTimeout must be a number of ms above 0, got 0/],
      [{ trimInterval: Number.NaN }, /trimInterval must be a number of ms above 0, got NaN/],
      [{ sweepInterval: 0 }, /sweepInterval must be a number of ms above 0/],
      [{ nodeTtl: '3s' as unknown as number }, /nodeTtl must be a number of ms above 0, got 3s/],
      [{ forwardTimeout: 0 }, /forwardTimeout must be/],
      [{ metricsSampleInterval: 0 }, /metricsSampleInterval must be/],
    ] as const)
      await assert.rejects(startFixture('memory', options), message, JSON.stringify(options));
    const fx = await startFixture('memory', { connectionStateTtl: 0, presenceGrace: 0, firstPollTimeout: 1 });
    await fx.close();
  });

  it('with a connection state TTL of 0 a dropped connection keeps no identity (0 is not "the default")', async () => {
    for (const [connectionStateTtl, resumed] of [
      [0, false],
      [60_000, true],
    ] as const) {
      const fx = await startFixture('memory', { connectionStateTtl });
      try {
        const phone = await RawClient.connect(fx.server.url, { clientId: 'phone' });
        phone.kill();
        await new Promise((r) => setTimeout(r, 50));
        const back = await RawClient.connect(fx.server.url, {
          clientId: 'phone',
          recover: phone.connected.connectionKey,
        });
        assert.equal(back.connected.resumed, resumed, `TTL ${connectionStateTtl}`);
        await back.close();
      } finally {
        await fx.close();
      }
    }
  });

  it('drops a slow consumer while others keep receiving, and it resumes losslessly', async () => {
    const fx = await startFixture('memory', { limits: { maxSendBuffer: 64 * 1024 } });
    try {
      const channel = 'session:slow';
      const pub = await RawClient.connect(fx.server.url);
      const first = await pub.publish(channel, [{ id: 's-first', data: 'before' }]);
      const fast = await RawClient.connect(fx.server.url);
      await fast.attach(channel);
      const slow = await StalledClient.connect(fx.server.url, `/v1/connect?key=${TEST_KEY}`);
      slow.sendText(JSON.stringify({ type: 'attach', channel }));
      await new Promise((r) => setTimeout(r, 50));
      slow.stall();
      const chunk = 'x'.repeat(16 * 1024);
      let published = 0;
      while (fx.server.connections === 3 && published < 2_000) {
        await pub.publish(channel, [{ id: `s${published}`, data: chunk }]);
        published++;
      }
      assert.equal(fx.server.connections, 2, 'the slow consumer was disconnected, the others were not');
      await fast
        .next(() => fast.messages(channel).length === published)
        .catch(() => {
          throw new Error(
            `fast subscriber got ${fast.messages(channel).length} of ${published}, closed: ${fast.closeCode}`,
          );
        });
      assert.equal(fast.messages(channel).length, published, 'the fast subscriber got everything');
      slow.destroy();

      // it comes back and resumes from the position it had: nothing is lost
      const back = await RawClient.connect(fx.server.url);
      const attached = await back.attach(channel, { from: first.results[0]!.serial });
      assert.equal(attached.resumed, true);
      assert.equal(fold(back.messages(channel)).size, published);
      await Promise.all([fast.close(), pub.close(), back.close()]);
    } finally {
      await fx.close();
    }
  });

  it('closes a connection that sends a frame above maxFrameSize with 1009; the server lives on', async () => {
    const fx = await startFixture('memory', { limits: { maxFrameSize: 4096 } });
    try {
      const big = await RawClient.connect(fx.server.url);
      big.send(JSON.stringify({ type: 'ping', pad: 'x'.repeat(10_000) }));
      assert.equal(await big.closed(), 1009);
      const next = await RawClient.connect(fx.server.url);
      assert.equal((await next.request({ type: 'ping' })).type, 'pong');
      await next.close();
    } finally {
      await fx.close();
    }
  });

  it('on shutdown tells every client to reconnect (disconnect shutting_down, 1012) and keeps acked data', async () => {
    const fx = await startFixture('sqlite');
    try {
      const c = await RawClient.connect(fx.server.url);
      const ack = await c.publish('session:bye', [{ id: 'k1', data: 'kept' }]);
      const closing = fx.server.close();
      const frame = await c.next((f) => f.type === 'disconnect');
      assert.equal(frame.type === 'disconnect' && frame.reason, 'shutting_down');
      assert.equal(frame.type === 'disconnect' && frame.reconnect, true);
      assert.equal(await c.closed(), 1012);
      await closing;
      const server = await fx.restart();
      const again = await RawClient.connect(server.url);
      await again.attach('session:bye', { start: true });
      assert.equal(again.messages('session:bye')[0]?.serial, ack.results[0]?.serial);
      await again.close();
    } finally {
      await fx.close();
    }
  });

  it('port 0 is a free port of the system, not the default 8080: two servers side by side', async () => {
    const options = { host: '127.0.0.1', port: 0, keys: [TEST_KEY] };
    const [a, b] = await Promise.all([startServer(options), startServer(options)]);
    try {
      assert.notEqual(a.port, b.port);
      assert.ok(a.port !== 8080 && b.port !== 8080);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('a start that fails leaves nothing open: options are checked first, a part that fails closes the store, and a throw after listening gives the port back', async () => {
    // options are refused before the store is opened: no SQLite file appears
    const dir = await mkdtemp(join(tmpdir(), 'mooring-start-'));
    const path = join(dir, 'never.db');
    try {
      await assert.rejects(
        startServer({ port: 0, keys: [TEST_KEY], store: { kind: 'sqlite', path }, heartbeatSlice: 0 }),
        /heartbeatSlice must be/,
      );
      assert.equal(existsSync(path), false, 'the store was opened before the options were checked');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    // a part opened after the store fails (the bus, as a Redis hub whose subscriber is refused)
    let closedStores = 0;
    const store = new MemoryStore();
    const close = store.close.bind(store);
    store.close = () => {
      closedStores++;
      return close();
    };
    const hub = () => {
      throw new Error('bus refused');
    };
    await assert.rejects(startServer({ port: 0, keys: [TEST_KEY], store, hub }), /bus refused/);
    assert.equal(closedStores, 1, 'the store stayed open after a failed start');

    // the caller's logger throws on "listening": the port is closed again, not left bound
    let port = 0;
    const logger = pino({ level: 'silent' });
    logger.info = ((fields: { port?: number }, message?: string) => {
      if (message === 'listening') {
        port = fields.port ?? 0;
        throw new Error('logger broke');
      }
    }) as typeof logger.info;
    await assert.rejects(
      startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], logger }),
      /logger broke/,
    );
    assert.ok(port > 0);
    const refused = await new Promise<string | undefined>((resolve) => {
      const socket = netConnect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(undefined);
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code));
    });
    assert.equal(refused, 'ECONNREFUSED', 'the failed start left its port listening');
  });

  it('a shutdown with no HTTP request in flight does not wait out the 3 s it gives them', async () => {
    const fx = await startFixture('memory');
    const c = await RawClient.connect(fx.server.url);
    await c.publish('session:quick', [{ data: 'x' }]);
    const started = performance.now();
    await fx.server.close();
    // a wide margin: it is not a speed test, only "not the 3 s deadline"
    assert.ok(performance.now() - started < 2_000, 'close() waited for requests that were not there');
    await fx.close();
  });

  it('on shutdown answers the HTTP requests in flight before it drops their sockets, and turns later ones away', async () => {
    const store = new GatedStore(new MemoryStore());
    const server = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], store });
    try {
      const stored = await rest(server, '/v1/channels/session:slow/messages', {
        body: { name: 't', data: 'kept' },
      });
      assert.equal(stored.status, 200);
      // a history read held by the store when the server is told to stop
      const gate = store.arm('history', 'early');
      const socket = netConnect(server.port, '127.0.0.1');
      let answers = '';
      socket.on('data', (d) => {
        answers += d.toString();
      });
      const ended = new Promise((resolve) => socket.on('close', resolve));
      socket.write(
        `GET /v1/channels/session:slow/messages HTTP/1.1\r\nhost: mooring\r\nauthorization: Bearer ${TEST_KEY}\r\n\r\n`,
      );
      await gate.reached;
      const closing = server.close();
      // the next request on that keep-alive connection, sent once the shutdown began
      socket.write('GET /health HTTP/1.1\r\nhost: mooring\r\n\r\n');
      setTimeout(gate.release, 100);
      await ended;
      await closing;
      const [read, late] = answers.split(/(?=HTTP\/1\.1 )/);
      assert.match(read ?? '', /^HTTP\/1\.1 200/);
      assert.match(read ?? '', /"data":"kept"/, 'the read in flight is answered whole');
      assert.match(late ?? '', /^HTTP\/1\.1 503/);
      assert.match(late ?? '', /"code":"shutting_down"/);
    } finally {
      await server.close();
    }
  });
});
