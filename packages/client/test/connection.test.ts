// The connection driver with fake timers and a fake transport: what each state does (ARCHITECTURE.md §5,
// PROTOCOL.md §5.3, §8): retries, suspension, permanent failures, dead-connection detection, close.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AttachFrame, MAX_CONNECT_ATTACH_CHARS, type ServerFrame } from '@mooring/protocol';
import type { ConnectionDeps, ConnectionStateChange } from '../src/connection.ts';
import { Connection } from '../src/connection.ts';
import { DEFAULT_CLIENT_TIMINGS } from '../src/timings.ts';
import { fixedTransport } from '../src/transport-selector.ts';
import { FakeTimers } from './helpers/fake-timers.ts';
import { fakeTransports, flush } from './helpers/fake-transport.ts';

function setup(
  random = () => 0.5,
  more: {
    params?: ConnectionDeps['params'];
    onConnected?: () => void;
    preattach?: () => AttachFrame[];
    onFrame?: (frame: ServerFrame) => boolean;
  } = {},
) {
  const timers = new FakeTimers();
  const transports = fakeTransports();
  const changes: ConnectionStateChange[] = [];
  const connected: string[] = [];
  const connection = new Connection({
    transports: fixedTransport('ws://mooring.test/v1/connect', transports.factory),
    params: more.params ?? (() => ({ key: 'app:secret', clientId: 'agent-1' })),
    recover: undefined,
    timers,
    random,
    timings: DEFAULT_CLIENT_TIMINGS,
    adoptServerTtl: true,
    hooks: {
      onConnected: (frame) => {
        connected.push(frame.connectionId);
        more.onConnected?.();
      },
      onFrame: more.onFrame ?? (() => false),
      onStateChange: () => {},
      ...(more.preattach ? { preattach: more.preattach } : {}),
    },
  });
  connection.on('statechange', (change) => changes.push(change));
  const states = () => changes.map((c) => c.current);
  return { timers, transports, connection, changes, connected, states };
}

async function connect(s: ReturnType<typeof setup>) {
  s.connection.connect();
  await flush();
  s.transports.last().connected();
  assert.equal(s.connection.state, 'connected');
}

