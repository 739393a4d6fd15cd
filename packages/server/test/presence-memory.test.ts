/**
 * Presence memory follows its budgets (PROTOCOL.md §6.4, §10), over real WebSockets: member data is
 * kept as its JSON text (what `maxPresenceBytesPerConnection` counts), not as parsed objects, and
 * what dropped connections keep (in their grace, then for a recovery) is bounded per clientId.
 *
 * The heap is measured after full collections (`gc`, exposed at run time): a JSON array of 21,000
 * `{}` is 63 KB as text and ~1.3 MB as objects, so keeping the objects shows at once.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { PresenceFrame, ServerFrame } from '@mooring/protocol';
import { PresenceService } from '../src/presence.ts';
import { DROPPED_MEMBER_COST } from '../src/presence-budget.ts';
import { rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const data = new Array(21_000).fill({});
const dataBytes = Buffer.byteLength(JSON.stringify(data)); // 63,001
const CHANNELS = 4;

async function heapUsed(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(20);
  }
  return process.memoryUsage().heapUsed;
}

/** `count` connections of `mallory`, each entering CHANNELS channels with the 63 KB data. */
async function enterMany(url: string, count: number): Promise<RawClient[]> {
  const clients = await Promise.all(
    Array.from({ length: count }, () => RawClient.connect(url, { clientId: 'mallory' })),
  );
  for (const client of clients)
    for (let i = 0; i < CHANNELS; i++) {
      const answer = await client.request({ type: 'presence', channel: `p:${i}`, action: 'enter', data });
      assert.equal(answer.type, 'ack', JSON.stringify(answer).slice(0, 200));
    }
  return clients;
}

