// Transport choice in the connection, with fake transports and fake timers (ARCHITECTURE.md §5 "Transports
// and fallback", PROTOCOL.md §12): the fallback chain within one `connecting` state, what never falls
// back, what is remembered, and the background upgrade with its switch — timing-exact, no sockets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnectionStateChange, TransportChange } from '../src/connection.ts';
import { Connection } from '../src/connection.ts';
import { DEFAULT_CLIENT_TIMINGS } from '../src/timings.ts';
import type { TransportKind } from '../src/transport.ts';
import { probeTransport } from '../src/transport-probe.ts';
import {
  defaultTransportStorage,
  shouldFallBack,
  TransportSelector,
  transportKinds,
} from '../src/transport-selector.ts';
import { MemoryStorage } from './helpers/fake-client.ts';
import { FakeTimers } from './helpers/fake-timers.ts';
import { FakeTransport, flush } from './helpers/fake-transport.ts';

/** A fake HTTP transport: `drain` resolves when the test says its last POST was answered. */
class DrainingTransport extends FakeTransport {
  drained = false;
  #release: (() => void) | undefined;
  drain(): Promise<void> {
    return new Promise((resolve) => {
      this.#release = () => {
        this.drained = true;
        resolve();
      };
    });
  }
  releaseDrain(): void {
    this.#release?.();
  }
}

const ENDPOINTS = {
  websocket: 'ws://mooring.test/v1/connect',
  sse: 'http://mooring.test/v1/connect/sse',
  longpoll: 'http://mooring.test/v1/connect/poll',
};
const TIMINGS = {
  ...DEFAULT_CLIENT_TIMINGS,
  webSocketOpenTimeout: 4_000,
  sseOpenTimeout: 3_000,
  // the fake server sends no heartbeats: keep dead-connection detection out of the way
  idleGrace: 1_000_000_000,
};

function setup(
  options: {
    kinds?: TransportKind[];
    storage?: MemoryStorage;
    /** The credentials of each connection request (the handshake's, the upgrade's). */
    params?: () => Record<string, string> | Promise<Record<string, string>>;
  } = {},
) {
  const timers = new FakeTimers();
  const storage = options.storage ?? new MemoryStorage();
  const made: FakeTransport[] = [];
  const selector = new TransportSelector({
    kinds: transportKinds(options.kinds),
    endpoints: ENDPOINTS,
    create: (kind) => {
      const t = kind === 'websocket' ? new FakeTransport(kind) : new DrainingTransport(kind);
      made.push(t);
      return t;
    },
    fallbackTimeouts: {
      websocket: TIMINGS.webSocketOpenTimeout,
      sse: TIMINGS.sseOpenTimeout,
      longpoll: TIMINGS.realtimeRequestTimeout,
    },
    storage,
    storageKey: 'transport',
  });
  const states: ConnectionStateChange[] = [];
  const transports: TransportChange[] = [];
  const resumed: string[] = [];
  const connection = new Connection({
    transports: selector,
    params: options.params ?? (() => ({ key: 'app:secret' })),
    recover: undefined,
    timers,
    random: () => 0.5,
    timings: TIMINGS,
    adoptServerTtl: true,
    hooks: {
      onConnected: (frame) => resumed.push(frame.connectionId),
      onFrame: () => false,
      onStateChange: () => {},
    },
  });
  connection.on('statechange', (c) => states.push(c));
  connection.on('transport', (c) => transports.push(c));
  const last = () => {
    const t = made.at(-1);
    if (!t) throw new Error('no transport made');
    return t;
  };
  const endpointOf = (t: FakeTransport) => (t.url ?? '').split('?')[0];
  return { timers, storage, made, connection, states, transports, resumed, last, endpointOf };
}

