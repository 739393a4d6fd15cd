// The session feed after a log went on in a new epoch (`continuityLost` with `kept`), without a
// server: it folds again what it holds, renamed into the new epoch, without what was created in
// what the log lost, and reads again only the messages the new log has in another state (changed or
// deleted in what it lost), from the first of them up to `kept`. The channel is a stand-in that
// records history reads.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Channel, ContinuityLost, HistoryPage } from '@mooring/client';
import { Emitter } from '@mooring/client';
import type { JsonValue, Message } from '@mooring/protocol';
import { ConversationTree } from '../src/conversation-tree.ts';
import { SessionFeed } from '../src/session-feed.ts';

const OLD = 'aaaaaaaaaaaa';
const NEW = 'bbbbbbbbbbbb';
const serial = (epoch: string, seq: number) => `${epoch}.${String(seq).padStart(16, '0')}`;

function input(epoch: string, seq: number, id: string): Message {
  const s = serial(epoch, seq);
  const data: JsonValue = { message: { id, role: 'user', parts: [{ type: 'text', text: id }] } };
  return { serial: s, version: s, action: 'create', id: s, name: 'ai.input', data, timestamp: seq };
}

/** A channel attached at once; `lose()` raises continuityLost; history answers `log`. */
function standIn(log: Message[]) {
  const events = new Emitter<{ continuityLost: ContinuityLost; statechange: { current: string } }>();
  const listeners: Array<(m: Message) => void> = [];
  const queries: unknown[] = [];
  const channel = {
    position: '',
    state: 'attached',
    on: (event: 'continuityLost', fn: (lost: ContinuityLost) => void) => events.on(event, fn),
    subscribe: async (fn: (m: Message) => void) => {
      listeners.push(fn);
    },
    unsubscribe: () => {},
    replayFromStart: () => {},
    history: async (query: unknown): Promise<HistoryPage> => {
      queries.push(query);
      return { items: log, next: async () => undefined } as unknown as HistoryPage;
    },
  };
  return {
    channel: channel as unknown as Channel,
    deliver: (m: Message) => {
      for (const fn of listeners) fn(m);
    },
    lose: (lost: ContinuityLost) => events.emit('continuityLost', lost),
    reads: () => queries.length,
    queries: () => queries,
  };
}

/** A feed over a stand-in channel whose history answers `log`, started. */
async function startedFeed(log: Message[] = []) {
  const stand = standIn(log);
  const tree = new ConversationTree();
  const feed = new SessionFeed(stand.channel, tree);
  await feed.start();
  return { stand, tree, feed };
}

/** The tree's inputs as [id, serial]. */
const inputsOf = (tree: ConversationTree) => tree.inputs.map((n) => [n.id, n.serial]);

