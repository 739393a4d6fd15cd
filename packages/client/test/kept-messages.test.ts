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
      keptMessages(held, lost(3, 3))?.map((m) => [m.serial, m.version, m.data]),
      [
        [s(NEW, 1), s(NEW, 1), 'one'],
        [s(NEW, 4), s(NEW, 4), 'new'],
        [s(NEW, 2), s(NEW, 5), 'two, changed'],
      ],
    );
  });

  it('is undefined without kept, with kept before the position, for a copy past kept or of a third epoch', () => {
    const held = [msg(OLD, 1, 1, 'one')];
    assert.equal(keptMessages(held, lost(1, undefined)), undefined);
    assert.equal(keptMessages(held, lost(2, 1)), undefined, 'the log lost what came after kept');
    assert.equal(keptMessages([msg(OLD, 1, 2, 'x')], lost(1, 1)), undefined, 'a version past kept');
    assert.equal(keptMessages([msg('cccccccccccc', 1, 1, 'x')], lost(1, 1)), undefined);
    assert.deepEqual(keptMessages([], lost(1, 1)), []);
  });
});