describe('fallback chain', () => {
  it('WebSocket refused by a proxy (non-101, no Mooring body) → SSE at once, in the same connecting state', async () => {
    const s = setup();
    s.connection.connect();
    await flush();
    assert.equal(s.last().kind, 'websocket');
    s.last().end({ code: 1006, reason: '', httpStatus: 502 });
    await flush();
    const sse = s.last();
    assert.equal(sse.kind, 'sse');
    assert.equal(s.endpointOf(sse), ENDPOINTS.sse);
    assert.equal(sse.query.get('key'), 'app:secret');
    assert.equal(sse.query.get('v'), '1');
    sse.connected({ connectionId: 'c_1', connectionKey: 'c_1.k' });
    assert.deepEqual(
      s.states.map((c) => c.current),
      ['connecting', 'connected'],
    );
    assert.equal(s.connection.transport, 'sse');
    assert.deepEqual(s.transports, [{ previous: undefined, current: 'sse' }]);
    assert.equal(s.storage.getItem('transport'), 'sse');
  });

  it('no `connected` within webSocketOpenTimeout → SSE; none within sseOpenTimeout → long-polling', async () => {
    const s = setup();
    s.connection.connect();
    await flush();
    const ws = s.last();
    s.timers.advance(TIMINGS.webSocketOpenTimeout - 1);
    assert.equal(s.made.length, 1);
    s.timers.advance(1);
    assert.equal(ws.aborted, true);
    await flush();
    const sse = s.last();
    assert.equal(sse.kind, 'sse');
    s.timers.advance(TIMINGS.sseOpenTimeout);
    assert.equal(sse.aborted, true);
    await flush();
    const poll = s.last();
    assert.equal(poll.kind, 'longpoll');
    assert.equal(s.endpointOf(poll), ENDPOINTS.longpoll);
    // The last of the chain gets the whole realtimeRequestTimeout.
    s.timers.advance(TIMINGS.realtimeRequestTimeout - 1);
    assert.equal(s.connection.state, 'connecting');
    poll.connected();
    assert.equal(s.connection.transport, 'longpoll');
    assert.deepEqual(
      s.states.map((c) => c.current),
      ['connecting', 'connected'],
    );
  });

  it('the last transport timing out is a lost attempt; the next attempt starts from the best one again', async () => {
    const s = setup();
    s.connection.connect();
    await flush();
    s.timers.advance(TIMINGS.webSocketOpenTimeout);
    await flush();
    s.timers.advance(TIMINGS.sseOpenTimeout);
    await flush();
    s.timers.advance(TIMINGS.realtimeRequestTimeout);
    assert.equal(s.connection.state, 'disconnected');
    assert.equal(s.connection.errorReason?.code, 'timeout');
    s.timers.advance(s.connection.retryIn ?? 0);
    await flush();
    assert.equal(s.last().kind, 'websocket');
  });

  it('never falls back when the server itself answered with an error: 401 is permanent', async () => {
    const s = setup();
    s.connection.connect();
    await flush();
    s.last().end({
      code: 1006,
      reason: '',
      httpStatus: 401,
      error: { code: 'unauthorized', status: 401, retryable: false, message: 'bad key' },
    });
    await flush();
    assert.equal(s.made.length, 1);
    assert.equal(s.connection.state, 'failed');
    assert.equal(s.connection.errorReason?.code, 'unauthorized');
  });

  it('never falls back when nothing answers at all (an unreachable server): retried as a lost attempt', async () => {
    const s = setup();
    s.connection.connect();
    await flush();
    s.last().end({ code: 1006, reason: '', localError: 'connect ECONNREFUSED' });
    await flush();
    assert.equal(s.last().kind, 'sse', 'a browser cannot tell a refused WebSocket from a dead server');
    s.last().end({ code: 1006, reason: '', localError: 'fetch failed', unreachable: true });
    await flush();
    assert.equal(s.made.length, 2, 'no long-polling attempt');
    assert.equal(s.connection.state, 'disconnected');
  });

  it('starts from the remembered transport', async () => {
    const storage = new MemoryStorage();
    storage.setItem('transport', 'longpoll');
    const s = setup({ storage });
    s.connection.connect();
    await flush();
    assert.equal(s.last().kind, 'longpoll');
  });

  it('a remembered kind that is not allowed is ignored; a forced transport never falls back', async () => {
    const storage = new MemoryStorage();
    storage.setItem('transport', 'longpoll');
    const s = setup({ storage, kinds: ['sse'] });
    s.connection.connect();
    await flush();
    assert.equal(s.last().kind, 'sse');
    s.timers.advance(TIMINGS.sseOpenTimeout);
    assert.equal(s.made.length, 1, 'sseOpenTimeout does not apply to the only transport');
    s.last().end({ code: 1006, reason: '', httpStatus: 502 });
    await flush();
    assert.equal(s.made.length, 1);
    assert.equal(s.connection.state, 'disconnected');
  });

  it('shouldFallBack: timeouts and non-Mooring refusals yes; Mooring errors and unreachable servers no', () => {
    assert.equal(shouldFallBack('timeout'), true);
    assert.equal(shouldFallBack({ code: 1006, reason: '', httpStatus: 403 }), true);
    assert.equal(shouldFallBack({ code: 1006, reason: 'the stream ended' }), true);
    assert.equal(
      shouldFallBack({
        code: 1006,
        reason: '',
        httpStatus: 503,
        error: { code: 'shutting_down', status: 503, retryable: true, message: 'bye' },
      }),
      false,
    );
    assert.equal(shouldFallBack({ code: 1006, reason: '', unreachable: true }), false);
  });

  it('options.transports: known kinds only, not empty, duplicates dropped', () => {
    assert.deepEqual(transportKinds(undefined), ['websocket', 'sse', 'longpoll']);
    assert.deepEqual(transportKinds(['sse', 'sse', 'longpoll']), ['sse', 'longpoll']);
    assert.throws(() => transportKinds(['carrier-pigeon']), /unknown transport "carrier-pigeon"/);
    assert.throws(() => transportKinds([]), /empty/);
  });

  it("remembers the transport in the browser's localStorage where there is one, else in memory shared by the process's clients", () => {
    const before = Object.getOwnPropertyDescriptor(globalThis, 'localStorage');
    const setLocal = (descriptor: PropertyDescriptor) =>
      Object.defineProperty(globalThis, 'localStorage', { configurable: true, ...descriptor });
    const key = `transport-storage-test-${Math.random()}`;
    try {
      const local = new MemoryStorage();
      setLocal({ value: local });
      assert.equal(defaultTransportStorage(), local);
      for (const descriptor of [
        { value: undefined },
        { value: {} }, // not a Storage
        {
          get() {
            throw new Error('denied'); // privacy modes
          },
        },
      ]) {
        setLocal(descriptor);
        const a = defaultTransportStorage();
        const b = defaultTransportStorage();
        a.setItem(key, 'sse');
        assert.equal(b.getItem(key), 'sse', 'clients of the process share it');
        assert.equal(local.getItem(key), null);
        a.removeItem(key);
        assert.equal(b.getItem(key), null);
      }
    } finally {
      if (before) Object.defineProperty(globalThis, 'localStorage', before);
      else delete (globalThis as { localStorage?: unknown }).localStorage;
    }
  });
});