describe('SessionFeed after a new epoch that kept its messages', () => {
  it('folds again what it holds, renamed into the new epoch, and reads no history', async () => {
    const { stand, tree } = await startedFeed();
    stand.deliver(input(OLD, 1, 'a'));
    stand.deliver(input(OLD, 2, 'b'));
    // the catch-up after `kept`: a new input in the new epoch
    stand.deliver(input(NEW, 3, 'c'));
    stand.lose({
      reason: 'epoch_changed',
      previousPosition: serial(OLD, 2),
      position: serial(NEW, 3),
      kept: serial(NEW, 2),
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(stand.reads(), 0);
    assert.deepEqual(inputsOf(tree), [
      ['a', serial(NEW, 1)],
      ['b', serial(NEW, 2)],
      ['c', serial(NEW, 3)],
    ]);
  });

  it('drops an input created in what the log lost (an own one, folded before the position moved over it), reading nothing', async () => {
    const { stand, tree, feed } = await startedFeed();
    stand.deliver(input(OLD, 1, 'a'));
    feed.applyOwn([input(OLD, 2, 'lost')]); // stored by the old Redis, never by the new one
    stand.lose({
      reason: 'epoch_changed',
      previousPosition: serial(OLD, 1),
      position: serial(NEW, 1),
      kept: serial(NEW, 1),
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(stand.reads(), 0);
    assert.deepEqual(inputsOf(tree), [['a', serial(NEW, 1)]]);
  });

  it('reads again, from its serial up to kept, a message changed in what the log lost', async () => {
    const { stand, tree } = await startedFeed([input(NEW, 2, 'b')]);
    stand.deliver(input(OLD, 1, 'a'));
    stand.deliver(input(OLD, 2, 'b'));
    // b deleted at 3, which the new log lost: it has b as it was
    stand.deliver({
      serial: serial(OLD, 2),
      version: serial(OLD, 3),
      action: 'delete',
      id: 'x',
      timestamp: 3,
    });
    assert.deepEqual(
      tree.inputs.map((n) => n.id),
      ['a'],
    );
    stand.lose({
      reason: 'epoch_changed',
      previousPosition: serial(OLD, 3),
      position: serial(NEW, 2),
      kept: serial(NEW, 2),
    });
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(stand.queries(), [
      { direction: 'forwards', from: serial(NEW, 2), until: serial(NEW, 2), limit: 1000 },
    ]);
    assert.deepEqual(inputsOf(tree), [
      ['a', serial(NEW, 1)],
      ['b', serial(NEW, 2)],
    ]);
  });

  it('a message the catch-up deleted (its tombstone under the new serial) is not folded again', async () => {
    const { stand, tree } = await startedFeed();
    stand.deliver(input(OLD, 1, 'a'));
    stand.deliver(input(OLD, 2, 'b'));
    // the catch-up after `kept` (the channel attaching): b deleted on the new log
    (stand.channel as { state: string }).state = 'attaching';
    const tombstone = serial(NEW, 3);
    stand.deliver({
      serial: serial(NEW, 2),
      version: tombstone,
      action: 'delete',
      id: serial(NEW, 2),
      timestamp: 3,
    });
    stand.lose({
      reason: 'epoch_changed',
      previousPosition: serial(OLD, 2),
      position: tombstone,
      kept: serial(NEW, 2),
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(stand.reads(), 0);
    assert.deepEqual(inputsOf(tree), [['a', serial(NEW, 1)]]);
  });

  it('a new epoch while the first load still reads the history: no refold of the half-loaded tree, a reload from the new log', async () => {
    const stand = standIn([input(NEW, 1, 'a'), input(NEW, 2, 'b'), input(NEW, 3, 'c')]);
    // a feed joining a channel that has a position: its first read of the history is slow
    let answer: (page: HistoryPage) => void = () => {};
    const slow = new Promise<HistoryPage>((resolve) => {
      answer = resolve;
    });
    const channel = stand.channel as { position: string; history: () => Promise<HistoryPage> };
    const history = channel.history;
    let calls = 0;
    channel.history = () => (++calls === 1 ? slow : history());
    channel.position = serial(OLD, 2);
    const tree = new ConversationTree();
    const feed = new SessionFeed(stand.channel, tree);
    const started = feed.start();
    await new Promise((r) => setImmediate(r));
    assert.equal(feed.reloading, true, 'the first load is under way');
    stand.lose({
      reason: 'epoch_changed',
      previousPosition: serial(OLD, 2),
      position: serial(NEW, 3),
      kept: serial(NEW, 2),
    });
    // the old read answers late: it folds nothing into the reloaded tree
    answer({
      items: [input(OLD, 1, 'a'), input(OLD, 2, 'b')],
      next: async () => undefined,
    } as unknown as HistoryPage);
    await started;
    await new Promise((r) => setImmediate(r));
    assert.equal(feed.reloading, false);
    assert.deepEqual(inputsOf(tree), [
      ['a', serial(NEW, 1)],
      ['b', serial(NEW, 2)],
      ['c', serial(NEW, 3)],
    ]);
  });
});
