/**
 * Presence data is written to every subscriber of its channel, as a publish is, so a holder's
 * presence bytes are held to its publish bytes rate (`maxPublishBytesRate`, PROTOCOL.md §6.4, §10),
 * across its connections on a node. Without it one clientId's connections, each within its own
 * presence frame rate, sent subscribers several MiB/s of presence updates (an outside review: 5.7
 * MiB/s with 10 connections, while the same bytes as publishes were refused).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_LIMITS } from '@mooring/protocol';
import { createToken } from '../src/index.ts';
import { type Fixture, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const RATE = 10_000; // bytes per second (and the burst)
const DATA = 'x'.repeat(3_000); // ~3 KB of presence data per frame
const MORE = 'x'.repeat(9_000); // what is left of the burst could only hold it after ~1 s of refill

describe('presence data and the publish bytes rate', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('memory', { limits: { ...DEFAULT_LIMITS, maxPublishBytesRate: RATE } });
  });
  after(() => fx.close());
  const connect = async (clientId: string) =>
    RawClient.connect(fx.server.url, {
      token: (await createToken(TEST_KEY, { clientId, capability: { 'room:*': ['subscribe', 'presence'] } }))
        .token,
    });
  const update = (c: RawClient, channel: string, status = DATA) =>
    c
      .request({ type: 'presence', channel, action: 'update', data: { status } })
      .then((f) => (f.type === 'error' ? f.error.code : f.type));

  it("draws on the holder's bytes across its connections; another holder, and a leave, are not refused", async () => {
    const [a, b, c, other] = [
      await connect('alice'),
      await connect('alice'),
      await connect('alice'),
      await connect('bob'),
    ];
    const answers = [await update(a, 'room:1'), await update(b, 'room:2'), await update(a, 'room:3')];
    assert.deepEqual(answers, ['ack', 'ack', 'ack'], '9 KB of a 10 KB burst');
    // 9 KB on a connection that has sent nothing yet: within its own share, over alice's
    assert.equal(await update(c, 'room:4', MORE), 'rate_limited', "alice's third connection");
    assert.equal(await update(other, 'room:4', MORE), 'ack', "bob's budget is his own");
    const leave = await a.request({ type: 'presence', channel: 'room:1', action: 'leave' });
    assert.equal(leave.type, 'ack', 'a leave carries no data');
    for (const client of [a, b, c, other]) await client.close();
  });
});
