/**
 * A connection recovered (`recover=<connectionKey>`, PROTOCOL.md §5.4) with a token that no longer
 * allows `presence` on a channel keeps no member there: within the grace its member leaves, after
 * the grace it does not enter again — as a renewal to that token (§14) leaves it. Without this, a
 * user whose rights were taken away stayed present (with the data of a role it no longer has) for
 * as long as it kept recovering, and could not even leave: its `leave` was refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { redisSkipReason } from '@mooring/testkit';
import { createToken } from '../src/index.ts';
import { type Fixture, rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const GRACE = 300;

for (const kind of ['memory', 'redis'] as const) {
  describe(
    `a connection recovered with narrower rights (${kind})`,
    { skip: kind === 'redis' ? redisSkipReason() : false },
    () => {
      let fx: Fixture;
      before(async () => {
        fx = await startFixture(kind, { presenceGrace: GRACE });
      });
      after(() => fx.close());

      const token = async (capability: Record<string, string[]>) =>
        (await createToken(TEST_KEY, { clientId: 'alice', capability })).token;
      const members = async (channel: string) =>
        (await rest(fx.server, `/v1/channels/${channel}/presence`)).body.members as Array<{
          clientId: string;
        }>;
      /** Alice present on `channel` with a token allowing it; her connection then dropped. */
      async function droppedMember(channel: string): Promise<string> {
        const c = await RawClient.connect(fx.server.url, {
          token: await token({ 'room:*': ['subscribe', 'presence'] }),
        });
        await c.attach(channel);
        assert.equal(
          (await c.request({ type: 'presence', channel, action: 'enter', data: { role: 'moderator' } })).type,
          'ack',
        );
        assert.equal((await members(channel)).length, 1);
        c.kill();
        return c.connected.connectionKey;
      }
      const narrower = () => token({ 'room:public': ['subscribe', 'presence'] });

      it('within the grace: its member leaves', async () => {
        const recover = await droppedMember('room:a');
        const back = await RawClient.connect(fx.server.url, { token: await narrower(), recover });
        assert.equal(back.connected.resumed, true);
        await waitForMembers('room:a', 0);
        await sleep(GRACE * 2);
        assert.deepEqual(await members('room:a'), []);
        await back.close();
      });

      it('after the grace: its member does not enter again', async () => {
        const recover = await droppedMember('room:b');
        await waitForMembers('room:b', 0); // the grace ran out
        const back = await RawClient.connect(fx.server.url, { token: await narrower(), recover });
        assert.equal(back.connected.resumed, true);
        await sleep(GRACE);
        assert.deepEqual(await members('room:b'), []);
        await back.close();
      });

      it('with the same rights: its member stays (within the grace) and comes back (after it)', async () => {
        const same = () => token({ 'room:*': ['subscribe', 'presence'] });
        const within = await RawClient.connect(fx.server.url, {
          token: await same(),
          recover: await droppedMember('room:c'),
        });
        await sleep(GRACE * 2);
        assert.equal((await members('room:c')).length, 1);
        const recover = await droppedMember('room:d');
        await waitForMembers('room:d', 0);
        const later = await RawClient.connect(fx.server.url, { token: await same(), recover });
        await waitForMembers('room:d', 1);
        await within.close();
        await later.close();
      });

      async function waitForMembers(channel: string, n: number): Promise<void> {
        for (let i = 0; i < 100; i++) {
          if ((await members(channel)).length === n) return;
          await sleep(50);
        }
        assert.fail(`${channel} never had ${n} members`);
      }
    },
  );
}
