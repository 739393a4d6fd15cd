/**
 * PROTOCOL.md §7: operations from one connection are stored in the order they were sent. On Redis a
 * publish that takes a lease (counted across nodes) or ends one (`lease: 0`, marked where every node
 * sees it) waits for Redis before it is stored; a publish sent after it that waits for nothing must
 * not overtake it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AckFrame, type OperationInput, type ServerFrame, serialSeq } from '@mooring/protocol';
import { redisSkipReason } from '@mooring/testkit';
import { PublishOrder } from '../src/publish-order.ts';
import { startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

describe('publish order on one connection', () => {
  for (const kind of ['memory', 'sqlite', 'redis'] as const)
    it(
      `publishes that take or end a lease keep their place among the others sent after them (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind);
        try {
          const channel = 'session:order';
          const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
          const first = await agent.publish(channel, [{ id: 'm0', data: '', lease: 60_000 }]);
          const m0 = first.results[0]!.serial;
          // all sent before any answer: a lease taken, a plain create, a lease ended, a plain create
          const sent: Promise<AckFrame>[] = [];
          const ids: string[] = [];
          const send = (op: OperationInput) => {
            ids.push(op.id!);
            sent.push(agent.publish(channel, [op]));
          };
          for (let round = 0; round < 10; round++) {
            send({ id: `leased-${round}`, data: '', lease: 60_000 });
            send({ id: `plain-${round}`, data: 'p' });
            send({
              action: 'update',
              serial: m0,
              id: `end-${round}`,
              headers: { round: String(round) },
              lease: 0,
            });
            send({ id: `after-${round}`, data: 'a' });
          }
          const acks = await Promise.all(sent);
          const seqs = acks.map((ack) => serialSeq(ack.results[0]!.serial));
          for (let i = 1; i < seqs.length; i++)
            assert.ok(
              seqs[i]! > seqs[i - 1]!,
              `${ids[i]} (seq ${seqs[i]}) was stored before ${ids[i - 1]} (seq ${seqs[i - 1]}), sent first`,
            );
          await agent.close();
        } finally {
          await fx.close();
        }
      },
    );
});

describe('publish order when a publish waiting for Redis is refused', () => {
  for (const kind of ['memory', 'redis'] as const)
    it(
      `the refused one holds up nothing, and the others keep their order (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxLeasesPerClient: 2 } });
        try {
          const channel = 'session:order-refused';
          const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
          await agent.publish(channel, [{ id: 'held', data: '', lease: 60_000 }]);
          const answers = await Promise.all(
            [
              { id: 'leased', data: '', lease: 60_000 },
              { id: 'over', data: '', lease: 60_000 },
              { id: 'plain', data: 'p' },
            ].map((op) => agent.request({ type: 'publish', channel, ops: [op] })),
          );
          const [leased, over, plain] = answers as [AckFrame, ServerFrame, AckFrame];
          assert.equal(over.type === 'error' && over.error.code, 'too_many_leases', JSON.stringify(over));
          assert.ok(
            serialSeq(plain.results[0]!.serial) > serialSeq(leased.results[0]!.serial),
            'the plain create was stored before the leased one sent first',
          );
          await agent.close();
        } finally {
          await fx.close();
        }
      },
    );
});

describe('PublishOrder', () => {
  const settled = () => new Promise((resolve) => setImmediate(resolve));
  const gone = (turn: { before: Promise<void> | undefined }) => {
    const state = { went: turn.before === undefined };
    void turn.before?.then(() => {
      state.went = true;
    });
    return state;
  };

  it('gives no turn while nothing waits, and none again once every turn is left', () => {
    const order = new PublishOrder();
    assert.equal(order.enter(false), undefined);
    const waiting = order.enter(true)!;
    assert.equal(waiting.before, undefined, 'the first to wait waits for nobody');
    const after = order.enter(false)!;
    assert.ok(after.before, 'one sent after it waits for it');
    waiting.leave();
    waiting.leave(); // idempotent: counted once
    assert.ok(order.enter(false), 'still a turn: one that saw the tail has not passed yet');
    after.leave();
  });

  it('a turn left early (its publish failed) does not let later ones pass an earlier one still waiting', async () => {
    const order = new PublishOrder();
    const first = order.enter(true)!; // waits for Redis, then stores
    const failing = order.enter(true)!; // refused while waiting
    const turn = order.enter(false)!;
    const plain = gone(turn);
    failing.leave();
    await settled();
    assert.equal(plain.went, false, 'went before the first was stored');
    first.leave();
    await settled();
    assert.equal(plain.went, true);
    turn.leave();
    assert.equal(order.enter(false), undefined, 'every turn left: the tail is dropped');
  });
});
