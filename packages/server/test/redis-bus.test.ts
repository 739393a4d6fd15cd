/**
 * The bus payload of a stored batch (publish.lua: epoch, each op's seq or `d<seq>` for a duplicate,
 * the ops as JSON). A node reads its head alone to drop what it delivered already (its own echoes)
 * without parsing the operations; the head must agree with the whole decode. And the order of the
 * subscribes and unsubscribes of one channel on the bus's connection (redis-subscriber.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { busBatchHead, decodeBusBatch } from '../src/store/redis-store.ts';
import { ChannelOrder } from '../src/store/redis-subscriber.ts';

const ops = (n: number) =>
  JSON.stringify(
    Array.from({ length: n }, (_, i) => ({ action: 'append', id: `a${i}`, serial: 'e1-1', data: 'x' })),
  );

describe('bus payloads', () => {
  it('the head gives the epoch and the highest stored seq, duplicates left out', () => {
    assert.deepEqual(busBatchHead(`0abc\n12\n${ops(1)}`), { epoch: '0abc', last: 12 });
    assert.deepEqual(busBatchHead(`0abc\n12,d7,14\n${ops(3)}`), { epoch: '0abc', last: 14 });
    assert.deepEqual(busBatchHead(`0abc\nd7,d8\n${ops(2)}`), { epoch: '0abc', last: 0 });
    const payload = `0abc\n30,31,d2,32\n${ops(4)}`;
    const decoded = decodeBusBatch(payload)!;
    const seqs = decoded.messages.map((m) => Number(m.version.split('.').pop()));
    assert.deepEqual(seqs, [30, 31, 32]);
    assert.equal(busBatchHead(payload)!.last, Math.max(...seqs));
  });

  it('a payload that is not one of the store’s has no head', () => {
    assert.equal(busBatchHead('no newline'), undefined);
    assert.equal(busBatchHead('0abc\nonly one'), undefined);
    assert.equal(busBatchHead(`0abc\n12,x3\n${ops(2)}`), undefined);
  });

  it('a create takes its version as its serial; other operations keep the serial they name', () => {
    const payload = `0abc\n5,6\n${JSON.stringify([
      { action: 'create', id: 'c', data: 'x' },
      { action: 'append', id: 'a', serial: 'e1-1', data: 'y' },
    ])}`;
    const [create, append] = decodeBusBatch(payload)!.messages;
    assert.equal(create!.serial, create!.version);
    assert.equal(append!.serial, 'e1-1');
    assert.notEqual(append!.version, 'e1-1');
  });

  it('an operation naming its message by a serial of the epoch before a new Redis carries the serial in the batch’s epoch', () => {
    const old = '0mxa00000aaa';
    const now = '0mxb00000bbb';
    const payload = `${now}\n7\n${JSON.stringify([{ action: 'append', id: 'a', serial: `${old}.0000000000000002`, data: 'y' }])}`;
    const [append] = decodeBusBatch(payload)!.messages;
    assert.equal(append!.serial, `${now}.0000000000000002`);
    assert.equal(append!.version, `${now}.0000000000000007`);
  });

  it('a payload that is not one of the store’s decodes to nothing', () => {
    assert.equal(decodeBusBatch('no newline'), undefined);
    assert.equal(decodeBusBatch(`0abc\n${ops(1)}`), undefined, 'one newline');
    assert.equal(decodeBusBatch('[\n{"action":"create"}]'), undefined, 'one newline, in JSON');
    assert.equal(decodeBusBatch('0abc\n1\nnot json'), undefined);
    assert.equal(decodeBusBatch('0abc\n1\n{"length":1}'), undefined, 'operations that are not a list');
    assert.equal(decodeBusBatch(`0abc\n1,2\n${ops(1)}`), undefined, 'more results than operations');
    assert.equal(decodeBusBatch(`0abc\n1\n${ops(2)}`), undefined, 'fewer results than operations');
  });
});

describe('channel order', () => {
  it("runs a channel's operations one after the other, also one queued while the second runs; other channels do not wait", async () => {
    const order = new ChannelOrder();
    const log: string[] = [];
    const gate = () => {
      let open = () => {};
      const opened = new Promise<void>((resolve) => {
        open = resolve;
      });
      return { opened, open };
    };
    const op = (name: string, wait?: Promise<void>) => async () => {
      log.push(`${name} start`);
      await wait;
      log.push(`${name} end`);
    };
    const first = gate();
    const second = gate();
    const one = order.run('c', op('1', first.opened));
    const two = order.run('c', op('2', second.opened));
    await order.run('d', op('x'));
    first.open();
    await one;
    await new Promise((resolve) => setImmediate(resolve));
    // the second runs now: a third waits for it, though the first is over
    const three = order.run('c', op('3'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(log, ['1 start', 'x start', 'x end', '1 end', '2 start']);
    second.open();
    await Promise.all([two, three]);
    assert.deepEqual(log.slice(5), ['2 end', '3 start', '3 end']);
  });
});
