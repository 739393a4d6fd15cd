/**
 * A lease can run out more than once on the same message (PROTOCOL.md §7.1): an AI run abandoned by a
 * crashed agent, resumed in place by the restarted agent (an update with a new lease), then abandoned
 * again when that agent crashes too. Found by the soak (`npm run soak`): the second expiry reused the
 * first one's op id, was acknowledged as a duplicate and never stored, so the run showed "running"
 * forever.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { waitFor } from '@mooring/testkit';
import { type Fixture, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const updates = (c: RawClient, channel: string, status: string): Message[] =>
  c.messages(channel).filter((m) => m.action === 'update' && m.headers?.status === status);

describe('a lease that runs out twice', () => {
  let fx: Fixture;
  before(async () => {
    fx = await startFixture('sqlite');
  });
  after(() => fx.close());

  it('abandons a resumed message again when its publisher vanishes again', async () => {
    const channel = 'session:lease-twice';
    const watcher = await RawClient.connect(fx.server.url);
    await watcher.attach(channel);

    const first = await RawClient.connect(fx.server.url, { clientId: 'agent' });
    const ack = await first.publish(channel, [
      { id: 'run:r1', name: 'ai.run', data: '', headers: { status: 'running' }, lease: 200 },
    ]);
    const serial = ack.results[0]!.serial;
    first.kill();
    await waitFor(() => updates(watcher, channel, 'abandoned').length === 1, { timeout: 5000 });

    // The restarted agent resumes the run in place: running again, with a new lease.
    const second = await RawClient.connect(fx.server.url, { clientId: 'agent' });
    await second.publish(channel, [
      { action: 'update', serial, id: 'run:r1:resumed:1', headers: { status: 'running' }, lease: 200 },
    ]);
    await waitFor(() => updates(watcher, channel, 'running').length === 1, { timeout: 5000 });
    second.kill();
    await waitFor(() => updates(watcher, channel, 'abandoned').length === 2, {
      timeout: 5000,
      message: 'the second lease never ran out: the run shows "running" forever',
    });
    const expiries = updates(watcher, channel, 'abandoned');
    assert.notEqual(expiries[0]!.version, expiries[1]!.version);
    await watcher.close();
  });
});
