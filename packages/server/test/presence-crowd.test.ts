/**
 * Presence on a crowded channel (more subscribers on the node than FAN_OUT_SHARE), over real
 * sockets: changes go out in passes, and of one member's changes made during a pass only the last
 * is written (presence-fan-out.ts). Whatever was skipped, every subscriber, and every newcomer
 * attaching in the middle, must end with the channel's set as the server holds it (PROTOCOL.md §6.4).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ServerFrame } from '@mooring/protocol';
import { redisSkipReason, waitFor } from '@mooring/testkit';
import { FAN_OUT_SHARE } from '../src/hub.ts';
import { metricsText, metricValue, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

type PresenceFrame = Extract<ServerFrame, { type: 'presence' }>;

/** A subscriber's view of `channel`'s set from its frames: connectionId → data (§6.4). */
function presenceSet(client: RawClient, channel: string): Map<string, unknown> {
  const set = new Map<string, unknown>();
  for (const f of client.frames) {
    if (f.type !== 'presence' || f.channel !== channel) continue;
    const frame = f as PresenceFrame & {
      members?: Array<{ connectionId: string; data?: unknown }>;
      member?: { connectionId: string; data?: unknown };
    };
    if (frame.action === 'sync') {
      set.clear();
      for (const m of frame.members ?? []) set.set(m.connectionId, m.data);
    } else if (frame.action === 'leave') set.delete(frame.member!.connectionId);
    else set.set(frame.member!.connectionId, frame.member!.data);
  }
  return set;
}

/** `count` clients, each with a clientId of its own (presence needs one). */
const connectMany = (url: string, count: number, from = 0) =>
  RawClient.connectMany(url, count, (i) => ({ clientId: `c${from + i}` }));

const text = (set: Map<string, unknown>) => JSON.stringify([...set].sort());

for (const kind of ['memory', 'redis'] as const) {
  describe(`presence on a crowded channel (${kind})`, { skip: kind === 'redis' && redisSkipReason() }, () => {
    it('every subscriber, and every newcomer, ends with the set the server holds, however many changes a pass skipped', async (t) => {
      const fixture = await startFixture(kind);
      t.after(() => fixture.close());
      const { url } = fixture.server;
      const channel = 'crowd:presence';
      const subscribers = await connectMany(url, FAN_OUT_SHARE + 60);
      const members = await connectMany(url, 3, 1_000);
      const late: RawClient[] = [];
      t.after(() => {
        for (const c of [...subscribers, ...members, ...late]) c.kill();
      });
      await Promise.all(subscribers.map((c) => c.attach(channel)));

      // three members: each enters, then changes 30 times as fast as it can send; the second leaves
      const answers: Promise<ServerFrame>[] = [];
      for (const [i, m] of members.entries())
        answers.push(m.request({ type: 'presence', channel, action: 'enter', data: { i, n: 0 } }));
      for (let n = 1; n <= 30; n++) {
        for (const [i, m] of members.entries())
          answers.push(m.request({ type: 'presence', channel, action: 'update', data: { i, n } }));
        if (n === 10) {
          late.push(...(await connectMany(url, 5, 2_000)));
          for (const c of late) void c.attach(channel);
        }
      }
      answers.push(members[1]!.request({ type: 'presence', channel, action: 'leave' }));
      for (const answer of await Promise.all(answers))
        assert.equal(answer.type, 'ack', `every presence frame taken: ${JSON.stringify(answer)}`);

      const held = await fetch(`${url}/v1/channels/${channel}/presence`, {
        headers: { authorization: 'Bearer test:secret' },
      });
      assert.equal(held.status, 200);
      const server = new Map<string, unknown>();
      const body = (await held.json()) as { members: Array<{ connectionId: string; data?: unknown }> };
      for (const m of body.members) server.set(m.connectionId, m.data);
      assert.equal(server.size, 2, 'two members stay');
      for (const [connectionId, data] of server)
        assert.equal((data as { n: number }).n, 30, `${connectionId} holds its last change`);

      const everyone = [...subscribers, ...late];
      await waitFor(() => everyone.every((c) => text(presenceSet(c, channel)) === text(server)), {
        timeout: 15_000,
        message: `every subscriber to hold the server's set ${text(server)}`,
      });
      // the crowd was written fewer frames than changes were made (3 enters + 90 updates + 1 leave)
      const written = subscribers[subscribers.length - 1]!.frames.filter(
        (f) => f.type === 'presence' && f.action !== 'sync',
      ).length;
      assert.ok(written < 94, `the last subscriber was written ${written} changes, fewer than the 94 made`);
      const metrics = await metricsText(fixture.server);
      const passes = metricValue(metrics, 'mooring_fanout_passes_total{what="presence"}') ?? 0;
      const merged = metricValue(metrics, 'mooring_presence_changes_merged_total') ?? 0;
      assert.ok(passes >= 1, `${passes} presence passes counted`);
      assert.equal(
        merged + written,
        94,
        `the changes merged (${merged}) and those written (${written}) are all 94`,
      );
    });
  });
}
