/**
 * A publish that takes a lease, resent because its answer was lost, is a duplicate: nothing is
 * stored again. Its first attempt may have been stored by a node killed before it recorded the
 * lease (on Redis the lease is written after the store), and the run would then have no lease: if
 * its agent died too, nothing would ever end it. A resent op with a lease therefore takes the lease
 * again — unless the message changed since that op (an end after it must not be undone).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS, type OperationInput } from '@mooring/protocol';
import { waitFor } from '@mooring/testkit';
import { ChannelService, type PublishIdentity } from '../src/channel-service.ts';
import { LocalHub } from '../src/hub.ts';
import { LeaseManager } from '../src/leases.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { StoreError } from '../src/store/store.ts';

const CHANNEL = 'session:resend';
const agent: PublishIdentity = {
  keyName: 'test',
  viaToken: false,
  clientId: 'agent',
  access: { allows: () => true },
};

function service(t: { after(fn: () => unknown): void }): ChannelService {
  const s = new ChannelService(new MemoryStore(), new LocalHub(), DEFAULT_LIMITS);
  t.after(() => s.leases.close());
  return s;
}

const create: OperationInput = {
  id: 'run:1',
  name: 'ai.run',
  data: '',
  headers: { status: 'running' },
  lease: 200,
};

describe('a resent publish that takes a lease', () => {
  it('takes the lease again when the first attempt stored the message but not its lease', async (t) => {
    const s = service(t);
    const [first] = await s.publish(CHANNEL, [create], agent);
    s.leases.release(CHANNEL, first!.serial); // the node that stored it died before the lease was recorded
    const [again] = await s.publish(CHANNEL, [create], agent);
    assert.equal(again!.duplicate, true);
    assert.equal(again!.serial, first!.serial);
    assert.equal(s.leases.has(CHANNEL, first!.serial), true, 'the run has a lease again');
    // and it runs out like any lease: the run ends abandoned
    await waitFor(async () => {
      const page = await s.history(CHANNEL, { direction: 'forwards', limit: 1 });
      return page.messages[0]?.headers?.status === 'abandoned';
    });
  });

  it('takes no lease when the message changed since that op (the run ended after it)', async (t) => {
    const s = service(t);
    const [first] = await s.publish(CHANNEL, [create], agent);
    await s.publish(
      CHANNEL,
      [{ action: 'update', serial: first!.serial, id: 'end', headers: { status: 'done' }, lease: 0 }],
      agent,
    );
    const [again] = await s.publish(CHANNEL, [create], agent); // a late copy of the create
    assert.equal(again!.duplicate, true);
    assert.equal(s.leases.has(CHANNEL, first!.serial), false, 'an ended run takes no lease');
  });

  it('an expiry of a message that is gone (trimmed by retention, or never stored) has nothing to abandon', async (t) => {
    const s = service(t);
    assert.equal(await s.expireLease(CHANNEL, 'zzzzzzzzzzzz.0000000000000042'), true);
    assert.equal(await s.expireLease('session:never', 'zzzzzzzzzzzz.0000000000000001'), true);
  });

  it('an expiry whose write the store refuses fails (its lease retries it); one whose message was deleted since its read has nothing to abandon', async (t) => {
    const store = new MemoryStore();
    const s = new ChannelService(store, new LocalHub(), DEFAULT_LIMITS);
    t.after(() => s.leases.close());
    const [run] = await s.publish(CHANNEL, [{ ...create, lease: 60_000 }], agent);
    const append = store.append.bind(store);
    store.append = async () => {
      throw new StoreError('store_unavailable', 'the disk is full');
    };
    await assert.rejects(s.expireLease(CHANNEL, run!.serial), /the disk is full/);
    store.append = async () => {
      throw new StoreError('message_deleted', 'deleted since the read');
    };
    assert.equal(await s.expireLease(CHANNEL, run!.serial), true);
    store.append = append;
  });

  it('takes no lease for a resent op that had none', async (t) => {
    const s = service(t);
    const plain: OperationInput = { id: 'note:1', name: 'note', data: 'no run' };
    const [first] = await s.publish(CHANNEL, [plain], agent);
    const [again] = await s.publish(CHANNEL, [plain], agent);
    assert.equal(again!.duplicate, true);
    assert.equal(s.leases.has(CHANNEL, first!.serial), false, 'a resent plain op took a lease');
  });
});

/**
 * An end resent because its answer was lost (same publisher, same id) releases the run's lease
 * again: the first attempt may have been stored just before a crash lost its release. An op id
 * names one op of its publisher, though, whatever the resent frame says: a duplicate naming another
 * message must not end that message's run (a holder allowed to end only its own messages would
 * otherwise end anyone's with one of its own ids).
 */
