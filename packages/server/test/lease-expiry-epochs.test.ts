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
