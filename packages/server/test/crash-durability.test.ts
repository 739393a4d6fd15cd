/**
 * "Ack means stored" across a real crash: `kill -9` a `mooring serve` process (SQLite store) while
 * publishers stream creates and appends, restart it on the same data dir, and check that every
 * acknowledged operation is there exactly once. Then retry the unacknowledged ones with their ids:
 * dedup makes the retry exactly-once in effect.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { OperationInput } from '@mooring/protocol';
import { fold, RawClient } from './support/raw-client.ts';
import { spawnServer } from './support/server-process.ts';

describe('crash durability (kill -9)', () => {
  it('keeps every acknowledged operation, once, and dedups retries after restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-crash-'));
    const channel = 'session:crash';
    try {
      const first = await spawnServer(['--store', 'sqlite', '--data', dir]);
      const publishers = await Promise.all(
        [0, 1, 2].map((i) => RawClient.connect(first.url, { clientId: `p${i}` })),
      );
      const acked = new Map<string, string>(); // op id -> serial
      const sent = new Map<string, OperationInput>();
      let stop = false;
      const streams = publishers.map(async (p, i) => {
        let n = 0;
        const created = await p.publish(channel, [{ id: `p${i}-msg`, data: '' }]);
        acked.set(`p${i}-msg`, created.results[0]!.serial);
        const serial = created.results[0]!.serial;
        while (!stop) {
          // keep several publishes in flight so that the kill lands between send and ack
          const batch = Array.from({ length: 8 }, () => {
            const op: OperationInput = { action: 'append', serial, id: `p${i}:${n}`, data: `${n++},` };
            sent.set(op.id!, op);
            return p
              .publish(channel, [op])
              .then((ack) => acked.set(op.id!, ack.results[0]!.serial))
              .catch(() => {});
          });
          await Promise.race([Promise.all(batch), p.closed()]);
          if (p.closeCode !== undefined) return;
        }
      });
      while (acked.size < 600) await new Promise((r) => setTimeout(r, 2));
      first.child.kill('SIGKILL');
      stop = true;
      assert.equal(await first.exited, 'SIGKILL');
      await Promise.all(streams);
      for (const p of publishers) p.kill();

      const second = await spawnServer(['--store', 'sqlite', '--data', dir]);
      const reader = await RawClient.connect(second.url);
      await reader.attach(channel, { start: true });
      const before = fold(reader.messages(channel));
      for (const [i] of publishers.entries()) {
        const serial = acked.get(`p${i}-msg`)!;
        const text = String(before.get(serial)?.data ?? '');
        const values = text.split(',').filter(Boolean).map(Number);
        assert.equal(new Set(values).size, values.length, `publisher ${i}: no append stored twice`);
        assert.deepEqual(
          values,
          [...values].sort((a, b) => a - b),
          `publisher ${i}: appends in order`,
        );
        for (const [id] of acked) {
          if (!id.startsWith(`p${i}:`)) continue;
          assert.ok(values.includes(Number(id.split(':')[1])), `acknowledged ${id} survived the crash`);
        }
      }

      // retry everything that was sent (acked or not) with the same ids, as the same publisher (ids
      // are unique per publisher, PROTOCOL.md §7): nothing is stored twice
      const retriers = await Promise.all(
        publishers.map((_, i) => RawClient.connect(second.url, { clientId: `p${i}` })),
      );
      for (const op of sent.values())
        await retriers[Number(op.id!.slice(1, op.id!.indexOf(':')))]!.publish(channel, [op]);
      const after = await RawClient.connect(second.url);
      await after.attach(channel, { start: true });
      const state = fold(after.messages(channel));
      for (const [i] of publishers.entries()) {
        const values = String(state.get(acked.get(`p${i}-msg`)!)?.data ?? '')
          .split(',')
          .filter(Boolean)
          .map(Number);
        assert.equal(new Set(values).size, values.length, `publisher ${i}: retries were deduplicated`);
        const sentCount = [...sent.keys()].filter((id) => id.startsWith(`p${i}:`)).length;
        assert.equal(values.length, sentCount, `publisher ${i}: every sent append stored exactly once`);
      }
      await Promise.all([reader.close(), ...retriers.map((r) => r.close()), after.close()]);
      second.child.kill('SIGTERM');
      assert.equal(await second.exited, 0, 'SIGTERM is a clean shutdown');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
