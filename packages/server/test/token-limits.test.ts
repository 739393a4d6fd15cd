/**
 * What a token can never do (PROTOCOL.md §14): more than the key that signed it (on every transport,
 * on REST, and for tokens minted over `POST /v1/tokens`), keep rights a renewal takes away, move its
 * connection to another key by renewing, or break on a far-future `exp`. And what a clientId may be.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { SignJWT } from 'jose';
import { createToken } from '../src/index.ts';
import { connectOn, type FrameClient, outcome, restHeaders, TRANSPORTS } from './support/any-transport.ts';
import { type Fixture, rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const LIMITED = {
  name: 'limited',
  secret: 'limited-secret',
  capability: { 'session:*': ['subscribe', 'publish'] },
};
const LIMITED_KEY = `${LIMITED.name}:${LIMITED.secret}`;
const OTHER_KEY = 'other:other-secret';

/** Waits for a condition the server reaches on its own (a close being processed), polling briefly. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('a token can do no more than its key', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('memory', { keys: [TEST_KEY, LIMITED] });
  });
  after(() => fx.close());

  /** Every way to get a token asking for everything from the restricted key. */
  const greedyTokens = async (): Promise<Array<[string, string]>> => {
    const minted = await rest(fx.server, '/v1/tokens', {
      key: LIMITED_KEY,
      body: { clientId: 'greedy', capability: { '*': ['*'] } },
    });
    assert.equal(minted.status, 200);
    const bare = await rest(fx.server, '/v1/tokens', { key: LIMITED_KEY, body: { clientId: 'greedy' } });
    return [
      [
        'createToken',
        (await createToken(LIMITED_KEY, { clientId: 'greedy', capability: { '*': ['*'] } })).token,
      ],
      ['POST /v1/tokens asking for everything', minted.body.token as string],
      ['POST /v1/tokens without a capability', bare.body.token as string],
    ];
  };

  async function victimMessage(channel: string): Promise<string> {
    const res = await rest(fx.server, `/v1/channels/${channel}/messages?clientId=bob`, {
      body: { data: 'b' },
    });
    return (res.body.results as Array<{ serial: string }>)[0]!.serial;
  }

  for (const transport of TRANSPORTS) {
    it(`holds a token of a restricted key to the key's capability on ${transport}`, async () => {
      for (const [how, token] of await greedyTokens()) {
        const c = await connectOn(fx, transport, { token });
        const ch = `session:limit-${transport}`;
        const bob = await victimMessage(ch);
        const answers: Array<[string, Promise<ServerFrame>, string]> = [
          ['subscribe inside', c.request({ type: 'attach', channel: ch }), 'ok'],
          ['publish inside', c.request({ type: 'publish', channel: ch, ops: [{ data: 1 }] }), 'ok'],
          ['subscribe outside', c.request({ type: 'attach', channel: 'private:x' }), 'forbidden'],
          [
            'publish outside',
            c.request({ type: 'publish', channel: 'private:x', ops: [{ data: 1 }] }),
            'forbidden',
          ],
          ['history', c.request({ type: 'attach', channel: `${ch}:h`, rewind: 1 }), 'forbidden'],
          ['presence', c.request({ type: 'presence', channel: ch, action: 'enter' }), 'forbidden'],
          [
            'update-any',
            c.request({ type: 'publish', channel: ch, ops: [{ action: 'update', serial: bob, data: 'x' }] }),
            'forbidden',
          ],
          [
            'delete-any',
            c.request({ type: 'publish', channel: ch, ops: [{ action: 'delete', serial: bob }] }),
            'forbidden',
          ],
        ];
        for (const [what, answer, expected] of answers)
          assert.equal(outcome(await answer), expected, `${how}: ${what}`);
        c.close();
      }
    });
  }

  it("holds a token of a restricted key to the key's capability on REST", async () => {
    for (const [how, token] of await greedyTokens()) {
      const auth = { key: null, headers: restHeaders({ token }) };
      const bob = await victimMessage('session:limit-rest');
      const checks: Array<[string, Promise<{ status: number; body: Record<string, unknown> }>, number]> = [
        [
          'publish inside',
          rest(fx.server, '/v1/channels/session:limit-rest/messages', { ...auth, body: { data: 1 } }),
          200,
        ],
        [
          'publish outside',
          rest(fx.server, '/v1/channels/private:x/messages', { ...auth, body: { data: 1 } }),
          403,
        ],
        ['history', rest(fx.server, '/v1/channels/session:limit-rest/messages', auth), 403],
        [
          'update-any',
          rest(fx.server, '/v1/channels/session:limit-rest/messages', {
            ...auth,
            body: { action: 'update', serial: bob, data: 'x' },
          }),
          403,
        ],
        ['channel outside', rest(fx.server, '/v1/channels/private:x', auth), 403],
      ];
      for (const [what, res, status] of checks) {
        const { status: got, body } = await res;
        assert.equal(got, status, `${how}: ${what}`);
        if (status === 403)
          assert.equal((body.error as { code: string }).code, 'forbidden', `${how}: ${what}`);
      }
    }
  });

  it('refuses invalid clientIds when minting and for API keys, with bad_request', async () => {
    for (const clientId of ['bob\u202Egnp.exe', 'a\u0007b', 'x'.repeat(129), 'zero\u200Bwidth']) {
      const minted = await rest(fx.server, '/v1/tokens', { body: { clientId } });
      assert.equal(minted.status, 400, JSON.stringify(clientId));
      assert.equal((minted.body.error as { code: string }).code, 'bad_request');
      await assert.rejects(createToken(TEST_KEY, { clientId }), /clientId must be/);
      const viaKey = await rest(
        fx.server,
        `/v1/channels/x/messages?clientId=${encodeURIComponent(clientId)}`,
        {
          body: { data: 1 },
        },
      );
      assert.equal(viaKey.status, 400, JSON.stringify(clientId));
    }
    const ok = await rest(fx.server, '/v1/tokens', { body: { clientId: 'Zoë-7_agent.1' } });
    assert.equal(ok.status, 200);
  });
});

