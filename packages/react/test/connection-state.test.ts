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

  it('<ConnectionStatus /> names each state, counts down to the retry, and offers retry now only while retrying', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    const mooring = client(t, proxy.url(), {
      transports: ['websocket'],
      initialRetryDelay: 20,
      disconnectedRetryTimeout: 50,
      connectionStateTtl: 300, // failing that long: suspended
      suspendedRetryTimeout: 60_000, // only "retry now" reconnects within the test
    });
    let current: ConnectionSnapshot | undefined;
    const seen: string[] = [];
    const retryErrors: Array<string | undefined> = []; // the error shown while connecting again
    function Probe() {
      current = useConnectionState();
      if (current.state === 'connecting' && current.previous === 'disconnected')
        retryErrors.push(current.error?.code);
      return null;
    }
    // every state and label <ConnectionStatus /> shows, in order
    const observer = new MutationObserver(() => {
      const status = document.querySelector('[role="status"]');
      const shown = `${status?.getAttribute('data-state')}: ${status?.firstChild?.textContent}`;
      if (status && seen[seen.length - 1] !== shown) seen.push(shown);
    });
    observer.observe(document.body, { subtree: true, childList: true, characterData: true });
    t.after(() => observer.disconnect());
    const view = render(
      createElement(
        MooringProvider,
        { client: mooring },
        createElement(ConnectionStatus),
        createElement(Probe),
      ),
    );
    t.after(() => view.unmount());
    const status = () => screen.getByRole('status');
    assert.equal(status().textContent, 'Connecting…');
    await waitFor(() => status().textContent === 'Connected');
    assert.equal(status().querySelector('button'), null, 'retry now offered while connected');

    proxy.refuse();
    await act(() => proxy.reset());
    const offline = await waitFor(
      () => status().textContent?.match(/^Offline — retrying in (\d+) s retry now$/),
      {
        timeout: 10_000,
        message: 'never showed the suspended state with its countdown',
      },
    );
    // the countdown runs from when the state changed, not from when the component mounted
    assert.ok(Number(offline[1]) <= 60, `retrying in ${offline[1]} s, for a retry 60 s away`);
    assert.equal(status().getAttribute('data-state'), 'suspended');
    assert.ok(current?.error, 'suspended without the reason');

    proxy.pass();
    await act(async () => fireEvent.click(screen.getByText('retry now')));
    await waitFor(() => status().textContent === 'Connected', { timeout: 10_000 });
    assert.equal(current?.error, undefined, 'connected again with the old error');
    assert.ok(
      retryErrors.length > 0 && retryErrors.every((code) => code !== undefined),
      'a retry forgot the last error',
    );
    assert.ok(
      seen.includes('connecting: Reconnecting…'),
      `no "Reconnecting…" while connecting again: ${seen.join(' | ')}`,
    );

    await act(async () => mooring.close());
    await waitFor(() => status().textContent === 'Disconnected');
    assert.equal(status().querySelector('button'), null, 'retry now offered for a client closed on purpose');
  });

  it('<ConnectionStatus /> of a client refused for good: failed, with the reason and retry now', async (t) => {
    const server = await realServer(t);
    const mooring = client(t, server.url, { key: 'test:wrong-secret' });
    const view = render(createElement(MooringProvider, { client: mooring }, createElement(ConnectionStatus)));
    t.after(() => view.unmount());
    await waitFor(() => screen.getByRole('status').getAttribute('data-state') === 'failed', {
      timeout: 10_000,
    });
    const status = screen.getByRole('status');
    assert.match(status.textContent ?? '', /^Connection failed: .+ retry now$/);
    assert.ok(status.querySelector('button'));
  });

  it('a client already waiting to retry when first shown: the countdown is there from the start', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    proxy.refuse();
    const mooring = client(t, proxy.url(), {
      transports: ['websocket'],
      initialRetryDelay: 20,
      disconnectedRetryTimeout: 50,
      connectionStateTtl: 100,
      suspendedRetryTimeout: 60_000,
    });
    await waitFor(() => mooring.connection.state === 'suspended', { timeout: 10_000 });
    const view = render(createElement(MooringProvider, { client: mooring }, createElement(ConnectionStatus)));
    t.after(() => view.unmount());
    assert.match(screen.getByRole('status').textContent ?? '', /^Offline — retrying in \d+ s retry now$/);
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

describe('MooringProvider', () => {
  it('leaves a client it was given open when it unmounts', async (t) => {
    const server = await realServer(t);
    const mooring = client(t, server.url);
    const view = render(createElement(MooringProvider, { client: mooring }, createElement(ConnectionStatus)));
    await waitFor(() => screen.queryByText('Connected'));
    view.unmount();
    await act(() => new Promise((r) => setTimeout(r, 20))); // past the deferred release
    assert.equal(mooring.connection.state, 'connected', 'the provider closed a client it does not own');
  });

  it('given another client, its hooks follow that one', async (t) => {
    const server = await realServer(t);
    const [a, b] = [client(t, server.url), client(t, server.url)];
    let latest: ConnectionSnapshot | undefined;
    function Probe() {
      latest = useConnectionState();
      return null;
    }
    const tree = (mooring: typeof a) =>
      createElement(MooringProvider, { client: mooring }, createElement(Probe));
    const view = render(tree(a));
    t.after(() => view.unmount());
    await waitFor(() => latest?.state === 'connected' && latest.connectionId === a.connection.id);
    view.rerender(tree(b));
    await waitFor(() => b.connection.id !== undefined && latest?.connectionId === b.connection.id, {
      message: 'the hooks stayed on the first client',
    });
  });
});

after(cleanup);
