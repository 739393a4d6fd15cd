/**
 * Bad input of every kind gets a typed error, never a crash, a hang or lost data for others
 * (ARCHITECTURE.md §9). A seeded loop of random and mutated frames and REST bodies against a live server,
 * while a bystander keeps receiving a stream.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fuzzFrameText, mutateFrame, prng, randomText, SEED_FRAMES } from '@mooring/testkit';
import { type Fixture, rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

describe('malformed input', () => {
  it('answers a loop of random and mutated frames with errors while others keep receiving', async () => {
    // the frame throttle (PROTOCOL.md §10) would answer most of this burst with rate_limited; it has
    // tests of its own, this one is about malformed frames
    const fx: Fixture = await startFixture('sqlite', {
      limits: { maxFrameRate: 1_000_000, maxFrameBurst: 1_000_000 },
    });
    try {
      const rand = prng(20261122);
      const bystander = await RawClient.connect(fx.server.url);
      await bystander.attach('session:bystander');
      const publisher = await RawClient.connect(fx.server.url);
      const fuzzer = await RawClient.connect(fx.server.url);
      let published = 0;
      const frames = 3_000;
      for (let i = 0; i < frames; i++) {
        const text = fuzzFrameText(rand);
        fuzzer.send(text);
        if (i % 100 === 0) {
          await publisher.publish('session:bystander', [{ id: `b${i}`, data: `tick ${i}` }]);
          published++;
        }
      }
      // every frame gets an answer: an error, or the answer a valid frame deserves
      const pong = await fuzzer.request({ type: 'ping' });
      assert.equal(pong.type, 'pong', 'the fuzzed connection still works');
      const notAnswers = new Set(['connected', 'heartbeat', 'messages', 'presence']);
      const answered = () => fuzzer.frames.filter((f) => !notAnswers.has(f.type)).length;
      // a ping is answered at once, an attach after its store reads: answers need not come in order
      if (answered() < frames + 1) await fuzzer.next(() => answered() >= frames + 1, 30_000).catch(() => {});
      const answers = fuzzer.frames.filter((f) => !notAnswers.has(f.type));
      assert.equal(
        answers.length,
        frames + 1,
        `one answer per frame sent: ${JSON.stringify(
          answers.reduce((acc: Record<string, number>, f) => {
            acc[f.type] = (acc[f.type] ?? 0) + 1;
            return acc;
          }, {}),
        )}`,
      );
      const errors = answers.filter((f) => f.type === 'error');
      assert.ok(errors.length > frames / 2, `most fuzzed frames are errors (${errors.length})`);
      for (const e of errors)
        assert.ok(e.type === 'error' && typeof e.error.code === 'string' && e.error.message);
      await bystander.next(() => bystander.messages('session:bystander').length === published);
      assert.equal(bystander.messages('session:bystander').length, published, 'the bystander lost nothing');

      // REST bodies
      for (let i = 0; i < 300; i++) {
        const body = rand() < 0.5 ? randomText(rand) : JSON.stringify(mutateFrame(SEED_FRAMES[1], rand));
        const res = await rest(fx.server, '/v1/channels/fuzz:rest/messages', { raw: body });
        assert.ok(res.status === 200 || (res.status >= 400 && res.status < 500), `status ${res.status}`);
        if (res.status !== 200) assert.equal(typeof (res.body.error as { code?: unknown }).code, 'string');
      }
      assert.equal((await fetch(`${fx.server.url}/health`)).status, 200);
      await Promise.all([bystander.close(), publisher.close(), fuzzer.close()]);
    } finally {
      await fx.close();
    }
  });
});
