// The first retry after a real server shut down (an outside review, stop 59): the server ends every
// connection in the same instant (`disconnect shutting_down`, close 1012), so an immediate retry
// would bring every client back in the same millisecond. Each client's first retry waits
// random × initialRetryDelay instead (its `random` injected here, so the delay is known exactly: no
// clock is read); a drop nobody announced (a reset through a proxy) still retries at once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnectionStateChange } from '../src/connection.ts';
import type { TransportKind } from '../src/transport.ts';
import { client, connected, proxyTo, realServer, waitFor } from './helpers/real-server.ts';

const TIMINGS = { initialRetryDelay: 1_000, disconnectedRetryTimeout: 15_000 } as const;

describe('the first retry after losing a live connection', () => {
  it('is spread over [0, initialRetryDelay) when the server shuts down, on every transport', async (t) => {
    const server = await realServer(t);
    const cases: Array<{ transport: TransportKind; random: number }> = [
      { transport: 'websocket', random: 0.1 },
      { transport: 'websocket', random: 0.9 },
      { transport: 'sse', random: 0.5 },
      { transport: 'longpoll', random: 0.3 },
    ];
    const firstLoss: Array<ConnectionStateChange | undefined> = cases.map(() => undefined);
    const clients = cases.map(({ transport, random }, i) => {
      const c = client(t, server.url, {
        ...TIMINGS,
        transports: [transport],
        transportStorage: null,
        random: () => random,
      });
      c.connection.on('disconnected', (change) => {
        firstLoss[i] ??= change;
      });
      return c;
    });
    await Promise.all(clients.map((c) => connected(c)));

    await server.close();
    await waitFor(() => firstLoss.every((change) => change !== undefined), {
      message: 'a client never saw the shutdown',
    });
    assert.deepEqual(
      firstLoss.map((change) => [change?.previous, change?.reason?.code, change?.retryIn]),
      cases.map(({ random }) => ['connected', 'shutting_down', Math.floor(random * 1_000)]),
    );
  });

  it('goes out at once after a drop nobody announced (a reset)', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    const c = client(t, proxy.url('/'), {
      ...TIMINGS,
      transports: ['websocket'],
      transportStorage: null,
      random: () => 0.9,
    });
    let loss: ConnectionStateChange | undefined;
    c.connection.on('disconnected', (change) => {
      loss ??= change;
    });
    await connected(c);
    await proxy.reset();
    await waitFor(() => loss !== undefined, { message: 'the reset was never noticed' });
    assert.equal(loss?.previous, 'connected');
    assert.equal(loss?.retryIn, 0);
  });
});
