// useConnectionState, <ConnectionStatus /> and <MooringProvider options> against a real server
// through a FaultProxy, under StrictMode: one connection per provider, the states a UI shows
// while the network fails, and "retry now".
import './helpers/dom.ts';
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { act, cleanup, fireEvent, render, screen } from '@testing-library/react';
import { createElement, StrictMode } from 'react';
import type { ConnectionSnapshot } from '../src/index.ts';
import { ConnectionStatus, MooringProvider, useConnectionState } from '../src/index.ts';
import { closeDom } from './helpers/dom.ts';
import { client, clientOptions, proxyTo, realServer, waitFor } from './helpers/fixture.ts';

after(closeDom);

describe('connection state', () => {
  it('a provider with options opens exactly one connection under StrictMode, and closes it on unmount', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    const view = render(
      createElement(
        StrictMode,
        null,
        createElement(
          MooringProvider,
          { options: clientOptions(proxy.url()) },
          createElement(ConnectionStatus),
        ),
      ),
    );
    t.after(() => view.unmount());
    await waitFor(() => screen.queryByText('Connected'), { timeout: 10_000 });
    const status = screen.getByRole('status');
    assert.equal(status.getAttribute('data-state'), 'connected');
    await act(() => new Promise((r) => setTimeout(r, 50))); // let a second client (if any) dial in
    assert.equal(proxy.stats.accepted, 1, 'StrictMode made a second client (a second connection)');
    view.unmount();
    await waitFor(() => proxy.connections === 0, { message: 'the provider did not close its client' });
  });

  it('shows connecting → connected → reconnecting with a countdown → retry now → connected', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    // the backed-off retry waits at least 30 s (jitter in the upper half of a 60 s window), so only
    // "retry now" can reconnect within the test's wait below
    const mooring = client(t, proxy.url(), {
      transports: ['websocket'],
      initialRetryDelay: 60_000,
      disconnectedRetryTimeout: 60_000,
      random: () => 0.5 + Math.random() / 2,
    });
    const seen: ConnectionSnapshot[] = [];
    function Probe() {
      const state = useConnectionState();
      if (seen[seen.length - 1]?.state !== state.state) seen.push(state);
      return null;
    }
    const view = render(
      createElement(
        StrictMode,
        null,
        createElement(
          MooringProvider,
          { client: mooring },
          createElement(Probe),
          createElement(ConnectionStatus),
        ),
      ),
    );
    t.after(() => view.unmount());
    await waitFor(() => screen.queryByText('Connected'));
    assert.equal(seen[seen.length - 1]?.transport, 'websocket');

    // the proxy drops the connection and turns every new one away: the first retry (at once)
    // fails, the next is backed off — the UI says when, and offers to retry now
    proxy.refuse();
    await act(() => proxy.reset());
    await waitFor(() => screen.queryByText(/Reconnecting in \d+ s…/), { timeout: 10_000 });
    assert.equal(screen.getByRole('status').getAttribute('data-state'), 'disconnected');
    const snapshot = seen[seen.length - 1];
    assert.equal(snapshot?.state, 'disconnected');
    assert.ok((snapshot?.retryIn ?? 0) > 0 && snapshot?.retryAt !== undefined, 'no retry time');

    proxy.pass();
    await act(async () => fireEvent.click(screen.getByText('retry now')));
    await waitFor(() => screen.queryByText('Connected'), {
      timeout: 10_000, // well before the backed-off retry (≥ 30 s)
      message: 'retry now did not reconnect',
    });
    const states = seen.map((s) => s.state);
    assert.deepEqual(
      states.slice(0, 2),
      states[0] === 'initialized' ? ['initialized', 'connecting'] : ['connecting', 'connected'],
    );
    assert.ok(
      states.includes('disconnected') && states[states.length - 1] === 'connected',
      states.join(' → '),
    );
    assert.equal(seen[seen.length - 1]?.reconnects, 1);
  });

  it('snapshots are stable: re-rendering without a change returns the same object', async (t) => {
    const server = await realServer(t);
    const mooring = client(t, server.url);
    const snapshots: ConnectionSnapshot[] = [];
    function Probe({ n }: { n: number }) {
      const state = useConnectionState();
      snapshots.push(state);
      return createElement('span', null, `${n}:${state.state}`);
    }
    const view = render(createElement(MooringProvider, { client: mooring }, createElement(Probe, { n: 1 })));
    t.after(() => view.unmount());
    await waitFor(() => screen.queryByText('1:connected'));
    view.rerender(createElement(MooringProvider, { client: mooring }, createElement(Probe, { n: 2 })));
    await waitFor(() => screen.queryByText('2:connected'));
    const [a, b] = snapshots.slice(-2);
    assert.equal(a, b, 'a re-render without a connection change produced a new result object');
  });
});

after(cleanup);