describe('a resent end', () => {
  const mallory: PublishIdentity = { ...agent, viaToken: true, clientId: 'mallory' };
  const end = (serial: string, id = 'end'): OperationInput => ({
    action: 'append',
    serial,
    id,
    data: '',
    lease: 0,
  });

  it('releases its run again (the first release was lost)', async (t) => {
    const s = service(t);
    const [run] = await s.publish(CHANNEL, [{ ...create, lease: 60_000 }], agent);
    await s.publish(CHANNEL, [end(run!.serial)], agent);
    assert.equal(s.leases.has(CHANNEL, run!.serial), false);
    s.leases.hold(CHANNEL, run!.serial, undefined, 60_000, 'agent'); // the release that crash lost
    const [again] = await s.publish(CHANNEL, [end(run!.serial)], agent);
    assert.equal(again!.duplicate, true);
    assert.equal(s.leases.has(CHANNEL, run!.serial), false, 'the resent end released the run');
  });

  for (const [what, op] of [
    ['an end', (serial: string) => end(serial, 'mine')],
    ['a delete', (serial: string): OperationInput => ({ action: 'delete', serial, id: 'mine' })],
  ] as const) {
    it(`${what} whose id is one of the sender's other ops releases nothing`, async (t) => {
      const s = service(t);
      const [run] = await s.publish(CHANNEL, [{ ...create, lease: 60_000 }], agent);
      await s.publish(CHANNEL, [{ id: 'mine', name: 'note', data: 'hi' }], mallory);
      const [dup] = await s.publish(CHANNEL, [op(run!.serial)], mallory);
      assert.equal(dup!.duplicate, true);
      assert.equal(s.leases.has(CHANNEL, run!.serial), true, "another's run lost its lease");
      const page = await s.history(CHANNEL, { direction: 'forwards', limit: 1 });
      assert.equal(page.messages[0]?.action, 'create', 'the run is as its agent left it');
    });
  }
});

/**
 * Where leases live in Redis, an end first marks its run (`Leases.ending`), which holds the run's
 * expiry back until the end is released or the mark runs out. A mark written for an end the store
 * then refuses `not_owner` would let a holder of `append-own` keep anyone's dead run from ever being
 * marked abandoned, by sending such ends again and again: a holder that may end only its own
 * messages marks only those.
 */
describe('the mark of an end', () => {
  const marked: string[] = [];
  class MarkingLeases extends LeaseManager {
    async ending(_channel: string, serial: string): Promise<void> {
      marked.push(serial);
    }
  }
  const own = (clientId: string): PublishIdentity => ({
    ...agent,
    viaToken: true,
    clientId,
    access: { allows: (_channel, operation) => operation !== 'update-any' && operation !== 'delete-any' },
  });

  it('is written only for an end its publisher may make', async (t) => {
    const s = new ChannelService(
      new MemoryStore(),
      new LocalHub(),
      DEFAULT_LIMITS,
      undefined,
      undefined,
      (o) => new MarkingLeases(o),
    );
    t.after(() => s.leases.close());
    const [run] = await s.publish(CHANNEL, [{ ...create, lease: 60_000 }], agent);
    const end = (id: string): OperationInput => ({
      action: 'append',
      serial: run!.serial,
      id,
      data: '',
      lease: 0,
    });
    marked.length = 0;
    await assert.rejects(s.publish(CHANNEL, [end('not-mine')], own('mallory')), /created by another client/);
    await assert.rejects(
      s.publish(CHANNEL, [{ action: 'delete', serial: run!.serial, id: 'gone' }], own('mallory')),
    );
    assert.deepEqual(marked, [], 'a refused end marked the run');
    assert.equal(s.leases.has(CHANNEL, run!.serial), true);
    await s.publish(CHANNEL, [end('mine')], own('agent'));
    assert.deepEqual(marked, [run!.serial], "its creator's end marks it");
    assert.equal(s.leases.has(CHANNEL, run!.serial), false);
  });
});
