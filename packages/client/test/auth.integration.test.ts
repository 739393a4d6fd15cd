// Token auth against a real server on port 0 (ARCHITECTURE.md §7, PROTOCOL.md §5.1, §6.1, §8, §14): tokens from
// `createToken`, an `authCallback` and an `authUrl`, renewed over the live connection on every
// transport, a server-side expiry that ends in a reconnect losing nothing, and refused credentials
// that end in `failed` after one attempt.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import type { MintedToken } from '@mooring/server';
import { createToken } from '@mooring/server';
import { WebSocket as NodeWebSocket } from 'ws';
import type { AuthCallbackParams } from '../src/auth.ts';
import type { ConnectionStateChange } from '../src/connection.ts';
import type { MooringOptions } from '../src/mooring.ts';
import type { FetchLike } from '../src/rest.ts';
import type { TransportKind } from '../src/transport.ts';
import { WebSocketTransport } from '../src/websocket-transport.ts';
import { client, connected, KEY, realServer, waitFor } from './helpers/real-server.ts';

/** A client on an `authCallback` that mints tokens with `createToken` (what an app backend does). */
function tokenClient(
  t: TestContext,
  url: string,
  options: Partial<MooringOptions> & {
    ttl?: number;
    clientId?: string;
    signWith?: string;
    /** Make the callback fail (return an error) for some requests. */
    fail?: (params: AuthCallbackParams) => Error | undefined;
  } = {},
) {
  const { ttl = 60_000, signWith = KEY, fail, ...rest } = options;
  const calls: AuthCallbackParams[] = [];
  const minted: MintedToken[] = [];
  const c = client(t, url, {
    key: undefined,
    transportStorage: null,
    authCallback: async (params) => {
      calls.push(params);
      const failure = fail?.(params);
      if (failure) throw failure;
      const token = await createToken(signWith, {
        ...(params.clientId ? { clientId: params.clientId } : {}),
        ttl,
      });
      minted.push(token);
      return token;
    },
    ...rest,
  });
  const changes: ConnectionStateChange[] = [];
  c.connection.on('statechange', (change) => changes.push(change));
  return { client: c, calls, minted, changes };
}

/** Counts realtime handshakes (WebSocket upgrades and SSE / long-poll opening requests). */
function handshakeCounter() {
  let count = 0;
  class CountingWebSocket extends NodeWebSocket {
    constructor(url: string) {
      count += 1;
      super(url);
    }
  }
  const fetch: FetchLike = (url, init) => {
    if (/\/v1\/connect\/(sse|poll)\b/.test(url)) count += 1;
    return globalThis.fetch(url, init);
  };
  return {
    options: { WebSocket: CountingWebSocket as unknown as NonNullable<MooringOptions['WebSocket']>, fetch },
    get count() {
      return count;
    },
  };
}

const TRANSPORTS: TransportKind[] = ['websocket', 'sse', 'longpoll'];

