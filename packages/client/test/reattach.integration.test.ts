// Channels the application wants attached come back with the connection, against a real server
// behind a fault proxy (review-client findings 3 and 4): after the connection went `failed` and the
// app called `connect()`, and after a drop longer than `connectionStateTtl` on a token without
// `history` (a channel at position '' re-attaching with `start`, refused `forbidden`).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChannelStateChange } from '../src/channel.ts';
import { client, proxyTo, realServer, waitFor } from './helpers/real-server.ts';

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
      message: `the channel never attached again (${channel.state})`,
    });
    assert.ok(attached);
    await out.publish('m', 3);
    await waitFor(() => got.length >= 3, { message: `got ${JSON.stringify(got)}` });
    assert.deepEqual(got, [1, 2, 3]);
    assert.deepEqual(states.slice(-3), ['failed', 'attaching', 'attached']);
  });
});
