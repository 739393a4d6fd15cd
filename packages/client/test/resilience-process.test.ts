// Resilience across a server crash (ARCHITECTURE.md §4.1–4.2): a real `mooring serve` process with SQLite is
// killed with SIGKILL mid-stream and started again on the same data dir and address. Subscribers
// resume from their positions (same log, same epoch: no continuity lost), and publishes that were
// stored but never acknowledged are resent with the same ids and stored once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AttachResult, ContinuityLost } from '../src/channel.ts';
import { client, proxyTo, waitFor } from './helpers/real-server.ts';
import type { ServerProcess } from './helpers/server-process.ts';
import { dataDir, spawnServer } from './helpers/server-process.ts';
import { assertExactlyOnce, publishStream, record, sleep } from './helpers/streams.ts';

const ARGS = ['--heartbeat', '300ms'];

describe('resilience: server process killed and restarted', () => {
  it('SIGKILL mid-stream, restart on the same data: clients resume, unacked publishes stored once, nothing lost', async (t) => {
    const processes: ServerProcess[] = [];
    const dir = await dataDir(t, () => processes);
    const first = await spawnServer(dir, 0, ARGS);
    processes.push(first);
    const inspector = client(t, first.url, { autoConnect: false }); // REST only

    const subscribers = [0, 1].map(() => {
      const c = client(t, first.url);
      const attaches: AttachResult[] = [];
      const lost: ContinuityLost[] = [];
      const channels = ['crash:stream', 'crash:held'].map((name) => {
        const channel = c.channels.get(name);
        channel.on('attached', (a) => attaches.push(a));
        channel.on('continuityLost', (e) => lost.push(e));
        return record(channel);
      });
      return { client: c, attaches, lost, stream: channels[0] ?? [], held: channels[1] ?? [] };
    });
    await Promise.all(
      subscribers.flatMap((s) =>
        ['crash:stream', 'crash:held'].map((n) => s.client.channels.get(n).attach()),
      ),
    );

    // A publisher whose acks will be lost: behind a proxy that holds what the server sends.
    const proxy = await proxyTo(t, first);
    const held = client(t, proxy.url('/')).channels.get('crash:held');
    await held.attach(); // connected before the proxy starts holding
    const streamer = client(t, first.url).channels.get('crash:stream');

    let heldPublishes: Promise<string[]> | undefined;
    let storedBeforeCrash: string[] = [];
    let restarted: Promise<ServerProcess> | undefined;
    const streamed = await publishStream(streamer, 's', 400, {
      window: 10,
      before: async (i) => {
        if (i !== 150) return;
        proxy.buffer({ bytes: 1 << 20, responses: false });
        heldPublishes = Promise.all(Array.from({ length: 20 }, (_, n) => held.publish('h', `h:${n}`)));
        const page = await waitFor(
          async () => {
            const p = await inspector.rest.history('crash:held', { limit: 100, direction: 'forwards' });
            return p.items.length === 20 ? p : undefined;
          },
          { message: 'the held publishes were never stored' },
        );
        storedBeforeCrash = page.items.map((m) => m.serial);
        proxy.refuse();
        await proxy.reset(); // the acks die with the connection: stored, never acknowledged
        first.child.kill('SIGKILL');
        await first.exited;
        // Back on the same address after a while; meanwhile the stream's publishes wait in the queue.
        restarted = sleep(300).then(async () => {
          const second = await spawnServer(dir, first.port, ARGS);
          processes.push(second);
          proxy.pass();
          return second;
        });
      },
    });
    assert.ok(restarted && heldPublishes, 'the crash happened');
    await restarted;
    const heldSerials = await heldPublishes;

    // Stored once: the resends were answered as duplicates with the original serials.
    assert.deepEqual(heldSerials, storedBeforeCrash);
    const history = await inspector.rest.history('crash:held', { limit: 100 });
    assert.equal(history.items.length, 20);
    for (const [i, s] of subscribers.entries()) {
      await waitFor(() => s.stream.length >= streamed.length && s.held.length >= 20, {
        timeout: 20_000,
        message: `subscriber ${i}: ${s.stream.length}/${streamed.length} streamed, ${s.held.length}/20 held`,
      });
      assertExactlyOnce(s.stream, streamed, `subscriber ${i} stream`);
      assertExactlyOnce(s.held, heldSerials, `subscriber ${i} held`);
      assert.deepEqual(s.lost, [], 'same log after the restart: no continuity lost');
      // a channel whose messages had all arrived before the crash (crash:held) has nothing to wait
      // for after it: its re-attach may complete after the other channel's last message
      await waitFor(() => s.attaches.length >= 4, {
        timeout: 20_000,
        message: `subscriber ${i}: ${s.attaches.length} attaches, both channels attached again`,
      });
      assert.ok(
        s.attaches.length >= 4 && s.attaches.slice(2).every((a) => a.resumed),
        `the channels attached again and resumed (subscriber ${i}: ${JSON.stringify(s.attaches.map((a) => a.resumed))})`,
      );
      assert.equal(
        s.client.connection.details?.resumed,
        false,
        'connection identities do not survive a crash',
      );
    }
  });
});
