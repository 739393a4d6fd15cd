/**
 * A holder that may `subscribe` but not read `history` (PROTOCOL.md §6.2, §14) resumes what a
 * dropped connection can have missed, and no further back: a resume hands over every message
 * created after its position, so a position made up (`<epoch>.0000000000000000`, the epoch from a
 * live attach) would otherwise read the channel's whole retained past. `start` follows the same
 * rule, so a subscriber whose position is `''` (it attached to an empty channel) re-attaches after
 * a short drop. "What a dropped connection can have missed" is `connectionStateTtl`: kept short
 * here, and the old messages are made old by waiting past it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createToken } from '../src/index.ts';
import { type Fixture, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const TTL = 300;
const pastTheTtl = () => new Promise((resolve) => setTimeout(resolve, TTL + 200));
const errorCode = (frame: { type: string; error?: { code: string } }) =>
  frame.type === 'error' ? frame.error?.code : frame.type;

for (const kind of ['memory', 'sqlite', 'redis'] as const) {
  describe(`reading back without history (${kind})`, () => {
    let fx: Fixture;
    let writer: RawClient;
    let viewer: RawClient;
    let reader: RawClient;
    before(async () => {
      fx = await startFixture(kind, { connectionStateTtl: TTL });
      const token = async (ops: string[]) =>
        (await createToken(TEST_KEY, { clientId: 'viewer', capability: { 'session:*': ops } })).token;
      writer = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      viewer = await RawClient.connect(fx.server.url, { token: await token(['subscribe']) });
      reader = await RawClient.connect(fx.server.url, { token: await token(['subscribe', 'history']) });
    });
    after(async () => {
      for (const c of [writer, viewer, reader]) await c.close();
      await fx.close();
    });

    const publish = (channel: string, ...data: string[]) =>
      writer.publish(
        channel,
        data.map((d) => ({ data: d })),
      );

    it('a position older than a dropped connection can have missed: history_required, nothing delivered, live from the head', async () => {
      const channel = 'session:old';
      await publish(channel, 'old 1', 'old 2');
      await pastTheTtl();
      const live = await viewer.attach(channel);
      await viewer.request({ type: 'detach', channel });
      const made = await viewer.attach(channel, { from: `${live.epoch}.0000000000000000` });
      assert.equal(made.resumed, false);
      assert.equal(made.reason, 'history_required');
      assert.equal(made.position, live.position);
      assert.deepEqual(viewer.messages(channel), [], 'nothing of the past was handed over');
      assert.equal(errorCode(await viewer.request({ type: 'attach', channel, start: true })), 'forbidden');
      assert.equal(errorCode(await viewer.request({ type: 'attach', channel, rewind: 5 })), 'forbidden');
      // a holder with history reads it all back
      const read = await reader.attach(channel, { from: `${live.epoch}.0000000000000000` });
      assert.equal(read.resumed, true);
      assert.deepEqual(
        reader.messages(channel).map((m) => m.data),
        ['old 1', 'old 2'],
      );
    });

    it('a short drop resumes, however old the messages before the position are', async () => {
      const channel = 'session:gap';
      await publish(channel, 'before');
      await pastTheTtl();
      const live = await viewer.attach(channel);
      await viewer.request({ type: 'detach', channel });
      await publish(channel, 'missed 1', 'missed 2');
      const back = await viewer.attach(channel, { from: live.position });
      assert.equal(back.resumed, true);
      assert.deepEqual(
        viewer.messages(channel).map((m) => m.data),
        ['missed 1', 'missed 2'],
      );
    });

    it('a subscriber at position "" (an empty channel) re-attaches with start after a short drop', async () => {
      const channel = 'session:empty';
      const live = await viewer.attach(channel);
      assert.equal(live.position, '');
      await viewer.request({ type: 'detach', channel });
      await publish(channel, 'first');
      const back = await viewer.attach(channel, { start: true });
      assert.equal(back.resumed, false);
      assert.deepEqual(
        viewer.messages(channel).map((m) => m.data),
        ['first'],
      );
    });
  });
}
