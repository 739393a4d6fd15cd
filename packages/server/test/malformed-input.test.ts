/**
 * Bad input of every kind gets a typed error, never a crash, a hang or lost data for others
 * (DESIGN §9). A seeded loop of random and mutated frames and REST bodies against a live server,
 * while a bystander keeps receiving a stream.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Fixture, rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

/** Small deterministic PRNG (mulberry32) so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const VALID: unknown[] = [
  { type: 'attach', channel: 'fuzz:a', rewind: 2 },
  { type: 'publish', channel: 'fuzz:a', ops: [{ name: 'n', data: 'x', headers: { a: 1 } }] },
  {
    type: 'publish',
    channel: 'fuzz:a',
    ops: [{ action: 'append', serial: 'aaaaaaaaaaaa.0000000000000001', data: 'y' }],
  },
  { type: 'detach', channel: 'fuzz:a' },
  { type: 'ping' },
];
const WEIRD: unknown[] = [
  null,
  true,
  -1,
  Number.POSITIVE_INFINITY,
  '',
  'x'.repeat(300),
  [],
  {},
  { type: 'publish' },
  [1, [2, [3]]],
  { __proto__: { type: 'ping' } },
  { constructor: 'x' },
  'session:*',
  '\u0000\u0001',
];

function mutate(value: unknown, rand: () => number, depth = 0): unknown {
  if (depth > 4 || value === null || typeof value !== 'object') {
    return rand() < 0.5 ? WEIRD[Math.floor(rand() * WEIRD.length)] : value;
  }
  if (Array.isArray(value)) {
    const copy = value.map((v) => (rand() < 0.3 ? mutate(v, rand, depth + 1) : v));
    if (rand() < 0.2) copy.push(WEIRD[Math.floor(rand() * WEIRD.length)]);
    return copy;
  }
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const key = keys[Math.floor(rand() * keys.length)];
  const roll = rand();
  if (key !== undefined && roll < 0.3) delete copy[key];
  else if (key !== undefined && roll < 0.8) copy[key] = mutate(copy[key], rand, depth + 1);
  else copy[`extra${Math.floor(rand() * 3)}`] = WEIRD[Math.floor(rand() * WEIRD.length)];
  return copy;
}

function randomText(rand: () => number): string {
  const len = Math.floor(rand() * 200);
  let s = '';
  for (let i = 0; i < len; i++) s += String.fromCharCode(Math.floor(rand() * (rand() < 0.9 ? 128 : 65536)));
  return s;
}

describe('malformed input', () => {
  it('answers a loop of random and mutated frames with errors while others keep receiving', async () => {
    const fx: Fixture = await startFixture('sqlite');
    try {
      const rand = prng(20261122);
      const bystander = await RawClient.connect(fx.server.url);
      await bystander.attach('session:bystander');
      const publisher = await RawClient.connect(fx.server.url);
      const fuzzer = await RawClient.connect(fx.server.url);
      let published = 0;
      const frames = 3_000;
      for (let i = 0; i < frames; i++) {
        const roll = rand();
        let text: string;
        if (roll < 0.25) text = randomText(rand);
        else if (roll < 0.3) text = `${'['.repeat(5_000 + Math.floor(rand() * 50_000))}`;
        else if (roll < 0.35)
          text = JSON.stringify({
            type: 'publish',
            channel: 'fuzz:deep',
            ops: [{ data: JSON.parse(`${'['.repeat(3_000)}${']'.repeat(3_000)}`) }],
          });
        else text = JSON.stringify(mutate(VALID[Math.floor(rand() * VALID.length)], rand)) ?? 'undefined';
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
        const body = rand() < 0.5 ? randomText(rand) : JSON.stringify(mutate(VALID[1], rand));
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
