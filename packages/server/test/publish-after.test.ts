// A publish's precondition, `after` (PROTOCOL.md §7): a publish sent behind another that the store
// refused for a moment is refused too (`out_of_order`, nothing stored) instead of being stored ahead
// of it — on every store, through the connection and REST. (Each store's own check: the store
// conformance suite, "precondition (after)".)
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { startServer } from '../src/index.ts';
import { StoreError } from '../src/store/store.ts';
import { rest, TEST_KEY } from './support/fixture.ts';
import { gatedServers } from './support/gated-servers.ts';
import { RawClient } from './support/raw-client.ts';

const servers = gatedServers('after');
const redisSkip = servers.redisSkip;

const errorCode = (frame: ServerFrame) => (frame.type === 'error' ? frame.error.code : frame.type);

for (const kind of ['memory', 'sqlite', 'redis'] as const) {
  describe(`publish precondition (${kind})`, { skip: (kind === 'redis' && redisSkip) || false }, () => {
    it('a publish sent behind one the store refused is refused too, and both resent are stored in order', async (t) => {
      const { store, options } = await servers.optionsFor(kind);
      const server = await startServer(options);
      t.after(() => server.close());
      const agent = await RawClient.connect(server.url, { clientId: 'agent' });
      t.after(() => agent.kill());
      assert.equal(agent.connected.publishAfter, true, 'the server announces the precondition');
      const channel = 'session:after';
      const created = await agent.publish(channel, [{ id: 'm', data: '' }]);
      const serial = created.results[0]!.serial;
      const append = (id: string, data: string) => ({ action: 'append', id, serial, data });

      // 'b' reaches the store while it is down; 'c', sent before b's answer, once it is back
      const refused = store.refuseNextAppendWhenOvertaken(
        new StoreError('store_unavailable', 'the store cannot write (test)'),
      );
      const [b, c] = await Promise.all([
        agent.request({ type: 'publish', channel, ops: [append('b', 'B')] }),
        agent.request({ type: 'publish', channel, ops: [append('c', 'C')], after: 'b' }),
      ]);
      await refused;
      assert.equal(errorCode(b), 'store_unavailable');
      assert.equal(errorCode(c), 'out_of_order', JSON.stringify(c));
      assert.ok(c.type === 'error' && c.error.retryable && c.error.status === 409);

      // resent in order, as a client does: both stored, 'c' behind 'b'
      const [b2, c2] = await Promise.all([
        agent.request({ type: 'publish', channel, ops: [append('b', 'B')] }),
        agent.request({ type: 'publish', channel, ops: [append('c', 'C')], after: 'b' }),
      ]);
      assert.equal(b2.type, 'ack', JSON.stringify(b2));
      assert.equal(c2.type, 'ack', JSON.stringify(c2));
      const history = await rest(server, `/v1/channels/${channel}/messages`);
      const items = history.body.items as Array<{ data: string }>;
      assert.equal(items[0]!.data, 'BC');
      // a resend of a stored publish is answered as duplicates, whatever it names
      const again = await agent.request({
        type: 'publish',
        channel,
        ops: [append('c', 'C')],
        after: 'never-sent',
      });
      assert.ok(again.type === 'ack' && again.results[0]!.duplicate === true, JSON.stringify(again));
    });
  });
}

describe('publish precondition: input', () => {
  it('refuses a malformed `after` with invalid_frame, and takes one over REST in the wrapped form', async (t) => {
    const server = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY] });
    t.after(() => server.close());
    const agent = await RawClient.connect(server.url, { clientId: 'agent' });
    t.after(() => agent.kill());
    const channel = 'session:after-input';
    for (const bad of [5, '', 'x'.repeat(257), null, ['a'], { id: 'a' }]) {
      const answer = await agent.request({
        type: 'publish',
        channel,
        ops: [{ id: 'x', data: 'x' }],
        after: bad,
      });
      assert.equal(errorCode(answer), 'invalid_frame', `after: ${JSON.stringify(bad)}`);
    }
    const longest = await agent.request({
      type: 'publish',
      channel,
      ops: [{ id: 'y', data: 'y' }],
      after: 'x'.repeat(256),
    });
    assert.equal(errorCode(longest), 'out_of_order', 'an id of 256 characters is an id');

    const path = `/v1/channels/${channel}/messages`;
    const headers = { 'x-mooring-client-id': 'agent' };
    const refused = await rest(server, path, {
      body: { ops: [{ id: 'r2', data: 'b' }], after: 'r1' },
      headers,
    });
    assert.equal(refused.status, 409, JSON.stringify(refused.body));
    assert.equal((refused.body.error as { code: string }).code, 'out_of_order');
    const first = await rest(server, path, { body: { ops: [{ id: 'r1', data: 'a' }] }, headers });
    assert.equal(first.status, 200);
    const stored = await rest(server, path, {
      body: { ops: [{ id: 'r2', data: 'b' }], after: 'r1' },
      headers,
    });
    assert.equal(stored.status, 200, JSON.stringify(stored.body));
    // the same publisher over REST and the connection: one scope
    const viaSocket = await agent.request({
      type: 'publish',
      channel,
      ops: [{ id: 'w3', data: 'c' }],
      after: 'r2',
    });
    assert.equal(viaSocket.type, 'ack', JSON.stringify(viaSocket));
    const wrongType = await rest(server, path, {
      body: { ops: [{ id: 'r4', data: 'd' }], after: 4 },
      headers,
    });
    assert.equal(wrongType.status, 400);
  });
});
