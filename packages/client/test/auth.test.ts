// Token auth with fake timers and fake transports (ARCHITECTURE.md §7, PROTOCOL.md §5.1, §6.1, §8, §14): where
// tokens go, when they are renewed over the live connection, and what expiry, a failing auth source
// and refused credentials lead to — without waiting in real time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ErrorInfo, ServerFrame } from '@mooring/protocol';
import type { AuthCallbackParams, TokenDetails } from '../src/auth.ts';
import { jwtExpiry } from '../src/auth.ts';
import type { ConnectionStateChange } from '../src/connection.ts';
import { MooringError } from '../src/errors.ts';
import type { MooringOptions } from '../src/mooring.ts';
import { Mooring } from '../src/mooring.ts';
import type { FetchLike } from '../src/rest.ts';
import { fakeClient, sent } from './helpers/fake-client.ts';
import type { FakeTransport } from './helpers/fake-transport.ts';
import { flush } from './helpers/fake-transport.ts';

const MINUTE = 60_000;

/** An unsigned JWT-shaped token (the client never verifies; the server would). */
function jwt(claims: Record<string, unknown>): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'HS256', kid: 'app', typ: 'JWT' })}.${part(claims)}.c2ln`;
}

const refused = (code: string, status: number, retryable: boolean): ErrorInfo =>
  ({ code, status, retryable, message: `${code} (test)` }) as ErrorInfo;

/** A client on token auth whose callback mints tokens of `life` ms (server clock = local clock + skew). */
function tokenClient(
  options: Partial<MooringOptions> & {
    life?: number;
    skew?: number;
    fail?: (p: AuthCallbackParams) => unknown;
  } = {},
) {
  const { life = 60 * MINUTE, skew = 0, fail, ...rest } = options;
  const calls: AuthCallbackParams[] = [];
  let minted = 0;
  const fake = fakeClient({
    key: undefined,
    authCallback: async (params): Promise<TokenDetails> => {
      calls.push(params);
      const failure = fail?.(params);
      if (failure !== undefined) throw failure;
      minted += 1;
      return { token: `tok${minted}.x.y`, expiresAt: fake.timers.now() + skew + life };
    },
    ...rest,
  });
  const changes: ConnectionStateChange[] = [];
  const errors: MooringError[] = [];
  fake.client.connection.on('statechange', (c) => changes.push(c));
  fake.client.connection.on('error', (e) => errors.push(e));
  /** Opens the pending transport and answers `connected` in the server's clock. */
  const connect = async (): Promise<FakeTransport> => {
    await flush();
    const t = fake.transports.last();
    t.connected({ serverTime: fake.timers.now() + skew });
    return t;
  };
  /**
   * Moves the clock in steps, the fake server sending a heartbeat after each while connected (or the
   * client would rightly declare the connection dead), letting the async steps (callback, sends) run.
   */
  const advance = async (ms: number) => {
    let left = ms;
    do {
      const step = Math.min(left, 10_000);
      fake.timers.advance(step);
      left -= step;
      if (fake.client.connection.state === 'connected')
        fake.transports.last().frame({ type: 'heartbeat', serverTime: fake.timers.now() + skew });
      await flush();
    } while (left > 0);
  };
  return { ...fake, calls, changes, errors, connect, advance };
}

/** A token client whose first handshake the server refuses with `code` (HTTP `status`, not retryable). */
async function refusedAtHandshake(code: string, status: number) {
  const s = tokenClient();
  await flush();
  s.transports
    .last()
    .end({ code: 1006, reason: '', httpStatus: status, error: refused(code, status, false) });
  return s;
}

describe('token auth: options', () => {
  const url = 'http://mooring.test';
  const noop = async () => 'a.b.c';

  it('needs exactly one of key, token, authCallback, authUrl', () => {
    const bad = (options: Partial<MooringOptions>, pattern: RegExp) =>
      assert.throws(
        () => new Mooring({ url, autoConnect: false, environment: null, ...options }),
        (err: unknown) =>
          err instanceof MooringError && err.code === 'bad_request' && pattern.test(err.message),
      );
    bad({}, /no credentials/);
    bad({ key: 'a:b', authCallback: noop }, /only one .*got key, authCallback/);
    bad({ token: 'a.b.c', authUrl: 'https://app.test/token' }, /only one/);
    bad({ key: 'a:b', authMethod: 'POST' }, /go with options.authUrl/);
    bad({ key: 'a:b', authHeaders: { 'x-app': '1' } }, /go with options.authUrl/);
    bad({ token: 'a.b.c', authParams: { room: 'r' } }, /go with options.authUrl/);
    bad({ authUrl: 'not a url' }, /invalid authUrl/);
    bad({ key: '' }, /keyName/);
    for (const ok of [
      { key: 'a:b' },
      { token: 'a.b.c' },
      { authCallback: noop },
      { authUrl: 'https://app.test/t' },
    ])
      new Mooring({ url, autoConnect: false, environment: null, ...ok });
  });

  it('decodes the exp claim of a JWT without verifying it', () => {
    assert.equal(jwtExpiry(jwt({ exp: 1_800_000_000 })), 1_800_000_000_000);
    assert.equal(jwtExpiry(jwt({ clientId: 'x' })), undefined);
    assert.equal(jwtExpiry('not-a-jwt'), undefined);
    assert.equal(jwtExpiry('a.%%%.c'), undefined);
    // an exp that is no number of seconds: a string, or JSON's 1e999 (Infinity once parsed)
    assert.equal(jwtExpiry(jwt({ exp: '1800000000' })), undefined);
    const infinite = `${jwt({}).split('.')[0]}.${Buffer.from('{"exp":1e999}').toString('base64url')}.c2ln`;
    assert.equal(jwtExpiry(infinite), undefined);
  });
});

describe('token auth: connecting', () => {
  it('asks the callback before connecting and sends the token as ?token= (with the clientId)', async () => {
    const s = tokenClient({ clientId: 'web-1' });
    const t = await s.connect();
    assert.deepEqual(s.calls, [{ clientId: 'web-1', reason: 'connect' }]);
    assert.equal(t.query.get('token'), 'tok1.x.y');
    assert.equal(t.query.get('clientId'), 'web-1');
    assert.equal(t.query.get('key'), null);
    assert.equal(s.client.connection.state, 'connected');
  });

  it('reuses a fresh token on a reconnect and fetches a new one when it is due for renewal', async () => {
    const s = tokenClient({ life: 10 * MINUTE });
    let t = await s.connect();
    t.end({ code: 1006, reason: '' });
    await s.advance(0);
    t = await s.connect();
    assert.equal(s.calls.length, 1, 'fresh: reused');
    assert.equal(t.query.get('token'), 'tok1.x.y');
    // away past 80 % of its life (the renewal over the connection could not run)
    s.client.close();
    await s.advance(8 * MINUTE);
    s.client.connect();
    t = await s.connect();
    assert.equal(s.calls.length, 2);
    assert.deepEqual(s.calls[1], { reason: 'connect' });
    assert.equal(t.query.get('token'), 'tok2.x.y');
  });

  it('surfaces a failing callback as the reason of disconnected and retries with backoff', async () => {
    let failures = 2;
    const s = tokenClient({ fail: () => (failures-- > 0 ? new Error('auth server down') : undefined) });
    await flush();
    assert.equal(s.client.connection.state, 'disconnected');
    const reason = s.client.connection.errorReason;
    assert.equal(reason?.code, 'auth_failed');
    assert.match(reason?.message ?? '', /authCallback failed: auth server down/);
    assert.equal(reason?.retryable, true);
    assert.equal(s.transports.made.length, 0, 'no handshake without a token');
    while (s.transports.made.length === 0) await s.advance(s.client.connection.retryIn ?? 0);
    await s.connect();
    assert.equal(s.calls.length, 3);
    assert.deepEqual(
      s.changes.map((c) => c.current),
      ['disconnected', 'connecting', 'disconnected', 'connecting', 'connected'],
    );
  });

  it('fails without retrying when the callback says 401/403, or the server refuses the token', async () => {
    const denied = tokenClient({ fail: () => Object.assign(new Error('not logged in'), { status: 403 }) });
    await flush();
    assert.equal(denied.client.connection.state, 'failed');
    assert.equal(denied.client.connection.errorReason?.code, 'auth_failed');
    assert.equal(denied.client.connection.errorReason?.status, 403);
    await denied.advance(10 * MINUTE);
    assert.equal(denied.calls.length, 1);

    const wrongKey = await refusedAtHandshake('unauthorized', 401);
    assert.equal(wrongKey.client.connection.state, 'failed');
    assert.equal(wrongKey.client.connection.errorReason?.code, 'unauthorized');
    await wrongKey.advance(10 * MINUTE);
    assert.equal(wrongKey.calls.length, 1, 'one token asked for');
    assert.equal(wrongKey.transports.made.length, 1, 'one handshake');

    // connect() after fixing the cause asks for a new token
    wrongKey.client.connect();
    await wrongKey.connect();
    assert.equal(wrongKey.calls.length, 2);
    assert.equal(wrongKey.client.connection.state, 'connected');

    // the same for a token refused 403 (another clientId than the token's, a channel it lacks)
    const wrongClient = await refusedAtHandshake('forbidden', 403);
    assert.equal(wrongClient.client.connection.state, 'failed');
    wrongClient.client.connect();
    await wrongClient.connect();
    assert.equal(wrongClient.calls.length, 2, 'a new token, not the refused one');
    assert.equal(wrongClient.transports.last().query.get('token'), 'tok2.x.y');
  });

  it('keeps the token when the connection fails for another cause than the token, and a fixed token after a refusal', async () => {
    // refused for another cause (not 401/403): connect() again reuses the still fresh token
    const s = tokenClient();
    await flush();
    s.transports
      .last()
      .end({ code: 1006, reason: '', httpStatus: 400, error: refused('bad_request', 400, false) });
    assert.equal(s.client.connection.state, 'failed');
    assert.equal(s.client.connection.errorReason?.code, 'bad_request');
    s.client.connect();
    await s.connect();
    assert.equal(s.client.connection.state, 'connected');
    assert.equal(s.calls.length, 1, 'no new token for a failure that was not the token');
    assert.equal(s.transports.last().query.get('token'), 'tok1.x.y');

    // a fixed token refused 401 cannot be replaced: connect() after fixing the cause sends it again
    const c = fakeClient({ key: undefined, token: 'fixed.x.y' });
    await flush();
    c.transports
      .last()
      .end({ code: 1006, reason: '', httpStatus: 401, error: refused('unauthorized', 401, false) });
    assert.equal(c.client.connection.state, 'failed');
    c.client.connect();
    await c.connect();
    assert.equal(c.client.connection.state, 'connected');
    assert.equal(c.transports.made.length, 2);
    assert.equal(c.transports.last().query.get('token'), 'fixed.x.y');
  });

  it('gives up on a callback that never answers within realtimeRequestTimeout, and retries', async () => {
    let hang = true;
    const calls: AuthCallbackParams[] = [];
    const c = fakeClient({
      key: undefined,
      authCallback: (params) => {
        calls.push(params);
        return hang ? new Promise<string>(() => {}) : 'fresh.x.y';
      },
    });
    await flush();
    c.timers.advance(10_000);
    assert.equal(c.client.connection.state, 'disconnected');
    assert.match(c.client.connection.errorReason?.message ?? '', /within 10000 ms/);
    hang = false;
    while (c.transports.made.length === 0) {
      c.timers.advance(c.client.connection.retryIn ?? 0);
      await flush();
    }
    assert.equal(c.transports.last().query.get('token'), 'fresh.x.y');
    assert.equal(calls.length, 2);
  });

  it('takes { token } without an expiresAt, or with null, as a token whose expiry is unknown', async () => {
    for (const answer of [{ token: 'a.b.c' }, { token: 'a.b.c', expiresAt: null }]) {
      const c = fakeClient({ key: undefined, authCallback: () => answer as TokenDetails });
      await flush();
      assert.equal(c.transports.last().query.get('token'), 'a.b.c', JSON.stringify(answer));
    }
  });

  it('fails, naming what it got, when the callback returns something that is not a token; no handshake, no retry loop', async () => {
    const cases: [unknown, RegExp][] = [
      [42, /got 42/],
      [undefined, /got undefined/],
      ['', /got ""/],
      [{ token: '' }, /got an object with keys \["token"\]/],
      [{ jwt: 'a.b.c' }, /keys \["jwt"\]/],
      [{ token: 'a.b.c', expiresAt: 'soon' }, /keys \["token","expiresAt"\]/],
      // an expiry that is not a time would make every use of the token look due for renewal
      [{ token: 'a.b.c', expiresAt: Number.NaN }, /keys \["token","expiresAt"\]/],
      [{ token: 'a.b.c', expiresAt: Number.POSITIVE_INFINITY }, /keys \["token","expiresAt"\]/],
    ];
    for (const [answer, named] of cases) {
      let calls = 0;
      const c = fakeClient({
        key: undefined,
        authCallback: () => {
          calls += 1;
          return answer as string;
        },
      });
      await flush();
      const what = JSON.stringify(answer) ?? String(answer);
      assert.equal(c.client.connection.state, 'failed', what);
      const reason = c.client.connection.errorReason;
      assert.equal(reason?.code, 'auth_failed', what);
      assert.equal(reason?.retryable, false, what);
      assert.match(
        reason?.message ?? '',
        /authCallback must return a token string or \{ token, expiresAt\? \}/,
      );
      assert.match(reason?.message ?? '', named, what);
      c.timers.advance(10 * MINUTE);
      await flush();
      assert.equal(calls, 1, `${what}: asked once`);
      assert.equal(c.transports.made.length, 0, `${what}: no handshake`);
    }
  });
});

describe('token auth: renewal over the live connection', () => {
  it('renews at 80 % of a long token’s life with an auth frame: no reconnect, no state change', async () => {
    const s = tokenClient({ life: 60 * MINUTE });
    const t = await s.connect();
    const id = s.client.connection.id;
    const before = s.changes.length;
    await s.advance(48 * MINUTE - 1);
    assert.equal(sent(t, 'auth').length, 0);
    await s.advance(1);
    assert.deepEqual(s.calls.at(-1), { reason: 'renew' });
    const [auth] = sent(t, 'auth');
    assert.equal(auth?.token, 'tok2.x.y');
    t.frame({ type: 'authorized', ref: auth!.ref, expiresAt: s.timers.now() + 60 * MINUTE });
    // the next renewal: 48 minutes after this one
    await s.advance(48 * MINUTE - 1);
    assert.equal(sent(t, 'auth').length, 1);
    await s.advance(1);
    assert.equal(sent(t, 'auth').length, 2);
    assert.equal(s.transports.made.length, 1, 'never reconnected');
    assert.equal(s.changes.length, before, 'no state change');
    assert.equal(s.client.connection.id, id);
    assert.deepEqual(s.errors, []);
  });

  it('waits out a token that lives longer than a timer can hold (> 24.8 days) instead of renewing at once', async () => {
    const DAY = 24 * 60 * MINUTE;
    const s = tokenClient({ life: 40 * DAY });
    const t = await s.connect();
    await s.advance(2 * MINUTE);
    assert.equal(sent(t, 'auth').length, 0, 'no renewal long before 80 % of its life');
    assert.equal(s.calls.length, 1);
    assert.ok(
      s.timers.pending().every((ms) => ms <= 2_147_483_647),
      'every timer within what setTimeout holds',
    );
  });

  it('renews short tokens 30 s before expiry, and very short ones at half their life', async () => {
    for (const [life, at] of [
      [60_000, 30_000],
      [20_000, 10_000],
      [5 * MINUTE, 4 * MINUTE], // 80 % is earlier than 30 s before
    ] as const) {
      const s = tokenClient({ life });
      const t = await s.connect();
      await s.advance(at - 1);
      assert.equal(sent(t, 'auth').length, 0, `life ${life}: not before ${at}`);
      await s.advance(1);
      assert.equal(sent(t, 'auth').length, 1, `life ${life}: at ${at}`);
    }
  });

  it('takes the expiry from the JWT exp claim when the callback returns only the token', async () => {
    const s = tokenClient({
      authCallback: () => jwt({ exp: Math.floor(s.timers.now() / 1000) + 600 }), // 10 min
    });
    const t = await s.connect();
    await s.advance(8 * MINUTE - 1);
    assert.equal(sent(t, 'auth').length, 0);
    await s.advance(1);
    assert.equal(sent(t, 'auth').length, 1);
  });

  it('corrects for a client clock that is off (serverTime of the connected frame)', async () => {
    // the server's clock is 10 minutes ahead: an expiresAt 60 min after the server's now is a
    // 60-minute token, renewed at 48 min — not at 80 % of 70 min
    const s = tokenClient({ life: 60 * MINUTE, skew: 10 * MINUTE });
    const t = await s.connect();
    await s.advance(48 * MINUTE - 1);
    assert.equal(sent(t, 'auth').length, 0);
    await s.advance(1);
    assert.equal(sent(t, 'auth').length, 1);
  });

  it('ignores a connected frame whose serverTime is not a time (0): no clock offset from it', async () => {
    const s = tokenClient({ life: 60 * MINUTE });
    await flush();
    const t = s.transports.last();
    t.connected({ serverTime: 0 });
    await s.advance(48 * MINUTE - 1);
    assert.equal(sent(t, 'auth').length, 0, 'not renewed early (an offset of minus now would)');
    await s.advance(1);
    assert.equal(sent(t, 'auth').length, 1);
  });

  it('retries a failed renewal with backoff, reporting it as an error event without a state change', async () => {
    let failRenewals = 2;
    const s = tokenClient({
      life: 10 * MINUTE,
      fail: (p) => (p.reason === 'renew' && failRenewals-- > 0 ? new Error('flaky') : undefined),
    });
    const t = await s.connect();
    const before = s.changes.length;
    await s.advance(8 * MINUTE);
    assert.equal(s.errors.length, 1);
    assert.equal(s.errors[0]?.code, 'auth_failed');
    assert.match(s.errors[0]?.message ?? '', /flaky/);
    await s.advance(1_000); // initialRetryDelay
    assert.equal(s.errors.length, 2);
    await s.advance(2_000);
    const [auth] = sent(t, 'auth');
    assert.ok(auth, 'the third try sends the new token');
    t.frame({ type: 'authorized', ref: auth.ref, expiresAt: s.timers.now() + 10 * MINUTE });
    assert.equal(s.changes.length, before);
    assert.equal(s.client.connection.state, 'connected');
  });

  it('does not loop when the server refuses the renewed token (another clientId)', async () => {
    const s = tokenClient({ life: 10 * MINUTE });
    const t = await s.connect();
    await s.advance(8 * MINUTE);
    const [auth] = sent(t, 'auth');
    t.frame({ type: 'error', ref: auth!.ref, error: refused('forbidden', 403, false) });
    assert.equal(s.errors.length, 1, 'reported once (not also as an error nobody tracks)');
    assert.equal(s.errors[0]?.code, 'forbidden');
    assert.equal(s.errors[0]?.retryable, false);
    assert.match(s.errors[0]?.message ?? '', /refused the renewed token/);
    await s.advance(MINUTE);
    assert.equal(sent(t, 'auth').length, 1);
    assert.equal(s.calls.length, 2);
    assert.equal(s.client.connection.state, 'connected', 'runs on its current token until it expires');
  });

  it('retries a renewal the server refused for now (rate_limited) with backoff, on the same token, without a state change', async () => {
    const s = tokenClient({ life: 10 * MINUTE });
    const t = await s.connect();
    const before = s.changes.length;
    await s.advance(8 * MINUTE);
    const [first] = sent(t, 'auth');
    t.frame({ type: 'error', ref: first!.ref, error: refused('rate_limited', 429, true) });
    assert.equal(s.errors.length, 1);
    assert.equal(s.errors[0]?.code, 'rate_limited');
    assert.equal(s.errors[0]?.retryable, true);
    await s.advance(1_000); // initialRetryDelay
    const auths = sent(t, 'auth');
    assert.equal(auths.length, 2, 'sent again');
    assert.equal(auths[1]?.token, first?.token, 'the token was fine: not fetched again');
    t.frame({ type: 'authorized', ref: auths[1]!.ref, expiresAt: s.timers.now() + 10 * MINUTE });
    assert.equal(s.changes.length, before);
    assert.equal(s.client.connection.state, 'connected');
  });

  it('a reconnect during a renewal uses the renewed token, and asks for it once', async () => {
    let release: (() => void) | undefined;
    let minted = 0;
    const c = tokenClient({
      life: 10 * MINUTE,
      authCallback: async (params) => {
        if (params.reason === 'renew')
          await new Promise<void>((resolve) => {
            release = resolve;
          });
        minted += 1;
        return { token: `t${minted}.x.y`, expiresAt: c.timers.now() + 10 * MINUTE };
      },
    });
    const t = await c.connect();
    await c.advance(8 * MINUTE); // the renewal starts; the callback is slow
    assert.ok(release, 'renewal asked');
    t.end({ code: 1006, reason: '' }); // the connection drops meanwhile
    await c.advance(0);
    release?.();
    const next = await c.connect();
    assert.equal(next.query.get('token'), 't2.x.y', 'the handshake waited for the renewal');
    assert.equal(minted, 2);
    await c.advance(MINUTE);
    assert.equal(sent(next, 'auth').length, 0, 'the server has it already');
    assert.equal(c.client.connection.state, 'connected');
  });

  it('resends the renewal when the authorized answer does not come', async () => {
    const s = tokenClient({ life: 10 * MINUTE });
    const t = await s.connect();
    await s.advance(8 * MINUTE);
    await s.advance(10_000); // realtimeRequestTimeout
    assert.equal(s.errors.at(-1)?.code, 'timeout');
    await s.advance(1_000);
    const auths = sent(t, 'auth');
    assert.equal(auths.length, 2);
    assert.equal(auths[1]?.token, auths[0]?.token, 'the token already fetched is sent again');
    assert.equal(s.calls.length, 2);
  });
});

describe('token auth: the answers around a renewal', () => {
  it("the server's authorized expiresAt sets when the renewed token is renewed; an answer without a usable one keeps the token's own", async () => {
    for (const [answered, next] of [
      [10 * MINUTE, 8 * MINUTE], // the server's word: 80 % of 10 minutes
      [undefined, 48 * MINUTE], // none: the callback's 60 minutes
      [0, 48 * MINUTE], // not a time
    ] as const) {
      const s = tokenClient({ life: 60 * MINUTE });
      const t = await s.connect();
      await s.advance(48 * MINUTE);
      const [auth] = sent(t, 'auth');
      // an answer without expiresAt is malformed (an older or a foreign server): built untyped
      const frame: Record<string, unknown> = { type: 'authorized', ref: auth!.ref };
      if (answered !== undefined) frame.expiresAt = answered === 0 ? 0 : s.timers.now() + answered;
      t.frame(frame as unknown as ServerFrame);
      await s.advance(next - 1);
      assert.equal(sent(t, 'auth').length, 1, `answered ${answered}: not before ${next}`);
      await s.advance(1);
      assert.equal(sent(t, 'auth').length, 2, `answered ${answered}: at ${next}`);
      assert.deepEqual(s.errors, []);
    }
  });

  it('an authorized frame that answers no renewal in flight, or another ref, changes nothing and is no error', async () => {
    const s = tokenClient({ life: 60 * MINUTE });
    const t = await s.connect();
    t.frame({ type: 'authorized', ref: 99, expiresAt: s.timers.now() + MINUTE });
    await s.advance(48 * MINUTE - 1);
    assert.equal(sent(t, 'auth').length, 0, 'the renewal keeps its time');
    await s.advance(1);
    const [auth] = sent(t, 'auth');
    t.frame({ type: 'authorized', ref: 'not-it', expiresAt: s.timers.now() + MINUTE });
    t.frame({ type: 'authorized', ref: auth!.ref, expiresAt: s.timers.now() + 10 * MINUTE });
    await s.advance(8 * MINUTE);
    assert.equal(sent(t, 'auth').length, 2, 'the answer to its own ref counted, the other not');
    assert.deepEqual(s.errors, []);
  });

  it("an error answering another request while a renewal is in flight is that request's, not the renewal's", async () => {
    const s = tokenClient({ life: 10 * MINUTE });
    const t = await s.connect();
    // with nothing in flight, an error nobody tracks is surfaced as it is
    t.frame({ type: 'error', ref: 'p1', error: refused('forbidden', 403, false) });
    assert.equal(s.errors.length, 1);
    await s.advance(8 * MINUTE);
    const [auth] = sent(t, 'auth');
    t.frame({ type: 'error', ref: 'p2', error: refused('forbidden', 403, false) });
    assert.equal(s.errors.length, 2);
    assert.doesNotMatch(s.errors[1]?.message ?? '', /renewed token/);
    t.frame({ type: 'authorized', ref: auth!.ref, expiresAt: s.timers.now() + 10 * MINUTE });
    await s.advance(8 * MINUTE);
    assert.equal(sent(t, 'auth').length, 2, "the renewal's own answer was still awaited, and taken");
  });

  it('a renewal answered token_expired gets another token and sends it, without an error event', async () => {
    const s = tokenClient({ life: 10 * MINUTE });
    const t = await s.connect();
    await s.advance(8 * MINUTE);
    const [first] = sent(t, 'auth');
    t.frame({ type: 'error', ref: first!.ref, error: refused('token_expired', 401, true) });
    await s.advance(1_000); // initialRetryDelay
    const auths = sent(t, 'auth');
    assert.equal(auths.length, 2);
    assert.notEqual(auths[1]?.token, first?.token, 'not the token the server found expired');
    assert.equal(s.calls.length, 3);
    assert.deepEqual(s.errors, []);
    assert.equal(s.client.connection.state, 'connected');
  });

  it('a token_expired error that answers no request renews over the live connection, and is surfaced', async () => {
    const s = tokenClient({ life: 60 * MINUTE });
    const t = await s.connect();
    t.frame({ type: 'error', error: refused('token_expired', 401, true) });
    await s.advance(0);
    const [auth] = sent(t, 'auth');
    assert.equal(auth?.token, 'tok2.x.y', 'a new token at once, not at 80 % of the old one');
    assert.equal(s.errors.at(-1)?.code, 'token_expired');
    assert.equal(s.client.connection.state, 'connected');
  });

  it('gives up a renewal whose callback never answers after realtimeRequestTimeout: a retryable auth_failed, then a retry', async () => {
    let renewals = 0;
    const s = tokenClient({
      life: 10 * MINUTE,
      authCallback: async (params) => {
        if (params.reason === 'renew' && ++renewals === 1) await new Promise<never>(() => {});
        return { token: `t-${params.reason}.x.y`, expiresAt: s.timers.now() + 10 * MINUTE };
      },
    });
    const t = await s.connect();
    await s.advance(8 * MINUTE); // the renewal begins; its callback never answers
    assert.equal(s.errors.length, 0);
    await s.advance(10_000); // realtimeRequestTimeout
    assert.equal(s.errors.length, 1);
    assert.equal(s.errors[0]?.code, 'auth_failed');
    assert.match(s.errors[0]?.message ?? '', /no token from the auth source/);
    assert.equal(s.errors[0]?.retryable, true);
    await s.advance(5_000);
    assert.equal(sent(t, 'auth')[0]?.token, 't-renew.x.y', 'the retry sends the new token');
    assert.equal(s.client.connection.state, 'connected');
  });

  it('a renewal already fetching its token is not started again: one auth frame', async () => {
    let release: (() => void) | undefined;
    const s = tokenClient({
      life: 10 * MINUTE,
      authCallback: async (params) => {
        if (params.reason === 'renew')
          await new Promise<void>((resolve) => {
            release = resolve;
          });
        return { token: `t-${params.reason}.x.y`, expiresAt: s.timers.now() + 10 * MINUTE };
      },
    });
    const t = await s.connect();
    await s.advance(8 * MINUTE); // the renewal begins; its callback waits
    assert.ok(release);
    t.frame({ type: 'error', error: refused('token_expired', 401, true) }); // asks to renew again
    await s.advance(0);
    release();
    await s.advance(0);
    assert.equal(sent(t, 'auth').length, 1);
  });
});

describe('token auth: expiry', () => {
  it('on disconnect { token_expired } fetches a new token and reconnects at once, recovering', async () => {
    const s = tokenClient({ life: 10 * MINUTE });
    const t = await s.connect();
    const key = s.client.connection.key;
    t.frame({
      type: 'disconnect',
      reason: 'token_expired',
      reconnect: true,
      error: refused('token_expired', 401, true),
    });
    assert.equal(s.client.connection.state, 'disconnected');
    assert.equal(s.client.connection.errorReason?.code, 'token_expired');
    await s.advance(0);
    const next = await s.connect();
    assert.deepEqual(s.calls.at(-1), { reason: 'expired' });
    assert.equal(next.query.get('token'), 'tok2.x.y');
    assert.equal(next.query.get('recover'), key);
    assert.equal(s.client.connection.state, 'connected');
  });

  it('treats close 4011 without a disconnect frame the same way', async () => {
    const s = tokenClient();
    const t = await s.connect();
    t.end({ code: 4011, reason: 'token expired' });
    assert.equal(s.client.connection.errorReason?.code, 'token_expired');
    await s.advance(0);
    const next = await s.connect();
    assert.equal(next.query.get('token'), 'tok2.x.y');
    assert.equal(s.calls.at(-1)?.reason, 'expired');
  });

  it('on a handshake refused with token_expired, retries with a new token', async () => {
    const s = tokenClient();
    await flush();
    s.transports
      .last()
      .end({ code: 1006, reason: '', httpStatus: 401, error: refused('token_expired', 401, true) });
    assert.equal(s.client.connection.state, 'disconnected');
    while (s.transports.made.length < 2) await s.advance(s.client.connection.retryIn ?? 0);
    assert.equal(s.transports.last().query.get('token'), 'tok2.x.y');
    assert.equal(s.calls.at(-1)?.reason, 'expired');
  });

  it('a fixed token (options.token) is sent as is and ends in failed once it expired', async () => {
    const c = fakeClient({ key: undefined, token: 'fixed.x.y' });
    await flush();
    const t = c.transports.last();
    assert.equal(t.query.get('token'), 'fixed.x.y');
    t.connected();
    t.frame({
      type: 'disconnect',
      reason: 'token_expired',
      reconnect: true,
      error: refused('token_expired', 401, true),
    });
    c.timers.advance(0);
    await flush();
    assert.equal(c.client.connection.state, 'failed');
    assert.equal(c.client.connection.errorReason?.code, 'token_expired');
    assert.match(c.client.connection.errorReason?.message ?? '', /cannot be renewed/);
    assert.equal(c.transports.made.length, 1);
  });
});

describe('token auth: authUrl', () => {
  function authUrlClient(
    answer: (url: URL, init: RequestInit) => Response,
    options: Partial<MooringOptions> = {},
  ) {
    const requests: Array<{ url: URL; init: RequestInit }> = [];
    const fetch: FetchLike = async (url, init) => {
      const parsed = new URL(url);
      if (parsed.host !== 'app.test') throw new Error(`unexpected fetch ${url}`);
      requests.push({ url: parsed, init });
      return answer(parsed, init);
    };
    const c = fakeClient({ key: undefined, authUrl: 'https://app.test/api/token', fetch, ...options });
    return { ...c, requests };
  }

  it('GETs the URL with authHeaders and clientId; takes JSON { token, expiresAt } or the JWT as text', async () => {
    const token = jwt({ exp: 1_800_000_000 });
    for (const body of [JSON.stringify({ token, expiresAt: 1_800_000_000_000 }), token, `${token}\n`]) {
      const c = authUrlClient(() => new Response(body), {
        clientId: 'web-1',
        authHeaders: { 'x-csrf': 'abc' },
        authParams: { session: 's1' },
      });
      await flush();
      await flush();
      const [req] = c.requests;
      assert.equal(req?.init.method, 'GET');
      assert.equal(req?.url.searchParams.get('clientId'), 'web-1');
      assert.equal(req?.url.searchParams.get('session'), 's1');
      assert.equal((req?.init.headers as Record<string, string>)['x-csrf'], 'abc');
      assert.equal(c.transports.last().query.get('token'), token);
    }
  });

  it('sends no clientId when the client has none, and keeps one authParams names', async () => {
    const c = authUrlClient(() => new Response('a.b.c'));
    await flush();
    await flush();
    assert.equal(c.requests[0]?.url.searchParams.has('clientId'), false);
    const named = authUrlClient(() => new Response('a.b.c'), {
      clientId: 'web-1',
      authParams: { clientId: 'from-params' },
    });
    await flush();
    await flush();
    assert.equal(named.requests[0]?.url.searchParams.get('clientId'), 'from-params');
  });

  it('POSTs JSON when authMethod is POST (e.g. the server’s own POST /v1/tokens)', async () => {
    const c = authUrlClient(() => Response.json({ token: 'a.b.c', expiresAt: 1 }), {
      authMethod: 'POST',
      clientId: 'web-1',
      authParams: { ttl: 60_000 },
    });
    await flush();
    await flush();
    const [req] = c.requests;
    assert.equal(req?.init.method, 'POST');
    assert.deepEqual(JSON.parse(String(req?.init.body)), { ttl: 60_000, clientId: 'web-1' });
  });

  it('fails on 401/403 or an answer that is not a token; retries on 5xx and network errors', async () => {
    for (const [status, body, state] of [
      [
        403,
        '{"error":{"code":"forbidden","status":403,"retryable":false,"message":"log in first"}}',
        'failed',
      ],
      [401, 'no', 'failed'],
      [200, '<html>login</html>', 'failed'],
      [502, 'bad gateway', 'disconnected'],
    ] as const) {
      const c = authUrlClient(() => new Response(body, { status }));
      await flush();
      await flush();
      assert.equal(c.client.connection.state, state, `${status} ${body}`);
      assert.equal(c.client.connection.errorReason?.code, 'auth_failed');
      if (status === 403) assert.match(c.client.connection.errorReason?.message ?? '', /log in first/);
      c.timers.advance(MINUTE);
      await flush();
      await flush();
      assert.equal(c.requests.length > 1, state === 'disconnected', `${status}: retried?`);
    }
  });
});

describe('token auth: REST', () => {
  it('sends the token as Authorization: Bearer and fetches a new one after token_expired', async () => {
    let minted = 0;
    const seen: string[] = [];
    const fetch: FetchLike = async (_url, init) => {
      const header = (init.headers as Record<string, string>).authorization ?? '';
      seen.push(header);
      if (header === 'Bearer tok1.x.y')
        return Response.json({ error: refused('token_expired', 401, true) }, { status: 401 });
      return Response.json({ channel: 'c', epoch: 'e', position: '', messages: 0 });
    };
    const c = fakeClient({
      key: undefined,
      autoConnect: false,
      fetch,
      authCallback: () => {
        minted += 1;
        return `tok${minted}.x.y`;
      },
    });
    const status = c.client.rest.status('c');
    for (let i = 0; i < 5; i++) {
      await flush();
      c.timers.advance(250);
    }
    await status;
    assert.deepEqual(seen, ['Bearer tok1.x.y', 'Bearer tok2.x.y']);
  });
});