async function until(test: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !test(); waited += 10) {
    if (waited > 5_000) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const isEnterOf = (connectionId: string) => (f: ServerFrame) =>
  f.type === 'presence' && f.action === 'enter' && f.member.connectionId === connectionId;

describe('presence memory', () => {
  it('keeps member data as its JSON: 20 connections × 4 enters of 63 KB grow the heap by about their JSON, not 20×', async () => {
    // one clientId's 20 members in each channel: the data is what is measured, not the cap
    const fx = await startFixture('memory', { limits: { maxPresenceMembersPerClient: 20 } });
    try {
      const baseline = await heapUsed();
      const clients = await enterMany(fx.server.url, 20);
      const grown = (await heapUsed()) - baseline;
      const json = 20 * CHANNELS * dataBytes; // 4.8 MiB
      assert.ok(
        grown < 2 * json + 4 * MiB,
        `heap grew ${(grown / MiB).toFixed(1)} MiB for ${(json / MiB).toFixed(1)} MiB of presence JSON`,
      );

      // the wire format is unchanged: what JSON.stringify of the member objects would write
      const watcher = await RawClient.connect(fx.server.url, { clientId: 'watcher' });
      const texts: string[] = [];
      watcher.ws.on('message', (raw) => texts.push(raw.toString()));
      await watcher.attach('p:0');
      const sync = await watcher.next((f) => f.type === 'presence' && f.action === 'sync');
      assert.ok(sync.type === 'presence' && sync.action === 'sync');
      assert.equal(sync.members.length, 20);
      assert.deepEqual(Object.keys(sync.members[0]!), ['clientId', 'connectionId', 'timestamp', 'data']);
      assert.deepEqual(sync.members[0]!.data, data);
      const agent = await RawClient.connect(fx.server.url, { clientId: 'agent' });
      await agent.request({ type: 'presence', channel: 'p:0', action: 'enter' });
      await agent.request({ type: 'presence', channel: 'p:0', action: 'update', data: { typing: 'é ✓' } });
      await agent.request({ type: 'presence', channel: 'p:0', action: 'leave' });
      await watcher.next((f) => f.type === 'presence' && f.action === 'leave');
      const frames = texts.filter((t) => t.startsWith('{"type":"presence"'));
      assert.equal(frames.length, 4, 'sync, enter, update, leave');
      for (const text of frames) assert.equal(text, JSON.stringify(JSON.parse(text)));
      const events = frames.slice(1).map((t) => JSON.parse(t) as PresenceFrame);
      assert.deepEqual(
        events.map((f) => (f.action === 'sync' ? [] : [f.action, Object.keys(f.member), f.member.data])),
        [
          ['enter', ['clientId', 'connectionId', 'timestamp'], undefined],
          ['update', ['clientId', 'connectionId', 'timestamp', 'data'], { typing: 'é ✓' }],
          ['leave', ['clientId', 'connectionId', 'timestamp', 'data'], { typing: 'é ✓' }],
        ],
      );
      const listed = await rest(fx.server, '/v1/channels/p:1/presence');
      assert.equal((listed.body.members as Array<{ data: unknown }>).length, 20);
      assert.deepEqual((listed.body.members as Array<{ data: unknown }>)[0]!.data, data);
      await Promise.all([...clients, watcher, agent].map((c) => c.close()));
    } finally {
      await fx.close();
    }
  });

  it("the server bounds dropped connections by what a clientId's live ones may hold", async () => {
    for (const [limits, cap] of [
      [{ maxConnectionsPerClient: 3, maxPresenceBytesPerConnection: 1000 }, 3000],
      [{ maxConnectionsPerClient: 0, maxPresenceBytesPerConnection: 1000 }, 100 * 1000],
    ] as const) {
      let given: number | undefined;
      const fx = await startFixture('memory', {
        limits,
        presence: (_store, options) => {
          given = options.maxDroppedBytesPerClient;
          return new PresenceService(options);
        },
      });
      await fx.close();
      assert.equal(given, cap, JSON.stringify(limits));
    }
  });

  it('dropped connections keep at most maxDroppedBytesPerClient per clientId; the newest still enters again on recovery', async () => {
    const cap = MiB; // four dropped connections' worth here
    let service: PresenceService | undefined;
    const fx = await startFixture('memory', {
      presenceGrace: 50,
      presence: (_store, options) => {
        service = new PresenceService({ ...options, maxDroppedBytesPerClient: cap });
        return service;
      },
    });
    try {
      const baseline = await heapUsed();
      const dropped: RawClient[] = [];
      // connect, enter, drop without a close, three times: 30 connections, 7.2 MiB of JSON, then one more
      for (let round = 0; round < 3; round++) {
        const clients = await enterMany(fx.server.url, 10);
        for (const client of clients) {
          client.kill();
          dropped.push(client);
        }
        await until(() => fx.server.connections === 0, 'the server to see the drops');
        await sleep(150); // past the grace: their members left, kept for a recovery
      }
      // the newest dropped connection, on its own (the server sees drops made together in any order)
      const [newest] = await enterMany(fx.server.url, 1);
      newest!.kill();
      await until(() => fx.server.connections === 0, 'the server to see the drop');
      await sleep(150);
      const grown = (await heapUsed()) - baseline;
      assert.ok(
        grown < 2 * cap + 6 * MiB,
        `heap grew ${(grown / MiB).toFixed(1)} MiB with dropped connections bounded to ${cap / MiB} MiB`,
      );
      const retained = service!.retained();
      assert.equal(retained.members, 0, 'every member left after the grace');
      assert.ok(retained.droppedCost <= cap, JSON.stringify(retained));
      assert.ok(retained.departedBytes <= cap, JSON.stringify(retained));
      const perConnection = CHANNELS * (dataBytes + DROPPED_MEMBER_COST);
      assert.equal(retained.dropped, Math.floor(cap / perConnection), 'the newest that fit are kept');

      const watcher = await RawClient.connect(fx.server.url, { clientId: 'watcher' });
      await watcher.attach('p:0');
      // the oldest was let go: it recovers, without its presence; the newest enters again, with its data
      const oldest = dropped[0]!;
      const first = await RawClient.connect(fx.server.url, {
        clientId: 'mallory',
        recover: oldest.connected.connectionKey,
      });
      assert.equal(first.connected.resumed, true);
      const last = await RawClient.connect(fx.server.url, {
        clientId: 'mallory',
        recover: newest!.connected.connectionKey,
      });
      assert.equal(last.connected.resumed, true);
      const entered = await watcher.next(isEnterOf(newest!.connected.connectionId));
      assert.ok(entered.type === 'presence' && entered.action === 'enter');
      assert.equal(entered.member.clientId, 'mallory');
      assert.deepEqual(entered.member.data, data);
      const members = (await rest(fx.server, '/v1/channels/p:3/presence')).body.members as Array<{
        connectionId: string;
      }>;
      assert.deepEqual(
        members.map((m) => m.connectionId),
        [newest!.connected.connectionId],
      );
      assert.equal(service!.retained().bytes, CHANNELS * dataBytes);
      await Promise.all([watcher.close(), first.close(), last.close()]);
      assert.equal(service!.retained().dropped, Math.floor(cap / perConnection) - 1);
    } finally {
      await fx.close();
    }
  });
});
