// The hand-over from catch-up to live (PROTOCOL.md §6.2), forced on every store and transport: the
// store's catch-up read is held on a gate while a burst is stored and fanned out, then released.
// With the read's snapshot taken before the burst, the burst reaches the client only through the
// live deliveries held during catch-up (deleting their flush loses it); with the snapshot taken
// after, the burst is in the read AND held (sending both duplicates it). Either way the client must
// get every operation after its position once, in order, and the live ones with consecutive seqs.
// On Redis (when redis-server is installed) live deliveries come through the RedisHub's bus, i.e.
// asynchronously, as they will between nodes.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { type Message, parseSerial, type ServerFrame } from '@mooring/protocol';
import { type MooringServer, startServer } from '../src/index.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { StoreError } from '../src/store/store.ts';
import { rest, TEST_KEY } from './support/fixture.ts';
import { gatedServers } from './support/gated-servers.ts';
import { type GatedRead, GatedStore } from './support/gated-store.ts';
import { PollClient, SseClient } from './support/http-client.ts';
import { RawClient } from './support/raw-client.ts';

type Kind = 'websocket' | 'sse' | 'longpoll';
type Mode = 'start' | 'from' | 'live' | 'rewind';

interface TestClient {
  frames: ServerFrame[];
  send(frame: Record<string, unknown>): Promise<void>;
  close(): void;
}

async function connect(kind: Kind, url: string): Promise<TestClient> {
  if (kind === 'websocket') {
    const c = await RawClient.connect(url);
    return {
      frames: c.frames,
      send: async (f) => c.send(f),
      close: () => c.kill(),
    };
  }
  const c = kind === 'sse' ? await SseClient.connect(url) : await PollClient.connect(url);
  return {
    frames: c.frames,
    send: async (f) => {
      const res = await c.post(f);
      assert.equal(res.status, 202);
    },
    close: () => (c instanceof SseClient ? c.close() : c.stop()),
  };
}

