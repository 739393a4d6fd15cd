// Channels the application wants attached come back with the connection, against a real server
// behind a fault proxy (review-client findings 3 and 4): after the connection went `failed` and the
// app called `connect()`, and after a drop longer than `connectionStateTtl` on a token without
// `history` (a channel at position '' re-attaching with `start`, refused `forbidden`) — and when the
// renewed token has lost the channel altogether, so that the live attach is refused too (stop 59).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AttachFrame } from '@mooring/protocol';
import { CONNECT_ATTACH_PARAM } from '@mooring/protocol';
import { createToken } from '@mooring/server';
import { WebSocket as NodeWebSocket } from 'ws';
import type { ChannelStateChange, ContinuityLost } from '../src/channel.ts';
import type { MooringError } from '../src/errors.ts';
import type { MooringOptions } from '../src/mooring.ts';
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

  for (const attachWithConnection of [true, false])
    it(`a subscribe-only channel at position '' whose token lost the channel while away: the start and then the live attach refused, it ends failed with forbidden — two attaches, no loop, no hang (attaches ${attachWithConnection ? 'with the connection request' : 'as frames'})`, async (t) => {
      // The same client path as above (a re-attach with `start` refused `forbidden` goes on live), where
      // the live attach is refused too: the token the client reconnects with allows neither `history`
      // nor, any more, `subscribe` on the channel (its access was removed meanwhile).
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      let revoked = false;
      let revokedTokens = 0;
      // Every attach the client asks for, by connection: in the connection request (PROTOCOL.md
      // §5.1) and as frames.
      const attaches: Array<Array<Omit<AttachFrame, 'type' | 'ref'>>> = [];
      const shape = ({ channel, start, from }: AttachFrame) => ({
        channel,
        ...(start === undefined ? {} : { start }),
        ...(from === undefined ? {} : { from }),
      });
      class AttachSpy extends NodeWebSocket {
        readonly #mine: Array<Omit<AttachFrame, 'type' | 'ref'>> = [];
        constructor(url: string) {
          super(url);
          attaches.push(this.#mine);
          const asked = new URL(url).searchParams.get(CONNECT_ATTACH_PARAM);
          for (const a of asked ? (JSON.parse(asked) as AttachFrame[]) : []) this.#mine.push(shape(a));
        }
        override send(data: string, ...rest: never[]): void {
          const frame = JSON.parse(data) as { type: string };
          if (frame.type === 'attach') this.#mine.push(shape(frame as AttachFrame));
          super.send(data, ...rest);
        }
      }
      const reader = client(t, proxy.url('/'), {
        key: undefined,
        transports: ['websocket'],
        transportStorage: null,
        attachWithConnection,
        WebSocket: AttachSpy as unknown as NonNullable<MooringOptions['WebSocket']>,
        authCallback: async () => {
          if (revoked) revokedTokens++;
          const minted = await createToken(KEY, {
            clientId: 'viewer',
            // no history ever; once revoked, not the channel either
            capability: revoked ? { 'other:*': ['subscribe'] } : { 'room:*': ['subscribe'] },
            ttl: 600_000,
          });
          // told to expire in 2 s, so that the client asks again for the reconnect after the drop
          // below (it renews at half of that) instead of reusing the token it has
          return { token: minted.token, expiresAt: Date.now() + 2_000 };
        },
      });
      const empty = reader.channels.get('room:empty');
      const states: ChannelStateChange[] = [];
      const lost: ContinuityLost[] = [];
      const errors: MooringError[] = [];
      empty.on('statechange', (c) => states.push(c));
      empty.on('continuityLost', (l) => lost.push(l));
      empty.on('error', (e) => errors.push(e));
      await empty.subscribe(() => {});
      assert.equal(empty.position, '');

      proxy.refuse();
      await proxy.reset();
      await waitFor(() => reader.connection.state !== 'connected');
      const before = attaches.length;
      revoked = true;
      // the proxy lets the client back only once it holds a token without the channel
      await waitFor(() => revokedTokens > 0, { message: 'the client never asked for a new token' });
      proxy.pass();

      await waitFor(() => empty.state === 'failed', {
        message: `room:empty never failed: ${states.map((c) => c.current).join(' → ')}`,
      });
      assert.equal(reader.connection.state, 'connected', "the channel's refusal leaves the connection up");
      assert.deepEqual(
        errors.map((e) => [e.code, e.status, e.retryable]),
        [['forbidden', 403, false]],
        'the refusal reaches the error event, typed',
      );
      assert.equal(states.at(-1)?.reason?.code, 'forbidden');
      assert.deepEqual(lost, [], 'no continuityLost: the channel never went on');
      // a round trip: every attach the client sent before it has been answered, so a loop would show
      await reader.connection.ping();
      await reader.connection.ping();
      const connected = attaches.slice(before).filter((a) => a.length > 0);
      assert.deepEqual(
        connected.at(-1),
        [{ channel: 'room:empty', start: true }, { channel: 'room:empty' }],
        'on the connection that came back: one start, one live attach, then nothing',
      );
      assert.equal(empty.state, 'failed');

      // asking again asks the server again, and is answered: no hang
      await assert.rejects(empty.attach(), (e: MooringError) => e.code === 'forbidden');
      assert.equal(attaches.at(-1)?.length, 3);
    });
});
