/**
 * The single-node hub's batching (hub.ts): a channel with few subscribers is delivered at the end of
 * the task that stored its operations, without waiting for the rest of the event loop's turn; a
 * channel with many is delivered once per turn, one frame for everything stored in it; and a
 * channel's operations go out in the order they were stored when its size crosses the line while
 * a batch waits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { type Delivery, FAN_OUT_SHARE, FEW_SUBSCRIBERS, frameOf, LocalHub } from '../src/hub.ts';

function message(n: number): Message {
  return { serial: `s${n}`, version: `s${n}`, action: 'create', id: `m${n}`, timestamp: 0, data: `${n}` };
}

/** `count` subscribers of `channel`; the first records what it receives. */
function subscribe(hub: LocalHub, channel: string, count: number): { deliveries: Delivery[]; leave(): void } {
  const deliveries: Delivery[] = [];
  const offs = [hub.subscribe(channel, (d) => deliveries.push(d))];
  for (let i = 1; i < count; i++) offs.push(hub.subscribe(channel, () => {}));
  const leave = (): void => {
    for (const off of offs.splice(1)) off();
  };
  return { deliveries, leave };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const serials = (deliveries: Delivery[]): string[][] =>
  deliveries.map((d) => d.messages.map((m) => m.serial));

describe('LocalHub', () => {
  it('delivers a small channel at the end of the storing task, before callbacks already queued for the turn', async () => {
    const hub = new LocalHub();
    const { deliveries } = subscribe(hub, 'ai:1', 1);
    let seenByQueuedCallback: number | undefined;
    setImmediate(() => {
      seenByQueuedCallback = deliveries.length;
    });
    hub.publish('ai:1', [message(1)]);
    hub.publish('ai:1', [message(2)]);
    assert.equal(deliveries.length, 0, 'not inside publish: the task may store more');
    await Promise.resolve();
    assert.deepEqual(serials(deliveries), [['s1', 's2']], 'one frame for what the task stored');
    await turn();
    assert.equal(seenByQueuedCallback, 1, 'the delivery did not wait for the rest of the turn');
  });

  it('takes a channel of exactly FEW_SUBSCRIBERS subscribers for a small one', async () => {
    const hub = new LocalHub();
    const { deliveries } = subscribe(hub, 'ai:4', FEW_SUBSCRIBERS);
    hub.publish('ai:4', [message(1)]);
    await Promise.resolve();
    assert.deepEqual(serials(deliveries), [['s1']], 'delivered at the end of the task, not of the turn');
  });

  it('delivers a read-back (rolled up) at once, marked, after the batch that waits for its channel', () => {
    const hub = new LocalHub();
    const { deliveries } = subscribe(hub, 'ai:5', 1);
    hub.publish('ai:5', [message(1)]);
    hub.publish('ai:5', [message(2), message(3)], true);
    assert.deepEqual(serials(deliveries), [['s1'], ['s2', 's3']]);
    assert.deepEqual(
      deliveries.map((d) => d.rolledUp),
      [undefined, true],
    );
  });

  it('delivers a large channel once per turn: what several tasks stored goes in one frame', async () => {
    const hub = new LocalHub();
    const { deliveries } = subscribe(hub, 'room:1', FEW_SUBSCRIBERS + 1);
    // two tasks of the same turn (two reads of one poll phase, here two immediates)
    await new Promise<void>((resolve) => {
      setImmediate(() => hub.publish('room:1', [message(1)]));
      setImmediate(() => {
        hub.publish('room:1', [message(2)]);
        resolve();
      });
    });
    await turn();
    await turn();
    assert.deepEqual(serials(deliveries), [['s1', 's2']]);
    assert.equal(
      frameOf(deliveries[0]!, false).toString(),
      JSON.stringify({ type: 'messages', channel: 'room:1', messages: [message(1), message(2)] }),
    );
  });

  it('keeps a channel in order when it grows past the line while a batch waits', async () => {
    const hub = new LocalHub();
    const { deliveries } = subscribe(hub, 'ai:2', 1);
    hub.publish('ai:2', [message(1)]); // waits for the end of the task
    const others = Array.from({ length: FEW_SUBSCRIBERS }, () => hub.subscribe('ai:2', () => {}));
    hub.publish('ai:2', [message(2)]); // now a large channel: joins the waiting batch
    await turn();
    await turn();
    assert.deepEqual(serials(deliveries), [['s1', 's2']]);
    for (const off of others) off();
  });

  it('keeps a channel in order when it shrinks below the line while a batch waits', async () => {
    const hub = new LocalHub();
    const { deliveries, leave } = subscribe(hub, 'room:2', FEW_SUBSCRIBERS + 1);
    hub.publish('room:2', [message(1)]); // waits for the end of the turn
    leave();
    hub.publish('room:2', [message(2)]); // now small, but must not overtake message 1
    await Promise.resolve();
    assert.deepEqual(serials(deliveries), [], 'nothing before the waiting batch');
    await turn();
    await turn();
    assert.deepEqual(serials(deliveries), [['s1', 's2']]);
    hub.publish('room:2', [message(3)]); // nothing waits any more: a small channel's batch
    await Promise.resolve();
    assert.deepEqual(serials(deliveries), [['s1', 's2'], ['s3']]);
  });

  it('delivers nothing for a channel nobody follows, and stops at unsubscribe', async () => {
    const hub = new LocalHub();
    hub.publish('ai:3', [message(1)]);
    const seen: Delivery[] = [];
    const off = hub.subscribe('ai:3', (d) => seen.push(d));
    await turn();
    assert.equal(seen.length, 0, 'an operation stored before the subscription is not delivered live');
    hub.publish('ai:3', [message(2)]);
    off();
    await turn();
    assert.equal(seen.length, 0);
  });

  it('delivers each batch once, and a publish made while a batch is delivered goes in the next one', async () => {
    const hub = new LocalHub();
    const small = subscribe(hub, 'ai:1', 1);
    const large = subscribe(hub, 'room:1', FEW_SUBSCRIBERS + 1);
    // a subscriber that stores in turn while it is handed a delivery (an agent answering at once)
    let answered = false;
    hub.subscribe('ai:1', () => {
      if (answered) return;
      answered = true;
      hub.publish('ai:1', [message(2)]);
    });
    for (let task = 0; task < 3; task++) {
      hub.publish('ai:1', [message(10 + task)]);
      hub.publish('room:1', [message(20 + task)]);
      await turn();
    }
    assert.deepEqual(serials(small.deliveries), [['s10'], ['s2'], ['s11'], ['s12']]);
    assert.deepEqual(serials(large.deliveries), [['s20'], ['s21'], ['s22']]);
  });

  describe('a channel of more than FAN_OUT_SHARE subscribers, handed a delivery a share per turn', () => {
    /** `count` subscribers of `channel`, each recording the serials it receives, by index. */
    function crowd(hub: LocalHub, channel: string, count: number) {
      const seen: string[][][] = Array.from({ length: count }, () => []);
      const offs = seen.map((mine) =>
        hub.subscribe(channel, (d) => mine.push(d.messages.map((m) => m.serial))),
      );
      return { seen, offs };
    }
    /** Turns until `done()` or 50 of them. */
    async function turnsUntil(done: () => boolean): Promise<void> {
      for (let i = 0; i < 50 && !done(); i++) await turn();
    }

    it('reaches every subscriber once, in the order they came, and lets queued callbacks run between shares', async () => {
      const hub = new LocalHub();
      const count = FAN_OUT_SHARE * 2 + 10;
      const order: number[] = [];
      const seenAtBystander: number[] = [];
      for (let i = 0; i < count; i++) {
        hub.subscribe('room:big', () => {
          order.push(i);
          // a bystander's callback queued while the first share is handed out (another socket's read)
          if (i === 0) setImmediate(() => seenAtBystander.push(order.length));
        });
      }
      hub.publish('room:big', [message(1)]);
      await turnsUntil(() => order.length === count);
      assert.deepEqual(
        order,
        Array.from({ length: count }, (_, i) => i),
      );
      assert.equal(seenAtBystander.length, 1);
      assert.ok(
        seenAtBystander[0]! < count,
        `the bystander ran after ${seenAtBystander[0]} of ${count} subscribers, not after all of them`,
      );
      assert.ok(seenAtBystander[0]! >= FAN_OUT_SHARE, 'a share is handed out whole');
    });

    it('takes a channel of exactly FAN_OUT_SHARE subscribers whole, in one go', async () => {
      const hub = new LocalHub();
      const { seen } = crowd(hub, 'room:even', FAN_OUT_SHARE);
      let reachedWhenBystanderRan = -1;
      hub.publish('room:even', [message(1)]);
      setImmediate(() => {
        reachedWhenBystanderRan = seen.filter((s) => s.length > 0).length;
      });
      await turn();
      await turn();
      assert.equal(reachedWhenBystanderRan, FAN_OUT_SHARE);
    });

    it('holds what the channel stores during a pass until it ends, then sends it in order, as one delivery', async () => {
      const hub = new LocalHub();
      const count = FAN_OUT_SHARE * 3;
      const { seen } = crowd(hub, 'room:busy', count);
      hub.publish('room:busy', [message(1)]);
      await turn(); // the batch is flushed: the first share has it
      assert.ok(seen[0]!.length === 1 && seen[count - 1]!.length === 0, 'the pass is under way');
      hub.publish('room:busy', [message(2)]);
      await turn();
      hub.publish('room:busy', [message(3)]);
      await turnsUntil(() => seen.every((s) => s.length === 2));
      for (const [i, mine] of seen.entries()) {
        assert.deepEqual(mine, [['s1'], ['s2', 's3']], `subscriber ${i}`);
      }
    });

    it('keeps a read-back (rolled up) stored during a pass apart and in its place', async () => {
      const hub = new LocalHub();
      const count = FAN_OUT_SHARE + 1;
      const deliveries: Delivery[] = [];
      hub.subscribe('room:rb', (d) => deliveries.push(d));
      crowd(hub, 'room:rb', count - 2);
      const last: Delivery[] = [];
      hub.subscribe('room:rb', (d) => last.push(d));
      hub.publish('room:rb', [message(1)]);
      await turn();
      assert.equal(last.length, 0, 'the pass is under way');
      hub.publish('room:rb', [message(2)]);
      hub.publish('room:rb', [message(3)], true, true);
      hub.publish('room:rb', [message(4)], true);
      hub.publish('room:rb', [message(5)]);
      await turnsUntil(() => last.length === 5);
      for (const got of [deliveries, last]) {
        assert.deepEqual(
          got.map((d) => [d.messages.map((m) => m.serial).join(','), d.rolledUp ?? false, d.more ?? false]),
          [
            ['s1', false, false],
            ['s2', false, false],
            ['s3', true, true],
            ['s4', true, false],
            ['s5', false, false],
          ],
        );
      }
    });

    it('skips a subscriber that leaves during a pass, and forgets the pass once it ended', async () => {
      const hub = new LocalHub();
      const count = FAN_OUT_SHARE * 2;
      const { seen, offs } = crowd(hub, 'room:leave', count);
      hub.publish('room:leave', [message(1)]);
      await turn();
      offs[count - 1]!();
      await turnsUntil(() => seen[count - 2]!.length === 1);
      await turn();
      assert.deepEqual(seen[count - 1], [], 'left before its share');
      hub.publish('room:leave', [message(2)]);
      await turnsUntil(() => seen[count - 2]!.length === 2);
      assert.deepEqual(seen[0], [['s1'], ['s2']]);
      assert.deepEqual(seen[count - 2], [['s1'], ['s2']]);
    });
  });
});
