/**
 * Attaches sent with the connection request (PROTOCOL.md §5.1 `attach`): handled right after
 * `connected` as the connection's first frames, on every transport, with the same answers an
 * `attach` frame gets; a malformed `attach` refuses the connection with `bad_request`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { handshake } from '@mooring/testkit';
import WebSocket from 'ws';
import type { Reply } from '../src/http-reply.ts';
import { LongPollSink } from '../src/http-transports.ts';
import { createToken } from '../src/index.ts';
import { connectOn, outcome, publishOn, TRANSPORTS } from './support/any-transport.ts';
import { type Fixture, startFixture, TEST_KEY } from './support/fixture.ts';

const answerTo = (ref: string) => (f: ServerFrame) => 'ref' in f && f.ref === ref;
const texts = (frames: ServerFrame[], channel: string) =>
  frames.flatMap((f) =>
    f.type === 'messages' && f.channel === channel ? f.messages.map((m) => m.data) : [],
  );

/** The status and error code a WebSocket upgrade with this `attach` is refused with. */
async function refusedUpgrade(fx: Fixture, attach: string): Promise<{ status: number; code: string }> {
  const url = new URL('/v1/connect', fx.server.url.replace(/^http/, 'ws'));
  url.searchParams.set('key', TEST_KEY);
  url.searchParams.set('attach', attach);
  const ws = new WebSocket(url);
  const opened = await handshake(ws);
  if (opened === 'open') {
    ws.terminate();
    throw new Error('the upgrade was accepted');
  }
  const { error } = JSON.parse(opened.body) as { error: { code: string } };
  return { status: opened.status, code: error.code };
}

