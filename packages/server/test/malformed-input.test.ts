/**
 * Bad input of every kind gets a typed error, never a crash, a hang or lost data for others
 * (ARCHITECTURE.md §9). A seeded loop of random and mutated frames and REST bodies against a live server,
 * while a bystander keeps receiving a stream.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS, type ServerFrame } from '@mooring/protocol';
import {
  fuzzConnectAttach,
  fuzzFrameText,
  handshake,
  mutateFrame,
  prng,
  randomText,
  SEED_FRAMES,
} from '@mooring/testkit';
import WebSocket from 'ws';
import { exceedsDepth } from '../src/json-depth.ts';
import { MAX_ISSUE_TEXT } from '../src/server-error.ts';
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
  it('answers JSON that is not an object with invalid_frame, and echoes a ref of up to 64 characters', async () => {
    const fx = await startFixture('memory');
    try {
      const client = await RawClient.connect(fx.server.url);
      const errors = () => client.frames.filter((f) => f.type === 'error');
      for (const [i, text] of ['null', '5', '"ping"', '[]', 'true'].entries()) {
        client.send(text);
        await client.next(() => errors().length === i + 1);
        assert.equal(errors()[i]?.type === 'error' && errors()[i]?.error.code, 'invalid_frame', text);
      }
      for (const ref of ['r'.repeat(64), 'r'.repeat(65), 7, 1.5]) {
        client.send(JSON.stringify({ type: 'nonsense', ref }));
        const before = errors().length;
        await client.next(() => errors().length === before + 1);
        const answer = errors().at(-1);
        const echoed = typeof ref === 'string' ? ref.length <= 64 : Number.isInteger(ref);
        assert.equal(answer?.type === 'error' && answer.ref, echoed ? ref : undefined, String(ref));
      }
      // and the channel of an invalid frame, of up to 256 characters
      for (const channel of ['c'.repeat(256), 'c'.repeat(257)]) {
        client.send(JSON.stringify({ type: 'attach', channel, rewind: 'many' }));
        const before = errors().length;
        await client.next(() => errors().length === before + 1);
        const answer = errors().at(-1);
        assert.equal(answer?.type === 'error' && answer.channel, channel.length <= 256 ? channel : undefined);
      }
      assert.equal((await client.request({ type: 'ping' })).type, 'pong', 'the connection lives on');
      await client.close();
    } finally {
      await fx.close();
    }
  });

  it('answers fuzzed attach parameters of connection requests: a typed 400, or one answer per attach', async () => {
    const fx: Fixture = await startFixture('memory');
    try {
      const rand = prng(20261203);
      const outcomes = { refused: 0, connected: 0, answered: 0 };
      for (let i = 0; i < 300; i++) {
        const attach = fuzzConnectAttach(rand);
        const url = new URL('/v1/connect', fx.server.url.replace(/^http/, 'ws'));
        url.searchParams.set('key', 'test:secret');
        url.searchParams.set('attach', attach);
        const ws = new WebSocket(url);
        ws.on('error', () => {});
        const frames: ServerFrame[] = [];
        ws.on('message', (data) => frames.push(JSON.parse(data.toString()) as ServerFrame));
        const opened = await handshake(ws);
        if (opened !== 'open') {
          const what = `${opened.status} for ${attach.slice(0, 120)}`;
          assert.equal(opened.status, 400, what);
          assert.equal(
            (JSON.parse(opened.body) as { error: { code: string } }).error.code,
            'bad_request',
            what,
          );
          outcomes.refused++;
          continue;
        }
        outcomes.connected++;
        const answers = () => frames.filter((f) => f.type === 'attached' || f.type === 'error').length;
        const deadline = Date.now() + 5_000;
        while (
          (frames[0]?.type !== 'connected' || answers() < (frames[0].attaching ?? 0)) &&
          Date.now() < deadline
        )
          await new Promise((r) => setTimeout(r, 2));
        const connected = frames[0];
        assert.equal(connected?.type, 'connected', attach);
        assert.equal(answers(), connected.type === 'connected' ? connected.attaching : -1, attach);
        outcomes.answered += answers();
        ws.terminate();
      }
      assert.ok(outcomes.refused > 100 && outcomes.connected > 20, JSON.stringify(outcomes));
      assert.equal((await fetch(`${fx.server.url}/health`)).status, 200);
    } finally {
      await fx.close();
    }
  });

  it('refuses a connection request of another protocol version with a typed 400 on every transport; v=1 or none connects', async () => {
    const fx: Fixture = await startFixture('memory');
    try {
      const ws = (v: string | undefined) => {
        const url = new URL('/v1/connect', fx.server.url.replace(/^http/, 'ws'));
        url.searchParams.set('key', 'test:secret');
        if (v !== undefined) url.searchParams.set('v', v);
        const socket = new WebSocket(url);
        socket.on('error', () => {});
        return handshake(socket).finally(() => socket.terminate());
      };
      for (const v of ['2', '0', 'one', '']) {
        const refused = await ws(v);
        assert.ok(refused !== 'open', `v=${v} connected`);
        assert.equal(refused.status, 400);
        const { error } = JSON.parse(refused.body) as { error: { code: string; message: string } };
        assert.equal(error.code, 'bad_request');
        assert.match(error.message, new RegExp(`protocol version ${v} is not supported; use v=1`));
      }
      assert.equal(await ws('1'), 'open');
      assert.equal(await ws(undefined), 'open');
      for (const path of ['/v1/connect/sse', '/v1/connect/poll']) {
        const res = await fetch(`${fx.server.url}${path}?key=test:secret&v=2`);
        assert.equal(res.status, 400, path);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'bad_request');
      }
    } finally {
      await fx.close();
    }
  });

  it('refuses a frame or a REST body nested deeper than maxJsonDepth with invalid_frame, and takes one at the limit', async () => {
    const fx: Fixture = await startFixture('memory');
    try {
      const limit = DEFAULT_LIMITS.maxJsonDepth;
      /** A publish whose frame nests `depth` levels: frame, ops, op, then arrays down to a string. */
      const publish = (depth: number, ref: string) => {
        let data: unknown = 'x';
        for (let d = 3; d < depth; d++) data = [data];
        return { type: 'publish', ref, channel: 'session:deep', ops: [{ id: ref, data }] };
      };
      const client = await RawClient.connect(fx.server.url);
      const deep = await client.request(publish(limit + 1, 'too-deep'));
      assert.equal(deep.type, 'error');
      assert.ok(deep.type === 'error' && deep.error.code === 'invalid_frame', JSON.stringify(deep));
      assert.match(
        deep.type === 'error' ? deep.error.message : '',
        new RegExp(`deeper than ${limit} levels`),
      );
      // a hundred thousand levels: the same answer, no stack overflow, the connection goes on
      const levels = 100_000; // built as text: JSON.stringify itself would overflow the stack
      client.send(
        `{"type":"publish","ref":"abyss","channel":"session:deep","ops":[{"id":"abyss","data":${'['.repeat(levels)}"x"${']'.repeat(levels)}}]}`,
      );
      const abyss = await client.next((f) => f.type === 'error' && f.ref === 'abyss');
      assert.ok(abyss.type === 'error' && abyss.error.code === 'invalid_frame');
      const atLimit = await client.request(publish(limit, 'at-limit'));
      assert.equal(atLimit.type, 'ack', JSON.stringify(atLimit));
      // REST: the same limit on a body
      let body: unknown = 'x';
      for (let d = 1; d < limit + 5; d++) body = [body];
      const res = await rest(fx.server, '/v1/channels/session:deep/messages', {
        raw: JSON.stringify({ data: body }),
      });
      assert.equal(res.status, 400);
      assert.equal((res.body.error as { code?: unknown }).code, 'bad_request');
      await client.close();
    } finally {
      await fx.close();
    }
  });

  it("cuts an error's message to MAX_ISSUE_TEXT characters, however much of the input the schema's message repeats", async () => {
    const fx: Fixture = await startFixture('memory', { limits: { maxHttpBody: 1024 * 1024 } });
    try {
      /** An object of `n` unknown keys of 20 characters each (zod's message lists every one). */
      const unknownKeys = (n: number, first: Record<string, unknown>) => {
        const o: Record<string, unknown> = { ...first };
        for (let i = 0; i < n; i++) o[`unknown_key_${String(i).padStart(8, '0')}`] = 0;
        return o;
      };
      const client = await RawClient.connect(fx.server.url);
      const frame = await client.request(unknownKeys(20_000, { type: 'ping' }));
      assert.ok(
        frame.type === 'error' && frame.error.code === 'invalid_frame',
        JSON.stringify(frame).slice(0, 300),
      );
      // REST: a publish body and a token request
      const body = await rest(fx.server, '/v1/channels/session:keys/messages', {
        body: unknownKeys(20_000, { data: 1 }),
      });
      const token = await rest(fx.server, '/v1/tokens', { body: unknownKeys(20_000, {}) });
      for (const [where, message] of [
        ['frame', frame.type === 'error' ? frame.error.message : ''],
        ['REST publish', (body.body.error as { message: string }).message],
        ['token request', (token.body.error as { message: string }).message],
      ] as const) {
        assert.equal(message.length, MAX_ISSUE_TEXT, `${where}: ${message.length} characters`);
        assert.match(message, /^Unrecognized keys: "unknown_key_00000000", .*…$/, where);
      }
      // a short message is whole
      const short = await client.request(unknownKeys(1, { type: 'ping' }));
      assert.equal(short.type === 'error' && short.error.message, 'Unrecognized key: "unknown_key_00000000"');
      await client.close();
    } finally {
      await fx.close();
    }
  });

  it('counts depth as the guard says: the outermost array or object is level 1, each one inside it one more', () => {
    let nested: unknown = 1;
    for (let d = 0; d < 5; d++) nested = d % 2 === 0 ? [nested] : { k: nested };
    assert.equal(exceedsDepth(nested, 5), false);
    assert.equal(exceedsDepth(nested, 4), true);
    assert.equal(exceedsDepth('text', 0), false);
    assert.equal(exceedsDepth({ a: 1, b: [2, { c: [] }] }, 4), false);
    assert.equal(exceedsDepth({ a: 1, b: [2, { c: [] }] }, 3), true);
    assert.equal(exceedsDepth([[], [[[]]], []], 3), true, 'a deep branch after shallow ones');
  });
});