async function until(test: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const seq = (serial: string) => parseSerial(serial)!.seq;

async function publish(server: MooringServer, channel: string, ops: unknown[]): Promise<string[]> {
  const res = await rest(server, `/v1/channels/${channel}/messages`, { body: ops });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return (res.body.results as { serial: string }[]).map((r) => r.serial);
}

const READ_OF: Record<Mode, GatedRead> = {
  start: 'readSince',
  from: 'readSince',
  live: 'info',
  rewind: 'history',
};

const servers = gatedServers('handover');
const redisSkip = servers.redisSkip;

for (const storeKind of ['memory', 'sqlite', 'redis'] as const) {
  for (const kind of ['websocket', 'sse', 'longpoll'] as const) {
    describe(
      `hand-over to live on ${storeKind}, ${kind}`,
      { skip: storeKind === 'redis' && redisSkip },
      () => {
        for (const mode of ['start', 'from', 'live', 'rewind'] as const) {
          for (const snapshot of ['early', 'late'] as const) {
            it(`${mode}: a burst stored while the catch-up read is held (snapshot ${snapshot}) arrives once, in order, without a gap`, async (t) => {
              const { store, options } = await servers.optionsFor(storeKind);
              const server = await startServer(options);
              t.after(() => server.close());
              const channel = `handover-${mode}`;
              const pre = await publish(
                server,
                channel,
                ['a', 'b', 'c'].map((data) => ({ name: 't', data })),
              );
              const from = pre[0]!;
              const client = await connect(kind, server.url);
              t.after(() => client.close());

              const gate = store.arm(READ_OF[mode], snapshot);
              const attachFrame: Record<string, unknown> = { type: 'attach', channel, ref: 1 };
              if (mode === 'start') attachFrame.start = true;
              if (mode === 'from') attachFrame.from = from;
              if (mode === 'rewind') attachFrame.rewind = 2;
              await client.send(attachFrame);
              await gate.reached;
              // the burst: new messages and appends to earlier ones, from concurrent publishers
              const burst = await Promise.all(
                Array.from({ length: 10 }, (_, i) =>
                  publish(server, channel, [
                    { name: 't', data: `burst-${i}` },
                    { action: 'append', serial: pre[i % 3]!, data: `+${i}` },
                  ]),
                ),
              );
              assert.equal(burst.flat().length, 20);
              gate.release();

              const head = (await rest(server, `/v1/channels/${channel}`)).body.position as string;
              const versions = () =>
                client.frames.flatMap((f) =>
                  f.type === 'messages' && f.channel === channel ? f.messages.map((m) => m.version) : [],
                );
              const attachedFrame = () =>
                client.frames.find((f) => f.type === 'attached') as
                  | Extract<ServerFrame, { type: 'attached' }>
                  | undefined;
              await until(
                () =>
                  attachedFrame() !== undefined &&
                  (attachedFrame()!.position === head || versions().includes(head)),
                `the client to reach the head ${head}; got ${versions().length} versions`,
              );
              const attachedAt = client.frames.findIndex((f) => f.type === 'attached');
              assert.ok(attachedAt >= 0, 'attached');
              const attached = client.frames[attachedAt] as Extract<ServerFrame, { type: 'attached' }>;
              const live: Message[] = client.frames
                .slice(attachedAt + 1)
                .flatMap((f) => (f.type === 'messages' && f.channel === channel ? f.messages : []));
              const all = versions();
              for (let i = 1; i < all.length; i++)
                assert.ok(all[i]! > all[i - 1]!, `versions strictly increase (each once, in order): ${all}`);
              if (storeKind === 'redis') {
                // Across the Redis bus, a delivery that arrives late is repaired by reading the log
                // back, which may send rolled-up messages live (PROTOCOL.md §4.3: one needless resume
                // for a client, never a loss): live versions increase and reach the head.
                const last = all[all.length - 1];
                assert.equal(
                  last === undefined ? seq(attached.position) : Math.max(seq(last), seq(attached.position)),
                  seq(head),
                  'the client reaches the head',
                );
              } else {
                // live operations follow the attached position with consecutive sequence numbers
                let expected = seq(attached.position) + 1;
                for (const m of live) assert.equal(seq(m.version), expected++, 'no gap in the live stream');
                assert.equal(expected - 1, seq(head), 'live reaches the head');
                if (snapshot === 'early')
                  assert.equal(live.length, 20, 'the whole burst came through the held live deliveries');
              }
            });
          }
        }
      },
    );
  }
}

/** A memory store behind a gate, a server whose send buffer is 64 KiB, and a WebSocket client. */
async function smallBufferServer(t: TestContext) {
  const store = new GatedStore(new MemoryStore());
  const limits = { maxSendBuffer: 64 * 1024 };
  const server = await startServer({ host: '127.0.0.1', port: 0, keys: [TEST_KEY], store, limits });
  t.after(() => server.close());
  const client = await RawClient.connect(server.url);
  t.after(() => client.kill());
  return { store, server, client };
}

describe('a failed attach', () => {
  it('leaves nothing attached: no live deliveries held for it, detach answers not_attached', async (t) => {
    const { store, server, client } = await smallBufferServer(t);
    await publish(server, 'failing', [{ name: 't', data: 'before' }]);
    store.failNext('readSince', new StoreError('store_unavailable', 'the store is down (test)'));
    const answer = await client.request({ type: 'attach', channel: 'failing', start: true });
    assert.equal(answer.type, 'error');
    assert.equal(answer.type === 'error' && answer.error.code, 'store_unavailable');
    // More than the send buffer: an attachment left subscribed would hold these for ever, counted
    // against the connection, and drop it as slow_consumer.
    for (let i = 0; i < 3; i++) await publish(server, 'failing', [{ name: 't', data: 'x'.repeat(30_000) }]);
    const detach = await client.request({ type: 'detach', channel: 'failing' });
    assert.equal(detach.type === 'error' && detach.error.code, 'not_attached');
    assert.deepEqual(client.messages('failing'), [], 'nothing delivered for the failed attach');
    assert.equal(client.closeCode, undefined, 'the connection is still open');
  });
});

describe('live deliveries held during a catch-up', () => {
  it('count against the send buffer only until the attach goes live: attach after attach never adds up', async (t) => {
    const { store, server, client } = await smallBufferServer(t);
    // each round holds about 20 KB of live deliveries while its catch-up read waits: under the
    // buffer alone, five times over it together
    for (let round = 0; round < 16; round++) {
      const channel = `held-${round}`;
      await publish(server, channel, [{ name: 't', data: 'before' }]);
      const gate = store.arm('readSince', 'early');
      const attached = client.request({ type: 'attach', channel, start: true });
      await gate.reached;
      await publish(server, channel, [{ name: 't', data: 'x'.repeat(20_000) }]);
      gate.release();
      assert.equal((await attached).type, 'attached');
      await until(() => client.messages(channel).length === 2, `round ${round}: the held delivery`);
    }
    assert.equal(client.closeCode, undefined, 'the connection is still open (not a slow consumer)');
  });
});