describe('attaches sent with the connection request', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('memory', { limits: { maxChannelsPerConnection: 3 } });
  });
  after(() => fx.close());

  for (const transport of TRANSPORTS) {
    it(`${transport}: answers them after connected, catch-up first, without a frame from the client`, async () => {
      const writer = await connectOn(fx, transport, { clientId: 'agent' });
      const channel = `session:url-${transport}`;
      const written = await publishOn(writer, channel, [
        { name: 'text', data: 'one' },
        { name: 'text', data: 'two' },
      ]);
      const attach = JSON.stringify([
        { ref: 'u1', channel, start: true },
        { ref: 'u2', channel: `session:url-${transport}-empty` },
      ]);
      const reader = await connectOn(fx, transport, { attach });
      const connected = reader.frames[0];
      assert.equal(connected?.type, 'connected');
      assert.equal(connected?.type === 'connected' && connected.attaching, 2);
      const first = await reader.next(answerTo('u1'));
      assert.equal(first.type, 'attached', JSON.stringify(first));
      assert.equal(first.type === 'attached' && first.position, written[1]?.serial);
      assert.deepEqual(texts(reader.frames, channel), ['one', 'two'], 'the catch-up came before attached');
      const second = await reader.next(answerTo('u2'));
      assert.equal(second.type, 'attached');
      // live from there, like any attachment
      await publishOn(writer, channel, [{ name: 'text', data: 'three' }]);
      await reader.next((f) => f.type === 'messages' && f.messages.some((m) => m.data === 'three'));
      assert.deepEqual(texts(reader.frames, channel), ['one', 'two', 'three']);
      reader.close();
      writer.close();
    });
  }

  it('longpoll: the opening answer carries the catch-up and attached with connected (one round trip)', async () => {
    const writer = await connectOn(fx, 'websocket', { clientId: 'agent' });
    const channel = 'session:url-first-answer';
    await publishOn(writer, channel, [{ name: 'text', data: 'hello' }]);
    const query = new URLSearchParams({
      key: TEST_KEY,
      attach: JSON.stringify([{ ref: 'f', channel, start: true }]),
    });
    const res = await fetch(`${fx.server.url}/v1/connect/poll?${query}`);
    const frames = (await res.json()) as ServerFrame[];
    assert.deepEqual(
      frames.map((f) => f.type).slice(0, 3),
      ['connected', 'messages', 'attached'],
      'presence sync may follow attached',
    );
    assert.deepEqual(texts(frames, channel), ['hello']);
    const connected = frames[0];
    if (connected?.type === 'connected')
      await fetch(`${fx.server.url}/v1/connections/${connected.connectionId}/frames`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mooring-connection-key': connected.connectionKey },
        body: JSON.stringify({ type: 'close' }),
      });
    writer.close();
  });

  it('longpoll: a catch-up larger than the send buffer is not held up by the opening answer', async () => {
    const small = await startFixture('memory', { limits: { maxSendBuffer: 64 * 1024 } });
    try {
      const writer = await connectOn(small, 'websocket', { clientId: 'agent' });
      const channel = 'session:url-big';
      const chunk = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 20; i++)
        await publishOn(writer, channel, [{ name: 'text', data: `${i}:${chunk}` }]);
      const attach = JSON.stringify([{ ref: 'big', channel, start: true }]);
      const reader = await connectOn(small, 'longpoll', { attach });
      const attached = await reader.next(answerTo('big'), 20_000);
      assert.equal(attached.type, 'attached');
      const got = texts(reader.frames, channel).map((d) => String(d).split(':')[0]);
      assert.deepEqual(
        got,
        Array.from({ length: 20 }, (_, i) => String(i)),
        'every message once, in order',
      );
      reader.close();
      writer.close();
    } finally {
      await small.close();
    }
  });

  it('longpoll: the held opening answer goes once its attaches are answered, or once enough is queued', async () => {
    const answers: string[] = [];
    const reply = (): Reply => ({
      json: (_status, body) => answers.push(body.toString()),
      destroy: () => {},
      onClose: () => {},
      writableLength: 0,
      gone: false,
    });
    const frame = (n: number) => Buffer.from(JSON.stringify({ type: 'heartbeat', serverTime: n }));
    // released by its attaches being answered
    let release = () => {};
    const answered = new Promise<void>((resolve) => {
      release = resolve;
    });
    const first = new LongPollSink(25_000, 25_000);
    first.holdFirstAnswer(answered, 1_000_000);
    first.send(frame(1));
    first.poll(reply());
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(answers, [], 'held while its attaches are not answered');
    release();
    await answered;
    assert.equal(answers.length, 1);
    // released by the bytes queued (a catch-up waiting for room), never answered otherwise
    const second = new LongPollSink(25_000, 25_000);
    second.holdFirstAnswer(new Promise(() => {}), 60);
    second.send(frame(2));
    second.poll(reply());
    await new Promise((r) => setImmediate(r));
    assert.equal(answers.length, 1, 'held below the bytes');
    second.send(frame(3));
    await new Promise((r) => setImmediate(r));
    assert.equal(answers.length, 2);
    assert.equal((JSON.parse(answers[1]!) as unknown[]).length, 2, 'both frames in the opening answer');
    first.terminate();
    second.terminate();
  });

  it('resumes from a position given in the request, with only what follows it', async () => {
    const writer = await connectOn(fx, 'websocket', { clientId: 'agent' });
    const channel = 'session:url-resume';
    const [a] = await publishOn(writer, channel, [{ name: 'text', data: 'seen' }]);
    await publishOn(writer, channel, [{ name: 'text', data: 'missed' }]);
    const attach = JSON.stringify([{ ref: 'r', channel, from: a?.serial, echo: false }]);
    const reader = await connectOn(fx, 'sse', { attach });
    const attached = await reader.next(answerTo('r'));
    assert.equal(attached.type === 'attached' && attached.resumed, true);
    assert.deepEqual(texts(reader.frames, channel), ['missed']);
    reader.close();
    writer.close();
  });

  it('answers each request as an attach frame would: a refused channel does not stop the others', async () => {
    const { token } = await createToken(TEST_KEY, {
      clientId: 'reader',
      capability: { 'session:*': ['subscribe'] },
    });
    const attach = JSON.stringify([
      { ref: 'no', channel: 'private:x' },
      { ref: 'history', channel: 'session:url-allowed', rewind: 1 },
      { ref: 'yes', channel: 'session:url-allowed-2' },
    ]);
    const reader = await connectOn(fx, 'websocket', { token, attach });
    assert.equal(outcome(await reader.next(answerTo('no'))), 'forbidden');
    assert.equal(outcome(await reader.next(answerTo('history'))), 'forbidden', 'rewind needs history');
    assert.equal((await reader.next(answerTo('yes'))).type, 'attached');
    reader.close();
  });

  it('counts them against the connection’s channel limit like frames: more than it allows still connects', async () => {
    const attach = JSON.stringify(['a', 'b', 'c', 'd'].map((c) => ({ ref: c, channel: `session:lim-${c}` })));
    const reader = await connectOn(fx, 'websocket', { attach });
    for (const ref of ['a', 'b', 'c']) assert.equal((await reader.next(answerTo(ref))).type, 'attached');
    assert.equal(outcome(await reader.next(answerTo('d'))), 'too_many_channels');
    const more = await reader.request({ type: 'attach', channel: 'session:lim-e' });
    assert.equal(outcome(more), 'too_many_channels');
    reader.close();
  });

  it('says nothing of attaching when the request had no attach, and 0 for an empty list', async () => {
    const plain = await connectOn(fx, 'longpoll', {});
    const connected = plain.frames[0];
    assert.equal(connected?.type === 'connected' && 'attaching' in connected, false);
    plain.close();
    const empty = await connectOn(fx, 'websocket', { attach: '[]' });
    assert.equal(empty.frames[0]?.type === 'connected' && empty.frames[0].attaching, 0);
    empty.close();
  });

  it('names the entry and its field in the refusal of a malformed attach', async () => {
    const refusal = async (attach: string) => {
      const query = new URLSearchParams({ key: TEST_KEY, attach });
      const res = await fetch(`${fx.server.url}/v1/connect/poll?${query}`);
      assert.equal(res.status, 400);
      return ((await res.json()) as { error: { message: string } }).error.message;
    };
    assert.match(
      await refusal('[{"channel":"session:a"},{"channel":"session:b","from":"nope"}]'),
      /^attach\[1\]\.from: /,
    );
    assert.match(await refusal('[{"channel":"session:a","fromm":"x"}]'), /^attach\[0\]: \S/);
  });

  it('refuses a malformed attach with bad_request before the connection exists, on every transport', async () => {
    const cases: Array<[string, string]> = [
      ['not JSON', '[{'],
      ['not an array', '{"channel":"session:a"}'],
      ['an entry that is no object', '["session:a"]'],
      ['an entry with a type', '[{"type":"publish","channel":"session:a"}]'],
      ['an invalid channel name', '[{"channel":"no spaces"}]'],
      ['an invalid position', '[{"channel":"session:a","from":"nope"}]'],
      ['two modes', '[{"channel":"session:a","start":true,"rewind":3}]'],
      ['an unknown field', '[{"channel":"session:a","fromm":"x"}]'],
      ['a channel twice', '[{"channel":"session:a"},{"channel":"session:a","start":true}]'],
      ['nested too deeply', `[{"channel":"session:a","ref":${'['.repeat(100)}${']'.repeat(100)}}]`],
    ];
    for (const [what, attach] of cases) {
      assert.deepEqual(await refusedUpgrade(fx, attach), { status: 400, code: 'bad_request' }, what);
      for (const path of ['sse', 'poll']) {
        const query = new URLSearchParams({ key: TEST_KEY, attach });
        const res = await fetch(`${fx.server.url}/v1/connect/${path}?${query}`);
        const body = (await res.json()) as { error: { code: string; message: string } };
        assert.equal(res.status, 400, `${what} (${path})`);
        assert.equal(body.error.code, 'bad_request', `${what} (${path})`);
        assert.match(body.error.message, /attach/, `${what} (${path}): the message names the parameter`);
      }
    }
    // the server carries on
    const after = await connectOn(fx, 'websocket', { attach: '[{"ref":"ok","channel":"session:fine"}]' });
    assert.equal((await after.next(answerTo('ok'))).type, 'attached');
    after.close();
  });
});