/** Connects on SSE (WebSocket refused) and returns the SSE transport. */
async function onSse(s: ReturnType<typeof setup>): Promise<DrainingTransport> {
  s.connection.connect();
  await flush();
  s.last().end({ code: 1006, reason: '', httpStatus: 502 });
  await flush();
  const sse = s.last() as DrainingTransport;
  sse.connected({ connectionId: 'c_1', connectionKey: 'c_1.k' });
  assert.equal(s.connection.transport, 'sse');
  return sse;
}

/** On SSE, with a WebSocket upgrade candidate opening (its probe passed): the old transport, the candidate. */
async function candidateOpening(s: ReturnType<typeof setup>) {
  const sse = await onSse(s);
  s.timers.advance(TIMINGS.upgradeInterval);
  await flush();
  s.last().connected(); // the probe
  await flush();
  return { sse, candidate: s.last() };
}

/** After a loss: the transport of the reconnect, opened once its backoff ran. */
async function reconnected(s: ReturnType<typeof setup>) {
  s.timers.advance(s.connection.retryIn ?? 0);
  await flush();
  return s.last();
}

describe('background upgrade', () => {
  it('probes WebSocket every upgradeInterval, then moves the connection to it: no state change', async () => {
    const s = setup();
    const sse = await onSse(s);
    s.states.length = 0;
    s.timers.advance(TIMINGS.upgradeInterval - 1);
    await flush();
    const before = s.made.length;
    s.timers.advance(1);
    await flush();
    // 1. a throwaway probe: no recover, closed with 1000 once `connected` arrived
    const probe = s.last();
    assert.equal(s.made.length, before + 1);
    assert.equal(probe.kind, 'websocket');
    assert.equal(probe.query.get('recover'), null);
    probe.connected({ connectionId: 'c_probe', connectionKey: 'c_probe.k' });
    assert.deepEqual(probe.closedBy, { code: 1000, reason: 'probe done' });
    await flush();
    // 2. the candidate takes the connection over with recover
    const candidate = s.last();
    assert.notEqual(candidate, probe);
    assert.equal(candidate.query.get('recover'), 'c_1.k');
    assert.equal(candidate.query.get('key'), 'app:secret');
    // The server drops the old transport as the candidate opens: not a loss yet.
    sse.end({ code: 1006, reason: 'the stream ended' });
    assert.equal(s.connection.state, 'connected');
    candidate.connected({ connectionId: 'c_1', connectionKey: 'c_1.k2', resumed: true });
    // 3. the old transport drains; nothing is sent meanwhile (it would be resent anyway)
    assert.equal(s.connection.send({ type: 'ping', ref: 99 }), false);
    assert.deepEqual(s.resumed, ['c_1'], 'no resume before the old transport drained');
    sse.releaseDrain();
    await flush();
    assert.deepEqual(s.resumed, ['c_1', 'c_1'], 're-attach and resend on the new transport');
    assert.equal(sse.aborted, true);
    assert.equal(s.connection.transport, 'websocket');
    assert.deepEqual(s.transports.at(-1), { previous: 'sse', current: 'websocket' });
    assert.equal(s.connection.key, 'c_1.k2');
    assert.deepEqual(s.states, [], 'the connection stayed connected');
    assert.equal(s.storage.getItem('transport'), 'websocket');
    assert.equal(s.connection.send({ type: 'ping', ref: 100 }), true);
    assert.deepEqual(candidate.sent, [{ type: 'ping', ref: 100 }]);
    // On the best transport: no more upgrades.
    const count = s.made.length;
    s.timers.advance(TIMINGS.upgradeInterval * 3);
    await flush();
    assert.equal(s.made.length, count);
  });

  it('a switch does not wait for ever on a drain that never ends', async () => {
    const s = setup();
    const { sse, candidate } = await candidateOpening(s);
    candidate.connected({ connectionId: 'c_1', connectionKey: 'c_1.k', resumed: true });
    assert.equal(s.connection.transport, 'sse');
    s.timers.advance(TIMINGS.realtimeRequestTimeout);
    assert.equal(sse.aborted, true);
    assert.equal(s.connection.transport, 'websocket');
    // the drain ends late after all: the switch is not made a second time (no second re-attach)
    const resumes = s.resumed.length;
    sse.releaseDrain();
    await flush();
    assert.equal(s.resumed.length, resumes);
  });

  it('an upgrade whose credentials cannot be had now (the auth source fails) is tried again after upgradeInterval', async () => {
    let asked = 0;
    const s = setup({
      params: () => {
        asked += 1;
        if (asked === 2) throw new Error('auth source down'); // the first upgrade's
        return { key: 'app:secret' };
      },
    });
    await onSse(s);
    const count = s.made.length;
    s.timers.advance(TIMINGS.upgradeInterval);
    await flush();
    assert.equal(asked, 2);
    assert.equal(s.made.length, count, 'no probe without credentials');
    assert.equal(s.connection.state, 'connected');
    s.timers.advance(TIMINGS.upgradeInterval);
    await flush();
    assert.equal(s.made.length, count + 1, 'tried again: a probe');
    assert.equal(s.last().kind, 'websocket');
  });

  it('a failed probe leaves the fallback alone and tries again later', async () => {
    const s = setup();
    const sse = await onSse(s);
    s.timers.advance(TIMINGS.upgradeInterval);
    await flush();
    const probe = s.last();
    s.timers.advance(TIMINGS.webSocketOpenTimeout);
    await flush();
    assert.equal(probe.aborted, true);
    assert.equal(s.connection.state, 'connected');
    assert.equal(sse.aborted, false);
    const count = s.made.length;
    s.timers.advance(TIMINGS.upgradeInterval);
    await flush();
    assert.equal(s.made.length, count + 1, 'tried again');
  });

  it('the old transport ended and the candidate failed: that loss counts, the connection reconnects', async () => {
    const s = setup();
    const { sse, candidate } = await candidateOpening(s);
    sse.end({ code: 1006, reason: 'the stream ended' });
    assert.equal(s.connection.state, 'connected');
    candidate.end({ code: 1006, reason: '' });
    assert.equal(s.connection.state, 'disconnected');
    assert.equal(s.connection.errorReason?.code, 'disconnected');
  });

  it('the server replaced the old transport for the candidate, then the candidate failed: the connection reconnects with its key', async () => {
    // `disconnect replaced` on the old transport while the candidate opens is the candidate's own
    // takeover, not a second client's: the key is kept, and the reconnect takes the connection back
    const s = setup();
    const { sse, candidate } = await candidateOpening(s);
    sse.frame({ type: 'disconnect', reason: 'replaced', reconnect: true });
    sse.end({ code: 1001, reason: 'replaced' });
    assert.equal(s.connection.state, 'connected');
    candidate.end({ code: 1006, reason: '' });
    assert.equal(s.connection.state, 'disconnected');
    assert.equal(
      (await reconnected(s)).query.get('recover'),
      'c_1.k',
      'reconnected with its key, to take the connection back',
    );
  });

  it('a candidate given up on here may still have taken the connection over: replaced soon after, the connection reconnects with its key', async () => {
    const s = setup();
    const { sse, candidate } = await candidateOpening(s);
    // the candidate times out here; its request, slow on its way, still reaches the server
    s.timers.advance(TIMINGS.realtimeRequestTimeout);
    await flush();
    assert.equal(candidate.aborted, true);
    assert.equal(s.connection.state, 'connected');
    sse.frame({ type: 'disconnect', reason: 'replaced', reconnect: true });
    assert.equal(s.connection.state, 'disconnected');
    assert.equal(
      (await reconnected(s)).query.get('recover'),
      'c_1.k',
      'reconnected with its key, to take the connection back',
    );
  });

  it('a candidate that failed longer than realtimeRequestTimeout ago is not behind a takeover: replaced then, the connection continues as a new one', async () => {
    const s = setup();
    const { sse, candidate } = await candidateOpening(s);
    s.timers.advance(TIMINGS.realtimeRequestTimeout);
    await flush();
    assert.equal(candidate.aborted, true);
    // its request would have reached the server by now: a takeover now is another client's
    s.timers.advance(TIMINGS.realtimeRequestTimeout);
    await flush();
    assert.equal(s.connection.state, 'connected');
    sse.frame({ type: 'disconnect', reason: 'replaced', reconnect: true });
    assert.equal(s.connection.state, 'disconnected');
    assert.equal((await reconnected(s)).query.get('recover'), null, 'no recovery key: not taken back');
  });

  it('a lost connection abandons the upgrade in progress', async () => {
    const s = setup();
    const { sse, candidate } = await candidateOpening(s);
    sse.frame({ type: 'disconnect', reason: 'shutting_down', reconnect: true });
    assert.equal(s.connection.state, 'disconnected');
    assert.equal(candidate.aborted, true);
  });

  it('close() during a probe cancels it', async () => {
    const s = setup();
    await onSse(s);
    s.timers.advance(TIMINGS.upgradeInterval);
    await flush();
    const probe = s.last();
    assert.equal(probe.kind, 'websocket');
    s.connection.close();
    assert.equal(probe.aborted, true);
  });

  it('is never tried when WebSocket is not allowed', async () => {
    const s = setup({ kinds: ['sse', 'longpoll'] });
    s.connection.connect();
    await flush();
    s.last().connected();
    const count = s.made.length;
    s.timers.advance(TIMINGS.upgradeInterval * 3);
    await flush();
    assert.equal(s.made.length, count);
  });
});

