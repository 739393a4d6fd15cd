// An attach the server refuses for a moment — its store cannot be reached (Redis restarting), so the
// catch-up cannot be read: `store_unavailable`, retryable — is sent again with backoff, the channel
// still `attaching`, and attaches once the store is back. Found by the soak with Redis killed: a
// user whose channel re-attached during a restart was left `failed`, its conversation frozen.
// A real server on a real redis-server, SIGKILLed and restarted.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { ChannelState } from '../src/channel.ts';
import { client, connected, realServer, waitFor } from './helpers/real-server.ts';

it('an attach refused while Redis is down is sent again, and attaches once Redis is back', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis({ appendonly: 'always' });
  t.after(() => redis.close());
  const server = await realServer(t, { store: { kind: 'redis', url: redis.url } });
  const writer = client(t, server.url, { clientId: 'writer' });
  const reader = client(t, server.url, { clientId: 'reader', initialRetryDelay: 50 });
  await Promise.all([connected(writer), connected(reader)]);
  await writer.channels.get('session:retry').publish('msg', 'before');

  await redis.stop('SIGKILL');
  const channel = reader.channels.get('session:retry', { start: true });
  const states: ChannelState[] = [];
  channel.on('statechange', ({ current }) => states.push(current));
  const seen: Message[] = [];
  const attached = channel.subscribe((m) => seen.push(m));
  // refused meanwhile (the catch-up cannot be read), and sent again: still attaching, not failed
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(channel.state, 'attaching');

  await redis.restart();
  await attached;
  assert.equal(channel.state, 'attached');
  assert.ok(!states.includes('failed'), `went through ${states.join(' → ')}`);
  await waitFor(() => seen.some((m) => m.data === 'before'), { message: 'the catch-up never came' });
  await writer.channels.get('session:retry').publish('msg', 'after');
  await waitFor(() => seen.some((m) => m.data === 'after'), { message: 'not live after the retry' });
});
