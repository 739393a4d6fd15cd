/**
 * Auth and capabilities (ARCHITECTURE.md §7, PROTOCOL.md §14): every operation allowed and denied, on every
 * transport and on REST; tokens that must not verify; globs that must not over-match; limits.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { SignJWT } from 'jose';
import { parseApiKey } from '../src/auth.ts';
import { createToken, startServer } from '../src/index.ts';
import { MAX_TOKEN_TTL } from '../src/tokens.ts';
import { type Fixture, rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { PollClient, SseClient } from './support/http-client.ts';
import { RawClient } from './support/raw-client.ts';

interface FrameClient {
  request(frame: Record<string, unknown>): Promise<ServerFrame>;
  close(): void;
}

type Transport = 'websocket' | 'sse' | 'longpoll';
const TRANSPORTS: Transport[] = ['websocket', 'sse', 'longpoll'];

async function connect(fx: Fixture, transport: Transport, token: string): Promise<FrameClient> {
  if (transport === 'websocket') {
    const c = await RawClient.connect(fx.server.url, { token });
    return { request: (f) => c.request(f), close: () => c.kill() };
  }
  const query = `token=${encodeURIComponent(token)}`;
  if (transport === 'sse') {
    const c = await SseClient.connect(fx.server.url, query);
    return { request: (f) => c.request(f), close: () => c.close() };
  }
  const c = await PollClient.connect(fx.server.url, query);
  return { request: (f) => c.request(f), close: () => c.stop() };
}

const outcome = (f: ServerFrame) => (f.type === 'error' ? f.error.code : 'ok');

describe('auth and capabilities', () => {
  let fx: Fixture;
  const mint = (capability: Record<string, string[]>, clientId = 'alice') =>
    createToken(TEST_KEY, { clientId, capability }).then((t) => t.token);

  before(async () => {
    fx = await startFixture('memory');
  });
  after(() => fx.close());

  /** A message created by `clientId` (through the trusted API key), for own/any checks. */
  async function messageBy(channel: string, clientId: string): Promise<string> {
    const res = await rest(fx.server, `/v1/channels/${channel}/messages?clientId=${clientId}`, {
      body: { data: 'x' },
    });
    return (res.body.results as Array<{ serial: string }>)[0]!.serial;
  }

  // operation under test → how to exercise it on a realtime connection
  const cases: Array<{
    op: string;
    needs: string[];
    run: (c: FrameClient, ch: string) => Promise<ServerFrame>;
  }> = [
    { op: 'subscribe', needs: [], run: (c, ch) => c.request({ type: 'attach', channel: ch }) },
    {
      op: 'history',
      needs: ['subscribe'],
      run: (c, ch) => c.request({ type: 'attach', channel: ch, rewind: 1 }),
    },
    {
      op: 'publish',
      needs: [],
      run: (c, ch) => c.request({ type: 'publish', channel: ch, ops: [{ data: 1 }] }),
    },
    {
      op: 'presence',
      needs: [],
      run: (c, ch) => c.request({ type: 'presence', channel: ch, action: 'enter' }),
    },
    {
      op: 'append-own',
      needs: [],
      run: async (c, ch) =>
        c.request({
          type: 'publish',
          channel: ch,
          ops: [{ action: 'append', serial: await messageBy(ch, 'alice'), data: '!' }],
        }),
    },
    {
      op: 'update-own',
      needs: [],
      run: async (c, ch) =>
        c.request({
          type: 'publish',
          channel: ch,
          ops: [{ action: 'update', serial: await messageBy(ch, 'alice'), data: 'y' }],
        }),
    },
    {
      op: 'update-any',
      needs: [],
      run: async (c, ch) =>
        c.request({
          type: 'publish',
          channel: ch,
          ops: [{ action: 'update', serial: await messageBy(ch, 'bob'), data: 'y' }],
        }),
    },
    {
      op: 'delete-own',
      needs: [],
      run: async (c, ch) =>
        c.request({
          type: 'publish',
          channel: ch,
          ops: [{ action: 'delete', serial: await messageBy(ch, 'alice') }],
        }),
    },
    {
      op: 'delete-any',
      needs: [],
      run: async (c, ch) =>
        c.request({
          type: 'publish',
          channel: ch,
          ops: [{ action: 'delete', serial: await messageBy(ch, 'bob') }],
        }),
    },
  ];

  for (const transport of TRANSPORTS) {
    it(`enforces every operation, allowed and denied, on ${transport}`, async () => {
      for (const { op, needs, run } of cases) {
        const channel = `session:${transport}-${op}`;
        const allowed = await connect(fx, transport, await mint({ 'session:*': [op, ...needs] }));
        assert.equal(outcome(await run(allowed, channel)), 'ok', `${op} allowed`);
        allowed.close();
        const others = [
          'subscribe',
          'publish',
          'history',
          'presence',
          'append-own',
          'update-own',
          'delete-own',
        ].filter((o) => o !== op && !op.startsWith(o.split('-')[0]!));
        const denied = await connect(
          fx,
          transport,
          await mint({ 'session:*': [...needs, ...others.filter((o) => !needs.includes(o))] }),
        );
        // Without the operation (nor, for *-any, its *-own variant) the capability check refuses it.
        assert.equal(outcome(await run(denied, channel)), 'forbidden', `${op} denied on ${transport}`);
        denied.close();
      }
      // With only the *-own variant, an operation on someone else's message is not_owner.
      for (const op of ['update-any', 'delete-any']) {
        const own = op.replace('-any', '-own');
        const c = await connect(fx, transport, await mint({ 'session:*': [own] }));
        const channel = `session:${transport}-${op}-own`;
        assert.equal(outcome(await cases.find((x) => x.op === op)!.run(c, channel)), 'not_owner', op);
        c.close();
      }
    });
  }

  it('lets an anonymous identity own nothing, not even anonymous messages', async () => {
    const { token } = await createToken(TEST_KEY, {
      capability: { 'session:*': ['append-own', 'update-own', 'delete-own'] },
    });
    const anonymousMessage = await rest(fx.server, '/v1/channels/session:anon-own/messages', {
      body: { data: 'x' },
    });
    const serial = (anonymousMessage.body.results as Array<{ serial: string }>)[0]!.serial;
    for (const transport of TRANSPORTS) {
      const c = await connect(fx, transport, token);
      for (const action of ['append', 'update', 'delete']) {
        const answer = await c.request({
          type: 'publish',
          channel: 'session:anon-own',
          ops: [{ action, serial, ...(action === 'delete' ? {} : { data: 'y' }) }],
        });
        assert.equal(outcome(answer), 'not_owner', `${action} on ${transport}`);
        const needs = action === 'delete' ? 'delete-any' : 'update-any';
        assert.match(
          answer.type === 'error' ? answer.error.message : '',
          new RegExp(`${action} needs ${needs}`),
        );
      }
      c.close();
    }
    const viaRest = await rest(fx.server, '/v1/channels/session:anon-own/messages', {
      key: null,
      headers: { authorization: `Bearer ${token}` },
      body: { action: 'append', serial, data: 'y' },
    });
    assert.equal((viaRest.body.error as { code: string }).code, 'not_owner');
  });

  it('takes an empty ?clientId= for none (an anonymous publisher), not for a bad clientId', async () => {
    const res = await rest(fx.server, '/v1/channels/session:no-id/messages?clientId=', {
      body: { data: 'x' },
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const history = await rest(fx.server, '/v1/channels/session:no-id/messages');
    const [message] = history.body.items as Array<{ clientId?: string }>;
    assert.equal(message?.clientId, undefined);
  });

  it('reads credentials from Authorization only for Basic and Bearer with a value; otherwise from the query', async () => {
    const path = `/v1/channels/session:creds/messages?key=${encodeURIComponent(TEST_KEY)}`;
    for (const authorization of ['Digest abc', 'Bearer', 'Basic']) {
      const res = await rest(fx.server, path, { key: null, headers: { authorization } });
      assert.equal(res.status, 200, `${authorization}: ${JSON.stringify(res.body)}`);
    }
    const none = await rest(fx.server, '/v1/channels/session:creds/messages', {
      key: null,
      headers: { authorization: 'Bearer' },
    });
    assert.equal(none.status, 401);
    assert.match((none.body.error as { message: string }).message, /no credentials/);
  });

  it('refuses an API key that is not <keyName>:<secret> (no name, no secret, whitespace)', () => {
    assert.deepEqual(parseApiKey('agents:s3cret:with:colons'), {
      name: 'agents',
      secret: 's3cret:with:colons',
    });
    for (const text of ['nocolon', ':secret', 'name:', 'na me:secret', 'name:sec ret'])
      assert.throws(() => parseApiKey(text), /an API key looks like <keyName>:<secret>/, text);
    // the refusal never repeats the secret: start-up errors end up in logs
    assert.throws(
      () => parseApiKey('app:hunter2-from-a-secret-file\n'),
      (err: Error) =>
        !err.message.includes('hunter2') && /"app":<27 characters> with whitespace/.test(err.message),
    );
  });

  it('refuses an API key given as an object with an empty secret, a bad name, a capability that is not an object, or a name given twice', async () => {
    const cases: Array<[unknown[], RegExp]> = [
      [[{ name: 'web', secret: '' }], /API key web: its secret must be a non-empty string/],
      [[{ name: 'web', secret: 'has space' }], /API key web: its secret must be a non-empty string/],
      [[{ name: 'w:eb', secret: 'x'.repeat(40) }], /an API key's name is a non-empty string without ':'/],
      [[{ name: '', secret: 'x'.repeat(40) }], /an API key's name is a non-empty string/],
      [
        [{ name: 'web', secret: 'x'.repeat(40), capability: null }],
        /API key web: its capability must be an object/,
      ],
      [
        [{ name: 'web', secret: 'x'.repeat(40), capability: false }],
        /API key web: its capability must be an object/,
      ],
      [['web:one', { name: 'web', secret: 'two' }], /API key web is given twice/],
    ];
    for (const [keys, message] of cases)
      await assert.rejects(
        startServer({ port: 0, host: '127.0.0.1', store: { kind: 'memory' }, keys: keys as never }),
        message,
        JSON.stringify(keys),
      );
  });

  it('keeps *-own to the client’s own messages', async () => {
    const c = await connect(
      fx,
      'websocket',
      await mint({ 'session:*': ['append-own', 'update-own', 'delete-own'] }),
    );
    const theirs = await messageBy('session:own', 'bob');
    for (const action of ['append', 'update', 'delete']) {
      const answer = await c.request({
        type: 'publish',
        channel: 'session:own',
        ops: [{ action, serial: theirs, ...(action === 'delete' ? {} : { data: 'x' }) }],
      });
      assert.equal(outcome(answer), 'not_owner', action);
    }
    c.close();
  });

  it('enforces capabilities on REST', async () => {
    const token = await mint({ 'session:r*': ['publish'] });
    const auth = { key: null, headers: { authorization: `Bearer ${token}` } } as const;
    assert.equal(
      (await rest(fx.server, '/v1/channels/session:rest/messages', { ...auth, body: { data: 1 } })).status,
      200,
    );
    const history = await rest(fx.server, '/v1/channels/session:rest/messages', auth);
    assert.equal(history.status, 403);
    assert.equal((history.body.error as { code: string }).code, 'forbidden');
    assert.equal(
      (await rest(fx.server, '/v1/channels/session:xyz/messages', { ...auth, body: { data: 1 } })).status,
      403,
    );
    assert.equal((await rest(fx.server, '/v1/channels/session:rest/presence', auth)).status, 403);
    const info = await rest(fx.server, '/v1/channels/session:rest', auth);
    assert.equal(info.status, 403, 'the channel info needs subscribe or history');
    assert.equal((info.body.error as { code: string }).code, 'forbidden');
    const subscriber = await mint({ 'session:*': ['subscribe'] });
    const seen = await rest(fx.server, '/v1/channels/session:rest', {
      key: null,
      headers: { authorization: `Bearer ${subscriber}` },
    });
    assert.equal(seen.status, 200);
    const reader = await mint({ 'session:*': ['history'] });
    const ok = await rest(fx.server, '/v1/channels/session:rest/messages', {
      key: null,
      headers: { authorization: `Bearer ${reader}` },
    });
    assert.equal(ok.status, 200);
  });

  it('does not let capability globs over-match', async () => {
    const c = await connect(
      fx,
      'websocket',
      await mint({ 'session:a*': ['subscribe'], 'exact:one': ['subscribe'] }),
    );
    for (const [channel, expected] of [
      ['session:a', 'ok'],
      ['session:abc:def', 'ok'],
      ['session:b', 'forbidden'],
      ['session:', 'forbidden'],
      ['xsession:a', 'forbidden'],
      ['exact:one', 'ok'],
      ['exact:one2', 'forbidden'],
      ['exact:on', 'forbidden'],
    ] as const) {
      assert.equal(outcome(await c.request({ type: 'attach', channel })), expected, channel);
    }
    c.close();
  });

  it('refuses tokens that must not verify, with a clear code', async () => {
    const now = Math.floor(Date.now() / 1000);
    const secret = Buffer.from('secret');
    const sign = (claims: Record<string, unknown>, header: Record<string, unknown>, key = secret) =>
      new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(key);
    const base = { clientId: 'alice', capability: { '*': ['*'] } };
    const unsigned = (claims: Record<string, unknown>) =>
      `${Buffer.from(JSON.stringify({ alg: 'none', kid: 'test', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.`;
    const tokens: Array<[string, string, string]> = [
      [
        'wrong signature',
        await sign({ ...base, exp: now + 60 }, { alg: 'HS256', kid: 'test' }, Buffer.from('other')),
        'unauthorized',
      ],
      ['expired', await sign({ ...base, exp: now - 10 }, { alg: 'HS256', kid: 'test' }), 'token_expired'],
      // exp is the first second it is no longer valid in (RFC 7519 §4.1.4)
      [
        'expiring this second',
        await sign({ ...base, exp: now }, { alg: 'HS256', kid: 'test' }),
        'token_expired',
      ],
      [
        'not yet valid',
        await sign({ ...base, exp: now + 600, nbf: now + 300 }, { alg: 'HS256', kid: 'test' }),
        'unauthorized',
      ],
      ['alg none', unsigned({ ...base, exp: now + 60 }), 'unauthorized'],
      ['wrong kid', await sign({ ...base, exp: now + 60 }, { alg: 'HS256', kid: 'nobody' }), 'unauthorized'],
      ['no kid', await sign({ ...base, exp: now + 60 }, { alg: 'HS256' }), 'unauthorized'],
      ['no exp', await sign({ ...base }, { alg: 'HS256', kid: 'test' }), 'unauthorized'],
      ['HS512', await sign({ ...base, exp: now + 60 }, { alg: 'HS512', kid: 'test' }), 'unauthorized'],
      [
        'bad capability',
        await sign({ ...base, capability: { x: ['fly'] }, exp: now + 60 }, { alg: 'HS256', kid: 'test' }),
        'unauthorized',
      ],
      [
        'no capability claim',
        await sign({ clientId: 'alice', exp: now + 60 }, { alg: 'HS256', kid: 'test' }),
        'unauthorized',
      ],
      ['garbage', 'a.b.c', 'unauthorized'],
    ];
    // clientIds that must not be accepted: empty (would collide with "anonymous"), control and bidi
    // characters, zero-width characters, huge, not a string.
    for (const clientId of [
      '',
      'a\u0000b',
      'bob\u202Egnp.exe',
      'zero\u200Bwidth',
      'a\nb',
      'x'.repeat(129),
      'x'.repeat(5000),
      42,
    ]) {
      tokens.push([
        `clientId ${JSON.stringify(clientId).slice(0, 20)}`,
        await sign({ ...base, clientId, exp: now + 60 }, { alg: 'HS256', kid: 'test' }),
        'unauthorized',
      ]);
    }
    for (const [what, token, code] of tokens) {
      const res = await rest(fx.server, '/v1/channels/x/messages', {
        key: null,
        headers: { authorization: `Bearer ${token}` },
      });
      const error = res.body.error as { code: string; message: string } | undefined;
      assert.equal(error?.code, code, what);
      assert.equal(res.status, 401, what);
      // a token of a key this server does not know says so, rather than "the signature does not verify"
      if (what.endsWith('kid'))
        assert.match(error?.message ?? '', /not signed by a key this server knows/, what);
      await assert.rejects(RawClient.connect(fx.server.url, { token }), /handshake refused: HTTP 40/, what);
    }
  });

  it('takes a token only in the spelling it was signed in: another spelling of its signature, padding or spaces are refused', async () => {
    // a token without a clientId is its holder's identity for budgets, named by its signature's text:
    // a second spelling that verified would be a second holder (a lenient base64url decoder skips
    // spaces anywhere, takes the spare bits of the last character and a trailing '=')
    const { token } = await createToken(TEST_KEY, { capability: { '*': ['*'] } });
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(token.at(-1)!);
    const dot = token.lastIndexOf('.');
    const spellings: Array<[string, string]> = [
      ['the spare bits of the last character', token.slice(0, -1) + alphabet[last ^ 1]],
      ['the other spare bit', token.slice(0, -1) + alphabet[last ^ 2]],
      ['a trailing =', `${token}=`],
      ['a trailing space', `${token} `],
      ['a space inside the signature', `${token.slice(0, dot + 10)} ${token.slice(dot + 10)}`],
      ['a newline inside the signature', `${token.slice(0, dot + 10)}\n${token.slice(dot + 10)}`],
      [
        'a tab inside the payload',
        `${token.slice(0, token.indexOf('.') + 5)}\t${token.slice(token.indexOf('.') + 5)}`,
      ],
    ];
    const ok = await RawClient.connect(fx.server.url, { token });
    ok.close();
    for (const [what, spelling] of spellings) {
      await assert.rejects(
        RawClient.connect(fx.server.url, { token: spelling }),
        /handshake refused: HTTP 401/,
        what,
      );
      if (spelling.trim() === token) continue; // HTTP trims a header value's ends: the token itself
      const res = await rest(fx.server, '/v1/channels/x/messages', {
        key: null,
        headers: { authorization: `Bearer ${spelling.replaceAll(/[\n\t]/g, ' ')}` },
      });
      assert.equal(res.status, 401, what);
    }
    // header parameters it does not know that a verifier must understand, and claims of the wrong type
    const now = Math.floor(Date.now() / 1000);
    const secret = Buffer.from(TEST_KEY.slice(TEST_KEY.indexOf(':') + 1));
    const keyName = TEST_KEY.slice(0, TEST_KEY.indexOf(':'));
    // signed by hand: jose will not sign a header it does not understand (crit)
    const signed = async (claims: Record<string, unknown> | string, header: Record<string, unknown> = {}) => {
      const part = (value: unknown) =>
        Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
      const payload = typeof claims === 'string' ? claims : { capability: { '*': ['*'] }, ...claims };
      const input = `${part({ alg: 'HS256', kid: keyName, ...header })}.${part(payload)}`;
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
    };
    // valid: an nbf past, or this very second (valid from it on), an iat
    for (const claims of [
      { exp: now + 60 },
      { exp: now + 60, nbf: now - 60, iat: now - 60 },
      { exp: now + 60, nbf: now },
    ]) {
      const c = await RawClient.connect(fx.server.url, { token: await signed(claims) });
      assert.equal(c.connected.type, 'connected', JSON.stringify(claims));
      c.close();
    }
    for (const [what, bad] of [
      ['crit', await signed({ exp: now + 60, x: 1 }, { crit: ['x'], x: 1 })],
      ['alg HS384 over an HS256 signature', await signed({ exp: now + 60 }, { alg: 'HS384' })],
      ['alg none over an HS256 signature', await signed({ exp: now + 60 }, { alg: 'none' })],
      ['exp as text', await signed({ exp: String(now + 60) })],
      ['exp 1e999 (JSON reads it as Infinity)', await signed('{"capability":{"*":["*"]},"exp":1e999}')],
      ['iat as text', await signed({ exp: now + 60, iat: 'yesterday' })],
      ['nbf as text', await signed({ exp: now + 60, nbf: 'now' })],
    ] as const)
      await assert.rejects(
        RawClient.connect(fx.server.url, { token: bad }),
        /handshake refused: HTTP 401/,
        what,
      );
  });

  it('refuses a token holder choosing another clientId; the server stamps the token’s', async () => {
    const token = await mint({ '*': ['*'] }, 'alice');
    await assert.rejects(RawClient.connect(fx.server.url, { token, clientId: 'bob' }), /403/);
    const c = await RawClient.connect(fx.server.url, { token });
    const ack = await c.publish('session:stamp', [{ data: 'hi' }]);
    const history = await rest(fx.server, '/v1/channels/session:stamp/messages');
    assert.equal((history.body.items as Array<{ clientId: string; serial: string }>)[0]?.clientId, 'alice');
    assert.equal((history.body.items as Array<{ serial: string }>)[0]?.serial, ack.results[0]?.serial);
    await c.close();
  });

  it('renews a token over the live connection, and ends a connection whose token expired', async () => {
    // a token's expiry is a whole second (JWT `exp`): a ttl of 2 s leaves it 1–2 s, time enough for
    // a handshake on a busy machine (1 s left 0–1 s, and a handshake 401 now and then)
    const first = await createToken(TEST_KEY, { clientId: 'alice', ttl: 2_000 });
    const c = await RawClient.connect(fx.server.url, { token: first.token });
    const renewed = await c.request({ type: 'auth', token: await mint({ '*': ['*'] }, 'alice') });
    assert.equal(renewed.type, 'authorized');
    const someoneElse = await c.request({ type: 'auth', token: await mint({ '*': ['*'] }, 'mallory') });
    assert.equal(outcome(someoneElse), 'forbidden');
    // past the first token's expiry
    await new Promise((r) => setTimeout(r, Math.max(0, first.expiresAt - Date.now()) + 300));
    assert.equal(c.closeCode, undefined, 'the renewed token keeps the connection');
    await c.close();

    const short = await RawClient.connect(fx.server.url, {
      token: (await createToken(TEST_KEY, { clientId: 'al', ttl: 2_000 })).token,
    });
    const bye = await short.next((f) => f.type === 'disconnect', 5_000);
    assert.ok(bye.type === 'disconnect' && bye.reason === 'token_expired' && bye.reconnect);
    assert.equal(await short.closed(), 4011);
  });

  it('publishes with the renewed token’s rights from the next publish on', async () => {
    const c = await RawClient.connect(fx.server.url, { token: await mint({ '*': ['*'] }, 'alice') });
    assert.equal(outcome(await c.request({ type: 'publish', channel: 'room:r', ops: [{ data: 1 }] })), 'ok');
    const narrower = await c.request({ type: 'auth', token: await mint({ 'session:*': ['*'] }, 'alice') });
    assert.equal(narrower.type, 'authorized');
    assert.equal(
      outcome(await c.request({ type: 'publish', channel: 'room:r', ops: [{ data: 2 }] })),
      'forbidden',
      'the old token’s rights are not kept for publishes',
    );
    assert.equal(
      outcome(await c.request({ type: 'publish', channel: 'session:r', ops: [{ data: 3 }] })),
      'ok',
    );
    await c.close();
  });

  it('createToken checks its lifetime (1 s to 24 h, 0 is not "the default") and its key, and reports the clientId it signed', async () => {
    const now = Date.now();
    for (const ttl of [0, 999, MAX_TOKEN_TTL + 1, Number.NaN])
      await assert.rejects(createToken(TEST_KEY, { ttl }), /ttl must be between 1 s and 24 h/, `ttl ${ttl}`);
    const longest = await createToken(TEST_KEY, { ttl: MAX_TOKEN_TTL, clientId: 'alice' }, now);
    assert.equal(longest.expiresAt, Math.floor((now + MAX_TOKEN_TTL) / 1000) * 1000);
    assert.equal(longest.clientId, 'alice');
    assert.equal((await createToken(TEST_KEY, {}, now)).clientId, undefined);
    for (const key of ['nocolon', ':secret', 'name:'])
      await assert.rejects(createToken(key), /an API key looks like <keyName>:<secret>/, key);
  });

  it('mints tokens over REST for API keys only', async () => {
    const res = await rest(fx.server, '/v1/tokens', {
      body: { clientId: 'web-1', capability: { 'session:*': ['subscribe'] }, ttl: 60_000 },
    });
    assert.equal(res.status, 200);
    const token = res.body.token as string;
    const c = await RawClient.connect(fx.server.url, { token });
    assert.equal(c.connected.clientId, 'web-1');
    assert.equal(
      outcome(await c.request({ type: 'publish', channel: 'session:t', ops: [{ data: 1 }] })),
      'forbidden',
    );
    await c.close();
    const withToken = await rest(fx.server, '/v1/tokens', {
      key: null,
      headers: { authorization: `Bearer ${token}` },
      body: {},
    });
    assert.equal(withToken.status, 401);
    const bad = await rest(fx.server, '/v1/tokens', { body: { ttl: 10 } });
    assert.equal(bad.status, 400);
    // `null`, and no body at all, ask for the defaults; a body that is not an object is refused,
    // falsy ones too; a publish's body stays required
    assert.equal((await rest(fx.server, '/v1/tokens', { raw: 'null' })).status, 200);
    for (const init of [{ method: 'POST' }, { raw: '' }]) {
      const bare = await rest(fx.server, '/v1/tokens', init);
      assert.equal(bare.status, 200, JSON.stringify(init));
      assert.equal(bare.body.clientId, undefined);
      assert.deepEqual(bare.body.capability, { '*': ['*'] });
      const ttl = (bare.body.expiresAt as number) - Date.now();
      assert.ok(ttl > 3_500_000 && ttl <= 3_600_000, `the default hour, not ${ttl} ms`);
    }
    for (const raw of ['false', '0', '""', '[]', '"x"', ' '])
      assert.equal((await rest(fx.server, '/v1/tokens', { raw })).status, 400, raw);
    const publish = await rest(fx.server, '/v1/channels/session:t/messages', { raw: '' });
    assert.equal(publish.status, 400);
    assert.match(String((publish.body.error as { message: string }).message), /not valid JSON/);
  });
});

describe('abuse limits', () => {
  it('refuses connections beyond the per-key limit, publishes beyond the rate, deep JSON and header floods', async () => {
    const fx = await startFixture('memory', { limits: { maxConnectionsPerKey: 3, maxKeyPublishRate: 20 } });
    try {
      const clients = await Promise.all([1, 2, 3].map(() => RawClient.connect(fx.server.url)));
      await assert.rejects(RawClient.connect(fx.server.url), /HTTP 429/);
      const sse = await fetch(`${fx.server.url}/v1/connect/sse?key=${TEST_KEY}`);
      assert.equal(sse.status, 429);
      clients[0]!.kill();
      await new Promise((r) => setTimeout(r, 50));
      const again = await RawClient.connect(fx.server.url);

      const c = clients[1]!;
      const ops = Array.from({ length: 21 }, (_, i) => ({ data: i }));
      assert.equal(outcome(await c.request({ type: 'publish', channel: 'x', ops })), 'rate_limited');
      assert.equal(outcome(await c.request({ type: 'publish', channel: 'x', ops: ops.slice(0, 5) })), 'ok');

      let deep: unknown = 'leaf';
      for (let i = 0; i < 100; i++) deep = [deep];
      assert.equal(
        outcome(await c.request({ type: 'publish', channel: 'x', ops: [{ data: deep }] })),
        'invalid_frame',
      );
      const deepRest = await rest(fx.server, '/v1/channels/x/messages', { body: { data: deep } });
      assert.equal(deepRest.status, 400);

      const headers = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`h${i}`, i]));
      assert.equal(
        outcome(await c.request({ type: 'publish', channel: 'x', ops: [{ data: 1, headers }] })),
        'invalid_frame',
      );
      const flood = await fetch(`${fx.server.url}/health`, { headers: { 'x-flood': 'y'.repeat(20_000) } });
      assert.equal(flood.status, 431);
      assert.equal((await c.request({ type: 'ping' })).type, 'pong', 'the connection lives on');
      for (const x of [...clients.slice(1), again]) await x.close();
    } finally {
      await fx.close();
    }
  });

  it('limits the publish rate of token connections (browsers), not of API-key connections (agents), by default', async () => {
    const fx = await startFixture('memory');
    try {
      const burst = (n: number) => Array.from({ length: n }, (_, i) => ({ data: i }));
      const agent = await RawClient.connect(fx.server.url);
      for (let i = 0; i < 12; i++)
        assert.equal(outcome(await agent.request({ type: 'publish', channel: 'x', ops: burst(100) })), 'ok');
      const { token } = await createToken(TEST_KEY, { clientId: 'browser' });
      const browser = await RawClient.connect(fx.server.url, { token });
      // 3,000 operations sent at once: refused unless the server took over 2 s to read them
      const answers = await Promise.all(
        Array.from({ length: 30 }, async () =>
          outcome(await browser.request({ type: 'publish', channel: 'x', ops: burst(100) })),
        ),
      );
      assert.ok(answers.includes('rate_limited'), 'a token identity is held to 1,000 operations/s');
      await Promise.all([agent.close(), browser.close()]);
    } finally {
      await fx.close();
    }
  });
});