describe('probeTransport', () => {
  const PROBE_URL = 'ws://mooring.test/v1/connect?v=1&key=app%3Asecret';

  it('a transport that closes before `connected` fails the probe at once, and is aborted (not closed as done)', async () => {
    const timers = new FakeTimers();
    const t = new FakeTransport('websocket');
    const probe = probeTransport(t, PROBE_URL, timers, 4_000);
    t.end({ code: 1006, reason: '', httpStatus: 502 });
    assert.equal(await probe.result, false);
    assert.equal(t.aborted, true);
    assert.equal(t.closedBy, undefined);
    assert.deepEqual(timers.pending(), []);
  });

  it('a transport that throws when opened fails the probe', async () => {
    const timers = new FakeTimers();
    const t = new FakeTransport('websocket');
    t.open = () => {
      throw new Error('WebSocket is not available here');
    };
    const probe = probeTransport(t, PROBE_URL, timers, 4_000);
    assert.equal(await probe.result, false);
    assert.equal(t.closedBy, undefined);
    assert.deepEqual(timers.pending(), []);
  });

  it('settles once: after `connected`, the close it causes and a late cancel() leave the transport closed with 1000, not aborted', async () => {
    const timers = new FakeTimers();
    const t = new FakeTransport('websocket');
    const probe = probeTransport(t, PROBE_URL, timers, 4_000);
    t.connected();
    assert.equal(await probe.result, true);
    assert.deepEqual(t.closedBy, { code: 1000, reason: 'probe done' });
    t.end({ code: 1000, reason: 'probe done' });
    probe.cancel();
    timers.advance(4_000);
    assert.equal(t.aborted, false);
  });
});