describe('token auth against a real server', () => {
  it('connects with authCallback: the identity is the token’s, the token travels as ?token=', async (t) => {
    const server = await realServer(t);
    const { client: c, calls } = tokenClient(t, server.url, { clientId: 'web-1' });
    await connected(c);
    assert.equal(c.connection.details?.clientId, 'web-1');
    assert.deepEqual(calls, [{ clientId: 'web-1', reason: 'connect' }]);
    const got: Message[] = [];
    await c.channels.get('session:auth').subscribe((m) => got.push(m));
    await c.channels.get('session:auth').publish('text', 'hi');
    await waitFor(() => got.length === 1);
    assert.equal(got[0]?.clientId, 'web-1', 'the server stamps the token’s clientId');
    // REST with the same token
    const page = await c.rest.history('session:auth');
    assert.equal(page.items.length, 1);
  });

  it("anonymous token holders share a dedup scope, yet one cannot make another's next operation a duplicate: it cannot guess its id", async (t) => {
    const server = await realServer(t);
    const victim = tokenClient(t, server.url).client;
    const attacker = tokenClient(t, server.url).client;
    await Promise.all([connected(victim), connected(attacker)]);
    assert.equal(victim.connection.details?.clientId, undefined, 'anonymous');
    const seen: Message[] = [];
    await attacker.channels.get('session:public').subscribe((m) => seen.push(m));
    await victim.channels.get('session:public').publish('text', 'first');
    await waitFor(() => seen.length === 1);
    // ids are on every message: the attacker takes the victim's next one, `<base>:<n + 1>`, first
    const [base, n] = (seen[0]?.id ?? '').split(':');
    const guess = `${base}:${Number(n) + 1}`;
    await attacker.channels.get('session:public').publish('text', 'spoofed', { id: guess });
    const serial = await victim.channels.get('session:public').publish('text', 'second');
    await waitFor(() => seen.length === 3);
    assert.deepEqual(
      seen.map((m) => m.data),
      ['first', 'spoofed', 'second'],
      "the victim's second message is stored as its own",
    );
    assert.equal(seen[2]?.serial, serial);
    // with a clientId the scope is the clientId's own: short ids
    const named = tokenClient(t, server.url, { clientId: 'web-2' }).client;
    await connected(named);
    await named.channels.get('session:public').publish('text', 'named');
    await waitFor(() => seen.length === 4);
    assert.match(seen[3]?.id ?? '', /^[0-9a-z]{12}:\d+$/);
  });

  for (const transport of TRANSPORTS) {
    it(`renews the token over the live ${transport} connection, which outlives its first token`, async (t) => {
      const server = await realServer(t);
      const {
        client: c,
        calls,
        minted,
        changes,
      } = tokenClient(t, server.url, {
        ttl: 3_000,
        clientId: 'web-1',
        transports: [transport],
      });
      await connected(c);
      assert.equal(c.connection.transport, transport);
      const id = c.connection.id;
      const settled = changes.length;
      const firstExpiry = minted[0]!.expiresAt;
      // two renewals, and past the first token's expiry (the server would have closed with 4011)
      await waitFor(
        () => calls.filter((p) => p.reason === 'renew').length >= 2 && Date.now() > firstExpiry + 300,
        {
          message: 'no renewals',
        },
      );
      assert.equal(c.connection.state, 'connected');
      assert.equal(c.connection.id, id, 'the same connection');
      assert.deepEqual(changes.slice(settled), [], 'no state change: renewed without a reconnect');
      // and the connection still works on the renewed token
      const got: Message[] = [];
      await c.channels.get('session:renewed').subscribe((m) => got.push(m));
      await c.channels.get('session:renewed').publish('text', 'still here');
      await waitFor(() => got.length === 1);
    });
  }

  for (const transport of TRANSPORTS) {
    it(`after a server-side expiry (renewal failing) gets a new token, reconnects and loses nothing (${transport})`, async (t) => {
      const server = await realServer(t);
      const {
        client: c,
        calls,
        changes,
      } = tokenClient(t, server.url, {
        transports: [transport],
        ttl: 2_000,
        clientId: 'web-1',
        fail: (p) => (p.reason === 'renew' ? new Error('renewal disabled for this test') : undefined),
      });
      const errors: string[] = [];
      c.connection.on('error', (e) => errors.push(e.code));
      const observer = client(t, server.url, { clientId: 'observer' });
      const channel = c.channels.get('session:expiry');
      const mine: Message[] = [];
      const theirs: Message[] = [];
      await channel.subscribe((m) => mine.push(m));
      await observer.channels.get('session:expiry').subscribe((m) => theirs.push(m));
      await connected(c);
      const id = c.connection.id;

      // a stream of publishes spanning the token's expiry and the reconnect
      const published: Promise<string>[] = [];
      let n = 0;
      await waitFor(
        () => {
          published.push(channel.publish('text', `m${n++}`));
          return (
            changes.some((ch) => ch.reason?.code === 'token_expired') && c.connection.state === 'connected'
          );
        },
        { interval: 50, message: 'the token never expired, or the client did not come back' },
      );
      for (let i = 0; i < 5; i++) published.push(channel.publish('text', `m${n++}`));
      await Promise.all(published);

      const expected = Array.from({ length: n }, (_, i) => `m${i}`);
      await waitFor(() => mine.length >= n && theirs.length >= n);
      assert.deepEqual(
        mine.map((m) => m.data),
        expected,
        'the token client got every message once, in order',
      );
      assert.deepEqual(
        theirs.map((m) => m.data),
        expected,
        'every publish stored once, in order',
      );
      const expiry = changes.find((ch) => ch.reason?.code === 'token_expired');
      assert.equal(expiry?.current, 'disconnected');
      assert.ok(
        calls.some((p) => p.reason === 'expired'),
        'a new token after the expiry',
      );
      assert.ok(errors.includes('auth_failed'), 'the failed renewals were reported');
      assert.equal(c.connection.id, id, 'the connection identity resumed');
      assert.equal(c.connection.details?.resumed, true);
      assert.equal(c.connection.transport, transport);
    });
  }

  it('gets tokens from an authUrl (a node:http endpoint calling createToken)', async (t) => {
    const server = await realServer(t);
    const requests: Array<{ clientId: string | null; session: string | undefined }> = [];
    const app = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://app');
      const session = req.headers['x-session'];
      requests.push({ clientId: url.searchParams.get('clientId'), session: session as string | undefined });
      if (session !== 'alice-session') {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"log in"}');
        return;
      }
      const asText = url.searchParams.get('format') === 'text';
      createToken(KEY, { clientId: 'alice', ttl: 60_000 }).then((minted) => {
        if (asText) res.writeHead(200, { 'content-type': 'application/jwt' }).end(minted.token);
        else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(minted));
      });
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise((resolve) => app.close(resolve)));
    const authUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}/api/mooring-token`;

    for (const format of ['json', 'text']) {
      const c = client(t, server.url, {
        key: undefined,
        authUrl,
        authHeaders: { 'x-session': 'alice-session' },
        authParams: { format },
        clientId: 'alice',
      });
      await connected(c, `authUrl (${format}) did not connect`);
      assert.equal(c.connection.details?.clientId, 'alice');
    }
    assert.deepEqual(requests.at(-1), { clientId: 'alice', session: 'alice-session' });

    // without the session the endpoint answers 401: failed, asked once
    const before = requests.length;
    const denied = client(t, server.url, { key: undefined, authUrl });
    await waitFor(() => denied.connection.state === 'failed');
    assert.equal(denied.connection.errorReason?.code, 'auth_failed');
    assert.equal(denied.connection.errorReason?.status, 401);
    assert.equal(requests.length, before + 1);
  });

  it('gets tokens from the server’s own POST /v1/tokens as authUrl', async (t) => {
    const server = await realServer(t);
    const c = client(t, server.url, {
      key: undefined,
      authUrl: `${server.url}/v1/tokens`,
      authMethod: 'POST',
      authHeaders: { authorization: `Bearer ${KEY}` }, // for the demo only: a browser must not hold a key
      authParams: { ttl: 60_000 },
      clientId: 'web-9',
    });
    await connected(c);
    assert.equal(c.connection.details?.clientId, 'web-9');
  });

  for (const transport of TRANSPORTS) {
    it(`fails with unauthorized on a token for a key the server does not know, once (${transport})`, async (t) => {
      const server = await realServer(t);
      const handshakes = handshakeCounter();
      const { client: c, calls } = tokenClient(t, server.url, {
        signWith: 'other:s3cret',
        transports: [transport],
        ...handshakes.options,
      });
      await waitFor(() => c.connection.state === 'failed', { message: `${transport}: not failed` });
      assert.equal(c.connection.errorReason?.code, 'unauthorized');
      // give a retry loop (20 ms backoff in these tests) the time to show itself
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(c.connection.state, 'failed');
      assert.equal(calls.length, 1, 'one token asked for');
      assert.equal(handshakes.count, 1, 'one handshake');
    });
  }

  it('fails with forbidden when the token is for another clientId than options.clientId', async (t) => {
    const server = await realServer(t);
    const handshakes = handshakeCounter();
    const calls: AuthCallbackParams[] = [];
    const c = client(t, server.url, {
      key: undefined,
      clientId: 'alice',
      ...handshakes.options,
      authCallback: async (params) => {
        calls.push(params);
        return createToken(KEY, { clientId: 'bob' });
      },
    });
    await waitFor(() => c.connection.state === 'failed');
    assert.equal(c.connection.errorReason?.code, 'forbidden');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(calls.length, 1);
    assert.equal(handshakes.count, 1);
  });

  it('a fixed token connects, and ends in failed (not a loop) once it expired', async (t) => {
    const server = await realServer(t);
    const { token } = await createToken(KEY, { clientId: 'fixed', ttl: 2_000 });
    const c = client(t, server.url, { key: undefined, token });
    await connected(c);
    await waitFor(() => c.connection.state === 'failed', { message: 'the fixed token never expired' });
    assert.equal(c.connection.errorReason?.code, 'token_expired');
  });

  it('uses a WebSocket transport with the token in the URL (browser WebSocket cannot set headers)', async (t) => {
    const server = await realServer(t);
    const urls: string[] = [];
    const c = client(t, server.url, {
      key: undefined,
      authCallback: async () => createToken(KEY, { clientId: 'w' }),
      transport: () => {
        const inner = new WebSocketTransport(
          globalThis.WebSocket as unknown as MooringOptions['WebSocket'] & {},
        );
        return {
          kind: 'websocket',
          open: (url, handlers) => {
            urls.push(url);
            inner.open(url, handlers);
          },
          send: (frame) => inner.send(frame),
          close: (code, reason) => inner.close(code, reason),
          abort: () => inner.abort(),
        };
      },
    });
    await connected(c);
    const query = new URL(urls[0]!).searchParams;
    assert.match(query.get('token') ?? '', /^ey[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.equal(query.get('key'), null);
  });
});
