/**
 * A resume is checked against the log's epoch, then caught up page by page; a page of another epoch
 * (the log went on in a new one in between: a new Redis's first publish) is not sent, and the resume
 * is checked again from where it got (channel-attachment.ts). At most MAX_RECHECKS (3) times: past
 * that the catch-up is read as the store has it, so a store that keeps answering another epoch than
 * its info cannot hold an attach for ever.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { startServer } from '../src/index.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { RolledUpPage } from '../src/store/store.ts';
import { TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

/** A memory store whose catch-up reads (those with a byte bound) answer in an epoch of their own. */
class OtherEpochCatchUps extends MemoryStore {
  catchUps = 0;

  override async readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage> {
    const page = await super.readSince(channel, after, limit, maxBytes);
    if (maxBytes === undefined) return page;
    this.catchUps++;
    return { ...page, epoch: `${page.epoch}-next` };
  }
}

it(
  'a resume whose catch-up keeps reading another epoch is checked again three times, then caught up as the store has it',
  { timeout: 20_000 },
  async (t) => {
    const store = new OtherEpochCatchUps();
    const server = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], store });
    t.after(() => server.close());
    const writer = await RawClient.connect(server.url, { clientId: 'writer' });
    t.after(() => writer.close());
    const ack = await writer.publish('ch', [{ data: 'a' }, { data: 'b' }, { data: 'c' }]);
    const [a, b, c] = ack.results.map((r) => r.serial);

    const reader = await RawClient.connect(server.url, { clientId: 'reader' });
    t.after(() => reader.close());
    const attached = await reader.attach('ch', { from: a! });
    assert.equal(store.catchUps, 4, 'the first read and three rechecks, the last one sent as read');
    assert.equal(attached.resumed, false, 'not a resume of the log it was checked against');
    assert.equal(attached.reason, 'epoch_changed');
    assert.equal(attached.position, c);
    assert.deepEqual(
      reader.messages('ch').map((m) => [m.serial, m.data]),
      [
        [b, 'b'],
        [c, 'c'],
      ],
    );
  },
);
