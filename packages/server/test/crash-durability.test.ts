/**
 * "Ack means stored" across a real crash: `kill -9` a `mooring serve` process (SQLite store) while
 * publishers stream creates and appends, restart it on the same data dir, and check that every
 * acknowledged operation is there exactly once, and every operation that was in flight (sent, never
 * acknowledged) is there once or not at all. Then retry everything sent with the same ids: dedup makes
 * the retry exactly-once in effect. Two crashes: a `kill -9` from outside at an arbitrary moment, and
 * one the server inflicts on itself right after a COMMIT (a test preload), so that some operations
 * are certainly stored without their acknowledgement having been sent: those must be stored once, and
 * their retries answered as duplicates. Every wait is bounded and every child is killed in `finally`,
 * so a failure fails fast instead of hanging.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { OperationInput } from '@mooring/protocol';
import { fold, RawClient } from './support/raw-client.ts';
import { type ServerProcess, spawnServer } from './support/server-process.ts';

const PRELOAD = pathToFileURL(join(import.meta.dirname, 'support', 'crash-preload.ts')).href;
/** The self-inflicted crash: after this many COMMITs (a few hundred acknowledged appends). */
const CRASH_AT_COMMIT = 120;

/** A bound on every wait: reached only when the test fails. */
const BOUND_MS = 20_000;

async function until(what: string, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + BOUND_MS;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function bounded<T>(what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), BOUND_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The numbers appended to a publisher's message, in stored order. */
function appended(state: Map<string, { data?: unknown }>, serial: string): number[] {
  return String(state.get(serial)?.data ?? '')
    .split(',')
    .filter(Boolean)
    .map(Number);
}

describe('crash durability (kill -9)', () => {
  for (const crash of ['from outside', 'right after a commit'] as const)
    it(`keeps every acknowledged operation, once; an unacknowledged one once or not at all; retries dedup after restart (killed ${crash})`, async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'mooring-crash-'));
      const channel = 'session:crash';
      const children: ServerProcess[] = [];
      const clients: RawClient[] = [];
      try {
        const first = await spawnServer(
          ['--store', 'sqlite', '--data', dir],
          crash === 'from outside'
            ? {}
            : {
                // keep the inherited options (the source-condition resolution of the workspace packages)
                NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`.trim(),
                MOORING_TEST_CRASH: `commit:${CRASH_AT_COMMIT}`,
              },
        );
        children.push(first);
        const publishers = await Promise.all(
          [0, 1, 2].map((i) => RawClient.connect(first.url, { clientId: `p${i}` })),
        );
        clients.push(...publishers);
        const acked = new Map<string, string>(); // op id -> serial
        const sent = new Map<string, OperationInput>();
        const serials: string[] = [];
        let stop = false;
        const streams = publishers.map(async (p, i) => {
          let n = 0;
          const created = await p.publish(channel, [{ id: `p${i}-msg`, data: '' }]);
          const serial = created.results[0]!.serial;
          serials[i] = serial;
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
        if (crash === 'from outside') {
          await until('600 acknowledged appends', () => acked.size >= 600);
          first.child.kill('SIGKILL');
        }
        assert.equal(await bounded('the first server to die', first.exited), 'SIGKILL');
        stop = true;
        await bounded('the publishers to see the connection end', Promise.all(streams));
        const inFlight = [...sent.keys()].filter((id) => !acked.has(id));
        assert.ok(inFlight.length > 0, 'the kill landed with operations sent and not acknowledged');

        const second = await spawnServer(['--store', 'sqlite', '--data', dir]);
        children.push(second);
        const reader = await RawClient.connect(second.url);
        clients.push(reader);
        await bounded('the catch-up', reader.attach(channel, { start: true }));
        const before = fold(reader.messages(channel));
        let storedUnacked = 0;
        for (const [i, serial] of serials.entries()) {
          const values = appended(before, serial);
          const mine = (id: string) => id.startsWith(`p${i}:`);
          assert.equal(new Set(values).size, values.length, `publisher ${i}: no append stored twice`);
          assert.deepEqual(
            values,
            [...values].sort((a, b) => a - b),
            `publisher ${i}: appends in order`,
          );
          for (const id of [...acked.keys()].filter(mine))
            assert.ok(values.includes(Number(id.split(':')[1])), `acknowledged ${id} survived the crash`);
          for (const v of values) assert.ok(sent.has(`p${i}:${v}`), `publisher ${i}: ${v} was sent`);
          storedUnacked += inFlight.filter(
            (id) => mine(id) && values.includes(Number(id.split(':')[1])),
          ).length;
        }
        // every in-flight op is stored once (no duplicate, checked above) or not at all: what a retry fixes
        assert.ok(storedUnacked <= inFlight.length);
        if (crash === 'right after a commit')
          assert.ok(
            storedUnacked > 0,
            'the crash came after a commit, before its acks: some ops are stored unacked',
          );
        t.diagnostic(
          `${acked.size} acked, ${inFlight.length} in flight at the kill, ${storedUnacked} of those stored`,
        );

        // each publisher retries everything it sent (acked or not) with the same ids, as the same
        // identity (op ids are unique per publisher, PROTOCOL.md §7): nothing is stored twice
        const retriers = await Promise.all(
          [0, 1, 2].map((i) => RawClient.connect(second.url, { clientId: `p${i}` })),
        );
        clients.push(...retriers);
        const retried = await bounded(
          'the retries',
          Promise.all(
            [...sent.entries()].map(([id, op]) => {
              const i = Number(id.slice(1, id.indexOf(':')));
              return retriers[i]!.publish(channel, [op]);
            }),
          ),
        );
        const duplicates = retried.filter((ack) => ack.results[0]!.duplicate).length;
        assert.equal(
          duplicates,
          acked.size + storedUnacked,
          'exactly the stored ops (acked, and in-flight ones that made it) are recognised as duplicates',
        );
        const after = await RawClient.connect(second.url);
        clients.push(after);
        await bounded('the second catch-up', after.attach(channel, { start: true }));
        const state = fold(after.messages(channel));
        for (const [i, serial] of serials.entries()) {
          const values = appended(state, serial);
          assert.equal(new Set(values).size, values.length, `publisher ${i}: retries were deduplicated`);
          const sentCount = [...sent.keys()].filter((id) => id.startsWith(`p${i}:`)).length;
          assert.equal(values.length, sentCount, `publisher ${i}: every sent append stored exactly once`);
        }
        await Promise.all([reader.close(), ...retriers.map((r) => r.close()), after.close()]);
        second.child.kill('SIGTERM');
        assert.equal(await bounded('a clean shutdown', second.exited), 0, 'SIGTERM is a clean shutdown');
      } finally {
        for (const c of clients) c.kill();
        for (const child of children) child.child.kill('SIGKILL');
        await Promise.all(children.map((c) => c.exited));
        await rm(dir, { recursive: true, force: true });
      }
    });
});
