/**
 * Realtime semantics over real WebSockets (PROTOCOL.md §4–8), run against the memory, SQLite and
 * Redis stores alike (Redis when redis-server is installed; CI installs it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { formatSerial, type Message, parseSerial } from '@mooring/protocol';
import { redisSkipReason } from '@mooring/testkit';
import { type Fixture, rest, startFixture } from './support/fixture.ts';
import { fold, RawClient } from './support/raw-client.ts';

const texts = (messages: Message[]) => messages.map((m) => m.data);

const kinds = redisSkipReason() ? (['memory', 'sqlite'] as const) : (['memory', 'sqlite', 'redis'] as const);
for (const kind of kinds) {
  describe(`realtime (${kind} store)`, () => {
    let fx: Fixture;
    before(async () => {
      fx = await startFixture(kind);
    });
    after(() => fx.close());

    it('acks a publish after storing it and delivers it to subscribers with the clientId stamped', async () => {
      const sub = await RawClient.connect(fx.server.url);
      const pub = await RawClient.connect(fx.server.url, { clientId: 'agent-1' });
      const attached = await sub.attach('session:basic');
      assert.equal(attached.resumed, false);
      const ack = await pub.publish('session:basic', [
        { id: 'b1', name: 'text', data: 'hello', headers: { lang: 'en' } },
        { id: 'b2', name: 'bytes', data: 'AAEC', encoding: 'base64' },
      ]);
      assert.equal(ack.results.length, 2);
      const serial = ack.results[0]!.serial;
      await waitUntil(() => sub.messages('session:basic').length === 2, 'both delivered');
      const [m, bytes] = sub.messages('session:basic');
      assert.equal(m?.serial, serial);
      assert.equal(m?.version, serial);
      assert.equal(m?.clientId, 'agent-1');
      assert.equal(m?.data, 'hello');
      // what the publisher gave is what subscribers and history get
      const given = (x: Message | undefined) => ({
        name: x?.name,
        encoding: x?.encoding,
        headers: x?.headers,
      });
      assert.deepEqual(given(m), { name: 'text', encoding: undefined, headers: { lang: 'en' } });
      assert.deepEqual(given(bytes), { name: 'bytes', encoding: 'base64', headers: undefined });
      const history = await rest(fx.server, '/v1/channels/session:basic/messages');
      const items = (history.body.items as Message[]).sort((a, b) => (a.serial < b.serial ? -1 : 1));
      assert.equal(items[0]?.serial, serial);
      assert.deepEqual(items.map(given), [given(m), given(bytes)]);
      await Promise.all([sub.close(), pub.close()]);
    });

    it('refuses a clientId in an operation (the server stamps it)', async () => {
      const pub = await RawClient.connect(fx.server.url, { clientId: 'user-1' });
      const answer = await pub.request({
        type: 'publish',
        channel: 'session:forge',
        ops: [{ data: 'x', clientId: 'agent-1' }],
      });
      assert.equal(answer.type, 'error');
      assert.equal(answer.type === 'error' && answer.error.code, 'invalid_frame');
      await pub.close();
    });

    it('gives every subscriber the same total order under concurrent publishers', async () => {
      const channel = 'session:order';
      const subs = await Promise.all([1, 2, 3].map(() => RawClient.connect(fx.server.url)));
      await Promise.all(subs.map((s) => s.attach(channel)));
      const publishers = await Promise.all(
        [0, 1, 2, 3, 4].map((i) => RawClient.connect(fx.server.url, { clientId: `p${i}` })),
      );
      const perPublisher = 120;
      const acked = await Promise.all(
        publishers.map(async (p, i) => {
          const serials: string[] = [];
          // pipeline: send all without waiting, then collect acks in order
          const acks = Array.from({ length: perPublisher }, (_, n) =>
            p.publish(channel, [{ id: `p${i}-${n}`, data: `p${i}-${n}` }]),
          );
          for (const ack of await Promise.all(acks)) serials.push(ack.results[0]!.serial);
          return serials;
        }),
      );
      const total = perPublisher * publishers.length;
      await Promise.all(
        subs.map((s) =>
          waitUntil(
            () => s.messages(channel).length >= total,
            `subscriber got ${s.messages(channel).length}/${total}`,
          ),
        ),
      );
      const reference = subs[0]!.messages(channel).map((m) => m.version);
      assert.equal(new Set(reference).size, total, 'no duplicates');
      assert.deepEqual([...reference].sort(), reference, 'delivered in serial order');
      for (const s of subs)
        assert.deepEqual(
          s.messages(channel).map((m) => m.version),
          reference,
        );
      assert.deepEqual([...acked.flat()].sort(), reference, 'every acked serial delivered');
      for (const [i, serials] of acked.entries()) {
        assert.deepEqual([...serials].sort(), serials, `publisher ${i} kept its order`);
        const dataInOrder = subs[0]!
          .messages(channel)
          .filter((m) => m.clientId === `p${i}`)
          .map((m) => m.data);
        assert.deepEqual(
          dataInOrder,
          Array.from({ length: perPublisher }, (_, n) => `p${i}-${n}`),
        );
      }
      await Promise.all([...subs, ...publishers].map((c) => c.close()));
    });

    it('streams appends live as deltas and rolls them up in history', async () => {
      const channel = 'session:appends';
      const sub = await RawClient.connect(fx.server.url);
      await sub.attach(channel);
      const pub = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const created = await pub.publish(channel, [{ id: 'r1', name: 'text', data: '' }]);
      const serial = created.results[0]!.serial;
      const tokens = Array.from({ length: 50 }, (_, i) => `tok${i} `);
      for (const [i, t] of tokens.entries())
        await pub.publish(channel, [{ action: 'append', serial, id: `r1:${i}`, data: t }]);
      await pub.publish(channel, [
        { action: 'append', serial, id: 'r1:end', data: '', headers: { status: 'done' } },
      ]);
      await waitUntil(() => sub.messages(channel).length === 52, 'live ops');
      const live = sub.messages(channel);
      assert.equal(live.filter((m) => m.action === 'append').length, 51);
      assert.equal(live[1]?.data, 'tok0 ');
      const history = await rest(fx.server, `/v1/channels/${channel}/messages`);
      const items = history.body.items as Message[];
      assert.equal(items.length, 1, 'one rolled-up message');
      assert.equal(items[0]?.data, tokens.join(''));
      assert.equal(items[0]?.action, 'update');
      assert.equal(items[0]?.version, live[live.length - 1]?.version);
      assert.deepEqual(items[0]?.headers, { status: 'done' });
      assert.deepEqual(fold(live).get(serial)?.data, tokens.join(''));
      await Promise.all([sub.close(), pub.close()]);
    });

    it('resumes from a position with exactly what was missed, rolled up, then continues live', async () => {
      const channel = 'session:resume';
      const pub = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      const witness = await RawClient.connect(fx.server.url);
      await witness.attach(channel);
      const a = await RawClient.connect(fx.server.url);
      await a.attach(channel);
      const first = await pub.publish(channel, [{ id: 'x1', data: 'Hel' }]);
      const serial = first.results[0]!.serial;
      await waitUntil(() => a.messages(channel).length === 1, 'first message');
      const position = a.positions.get(channel)!;
      a.kill();
      // missed while away: appends to the open message, two new messages, an update and a delete
      for (let i = 0; i < 20; i++)
        await pub.publish(channel, [{ action: 'append', serial, id: `x1:${i}`, data: 'l' }]);
      const m2 = await pub.publish(channel, [{ id: 'x2', data: { json: true } }]);
      const m3 = await pub.publish(channel, [{ id: 'x3', data: 'gone soon' }]);
      await pub.publish(channel, [
        { action: 'update', serial: m2.results[0]!.serial, id: 'x2:u', data: { json: 2 } },
      ]);
      await pub.publish(channel, [{ action: 'delete', serial: m3.results[0]!.serial, id: 'x3:d' }]);

      const b = await RawClient.connect(fx.server.url);
      const attached = await b.attach(channel, { from: position });
      assert.equal(attached.resumed, true);
      const caughtUp = b.messages(channel);
      assert.equal(caughtUp.length, 3, 'three messages changed, each sent once rolled up');
      const versions = caughtUp.map((m) => m.version);
      assert.deepEqual([...versions].sort(), versions, 'catch-up in version order');
      assert.ok(caughtUp.every((m) => m.version > position));
      assert.equal(attached.position, versions[versions.length - 1]);

      await pub.publish(channel, [{ id: 'x4', data: 'live again' }]);
      await waitUntil(() => b.messages(channel).length === 4, 'live after resume');
      await waitUntil(() => witness.messages(channel).length === 26, 'witness');
      const resumedState = fold([...a.messages(channel), ...b.messages(channel)]);
      const continuousState = fold(witness.messages(channel));
      assert.deepEqual(
        [...resumedState.values()].map(({ version, data, action }) => ({ version, data, action })),
        [...continuousState.values()].map(({ version, data, action }) => ({ version, data, action })),
        'a resumed subscriber converges to the same state as one that never left',
      );
      assert.equal(resumedState.get(serial)?.data, `Hel${'l'.repeat(20)}`);
      await Promise.all([pub.close(), witness.close(), b.close()]);
    });

    it('answers resumed:false with a reason for a trimmed or foreign position, and sends no catch-up; a start on a channel trimmed to nothing is at the head', async () => {
      const channel = 'session:gone';
      const pub = await RawClient.connect(fx.server.url);
      const ack = await pub.publish(channel, [{ id: 'g1', data: 'old' }]);
      const epoch = ack.results[0]!.serial.split('.')[0]!;
      const sub = await RawClient.connect(fx.server.url);

      const foreign = await sub.attach(channel, { from: `zzzzzzzzzzzz.${'0'.repeat(15)}1` });
      assert.equal(foreign.resumed, false);
      assert.equal(foreign.reason, 'epoch_changed');
      assert.equal(foreign.epoch, epoch);

      const ahead = await sub.attach(channel, { from: `${epoch}.${'9'.repeat(16)}` });
      assert.equal(ahead.reason, 'position_ahead');

      const unknown = await sub.attach('session:never-written', { from: `${epoch}.${'0'.repeat(15)}1` });
      assert.equal(unknown.reason, 'epoch_changed');
      assert.equal(sub.messages(channel).length, 0);

      const head = (await pub.publish(channel, [{ id: 'g2', data: 'newer' }])).results[0]!.serial;
      await waitUntil(() => sub.messages(channel).length === 1, 'live g2');
      // the head itself is a position to resume from (nothing to catch up), one past it is not
      assert.equal(
        (await sub.attach(channel, { from: head })).resumed,
        true,
        'a client at the head could not resume',
      );
      const past = formatSerial(epoch, parseSerial(head)!.seq + 1);
      assert.equal((await sub.attach(channel, { from: past })).reason, 'position_ahead');
      // retention has passed for everything stored so far
      await fx.server.store.trim(Date.now() + 48 * 3600_000);
      const trimmed = await sub.attach(channel, { from: ack.results[0]!.serial });
      assert.equal(trimmed.resumed, false);
      assert.equal(trimmed.reason, 'position_trimmed');
      assert.equal(sub.messages(channel).length, 1, 'nothing sent for a failed resume');
      // a client that saw everything trimmed (up to the head) lost nothing: it resumes
      assert.equal(
        (await sub.attach(channel, { from: head })).resumed,
        true,
        'a position at the trim was refused',
      );
      // from the start of a channel whose every message was trimmed: nothing to send, at the head
      const fromStart = await sub.attach(channel, { start: true });
      assert.equal(fromStart.position, head, 'attached at the head, not at the empty position');
      assert.equal(sub.messages(channel).length, 1, 'nothing sent');
      await Promise.all([pub.close(), sub.close()]);
    });

    it('rewinds at most 4 MiB of data: the newest messages that fit, in order', async () => {
      const channel = 'session:rewind-bytes';
      const pub = await RawClient.connect(fx.server.url);
      const piece = 'x'.repeat(60_000);
      for (let i = 0; i < 80; i++) await pub.publish(channel, [{ id: `b${i}`, data: `${i}:${piece}` }]);
      const sub = await RawClient.connect(fx.server.url);
      await sub.attach(channel, { rewind: 100 });
      const got = sub.messages(channel).map((m) => Number(String(m.data).split(':')[0]));
      // 4 MiB holds 69 of these (60,003 bytes each)
      assert.ok(got.length >= 60 && got.length < 80, `${got.length} messages rewound`);
      assert.deepEqual(
        got,
        Array.from({ length: got.length }, (_, i) => 80 - got.length + i),
      );
      await Promise.all([pub.close(), sub.close()]);
    });

    it('rewinds the last N messages and attaches from the start', async () => {
      const channel = 'session:rewind';
      const pub = await RawClient.connect(fx.server.url);
      for (let i = 0; i < 10; i++) await pub.publish(channel, [{ id: `w${i}`, data: `m${i}` }]);
      const sub = await RawClient.connect(fx.server.url);
      const rewound = await sub.attach(channel, { rewind: 3 });
      assert.deepEqual(texts(sub.messages(channel)), ['m7', 'm8', 'm9']);
      assert.equal(rewound.position, sub.messages(channel)[2]?.version);
      assert.equal(rewound.resumed, false, 'a rewind is not a resume');
      const all = await RawClient.connect(fx.server.url);
      const started = await all.attach(channel, { start: true });
      assert.equal(started.resumed, false, 'nor is a start');
      assert.deepEqual(
        texts(all.messages(channel)),
        Array.from({ length: 10 }, (_, i) => `m${i}`),
      );
      await Promise.all([pub.close(), sub.close(), all.close()]);
    });

    it('acknowledges a republished id again without storing it twice', async () => {
      const channel = 'session:idem';
      const pub = await RawClient.connect(fx.server.url);
      const one = await pub.publish(channel, [{ id: 'same', data: 'once' }]);
      const two = await pub.publish(channel, [{ id: 'same', data: 'once' }]);
      assert.equal(two.results[0]?.serial, one.results[0]?.serial);
      assert.equal(two.results[0]?.duplicate, true);
      const history = await rest(fx.server, `/v1/channels/${channel}/messages`);
      assert.equal((history.body.items as Message[]).length, 1);
      await pub.close();
    });

    it('answers malformed and refused frames with typed errors and keeps the connection', async () => {
      const c = await RawClient.connect(fx.server.url);
      const cases: Array<[unknown, string]> = [
        [{ type: 'nope' }, 'invalid_frame'],
        // a channel or a serial that is a string but not a valid one: the code REST gives it
        [{ type: 'attach', channel: 'has space' }, 'invalid_channel'],
        [{ type: 'detach', channel: 'x'.repeat(257) }, 'invalid_channel'],
        [{ type: 'publish', channel: 'bad name', ops: [{ data: 1 }] }, 'invalid_channel'],
        [{ type: 'presence', channel: 'has space', action: 'enter' }, 'invalid_channel'],
        [{ type: 'attach', channel: 'a', from: 'not-a-serial' }, 'invalid_serial'],
        [
          { type: 'publish', channel: 'a', ops: [{ action: 'append', serial: 'nope', data: 'x' }] },
          'invalid_serial',
        ],
        // missing or of another type: the frame is malformed
        [{ type: 'attach', channel: 5 }, 'invalid_frame'],
        [{ type: 'attach' }, 'invalid_frame'],
        [{ type: 'attach', channel: 'a', from: 7 }, 'invalid_frame'],
        [{ type: 'attach', channel: 'a', rewind: 2, start: true }, 'invalid_frame'],
        [{ type: 'publish', channel: 'a', ops: [] }, 'invalid_frame'],
        [{ type: 'publish', channel: 'a', ops: [{ action: 'append', data: 'x' }] }, 'invalid_frame'],
        [{ type: 'publish', channel: 'a', ops: [{ data: 'x'.repeat(70_000) }] }, 'operation_too_large'],
        // name + data + headers: one byte over maxOperationSize (64 KiB)
        [
          { type: 'publish', channel: 'a', ops: [{ name: 'n', data: 'x'.repeat(64 * 1024) }] },
          'operation_too_large',
        ],
        [
          {
            type: 'publish',
            channel: 'a',
            ops: [{ action: 'append', serial: `aaaaaaaaaaaa.${'0'.repeat(15)}1`, data: 'x' }],
          },
          'message_not_found',
        ],
        [{ type: 'detach', channel: 'never-attached' }, 'not_attached'],
      ];
      for (const [frame, code] of cases) {
        const answer = await c.request(frame as Record<string, unknown>);
        assert.equal(answer.type, 'error', JSON.stringify(frame).slice(0, 80));
        assert.equal(answer.type === 'error' && answer.error.code, code, JSON.stringify(frame).slice(0, 80));
      }
      const atTheLimit = await c.request({
        type: 'publish',
        channel: 'a',
        ops: [{ name: 'n', data: 'x'.repeat(64 * 1024 - 1) }],
      });
      assert.equal(atTheLimit.type, 'ack', 'an operation of exactly maxOperationSize was refused');
      c.send('{not json');
      const notJson = await c.next((f) => f.type === 'error' && f.error.message.includes('JSON'));
      assert.equal(notJson.type, 'error');
      c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
      await c.next((f) => f.type === 'error' && f.error.message.includes('binary'));
      const pong = await c.request({ type: 'ping' });
      assert.equal(pong.type, 'pong', 'the connection is still usable');
      await c.close();
    });

    it('takes a dropped connection identity back with its connectionKey', async () => {
      const a = await RawClient.connect(fx.server.url, { clientId: 'u1' });
      const { connectionId, connectionKey } = a.connected;
      a.kill();
      const b = await RawClient.connect(fx.server.url, { clientId: 'u1', recover: connectionKey });
      assert.equal(b.connected.resumed, true);
      assert.equal(b.connected.connectionId, connectionId);
      const c = await RawClient.connect(fx.server.url, { clientId: 'u1', recover: `${connectionId}.wrong` });
      assert.equal(c.connected.resumed, false);
      assert.notEqual(c.connected.connectionId, connectionId);
      await Promise.all([b.close(), c.close()]);
    });
  });
}

async function waitUntil(test: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
