/**
 * PresenceFanOut (presence-fan-out.ts): a channel of few subscribers gets each presence change at
 * once; a crowded one (more than FAN_OUT_SHARE) gets them in passes, a share per turn, with what
 * comes during a pass waiting for it, the last change per member only — and every subscriber ends
 * with the set it would have had from every change.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FAN_OUT_SHARE } from '../src/hub.ts';
import { memberJson, PresenceService } from '../src/presence.ts';
import { PresenceFanOut, presenceMemberId } from '../src/presence-fan-out.ts';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function change(member: string, action: 'enter' | 'update' | 'leave', data?: number): Buffer {
  const json = memberJson({
    clientId: `client-of-${member}`,
    connectionId: member,
    timestamp: 1,
    data: data === undefined ? undefined : JSON.stringify({ n: data }),
  });
  return Buffer.from(`{"type":"presence","channel":"room","action":"${action}","member":${json}}`);
}

/** A subscriber's presence set, applied by PROTOCOL.md §6.4: member → its data. */
type MemberSet = Map<string, unknown>;
function apply(set: MemberSet, frame: Buffer): void {
  const f = JSON.parse(frame.toString()) as {
    action: string;
    member: { connectionId: string; data?: unknown };
  };
  if (f.action === 'leave') set.delete(f.member.connectionId);
  else set.set(f.member.connectionId, f.member.data);
}

function crowd(fanOut: PresenceFanOut, count: number) {
  const sets: MemberSet[] = [];
  const frames: number[] = [];
  const offs = Array.from({ length: count }, (_, i) => {
    sets.push(new Map());
    frames.push(0);
    return fanOut.add('room', (frame) => {
      frames[i]! += 1;
      apply(sets[i]!, frame);
    });
  });
  return { sets, frames, offs };
}

async function turnsUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) await turn();
  assert.ok(done(), 'settled within 200 turns');
}

describe('PresenceFanOut', () => {
  it('writes each change at once, in order, to a channel of FAN_OUT_SHARE subscribers or fewer', () => {
    const fanOut = new PresenceFanOut();
    const { sets, frames } = crowd(fanOut, FAN_OUT_SHARE);
    fanOut.emit('room', 'a', change('a', 'enter', 1));
    fanOut.emit('room', 'a', change('a', 'update', 2));
    fanOut.emit('room', 'b', change('b', 'enter'));
    assert.deepEqual(frames, Array(FAN_OUT_SHARE).fill(3), 'every change, inside emit');
    assert.deepEqual(
      [...sets[FAN_OUT_SHARE - 1]!],
      [
        ['a', { n: 2 }],
        ['b', undefined],
      ],
    );
  });

  it('hands a crowded channel its changes a share per turn, the last per member once a pass is under way, and every subscriber ends with the same set', async () => {
    const fanOut = new PresenceFanOut();
    const count = FAN_OUT_SHARE * 3 + 7;
    const { sets, frames } = crowd(fanOut, count);
    let reachedWhenOtherWorkRan = -1;
    fanOut.emit('room', 'a', change('a', 'enter', 0));
    setImmediate(() => {
      reachedWhenOtherWorkRan = frames.filter((n) => n > 0).length;
    });
    assert.equal(frames.filter((n) => n > 0).length, FAN_OUT_SHARE, 'the first share inside emit');
    // during the pass: a changes 20 times, b enters and leaves, c enters
    for (let n = 1; n <= 20; n++) fanOut.emit('room', 'a', change('a', 'update', n));
    fanOut.emit('room', 'b', change('b', 'enter', 7));
    fanOut.emit('room', 'c', change('c', 'enter', 8));
    fanOut.emit('room', 'b', change('b', 'leave'));
    await turn();
    assert.ok(
      reachedWhenOtherWorkRan >= FAN_OUT_SHARE && reachedWhenOtherWorkRan < count,
      `other work ran between the shares (after ${reachedWhenOtherWorkRan} of ${count})`,
    );
    const expected = [
      ['a', { n: 20 }],
      ['c', { n: 8 }],
    ];
    await turnsUntil(() => sets.every((set) => set.size === 2 && (set.get('a') as { n: number })?.n === 20));
    for (const [i, set] of sets.entries())
      assert.deepEqual([...set].sort(), expected, `subscriber ${i}: the set of every change`);
    // one change, then the waiting ones (a's last, c, b's leave): 4 frames each, not 24
    assert.deepEqual(new Set(frames), new Set([4]));
  });

  it('sizes a share by frames: with many changes waiting, fewer subscribers a turn', async () => {
    const fanOut = new PresenceFanOut();
    const count = FAN_OUT_SHARE + 1;
    const { frames } = crowd(fanOut, count);
    fanOut.emit('room', 'm0', change('m0', 'enter'));
    for (let m = 1; m <= 64; m++) fanOut.emit('room', `m${m}`, change(`m${m}`, 'enter'));
    await turnsUntil(() => frames[count - 1]! === 1); // the first pass ends
    await turn(); // the second one starts: its first share
    const reached = frames.filter((n) => n === 65).length;
    assert.equal(reached, Math.floor(FAN_OUT_SHARE / 64), 'a share of FAN_OUT_SHARE frames');
    await turnsUntil(() => frames.every((n) => n === 65));
  });

  it('skips a subscriber that leaves during a pass, and writes nothing for a channel nobody follows', async () => {
    const fanOut = new PresenceFanOut();
    fanOut.emit('room', 'a', change('a', 'enter'));
    const count = FAN_OUT_SHARE * 2;
    const { frames, offs } = crowd(fanOut, count);
    fanOut.emit('room', 'a', change('a', 'update', 1));
    offs[count - 1]!();
    await turnsUntil(() => frames[count - 2]! === 1);
    await turn();
    assert.equal(frames[count - 1], 0);
    fanOut.emit('room', 'a', change('a', 'update', 2));
    await turnsUntil(() => frames[count - 2]! === 2);
  });
});