describe('renewing a token', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('memory');
  });
  after(() => fx.close());

  const token = (capability: Record<string, string[]>, key = TEST_KEY, clientId = 'alice') =>
    createToken(key, { clientId, capability }).then((t) => t.token);

  for (const transport of TRANSPORTS) {
    it(`detaches channels and leaves presence the renewed token no longer allows, on ${transport}`, async () => {
      const pub = `session:public-${transport}`;
      const secret = `session:secret-${transport}`;
      const watcher = await RawClient.connect(fx.server.url);
      await watcher.attach(secret);
      const c: FrameClient = await connectOn(fx, transport, {
        token: await token({ 'session:*': ['subscribe', 'presence'] }),
      });
      for (const channel of [pub, secret]) {
        assert.equal(outcome(await c.request({ type: 'attach', channel })), 'ok');
        assert.equal(outcome(await c.request({ type: 'presence', channel, action: 'enter' })), 'ok');
      }
      await watcher.next((f) => f.type === 'presence' && f.channel === secret && f.action === 'enter');

      const renewed = await c.request({
        type: 'auth',
        token: await token({ [pub]: ['subscribe', 'presence'] }),
      });
      assert.equal(renewed.type, 'authorized');
      const detached = c.frames.find((f) => f.type === 'detached' && f.channel === secret);
      assert.ok(
        detached?.type === 'detached' && detached.error?.code === 'forbidden',
        'detached with forbidden',
      );
      assert.equal(c.frames.filter((f) => f.type === 'detached').length, 1, 'only the forbidden channel');
      const left = await watcher.next(
        (f) => f.type === 'presence' && f.channel === secret && f.action === 'leave',
      );
      assert.ok(left.type === 'presence' && 'member' in left && left.member.clientId === 'alice');
      const members = await rest(fx.server, `/v1/channels/${pub}/presence`);
      assert.deepEqual(
        (members.body.members as Array<{ clientId: string }>).map((m) => m.clientId),
        ['alice'],
        'presence the new token allows stays',
      );

      // Nothing more arrives on the detached channel; the allowed one goes on (same order as sent).
      await rest(fx.server, `/v1/channels/${secret}/messages`, { body: { data: 'secret' } });
      await rest(fx.server, `/v1/channels/${pub}/messages`, { body: { data: 'public' } });
      await c.next((f) => f.type === 'messages' && f.channel === pub);
      assert.equal(
        c.frames.some((f) => f.type === 'messages' && f.channel === secret),
        false,
        'no message of the detached channel after the renewal',
      );
      c.close();
      await watcher.close();
    });
  }

  it('refuses a renewal with a token of another key; five such cycles leave connection accounting exact', async () => {
    // A server of its own: nothing else holds connections against the keys.
    const fx = await startFixture('memory', {
      keys: [TEST_KEY, OTHER_KEY],
      limits: { maxConnectionsPerKey: 5, keyConnectionReserve: 0 },
    });
    try {
      await renewalCycles(fx);
    } finally {
      await fx.close();
    }
  });

  async function renewalCycles(fx: Fixture): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const c = await RawClient.connect(fx.server.url, { token: await token({ '*': ['*'] }) });
      const answer = await c.request({ type: 'auth', token: await token({ '*': ['*'] }, OTHER_KEY) });
      assert.equal(outcome(answer), 'forbidden', `cycle ${i}`);
      await c.close();
    }
    await until(() => fx.server.connections === 0, 'every connection is closed');
    // The first key can open its full budget again; the other key was never charged.
    const open = [];
    for (let i = 0; i < 5; i++)
      open.push(await RawClient.connect(fx.server.url, { token: await token({ '*': ['*'] }) }));
    await assert.rejects(
      RawClient.connect(fx.server.url, { token: await token({ '*': ['*'] }) }),
      /HTTP 429/,
    );
    const others = [];
    for (let i = 0; i < 5; i++) others.push(await RawClient.connect(fx.server.url, { key: OTHER_KEY }));
    for (const c of [...open, ...others]) await c.close();
  }

  it('keeps a connection whose token expires more than 24.8 days ahead', async () => {
    const exp = Math.floor(Date.now() / 1000) + 30 * 24 * 3600;
    const far = await new SignJWT({ clientId: 'far', capability: { '*': ['*'] } })
      .setProtectedHeader({ alg: 'HS256', kid: 'test' })
      .setExpirationTime(exp)
      .sign(Buffer.from('secret'));
    const c = await RawClient.connect(fx.server.url, { token: far });
    // A timer overflowing setTimeout's range fires after 1 ms: by the second round trip it would have.
    for (let i = 0; i < 3; i++) assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    const renewed = await c.request({ type: 'auth', token: far });
    assert.ok(renewed.type === 'authorized' && renewed.expiresAt === exp * 1000);
    for (let i = 0; i < 3; i++) assert.equal((await c.request({ type: 'ping' })).type, 'pong');
    assert.equal(
      c.frames.some((f) => f.type === 'disconnect'),
      false,
    );
    assert.equal(c.closeCode, undefined);
    await c.close();
  });
});
