// Channels the application wants attached come back with the connection, against a real server
// behind a fault proxy (review-client findings 3 and 4): after the connection went `failed` and the
// app called `connect()`, and after a drop longer than `connectionStateTtl` on a token without
// `history` (a channel at position '' re-attaching with `start`, refused `forbidden`).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createToken } from '@mooring/server';
import type { ChannelStateChange, ContinuityLost } from '../src/channel.ts';
import type { MooringError } from '../src/errors.ts';
import { client, KEY, proxyTo, realServer, waitFor } from './helpers/real-server.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('re-attaching wanted channels', () => {
  it('after the connection failed, connect() brings the subscribed channels back from their positions: nothing lost, nothing twice', async (t) => {
    const server = await realServer(t);
    const proxy = await proxyTo(t, server);
    const writer = client(t, server.url, { clientId: 'writer' });
    const reader = client(t, proxy.url('/'), { clientId: 'reader', transports: ['websocket'] });
    const channel = reader.channels.get('room:failed');
    const got: unknown[] = [];
    const states: string[] = [];
    channel.on('statechange', (c: ChannelStateChange) => states.push(c.current));
    await channel.subscribe((m) => got.push(m.data));
    const out = writer.channels.get('room:failed');
    await out.publish('m', 1);
    await waitFor(() => got.length === 1);

    // any 4xx to the upgrade is permanent: the connection fails, no retry loop
    proxy.refuseUpgrade(403, 'forbidden by proxy');
    await proxy.reset();
    await waitFor(() => reader.connection.state === 'failed', { message: 'the connection never failed' });
    assert.equal(channel.state, 'failed');
    await out.publish('m', 2); // while failed

    proxy.pass();
    reader.connect(); // the app fixed the cause
    const attached = await waitFor(() => channel.state === 'attached', {
      message: 'the channel never attached again',
    });
    assert.ok(attached);
    await out.publish('m', 3);
    await waitFor(() => got.length >= 3, { message: 'the messages never all arrived' });
    assert.deepEqual(got, [1, 2, 3]);
    assert.deepEqual(states.slice(-3), ['failed', 'attaching', 'attached']);
  });

  it("a subscribe-only channel at position '' away longer than connectionStateTtl goes on live with continuityLost history_required, from the head, with no error", async (t) => {
    const TTL = 300;
    const server = await realServer(t, { connectionStateTtl: TTL });
    const proxy = await proxyTo(t, server);
    const writer = client(t, server.url, { clientId: 'writer' });
    const reader = client(t, proxy.url('/'), {
      key: undefined,
      transportStorage: null,
      authCallback: () =>
        createToken(KEY, {
          clientId: 'viewer',
          capability: { 'room:*': ['subscribe'] }, // no history
          ttl: 600_000,
        }),
      // the client holds on (no `suspended`) while the server forgets the connection
      connectionStateTtl: 60_000,
    });
    const empty = reader.channels.get('room:empty');
    const got: unknown[] = [];
    const lost: ContinuityLost[] = [];
    const errors: string[] = [];
    empty.on('continuityLost', (l) => lost.push(l));
    empty.on('error', (e: MooringError) => errors.push(e.code));
    await empty.subscribe((m) => got.push(m.data));
    assert.equal(empty.position, '');

    proxy.refuse();
    await proxy.reset();
    await waitFor(() => reader.connection.state !== 'connected');
    const away = await writer.channels.get('room:empty').publish('m', 'while away');
    await sleep(3 * TTL); // the message is older than connectionStateTtl: a `start` would read too far back
    proxy.pass();

    await waitFor(() => empty.state === 'attached' && lost.length === 1, {
      message: 'room:empty never went on live with continuityLost',
    });
    assert.deepEqual(lost, [{ reason: 'history_required', previousPosition: '', position: away }]);
    assert.deepEqual(errors, []);

    await writer.channels.get('room:empty').publish('m', 'after');
    await waitFor(() => got.length > 0);
    assert.deepEqual(got, ['after'], 'live from the head: what it may not read back is not delivered');
    assert.equal(lost.length, 1);
  });
});
