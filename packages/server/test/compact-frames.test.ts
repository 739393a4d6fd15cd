/**
 * Compact `messages` frames (PROTOCOL.md §6.5): a connection that asks for them with
 * `frames=compact` gets them on every transport, live, in a catch-up and in an `echo: false`
 * delivery with `after`; each expands to exactly the messages a plain connection gets. A connection
 * that does not ask (or asks for a form this server does not know) gets plain frames only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Message, ServerFrame } from '@mooring/protocol';
import { connectOn, type FrameClient, publishOn, TRANSPORTS } from './support/any-transport.ts';
import { type Fixture, startFixture } from './support/fixture.ts';

/** The messages `client` received on `channel`, once one with `version` arrived. */
async function receivedThrough(client: FrameClient, channel: string, version: string): Promise<Message[]> {
  await client.next(
    (f) => f.type === 'messages' && f.channel === channel && f.messages.some((m) => m.version === version),
  );
  return client.frames.flatMap((f) => (f.type === 'messages' && f.channel === channel ? f.messages : []));
}

const messagesFrames = (client: FrameClient, channel: string) =>
  client.frames.filter(
    (f): f is Extract<ServerFrame, { type: 'messages' }> => f.type === 'messages' && f.channel === channel,
  );

describe('compact messages frames', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('memory');
  });
  after(() => fx.close());

  for (const transport of TRANSPORTS) {
    it(`${transport}: live and catch-up frames are compact when asked, and carry the same messages`, async () => {
      const channel = `session:compact-${transport}`;
      const writer = await connectOn(fx, 'websocket', { clientId: 'agent' });
      const compact = await connectOn(fx, transport, { frames: 'compact' });
      const plain = await connectOn(fx, transport, {});
      assert.equal(compact.frames[0]?.type === 'connected' && compact.frames[0].frames, 'compact');
      assert.equal(plain.frames[0]?.type === 'connected' && 'frames' in plain.frames[0], false);
      for (const c of [compact, plain]) {
        assert.equal((await c.request({ type: 'attach', channel })).type, 'attached');
      }
      const [created] = await publishOn(writer, channel, [
        { name: 'ai.part', data: 'Hel', headers: { run: 'r1', state: 'streaming' } },
      ]);
      const tokens = await publishOn(
        writer,
        channel,
        ['lo', ' wor', 'ld'].map((data) => ({ action: 'append' as const, serial: created!.serial, data })),
      );
      const last = tokens[tokens.length - 1]!.serial;
      const live = await receivedThrough(compact, channel, last);
      assert.deepEqual(live, await receivedThrough(plain, channel, last));
      assert.deepEqual(
        live.map((m) => [m.action, m.data, m.clientId]),
        [
          ['create', 'Hel', 'agent'],
          ['append', 'lo', 'agent'],
          ['append', ' wor', 'agent'],
          ['append', 'ld', 'agent'],
        ],
      );
      assert.equal(compact.compactFrames, messagesFrames(compact, channel).length);
      assert.equal(plain.compactFrames, 0);

      // a catch-up (start: true) from a new compact connection: the rolled-up message, compact
      const late = await connectOn(fx, transport, { frames: 'compact' });
      const latePlain = await connectOn(fx, transport, {});
      for (const c of [late, latePlain]) {
        assert.equal((await c.request({ type: 'attach', channel, start: true })).type, 'attached');
      }
      const caughtUp = messagesFrames(late, channel).flatMap((f) => f.messages);
      assert.deepEqual(
        caughtUp,
        messagesFrames(latePlain, channel).flatMap((f) => f.messages),
      );
      assert.equal(caughtUp.length, 1);
      assert.equal(caughtUp[0]?.data, 'Hello world');
      assert.equal(caughtUp[0]?.version, last);
      assert.ok(late.compactFrames >= 1);
      for (const c of [writer, compact, plain, late, latePlain]) c.close();
    });
  }

  it('an echo: false delivery keeps its after in the compact form', async () => {
    const channel = 'session:compact-echo';
    const agent = await connectOn(fx, 'websocket', { clientId: 'agent', frames: 'compact' });
    const user = await connectOn(fx, 'websocket', { clientId: 'user' });
    assert.equal((await agent.request({ type: 'attach', channel, echo: false })).type, 'attached');
    const [own] = await publishOn(agent, channel, [{ name: 'text', data: 'mine' }]);
    const [other] = await publishOn(user, channel, [{ name: 'text', data: 'theirs' }]);
    await receivedThrough(agent, channel, other!.serial);
    const frames = messagesFrames(agent, channel);
    assert.deepEqual(
      frames.map((f) => [f.after, f.messages.map((m) => m.data)]),
      [[own!.serial, ['theirs']]],
    );
    assert.equal(agent.compactFrames, 1);
    agent.close();
    user.close();
  });

  it('a form this server does not know gets plain frames, not a refusal', async () => {
    const channel = 'session:compact-unknown';
    const reader = await connectOn(fx, 'websocket', { frames: 'binary-v9' });
    assert.equal(reader.frames[0]?.type === 'connected' && 'frames' in reader.frames[0], false);
    assert.equal((await reader.request({ type: 'attach', channel })).type, 'attached');
    const writer = await connectOn(fx, 'websocket', {});
    const [written] = await publishOn(writer, channel, [{ data: 'x' }]);
    await receivedThrough(reader, channel, written!.serial);
    assert.equal(reader.compactFrames, 0);
    reader.close();
    writer.close();
  });
});
