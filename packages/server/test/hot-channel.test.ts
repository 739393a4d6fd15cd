/**
 * A channel with more subscribers on one node than the hub hands a delivery in one turn
 * (FAN_OUT_SHARE, hub.ts): its deliveries go out a share per turn, and what it stores meanwhile
 * waits for the pass to end. Over real sockets, with publishes coming while passes are under way,
 * subscribers attaching during them and others leaving, every subscriber must still get every
 * operation once, in order, live ones with consecutive sequence numbers (PROTOCOL.md §6.3).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Message, parseSerial } from '@mooring/protocol';
import { redisSkipReason, waitFor } from '@mooring/testkit';
import { FAN_OUT_SHARE } from '../src/hub.ts';
import { metricsText, metricValue, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const seq = (serial: string) => parseSerial(serial)!.seq;

/** Asserts `messages` are the channel's operations `1..total` once each, in order. */
function assertWhole(messages: Message[], total: number, who: string): void {
  const seqs = messages.map((m) => seq(m.version));
  assert.deepEqual(
    seqs,
    Array.from({ length: total }, (_, i) => i + 1),
    `${who}: every operation once, in order`,
  );
}

for (const kind of ['memory', 'sqlite', 'redis'] as const) {
  describe(
    `a hot channel on ${kind}: deliveries handed out a share per turn`,
    {
      skip: kind === 'redis' && redisSkipReason(),
    },
    () => {
      it('every subscriber gets every operation once, in order, while publishes, attaches and leaves cross the passes', async (t) => {
        const fixture = await startFixture(kind);
        t.after(() => fixture.close());
        const { url } = fixture.server;
        const channel = 'hot:room';
        const subscribers = await RawClient.connectMany(url, FAN_OUT_SHARE * 2 + 20);
        t.after(() => {
          for (const c of subscribers) c.kill();
        });
        await Promise.all(subscribers.map((c) => c.attach(channel, { start: true })));
        const leaving = subscribers.slice(-10);
        const staying = subscribers.slice(0, -10);

        const publisher = await RawClient.connect(url);
        t.after(() => publisher.kill());
        const total = 60;
        const late: RawClient[] = [];
        const acks: Promise<unknown>[] = [];
        for (let i = 1; i <= total; i++) {
          // not awaited one by one: publishes arrive while passes are under way
          acks.push(publisher.publish(channel, [{ name: 'n', data: `${i}` }]));
          if (i % 10 === 0) await new Promise((resolve) => setImmediate(resolve));
          if (i === 20) {
            // newcomers attach from the start during the passes: catch-up read + hand-over to live
            const more = await RawClient.connectMany(url, 10);
            late.push(...more);
            for (const c of more) void c.attach(channel, { start: true });
          }
          if (i === 30) for (const c of leaving) c.kill();
        }
        await Promise.all(acks);
        t.after(() => {
          for (const c of late) c.kill();
        });

        const everyone = [...staying, ...late];
        await waitFor(() => everyone.every((c) => c.messages(channel).length >= total), {
          timeout: 15_000,
          message: `every subscriber to hold the ${total} operations`,
        });
        for (const [i, c] of staying.entries()) assertWhole(c.messages(channel), total, `subscriber ${i}`);
        for (const [i, c] of late.entries()) assertWhole(c.messages(channel), total, `newcomer ${i}`);
        const metrics = await metricsText(fixture.server);
        const passes = metricValue(metrics, 'mooring_fanout_passes_total{what="messages"}') ?? 0;
        assert.ok(passes >= 1 && passes <= total, `${passes} deliveries handed out in shares, counted`);
      });
    },
  );
}
