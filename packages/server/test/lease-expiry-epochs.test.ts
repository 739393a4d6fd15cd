/**
 * A lease's expiry finds its message by the serial the lease was taken under; when that serial is of
 * an epoch before the log's current one (a new Redis), by the same sequence in the current epoch, as
 * far as the log says that epoch was kept (ChannelService.expireLease, `#currentSerial`). A serial of
 * an epoch the log does not remember (its meta lost, a flushed Redis, more new epochs than it keeps),
 * or of a channel the store no longer has, names nothing: the message now at that sequence is
 * another run's, and is left alone.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DEFAULT_LIMITS, formatSerial, newEpoch } from '@mooring/protocol';
import { Capability } from '../src/capabilities.ts';
import { ChannelService } from '../src/channel-service.ts';
import { LocalHub } from '../src/hub.ts';
import { MemoryStore } from '../src/store/memory-store.ts';

const OPTS = { maxMessageSize: 1024 };

it('an expiry under a serial of an epoch the log does not remember, or of a channel that is gone, marks nothing', async (t) => {
  const store = new MemoryStore();
  const service = new ChannelService(store, new LocalHub(), DEFAULT_LIMITS);
  t.after(() => service.leases.close());
  const { epoch } = await store.append(
    'run:other',
    [{ action: 'create', publisher: '', id: 'run', data: 'x', headers: { status: 'running' } }],
    OPTS,
  );
  // an epoch made before this log's, which the log does not name (no previous, no older)
  const forgotten = newEpoch(Date.now() - 60_000);
  assert.notEqual(forgotten, epoch);
  assert.equal(await service.expireLease('run:other', formatSerial(forgotten, 1)), true);
  const [message] = (await store.history('run:other', { direction: 'forwards', limit: 1 })).messages;
  assert.equal(message?.headers?.status, 'running', 'the run now at that sequence is not marked abandoned');
  assert.equal(
    await service.expireLease('run:gone', formatSerial(forgotten, 1)),
    true,
    'a channel with no log',
  );
});

it("an end releases the message's lease taken under the serial of an earlier epoch that kept it, never one under a sequence that epoch did not keep", async (t) => {
  // the log went on in a new epoch from `old`, keeping old's messages up to sequence 3 (a new Redis)
  const old = newEpoch(Date.now() - 60_000);
  class GoneOnStore extends MemoryStore {
    override async info(channel: string) {
      const info = await super.info(channel);
      return info && { ...info, previous: { epoch: old, through: 3 } };
    }
  }
  const store = new GoneOnStore();
  const service = new ChannelService(store, new LocalHub(), DEFAULT_LIMITS);
  t.after(() => service.leases.close());
  const creates = [1, 2, 3, 4, 5].map((n) => ({
    action: 'create' as const,
    publisher: 'agent',
    id: `m${n}`,
    data: '',
  }));
  const { epoch } = await store.append('run:aliases', creates, OPTS);
  assert.notEqual(epoch, old);
  const identity = { keyName: 'k', viaToken: false, clientId: 'agent', access: Capability.all() };
  // leases taken before the new Redis: on message 2 (kept: it is message 2 of this epoch too), and
  // on the old log's message 5, which the new Redis lost (this epoch's 5 is another message)
  service.leases.hold('run:aliases', formatSerial(old, 2), 'conn-1', 60_000, 'agent');
  service.leases.hold('run:aliases', formatSerial(old, 5), 'conn-2', 60_000, 'other');
  for (const n of [2, 5])
    await service.publish(
      'run:aliases',
      [{ action: 'append', id: `end${n}`, serial: formatSerial(epoch, n), data: '', lease: 0 }],
      identity,
    );
  assert.equal(service.leases.has('run:aliases', formatSerial(old, 2)), false, 'the kept message ended');
  assert.equal(
    service.leases.has('run:aliases', formatSerial(old, 5)),
    true,
    "the lost message's lease was released by the end of another message at its sequence",
  );
});
