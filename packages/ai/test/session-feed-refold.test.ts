// The session feed after a log went on in a new epoch (`continuityLost` with `kept`), without a
// server: a feed that holds nothing past `kept` folds again what it holds, renamed into the new
// epoch, and reads no history; one that holds a message past `kept` (which the new log may not
// have) reloads from history. The channel is a stand-in that records history reads.
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
  let reads = 0;
  const channel = {
    position: '',
    state: 'attached',
    on: (event: 'continuityLost', fn: (lost: ContinuityLost) => void) => events.on(event, fn),
    subscribe: async (fn: (m: Message) => void) => {
      listeners.push(fn);
    },
    unsubscribe: () => {},
    replayFromStart: () => {},
    history: async (): Promise<HistoryPage> => {
      reads++;
      return { items: log, next: async () => undefined } as unknown as HistoryPage;
    },
  };
  return {
    channel: channel as unknown as Channel,
    deliver: (m: Message) => {
      for (const fn of listeners) fn(m);
    },
    lose: (lost: ContinuityLost) => events.emit('continuityLost', lost),
    reads: () => reads,
  };
}

describe('SessionFeed after a new epoch that kept its messages', () => {
  it('folds again what it holds, renamed into the new epoch, and reads no history', async () => {
    const stand = standIn([]);
    const tree = new ConversationTree();
    const feed = new SessionFeed(stand.channel, tree);
    await feed.start();
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
    assert.deepEqual(
      tree.inputs.map((n) => [n.id, n.serial]),
      [
        ['a', serial(NEW, 1)],
        ['b', serial(NEW, 2)],
        ['c', serial(NEW, 3)],
      ],
    );
  });

  it('a held message past kept (an own operation the position had not passed) makes it reload from history', async () => {
    const stand = standIn([input(NEW, 1, 'a'), input(NEW, 2, 'c')]);
    const tree = new ConversationTree();
    const feed = new SessionFeed(stand.channel, tree);
    await feed.start();
    stand.deliver(input(OLD, 1, 'a'));
    feed.applyOwn([input(OLD, 2, 'lost')]); // stored by the old Redis, never by the new one
    stand.lose({
      reason: 'epoch_changed',
      previousPosition: serial(OLD, 1),
      position: serial(NEW, 2),
      kept: serial(NEW, 1),
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(stand.reads(), 1);
    assert.deepEqual(
      tree.inputs.map((n) => n.id),
      ['a', 'c'],
    );
  });
});