describe('Connection', () => {
  it('connects with the protocol version, credentials and clientId on the URL', async () => {
    const s = setup();
    assert.equal(s.connection.state, 'initialized');
    s.connection.connect();
    assert.equal(s.connection.state, 'connecting');
    await flush();
    const t = s.transports.last();
    assert.equal(t.query.get('v'), '1');
    assert.equal(t.query.get('key'), 'app:secret');
    assert.equal(t.query.get('clientId'), 'agent-1');
    assert.equal(t.query.get('recover'), null);
    t.connected({ connectionId: 'c_abc', connectionKey: 'c_abc.sig' });
    assert.deepEqual(s.changes, [
      { previous: 'initialized', current: 'connecting', reason: undefined, retryIn: undefined },
      { previous: 'connecting', current: 'connected', reason: undefined, retryIn: undefined },
    ]);
    assert.equal(s.connection.id, 'c_abc');
    assert.equal(s.connection.key, 'c_abc.sig');
    assert.deepEqual(s.connected, ['c_abc']);
  });

  it('retries at once after a drop, recovering the connection identity', async () => {
    const s = setup();
    await connect(s);
    const key = s.connection.key;
    s.transports.last().end({ code: 1006, reason: '' });
    assert.equal(s.connection.state, 'disconnected');
    assert.equal(s.changes.at(-1)?.retryIn, 0);
    assert.equal(s.changes.at(-1)?.reason?.code, 'disconnected');
    s.timers.advance(0);
    assert.equal(s.connection.state, 'connecting');
    await flush();
    assert.equal(s.transports.made.length, 2);
    assert.equal(s.transports.last().query.get('recover'), key);
  });

  it('backs off between failed retries within the full-jitter bounds, then suspends after the TTL', async () => {
    const s = setup(() => 0.999);
    await connect(s);
    s.transports.last().end({ code: 1006, reason: '' });
    s.timers.advance(0);
    let attempt = 0;
    while (s.connection.state !== 'suspended') {
      assert.equal(s.connection.state, 'connecting');
      await flush();
      s.transports.last().end({ code: 1006, reason: '' });
      if ((s.connection.state as string) === 'suspended') break;
      attempt += 1;
      const retryIn = s.changes.at(-1)?.retryIn ?? -1;
      const ceiling = Math.min(15_000, 1_000 * 2 ** (attempt - 1));
      assert.ok(retryIn >= 0 && retryIn < ceiling, `retry ${attempt} waits ${retryIn} < ${ceiling}`);
      s.timers.advance(retryIn);
      assert.ok(attempt < 100, 'suspends eventually');
    }
    assert.equal(s.changes.at(-1)?.retryIn, DEFAULT_CLIENT_TIMINGS.suspendedRetryTimeout);
    // Suspended retries every suspendedRetryTimeout…
    s.timers.advance(DEFAULT_CLIENT_TIMINGS.suspendedRetryTimeout - 1);
    assert.equal(s.connection.state, 'suspended');
    s.timers.advance(1);
    assert.equal(s.connection.state, 'connecting');
    await flush();
    s.transports.last().end({ code: 1006, reason: '' });
    assert.equal(s.connection.state, 'suspended');
    // …and connect() retries now.
    s.connection.connect();
    assert.equal(s.connection.state, 'connecting');
    await flush();
    s.transports.last().connected();
    assert.equal(s.connection.state, 'connected');
  });

  it('fails on close code 4001 and does not retry', async () => {
    const s = setup();
    await connect(s);
    s.transports.last().end({ code: 4001, reason: 'unauthorized' });
    assert.equal(s.connection.state, 'failed');
    assert.equal(s.connection.errorReason?.code, 'unauthorized');
    assert.equal(s.connection.errorReason?.retryable, false);
    s.timers.advance(10 * 60_000);
    assert.equal(s.transports.made.length, 1, 'no retry loop');
    assert.deepEqual(s.timers.pending(), []);
  });

  it('fails on a refused handshake with 401 and its error body', async () => {
    const s = setup();
    s.connection.connect();
    await flush();
    s.transports.last().end({
      code: 1006,
      reason: '',
      httpStatus: 401,
      error: { code: 'unauthorized', status: 401, retryable: false, message: 'unknown key' },
    });
    assert.equal(s.connection.state, 'failed');
    assert.equal(s.connection.errorReason?.message, 'unknown key');
    s.timers.advance(60_000);
    assert.equal(s.transports.made.length, 1);
  });

  it('retries a refused handshake with 429 or 503, and a 4029 close', async () => {
    for (const end of [
      { code: 1006, reason: '', httpStatus: 429 },
      { code: 1006, reason: '', httpStatus: 503 },
      { code: 4029, reason: 'too many connections' },
      { code: 4011, reason: 'token expired' },
    ]) {
      const s = setup();
      s.connection.connect();
      await flush();
      s.transports.last().end(end);
      assert.equal(s.connection.state, 'disconnected', JSON.stringify(end));
    }
  });

  it('a handshake refused without an error body fails on 400 to 499 (but 408 and 429), and retries 408 and 5xx, with the code of its status', async () => {
    for (const [status, expected, code] of [
      [400, 'failed', 'bad_request'],
      [499, 'failed', 'bad_request'],
      [408, 'disconnected', 'bad_request'],
      [429, 'disconnected', 'too_many_connections'],
      [500, 'disconnected', 'internal'],
      [503, 'disconnected', 'store_unavailable'],
    ] as const) {
      const s = setup();
      s.connection.connect();
      await flush();
      s.transports.last().end({ code: 1006, reason: '', httpStatus: status });
      assert.equal(s.connection.state, expected, `HTTP ${status}`);
      assert.equal(s.connection.errorReason?.retryable, expected === 'disconnected', `HTTP ${status}`);
      assert.equal(s.connection.errorReason?.status, status);
      assert.equal(s.connection.errorReason?.code, code, `HTTP ${status}: the code of its status`);
    }
  });

  it('a dropped connection says why: the transport error, else the close reason, else the close code', async () => {
    for (const [end, detail] of [
      [{ code: 1006, reason: 'ignored', localError: 'the stream broke' }, '(the stream broke)'],
      [{ code: 1001, reason: 'going away' }, '(going away)'],
      [{ code: 1006, reason: '' }, '(close code 1006)'],
    ] as const) {
      const s = setup();
      await connect(s);
      s.transports.last().end(end);
      assert.equal(s.connection.errorReason?.code, 'disconnected');
      assert.equal(s.connection.errorReason?.retryable, true);
      assert.ok(s.connection.errorReason?.message.includes(detail), s.connection.errorReason?.message);
    }
  });

  it('follows the server disconnect frame: reconnect true retries, false fails', async () => {
    const a = setup();
    await connect(a);
    a.transports.last().frame({ type: 'disconnect', reason: 'shutting_down', reconnect: true });
    assert.equal(a.connection.state, 'disconnected');
    assert.equal(a.connection.errorReason?.code, 'shutting_down');
    assert.ok(a.transports.last().aborted);

    const b = setup();
    await connect(b);
    b.transports.last().frame({
      type: 'disconnect',
      reason: 'forbidden',
      reconnect: false,
      error: { code: 'forbidden', status: 403, retryable: false, message: 'key revoked' },
    });
    assert.equal(b.connection.state, 'failed');
    assert.equal(b.connection.errorReason?.message, 'key revoked');
  });

  it('after the server ended a live connection (disconnect frame, close 1001 or 1012) the first retry waits random × initialRetryDelay; after a drop it goes out at once', async () => {
    const endings = [
      [
        'disconnect shutting_down',
        (s: ReturnType<typeof setup>) =>
          s.transports.last().frame({ type: 'disconnect', reason: 'shutting_down', reconnect: true }),
      ],
      [
        'close 1012',
        (s: ReturnType<typeof setup>) => s.transports.last().end({ code: 1012, reason: 'restart' }),
      ],
      [
        'close 1001',
        (s: ReturnType<typeof setup>) => s.transports.last().end({ code: 1001, reason: 'going away' }),
      ],
    ] as const;
    for (const [name, end] of endings) {
      const s = setup(() => 0.25);
      await connect(s);
      end(s);
      assert.equal(s.connection.state, 'disconnected', name);
      assert.equal(s.connection.retryIn, 250, name);
      assert.equal(s.changes.at(-1)?.retryIn, 250, `${name}: the statechange tells it`);
      s.timers.advance(249);
      await flush();
      assert.equal(s.transports.made.length, 1, `${name}: retried before its delay`);
      s.timers.advance(1);
      await flush();
      assert.equal(s.connection.state, 'connecting', name);
      assert.equal(s.transports.made.length, 2, name);
    }
    for (const end of [
      { code: 1006, reason: '' },
      { code: 4000, reason: 'heartbeat timeout' },
    ]) {
      const s = setup(() => 0.25);
      await connect(s);
      s.transports.last().end(end);
      assert.equal(s.connection.retryIn, 0, `close ${end.code}`);
      s.timers.advance(0);
      await flush();
      assert.equal(s.transports.made.length, 2, `close ${end.code}: retried at once`);
    }
  });

  it('declares a silent connection dead after maxIdleInterval + 10 s; any frame resets the clock', async () => {
    const s = setup();
    await connect(s); // maxIdleInterval 15 000
    s.timers.advance(24_999);
    assert.equal(s.connection.state, 'connected');
    s.transports.last().frame({ type: 'heartbeat', serverTime: 0 });
    s.timers.advance(24_999);
    assert.equal(s.connection.state, 'connected');
    s.timers.advance(1);
    // Dropped, and (the first retry being immediate) already reconnecting.
    assert.deepEqual(s.states().slice(-2), ['disconnected', 'connecting']);
    assert.equal(s.changes.at(-2)?.reason?.code, 'timeout');
    assert.ok(s.transports.made[0]?.aborted, 'the dead transport is dropped, not waited for');
  });

  it("traffic that is not a frame resets the clock too, but only the current transport's", async () => {
    const s = setup();
    await connect(s); // dead after 25 000 ms of silence
    s.timers.advance(24_999);
    s.transports.last().activity(); // an SSE comment, an empty long-poll answer
    s.timers.advance(24_999);
    assert.equal(s.connection.state, 'connected');
    s.timers.advance(1);
    assert.equal(s.connection.state, 'connecting', 'dead 25 s after the activity');
    await flush();
    const [old, current] = s.transports.made;
    current?.connected();
    s.timers.advance(24_999);
    old?.activity();
    s.timers.advance(1);
    assert.equal(s.connection.state, 'connecting', "an old transport's traffic proves nothing");
    assert.equal(s.transports.made.length, 2);
  });

  it("reports the current transport's protocol errors, not an old one's", async () => {
    const s = setup();
    const errors: string[] = [];
    s.connection.on('error', (e) => errors.push(`${e.code}: ${e.message}`));
    await connect(s);
    s.transports.last().protocolError('a frame that is not JSON');
    assert.deepEqual(errors, ['protocol_error: the server sent a frame that is not JSON']);
    s.transports.last().end({ code: 1006, reason: '' });
    s.timers.advance(0);
    await flush();
    s.transports.made[0]?.protocolError('late junk');
    assert.equal(errors.length, 1);
  });

  it('asks for as many attaches with the connection request as fit in MAX_CONNECT_ATTACH_CHARS, to the character', async () => {
    // the parameter is `[` + entries joined by `,` + `]`; an entry is the attach frame without its type
    const entry = (channel: string): string => JSON.stringify({ channel, ref: 1 });
    const frame = (channel: string): AttachFrame => ({ type: 'attach', channel, ref: 1 });
    const a = 'a'.repeat(1000);
    const room = MAX_CONNECT_ATTACH_CHARS - (1 + entry(a).length + 1) - 1; // the last 1: `]`
    const fits = 'b'.repeat(room - entry('').length);
    const over = `${fits}x`;
    assert.equal(`[${entry(a)},${entry(fits)}]`.length, MAX_CONNECT_ATTACH_CHARS);
    let frames = [frame(a), frame(over), frame('c')];
    const s = setup(undefined, { preattach: () => frames });
    s.connection.connect();
    await flush();
    assert.deepEqual(
      JSON.parse(s.transports.last().query.get('attach') ?? '[]').map((e: { channel: string }) => e.channel),
      [a, 'c'],
      'one character over: left for an attach frame; a later one that fits still goes',
    );
    frames = [frame(a), frame(fits)];
    s.transports.last().end({ code: 1006, reason: '' });
    s.timers.advance(DEFAULT_CLIENT_TIMINGS.realtimeRequestTimeout);
    await flush();
    assert.equal(s.transports.last().query.get('attach')?.length, MAX_CONNECT_ATTACH_CHARS);
  });

  it('a busy connection makes no idle timer per frame, and is still dead exactly the silence after its last frame', async () => {
    const s = setup();
    await connect(s); // maxIdleInterval 15 000: dead after 25 000 ms of silence
    const made = s.timers.made;
    for (let i = 0; i < 3_000; i++) {
      s.timers.advance(10); // 30 s of frames, longer than the silence allowed
      s.transports.last().frame({ type: 'heartbeat', serverTime: 0 });
    }
    assert.equal(s.connection.state, 'connected');
    assert.ok(s.timers.made - made <= 3, `${s.timers.made - made} timers for 3,000 frames`);
    s.timers.advance(24_999);
    assert.equal(s.connection.state, 'connected');
    s.timers.advance(1);
    assert.equal(s.changes.at(-2)?.reason?.code, 'timeout');
  });

  it('treats a failed send as a dead connection', async () => {
    const s = setup();
    await connect(s);
    s.transports.last().failSends = true;
    assert.equal(s.connection.send({ type: 'ping', ref: 1 }), false);
    assert.equal(s.connection.state, 'disconnected');
  });

  it('a change made while a state is entered is heard after it: a resend failing as the connection opens', async () => {
    const s = setup(undefined, { onConnected: () => s.connection.send({ type: 'ping', ref: 1 }) });
    s.connection.connect();
    await flush();
    s.transports.last().failSends = true;
    s.transports.last().connected();
    assert.deepEqual(
      s.changes.map((c) => `${c.previous}->${c.current}`),
      ['initialized->connecting', 'connecting->connected', 'connected->disconnected'],
      'listeners hear the changes in the order they happened',
    );
    assert.equal(s.connection.state, 'disconnected');
  });

  it('credentials that arrive after their attempt gave up open nothing; the next attempt uses its own', async () => {
    const pending: ((params: Record<string, string>) => void)[] = [];
    const s = setup(undefined, { params: () => new Promise((resolve) => pending.push(resolve)) });
    s.connection.connect();
    await flush();
    s.timers.advance(DEFAULT_CLIENT_TIMINGS.realtimeRequestTimeout);
    assert.equal(s.connection.state, 'disconnected');
    while (pending.length < 2) {
      s.timers.advance(s.connection.retryIn ?? 0);
      await flush();
    }
    assert.equal(s.connection.state, 'connecting');
    pending[0]?.({ key: 'stale:1' });
    await flush();
    assert.equal(s.transports.made.length, 0, "the first attempt's credentials came too late");
    pending[1]?.({ key: 'fresh:2' });
    await flush();
    assert.equal(s.transports.made.length, 1);
    assert.equal(s.transports.last().query.get('key'), 'fresh:2');
  });

  it('gives up an attempt that gets no connected frame in realtimeRequestTimeout', async () => {
    const s = setup();
    s.connection.connect();
    await flush();
    s.timers.advance(DEFAULT_CLIENT_TIMINGS.realtimeRequestTimeout);
    assert.equal(s.connection.state, 'disconnected');
    assert.equal(s.connection.errorReason?.code, 'timeout');
    assert.equal(s.connection.errorReason?.retryable, true);
  });

  it('closes gracefully: close frame, then closed when the server closes', async () => {
    const s = setup();
    await connect(s);
    s.connection.close();
    assert.equal(s.connection.state, 'closing');
    assert.deepEqual(s.transports.last().sent.at(-1), { type: 'close' });
    s.transports.last().end({ code: 1000, reason: '' });
    assert.equal(s.connection.state, 'closed');
    s.timers.advance(60_000);
    assert.equal(s.transports.made.length, 1);
  });

  it('hands frames to the client while connected and while closing (late acks), none before connected', async () => {
    const heard: string[] = [];
    const s = setup(undefined, {
      onFrame: (frame) => {
        heard.push(`${frame.type} ${'ref' in frame ? frame.ref : ''}`);
        return true;
      },
    });
    s.connection.connect();
    await flush();
    const t = s.transports.last();
    t.frame({ type: 'ack', ref: 1, channel: 'x', results: [] }); // not connected yet
    t.connected();
    t.frame({ type: 'ack', ref: 2, channel: 'x', results: [] });
    s.connection.close();
    assert.equal(s.connection.state, 'closing');
    t.frame({ type: 'ack', ref: 3, channel: 'x', results: [] }); // a publish sent before the close
    assert.deepEqual(heard, ['ack 2', 'ack 3']);
  });

  it('reports an error frame that answers nothing the client tracks; other untaken frames pass quietly', async () => {
    const s = setup(); // the client takes no frame
    const errors: string[] = [];
    s.connection.on('error', (e) => errors.push(`${e.code}: ${e.message}`));
    await connect(s);
    const t = s.transports.last();
    t.frame({ type: 'detached', channel: 'nobody-asked' });
    assert.deepEqual(errors, []);
    t.frame({
      type: 'error',
      error: { code: 'invalid_frame', status: 400, retryable: false, message: 'frame is not valid JSON' },
    });
    assert.deepEqual(errors, ['invalid_frame: frame is not valid JSON']);
  });

  it('closes even when the server never answers the close', async () => {
    const s = setup();
    await connect(s);
    s.connection.close();
    s.timers.advance(DEFAULT_CLIENT_TIMINGS.realtimeRequestTimeout);
    assert.equal(s.connection.state, 'closed');
    assert.ok(s.transports.last().aborted);
  });

  it('close() while disconnected stops retrying', async () => {
    const s = setup();
    await connect(s);
    s.transports.last().end({ code: 1006, reason: '' });
    s.connection.close();
    assert.equal(s.connection.state, 'closed');
    s.timers.advance(60_000);
    assert.equal(s.transports.made.length, 1);
  });

  it('retries at once when the network comes back', async () => {
    const s = setup(() => 0.999);
    s.connection.connect();
    await flush();
    s.transports.last().end({ code: 1006, reason: '' });
    assert.equal(s.connection.state, 'disconnected');
    assert.ok((s.connection.retryIn ?? 0) > 0);
    s.connection.networkChanged('offline');
    assert.equal(s.connection.state, 'disconnected');
    s.connection.networkChanged('online');
    assert.equal(s.connection.state, 'connecting');
  });

  it('probes a connected transport after a network change and drops it when nothing answers', async () => {
    const s = setup();
    await connect(s);
    s.connection.networkChanged('visible');
    assert.equal(s.transports.last().sent.at(-1)?.type, 'ping');
    s.timers.advance(DEFAULT_CLIENT_TIMINGS.probeTimeout);
    assert.deepEqual(s.states().slice(-2), ['disconnected', 'connecting']);

    const alive = setup();
    await connect(alive);
    alive.connection.networkChanged('online');
    const ping = alive.transports.last().sent.at(-1);
    alive.transports.last().frame({ type: 'pong', ref: (ping as { ref: number }).ref, serverTime: 0 });
    alive.timers.advance(DEFAULT_CLIENT_TIMINGS.probeTimeout);
    assert.equal(alive.connection.state, 'connected');
  });

  it('a second network change while probing sends a second ping and gives it a whole probe timeout', async () => {
    const s = setup();
    await connect(s);
    const probe = DEFAULT_CLIENT_TIMINGS.probeTimeout;
    s.connection.networkChanged('online');
    s.timers.advance(probe / 2);
    s.connection.networkChanged('visible');
    assert.deepEqual(
      s.transports.last().sent.map((f) => f.type),
      ['ping', 'ping'],
    );
    s.timers.advance(probe - 1);
    assert.equal(s.connection.state, 'connected', 'the second ping has its own probe timeout');
    s.timers.advance(1);
    assert.deepEqual(s.states().slice(-2), ['disconnected', 'connecting']);
  });

  it('measures ping round trips', async () => {
    const s = setup();
    await connect(s);
    const rtt = s.connection.ping();
    const ping = s.transports.last().sent.at(-1) as { ref: number };
    s.timers.advance(42);
    s.transports.last().frame({ type: 'pong', ref: ping.ref, serverTime: 0 });
    assert.equal(await rtt, 42);
  });

  it('emits per-state events', async () => {
    const s = setup();
    const seen: string[] = [];
    s.connection.on('connected', (c) => seen.push(`${c.previous}->${c.current}`));
    await connect(s);
    assert.deepEqual(seen, ['connecting->connected']);
  });
});
