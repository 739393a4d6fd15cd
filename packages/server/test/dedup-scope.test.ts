/**
 * Idempotency cannot be used as a weapon (PROTOCOL.md §7): op ids are unique per publisher, so a
 * client with publish rights that stores an agent's next (predictable) id first does not make the
 * agent's real operation a "duplicate". Proven on every transport and on REST; retries of the same
 * publisher stay exactly-once, after a reconnect and after a server restart.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { createToken } from '../src/index.ts';
import { publisherOn, TRANSPORTS, type Transport } from './support/any-transport.ts';
import { type Fixture, rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const PATHS: Array<Transport | 'rest'> = [...TRANSPORTS, 'rest'];

async function history(fx: Fixture, channel: string): Promise<Message[]> {
  const res = await rest(fx.server, `/v1/channels/${channel}/messages?direction=forwards`);
  return res.body.items as Message[];
}

describe('publisher-scoped idempotency', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('memory');
  });
  after(() => fx.close());

  const attackerToken = () =>
    createToken(TEST_KEY, {
      clientId: 'mallory',
      capability: { 'session:*': ['subscribe', 'publish', 'append-own'] },
    }).then((t) => t.token);

  for (const path of PATHS) {
    it(`stores the agent's op although an attacker used its id first, on ${path}`, async () => {
      const channel = `session:hijack-${path}`;
      const attacker = await publisherOn(fx, path, { token: await attackerToken() });
      const agent = await publisherOn(fx, path, { clientId: 'agent' });
      // The attacker guesses the agent's next ids: the run's create and its first append.
      const [fakeRun] = await attacker.publish(channel, [{ id: 'run:r1', data: 'fake' }]);
      const [fakeAppend] = await attacker.publish(channel, [{ id: 'r1:p0:1', data: 'also fake' }]);

      const [run] = await agent.publish(channel, [{ id: 'run:r1', data: 'Hello' }]);
      assert.equal(run!.duplicate, undefined, 'the agent’s create is stored');
      assert.notEqual(run!.serial, fakeRun!.serial);
      const [chunk] = await agent.publish(channel, [
        { action: 'append', serial: run!.serial, id: 'r1:p0:1', data: ' world' },
      ]);
      assert.equal(chunk!.duplicate, undefined, 'the agent’s append is stored');
      assert.notEqual(chunk!.serial, fakeAppend!.serial);

      // Retries stay exactly-once for each publisher, on the same connection and on a new one.
      assert.deepEqual(await agent.publish(channel, [{ id: 'run:r1', data: 'Hello' }]), [
        { serial: run!.serial, duplicate: true },
      ]);
      agent.close();
      const back = await publisherOn(fx, path, { clientId: 'agent' });
      assert.deepEqual(
        await back.publish(channel, [
          { id: 'run:r1', data: 'Hello' },
          { action: 'append', serial: run!.serial, id: 'r1:p0:1', data: ' world' },
        ]),
        [
          { serial: run!.serial, duplicate: true },
          { serial: chunk!.serial, duplicate: true },
        ],
      );
      assert.deepEqual(await attacker.publish(channel, [{ id: 'run:r1', data: 'fake' }]), [
        { serial: fakeRun!.serial, duplicate: true },
      ]);
      back.close();
      attacker.close();

      // The attacker's ops are just other messages; the agent's message is whole and its own.
      const messages = await history(fx, channel);
      assert.deepEqual(
        messages.map((m) => [m.serial, m.clientId, m.data]),
        [
          [fakeRun!.serial, 'mallory', 'fake'],
          [fakeAppend!.serial, 'mallory', 'also fake'],
          [run!.serial, 'agent', 'Hello world'],
        ],
      );
    });

    it(`keeps anonymous token holders out of the API key's anonymous ids, on ${path}`, async () => {
      const channel = `session:anon-${path}`;
      const { token } = await createToken(TEST_KEY, { capability: { 'session:*': ['publish'] } });
      const browser = await publisherOn(fx, path, { token });
      const backend = await publisherOn(fx, path, {});
      const [fake] = await browser.publish(channel, [{ id: 'job:1', data: 'fake' }]);
      const [real] = await backend.publish(channel, [{ id: 'job:1', data: 'real' }]);
      assert.equal(real!.duplicate, undefined);
      assert.notEqual(real!.serial, fake!.serial);
      assert.deepEqual(await backend.publish(channel, [{ id: 'job:1', data: 'real' }]), [
        { serial: real!.serial, duplicate: true },
      ]);
      browser.close();
      backend.close();
    });
  }

  it('ends a lease with its update although clients stored its id first', async () => {
    const channel = 'session:lease-scope';
    const watcher = await RawClient.connect(fx.server.url);
    await watcher.attach(channel);
    const agent = await publisherOn(fx, 'rest', { clientId: 'agent' });
    const [created] = await agent.publish(channel, [
      { id: 'run:l1', data: '', headers: { status: 'streaming' }, lease: 300 },
    ]);
    // the expiry's id names the version that expires, which is the create here: predictable
    const id = `lease-expired:${created!.serial}:${created!.serial}`;
    const { token } = await createToken(TEST_KEY, { capability: { 'session:*': ['publish'] } });
    for (const credentials of [{ token: await attackerToken() }, { token }, {}, { clientId: 'agent' }]) {
      const [stolen] = await (await publisherOn(fx, 'rest', credentials)).publish(channel, [{ id }]);
      assert.equal(stolen!.duplicate, undefined);
    }
    await watcher.next(
      (f) =>
        f.type === 'messages' &&
        f.messages.some((m) => m.serial === created!.serial && m.headers?.status === 'abandoned'),
    );
    const message = (await history(fx, channel)).find((m) => m.serial === created!.serial)!;
    assert.equal(message.headers?.status, 'abandoned');
    await watcher.close();
  });
});

describe('publisher-scoped idempotency across a restart (SQLite)', () => {
  it('keeps retries exactly-once and scopes apart after a restart', async () => {
    const fx = await startFixture('sqlite');
    try {
      const channel = 'session:restart-scope';
      const agent = await publisherOn(fx, 'websocket', { clientId: 'agent' });
      const [run] = await agent.publish(channel, [{ id: 'run:r2', data: '' }]);
      const [chunk] = await agent.publish(channel, [
        { action: 'append', serial: run!.serial, id: 'r2:p0:1', data: 'tok' },
      ]);
      agent.close();
      await fx.restart();
      for (const path of PATHS) {
        const back = await publisherOn(fx, path, { clientId: 'agent' });
        assert.deepEqual(
          await back.publish(channel, [
            { id: 'run:r2', data: '' },
            { action: 'append', serial: run!.serial, id: 'r2:p0:1', data: 'tok' },
          ]),
          [
            { serial: run!.serial, duplicate: true },
            { serial: chunk!.serial, duplicate: true },
          ],
          path,
        );
        back.close();
      }
      const other = await publisherOn(fx, 'rest', { clientId: 'someone' });
      const [theirs] = await other.publish(channel, [{ id: 'run:r2' }]);
      assert.equal(theirs!.duplicate, undefined);
      const messages = await history(fx, channel);
      assert.deepEqual(
        messages.map((m) => [m.clientId, m.data]),
        [
          ['agent', 'tok'],
          ['someone', undefined],
        ],
      );
    } finally {
      await fx.close();
    }
  });
});
