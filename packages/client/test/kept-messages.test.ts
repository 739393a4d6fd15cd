// keptMessages: what a client holds, renamed into the epoch its log went on in, when `kept` says the
// new log has every message it holds; undefined whenever that would not be the whole truth.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import type { ContinuityLost } from '../src/index.ts';
import { keptMessages } from '../src/index.ts';

const OLD = 'aaaaaaaaaaaa';
const NEW = 'bbbbbbbbbbbb';
const s = (epoch: string, seq: number) => `${epoch}.${String(seq).padStart(16, '0')}`;
const msg = (epoch: string, seq: number, version: number, data: string): Message => ({
  serial: s(epoch, seq),
  version: s(epoch, version),
  action: version === seq ? 'create' : 'update',
  id: `m${seq}`,
  data,
  timestamp: 0,
});
const lost = (position: number, kept: number | undefined): ContinuityLost => ({
  reason: 'epoch_changed',
  previousPosition: s(OLD, position),
  position: s(NEW, 9),
  ...(kept === undefined ? {} : { kept: s(NEW, kept) }),
});

describe('keptMessages', () => {
  it('renames every copy into the new epoch, in version order, the catch-up’s newer copy winning', () => {
    const held = [
      msg(OLD, 2, 3, 'two'),
      msg(OLD, 1, 1, 'one'),
      msg(NEW, 2, 5, 'two, changed'),
      msg(NEW, 4, 4, 'new'),
    ];
    assert.deepEqual(
      keptMessages(held, lost(3, 3))?.messages.map((m) => [m.serial, m.version, m.data]),
      [
        [s(NEW, 1), s(NEW, 1), 'one'],
        [s(NEW, 4), s(NEW, 4), 'new'],
        [s(NEW, 2), s(NEW, 5), 'two, changed'],
      ],
    );
  });

  it('keeps the message created at exactly `kept` (the last the new log has), and drops the one after it', () => {
    const held = [msg(OLD, 3, 3, 'three'), msg(OLD, 4, 4, 'four')];
    assert.deepEqual(
      keptMessages(held, lost(4, 3))?.messages.map((m) => [m.serial, m.data]),
      [[s(NEW, 3), 'three']],
    );
  });

  it('cannot tell with a copy whose serial or version is not one: undefined (reload)', () => {
    for (const bad of [
      { ...msg(OLD, 1, 1, 'one'), version: 'not a serial' },
      { ...msg(OLD, 1, 1, 'one'), serial: 'not a serial' },
    ])
      assert.equal(keptMessages([bad], lost(3, 3)), undefined);
  });

  it('drops copies created in what the log lost and reads again those it has in another state', () => {
    // position 5, kept 3: 4 and 5 were lost; message 2 was changed at 4 (lost): the log has it as it was at 2
    const held = [msg(OLD, 1, 1, 'one'), msg(OLD, 2, 4, 'two, changed'), msg(OLD, 5, 5, 'five')];
    const kept = keptMessages(held, lost(5, 3));
    assert.deepEqual(
      kept?.messages.map((m) => m.serial),
      [s(NEW, 1)],
    );
    assert.equal(kept?.reread, s(NEW, 2));
    // the catch-up brought message 2 again (changed after kept in the new log): nothing to read
    const caught = keptMessages([...held, msg(NEW, 2, 7, 'two, again')], lost(5, 3));
    assert.equal(caught?.reread, undefined);
    assert.deepEqual(
      caught?.messages.map((m) => m.data),
      ['one', 'two, again'],
    );
  });

  it('is undefined without kept or for a copy of a third epoch; nothing to read with kept at the position', () => {
    const held = [msg(OLD, 1, 1, 'one')];
    assert.equal(keptMessages(held, lost(1, undefined)), undefined);
    assert.equal(keptMessages([msg('cccccccccccc', 1, 1, 'x')], lost(1, 1)), undefined);
    // an own append folded with the version the new log answered, to a message named by its old
    // serial (`echo: false`): only as far as the catch-up brought that message is it known
    const mixed: Message = { ...msg(OLD, 1, 1, 'one'), version: s(NEW, 3), action: 'update' };
    assert.equal(keptMessages([mixed], lost(1, 1)), undefined, 'a copy of two epochs, not caught up');
    assert.equal(
      keptMessages([mixed, msg(NEW, 1, 2, 'one, older')], lost(1, 1)),
      undefined,
      'caught up less far',
    );
    assert.deepEqual(
      keptMessages([mixed, msg(NEW, 1, 3, 'one, caught up')], lost(1, 1))?.messages.map((m) => m.data),
      ['one, caught up'],
    );
    // a version of a third epoch (sorting before the new one) is no operation of the new log
    const third: Message = { ...mixed, version: s('000000000000', 3) };
    assert.equal(keptMessages([third, msg(NEW, 1, 3, 'one, caught up')], lost(1, 1)), undefined);
    assert.deepEqual(keptMessages(held, lost(1, 1))?.reread, undefined);
    assert.deepEqual(keptMessages([], lost(1, 1)), { messages: [] });
  });
});
