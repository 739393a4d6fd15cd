/**
 * What an attachment writes for the hub's deliveries (channel-attachment.ts `#deliver`, `#write`): a
 * read-back page (a Redis hub's repair, PROTOCOL.md §4.3) is sent rolled up from the position before
 * it, every page but its last marked `more`; a live delivery that overlaps what was sent is cut to
 * what follows the position and is not rolled up. The hub is a LocalHub the test publishes to, as
 * the Redis hub does for a read-back.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Message, ServerFrame } from '@mooring/protocol';
import { LocalHub } from '../src/hub.ts';
import { startServer } from '../src/index.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

type MessagesFrame = Extract<ServerFrame, { type: 'messages' }>;

it('a read-back in pages is sent rolled up, `more` on all but its last; a live delivery overlapping it is cut and not rolled up', async (t) => {
  const store = new MemoryStore();
  const hub = new LocalHub();
  const server = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], store, hub });
  t.after(() => server.close());
  const reader = await RawClient.connect(server.url, { clientId: 'reader' });
  t.after(() => reader.close());
  await reader.attach('ch');
  const writer = await RawClient.connect(server.url, { clientId: 'writer' });
  t.after(() => writer.close());
  const m1 = (await writer.publish('ch', [{ data: 'm1' }])).results[0]!.serial;
  await reader.next((f) => f.type === 'messages' && f.messages.some((m) => m.serial === m1));

  // stored without a delivery (a batch the bus lost), then read back in two pages
  const opts = { maxMessageSize: 1024 };
  await store.append(
    'ch',
    ['m2', 'm3', 'm4'].map((data) => ({ action: 'create' as const, publisher: '', id: data, data })),
    opts,
  );
  const stored = (await store.readSince('ch', m1, 10)).messages;
  const [m2, m3, m4] = stored as [Message, Message, Message];
  hub.publish('ch', [m2], true, true);
  hub.publish('ch', [m3], true);
  // then live, the last batch again with what follows it: only m4 is new to the reader
  hub.publish('ch', [m3, m4]);
  await reader.next((f) => f.type === 'messages' && f.messages.some((m) => m.serial === m4.serial));

  const frames = reader.frames.filter((f): f is MessagesFrame => f.type === 'messages').slice(1);
  assert.deepEqual(
    frames.map((f) => [f.messages.map((m) => m.data), f.rolledUp ?? false, f.more ?? false, f.after]),
    [
      [['m2'], true, true, m1],
      [['m3'], true, false, m2.serial],
      [['m4'], false, false, undefined],
    ],
  );
});