describe('presenceMemberId', () => {
  it("reads the member's connectionId, whatever the clientId, channel and data hold", () => {
    const member = memberJson({
      clientId: 'x","connectionId":"forged',
      connectionId: 'conn-1',
      timestamp: 5,
      data: '{"connectionId":"other"}',
    });
    const frame = `{"type":"presence","channel":"a\\"connectionId\\":1","action":"update","member":${member}}`;
    assert.equal(presenceMemberId(frame), '"conn-1"');
    assert.notEqual(presenceMemberId(frame), presenceMemberId(frame.replace('conn-1', 'conn-2')));
  });
});

describe('PresenceService.syncFrame of a large set', () => {
  const options = {
    grace: 15_000,
    maxMembers: 1000,
    maxChannelsPerConnection: 100,
    maxBytesPerConnection: 256 * 1024,
    recoverWithin: 120_000,
    maxDroppedBytesPerClient: 1024 * 1024,
  };
  const members = (frame: Buffer) =>
    (JSON.parse(frame.toString()) as { members: Array<{ connectionId: string; data?: unknown }> }).members;

  it('is encoded once for the attaches that come while the set stays the same, and never outlives a change', () => {
    const presence = new PresenceService(options);
    for (let i = 0; i < 40; i++) presence.enter('crowd', `c${i}`, `client-${i}`, { i });
    const first = presence.syncFrame('crowd');
    assert.equal(presence.syncFrame('crowd'), first, 'the same frame for the next attach');
    assert.equal(members(first).length, 40);
    presence.enter('crowd', 'c3', 'client-3', { i: 'changed' });
    const updated = presence.syncFrame('crowd');
    assert.notEqual(updated, first);
    assert.deepEqual(members(updated).find((m) => m.connectionId === 'c3')?.data, { i: 'changed' });
    presence.enter('crowd', 'c40', 'client-40', { i: 40 });
    assert.equal(members(presence.syncFrame('crowd')).length, 41, 'an enter is in the next sync');
    presence.leave('crowd', 'c0');
    const left = members(presence.syncFrame('crowd'));
    assert.equal(left.length, 40, 'a leave is in the next sync');
    assert.ok(!left.some((m) => m.connectionId === 'c0'));
    presence.connectionClosed('c1');
    assert.ok(
      !members(presence.syncFrame('crowd')).some((m) => m.connectionId === 'c1'),
      'a closed connection left',
    );
    // another channel's change leaves this one's frame alone, and a small set is encoded each time
    const kept = presence.syncFrame('crowd');
    presence.enter('small', 'c0', 'client-0', { i: 0 });
    assert.equal(presence.syncFrame('crowd'), kept);
    assert.notEqual(presence.syncFrame('small'), presence.syncFrame('small'));
    presence.close();
  });
});
