/**
 * Tokens without a clientId (PROTOCOL.md §7.1, §10, §14): each token is one holder with budgets of
 * its own — publish operations and bytes per second, inbound bytes per second, request bodies and
 * WebSocket messages read at once, its share of the read slots and of their line (history pages,
 * presence lists, catch-ups, Durable Streams pages), message leases. One anonymous visitor of a public app (who holds one token) can
 * spend or hold only its own, never those of every other anonymous visitor of the key. Real servers
 * on port 0 and real sockets: holder A exhausts or holds everything it can, holder B (another token
 * of the same key, also without a clientId) is still served. What bounds the anonymous tokens of a
 * key together (their connections and connection rate) stays per key.
 */
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS, type ServerFrame } from '@mooring/protocol';
import { redisSkipReason } from '@mooring/testkit';
import type { WebSocket } from 'ws';
import type { Connection } from '../src/connection.ts';
import { type BudgetIdentity, publishRules } from '../src/identity-budgets.ts';
import { BODIES_PER_IDENTITY, InboundBudget } from '../src/inbound-budget.ts';
import { createToken, type MooringServer, startServer } from '../src/index.ts';
import { PresenceService } from '../src/presence.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import type { RolledUpPage } from '../src/store/store.ts';
import { InboundGate } from '../src/websocket-transport.ts';
import { metricsText, metricValue, rest, startFixture, TEST_KEY } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';
import { reply, StalledClient } from './support/stalled-client.ts';

const outcome = (f: ServerFrame) => (f.type === 'error' ? f.error.code : 'ok');

/** Two different tokens of the test key without a clientId (two visitors of a public app). */
async function twoAnonymous(): Promise<[string, string]> {
  const [a, b] = await Promise.all([
    createToken(TEST_KEY, { ttl: 60 * 60 * 1000 }),
    createToken(TEST_KEY, { ttl: 61 * 60 * 1000 }),
  ]);
  assert.notEqual(a.token, b.token);
  return [a.token, b.token];
}

/**
 * Raw WebSocket connections to `url` whose frames a test writes by hand, byte by byte if it likes
 * (`StalledClient`); `destroy()` ends them all.
 */
function stalledClients(url: string) {
  const clients: StalledClient[] = [];
  return {
    /** A connection with `token`, once `connected`. */
    open: async (token: string): Promise<StalledClient> => {
      const client = await StalledClient.connect(url, `/v1/connect?token=${token}`);
      clients.push(client);
      await client.until('"connected"');
      return client;
    },
    destroy: () => {
      for (const client of clients) client.destroy();
    },
  };
}

const ping = (ref: number) => StalledClient.frame(JSON.stringify({ type: 'ping', ref }));

/** A publish of 15,000 bytes on session:anon, as one frame. */
const publish = (ref: number) =>
  StalledClient.frame(
    JSON.stringify({ type: 'publish', channel: 'session:anon', ref, ops: [{ data: 'x'.repeat(15_000) }] }),
  );

/** Resolves with `promise`'s value, or rejects after `ms` naming `what` (a generous bound, not a timing). */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const waitedOn = async (server: MooringServer) =>
  metricValue(await metricsText(server), 'mooring_inbound_bodies_waited_total') ?? 0;

const redisSkip = redisSkipReason();

const MIB = 1024 * 1024;

/**
 * Asks for `url` with `token` and never reads the answer: a history page, presence list or Durable
 * Streams page that holds its read slot. Destroyed by `unstick` (before the server closes: a close
 * waits for it). Resolves once the answer began (its slot is held from before).
 */
function readNothing(url: string, token: string, unstick: Array<() => void>): Promise<void> {
  const stuck = httpRequest(url, { headers: { authorization: `Bearer ${token}` } });
  stuck.on('error', () => {});
  const began = new Promise<void>((resolve) =>
    stuck.on('response', (res: IncomingMessage) => {
      res.pause();
      unstick.push(() => res.destroy());
      resolve();
    }),
  );
  stuck.end();
  unstick.push(() => stuck.destroy());
  return began;
}

/**
 * Asks for `url` with `token` until an answer is a 429 (each ask may wait in line or not), at most
 * 5 times: fewer than the server's whole line, so a refusal is the holder's share's. Its message.
 */
async function refusedRead(url: string, token: string): Promise<string | undefined> {
  for (let i = 0; i < 5; i++) {
    const ask = fetch(url, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(10_000),
    });
    ask.catch(() => {});
    const answered = await Promise.race([ask, new Promise<undefined>((r) => setTimeout(r, 100))]);
    if (answered instanceof Response && answered.status === 429)
      return ((await answered.json()) as { error: { message: string } }).error.message;
  }
  return undefined;
}

describe('anonymous tokens: one holder cannot spend the publish budgets of the others', () => {
  it('two tokens without a clientId minted in the same second for the same capability are two tokens', async () => {
    const now = Date.now();
    const [a, b] = await Promise.all([createToken(TEST_KEY, {}, now), createToken(TEST_KEY, {}, now)]);
    assert.notEqual(a.token, b.token, 'two visitors given tokens at once are two holders');
  });

  it('a publish refusal names whose budget ran out: this token without a clientId, or a clientId', () => {
    const rules = publishRules({ ...DEFAULT_LIMITS, maxPublishRate: 5 });
    const said = (identity: BudgetIdentity) => rules.refuse(identity, rules.of(identity), 'units').message;
    assert.match(
      said({ keyName: 'app', viaToken: true, holder: 'h1' }),
      /more than 5 operations published per second by this token \(without a clientId\) of key app /,
    );
    assert.match(
      said({ keyName: 'app', viaToken: true, clientId: 'alice' }),
      /more than 5 operations published per second by clientId alice of key app /,
    );
  });

  for (const kind of ['memory', 'redis'] as const) {
    it(
      `operations per second (${kind}): A spends its maxPublishRate; B's publish is still stored`,
      { skip: kind === 'redis' ? (redisSkip ?? false) : false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxPublishRate: 100 } });
        try {
          const [a, b] = await twoAnonymous();
          const ops = Array.from({ length: 100 }, (_, i) => ({ name: 'n', data: i }));
          const publish = (token: string) =>
            rest(fx.server, '/v1/channels/session:anon/messages', { key: token, body: ops });
          assert.equal((await publish(a)).status, 200, "A's burst");
          const refused = await publish(a);
          assert.equal(refused.status, 429, 'A is held to its budget');
          assert.match(JSON.stringify(refused.body), /operations/);
          // over a connection too: B's publishes draw on B's budget, not on what A left
          const ws = await RawClient.connect(fx.server.url, { token: b });
          assert.equal(
            outcome(await ws.request({ type: 'publish', channel: 'session:anon', ops })),
            'ok',
            "B's publish is acknowledged while A's budget is spent",
          );
          assert.equal((await publish(b)).status, 429, 'B is held to its own budget');
          await ws.close();
        } finally {
          await fx.close();
        }
      },
    );

    it(
      `bytes per second (${kind}): A spends its maxPublishBytesRate; B's publish is still stored`,
      { skip: kind === 'redis' ? (redisSkip ?? false) : false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxPublishBytesRate: 100_000 } });
        try {
          const [a, b] = await twoAnonymous();
          const sized = [
            { name: 'blob', data: 'x'.repeat(45_000) },
            { name: 'blob', data: 'x'.repeat(45_000) },
          ];
          const publish = (token: string) =>
            rest(fx.server, '/v1/channels/session:anon/messages', { key: token, body: sized });
          assert.equal((await publish(a)).status, 200, "A's burst");
          const refused = await publish(a);
          assert.equal(refused.status, 429, 'A is held to its budget');
          assert.match(JSON.stringify(refused.body), /bytes/);
          assert.equal((await publish(b)).status, 200, "B's publish is stored while A's budget is spent");
        } finally {
          await fx.close();
        }
      },
    );
  }

  it('a holder that renews its token (auth frame) draws on the new token’s publish budget', async () => {
    const fx = await startFixture('memory', { limits: { maxPublishRate: 100 } });
    try {
      const [first, renewed] = await twoAnonymous();
      const ws = await RawClient.connect(fx.server.url, { token: first });
      const ops = Array.from({ length: 100 }, (_, i) => ({ name: 'n', data: i }));
      const publish = () => ws.request({ type: 'publish', channel: 'session:anon', ops });
      assert.equal(outcome(await publish()), 'ok');
      assert.equal(outcome(await publish()), 'rate_limited');
      assert.equal((await ws.request({ type: 'auth', token: renewed })).type, 'authorized');
      assert.equal(outcome(await publish()), 'ok', 'the new token has a budget of its own');
      assert.equal(outcome(await publish()), 'rate_limited');
      await ws.close();
    } finally {
      await fx.close();
    }
  });
});

describe('anonymous tokens: one holder cannot stop the others being read', () => {
  it("inbound bytes: A far over maxInboundBytesRate; B's WebSocket frames are still read", async () => {
    // 1,000 bytes per second after a burst of two 16 KiB frames: A's 60 kB (one socket read) leave
    // it ~27 s in debt
    const fx = await startFixture('memory', {
      limits: { maxInboundBytesRate: 1_000, maxFrameSize: 16 * 1024 },
    });
    const clients = stalledClients(fx.server.url);
    try {
      const [a, b] = await twoAnonymous();
      const { open } = clients;
      const holderA = await open(a);
      holderA.write(Buffer.concat([1, 2, 3, 4].map(publish)));
      await holderA.until(reply('ack', 4), 60_000); // all read: A is deep in debt
      holderA.write(ping(7));

      const holderB = await open(b);
      holderB.write(ping(1));
      await holderB.until(reply('pong', 1)); // the read that takes a budget over is handled anyway
      holderB.write(ping(2));
      await holderB.until(reply('pong', 2), 10_000); // B's next read does not wait for A's debt
      assert.doesNotMatch(holderA.received, reply('pong', 7), 'A itself still waits for its budget');
    } finally {
      clients.destroy();
      await fx.close();
    }
  });

  it("body slots: A's REST bodies left part-sent hold only A's slots; B's publish is read and stored", async () => {
    const fx = await startFixture('memory');
    const stalled: ReturnType<typeof httpRequest>[] = [];
    try {
      const [a, b] = await twoAnonymous();
      const url = new URL('/v1/channels/session:anon/messages', fx.server.url);
      for (let i = 0; i < BODIES_PER_IDENTITY; i++) {
        const req = httpRequest(url, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${a}`,
            'content-type': 'application/json',
            'content-length': '100000',
          },
        });
        req.on('error', () => {});
        req.write('{"ops":[{"data":"'); // and nothing more: until Node's requestTimeout (300 s)
        stalled.push(req);
      }
      const publish = (token: string) =>
        fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ ops: [{ data: 'hi' }] }),
        });
      // A's own next publish waits for one of its slots: then all of A's are held
      const mine = publish(a);
      mine.catch(() => {});
      await until(async () => (await waitedOn(fx.server)) >= 1, "A's ninth body waits for a slot");
      const theirs = await within(publish(b), 10_000, "B's publish");
      assert.equal(theirs.status, 200, "B's body is read while A holds all of its slots");
      stalled.shift()!.destroy();
      assert.equal((await mine).status, 200, "A's waits for its own slot only");
    } finally {
      for (const req of stalled) req.destroy();
      await fx.close();
    }
  });

  it("body slots: A's WebSocket messages left part-sent hold only A's slots; B's message is read", async () => {
    const fx = await startFixture('memory');
    const clients = stalledClients(fx.server.url);
    try {
      const [a, b] = await twoAnonymous();
      const { open } = clients;
      // a publish of 80 KB, sent as its first half and, later, the rest
      const publish = (ref: number) => {
        const data = 'x'.repeat(40_000);
        const frame = StalledClient.frame(
          JSON.stringify({ type: 'publish', channel: 'session:anon', ref, ops: [{ data }, { data }] }),
        );
        return { first: frame.subarray(0, 40_000), rest: frame.subarray(40_000) };
      };
      for (let i = 0; i < BODIES_PER_IDENTITY; i++) {
        const holder = await open(a);
        holder.write(Buffer.concat([ping(1), publish(100 + i).first]));
        await holder.until(reply('pong', 1)); // read: its message holds a slot from here
      }
      // A's ninth waits for a slot: then all of A's are held
      const ninth = await open(a);
      ninth.write(Buffer.concat([ping(1), publish(200).first]));
      await until(async () => (await waitedOn(fx.server)) >= 1, "A's ninth message waits for a slot");

      const holderB = await open(b);
      const theirs = publish(5);
      holderB.write(theirs.first);
      await new Promise((r) => setTimeout(r, 100)); // the rest comes in a later read
      holderB.write(Buffer.concat([theirs.rest, ping(6)]));
      await holderB.until(reply('pong', 6), 10_000);
      await holderB.until(reply('ack', 5), 10_000);
    } finally {
      clients.destroy();
      await fx.close();
    }
  });
});

describe('anonymous tokens: a renewal moves the connection to the new token’s inbound budget', () => {
  it("a WebSocket renewed to another token: A's debt is the new token's, the old token's other connection is read", async () => {
    const fx = await startFixture('memory', {
      limits: { maxInboundBytesRate: 1_000, maxFrameSize: 16 * 1024 },
    });
    const clients = stalledClients(fx.server.url);
    try {
      const [first, renewed] = await twoAnonymous();
      const { open } = clients;
      const renewing = await open(first);
      renewing.sendText(JSON.stringify({ type: 'auth', token: renewed, ref: 1 }));
      await renewing.until(reply('authorized', 1));
      renewing.write(Buffer.concat([2, 3, 4, 5].map(publish)));
      await renewing.until(reply('ack', 5), 60_000); // ~27 s in debt: the renewed token's
      renewing.write(ping(7));

      const stayed = await open(first);
      stayed.write(ping(1));
      await stayed.until(reply('pong', 1));
      stayed.write(ping(2));
      await stayed.until(reply('pong', 2), 10_000); // the old token's budget is not in debt
      assert.doesNotMatch(renewing.received, reply('pong', 7), 'the renewed connection still waits');
    } finally {
      clients.destroy();
      await fx.close();
    }
  });

  it('the gate follows the renewal: a message begun before keeps its slot with the old token, the rest counts for the new one', () => {
    let now = 0;
    const budget = new InboundBudget(1_000, 1_000, { now: () => now });
    const ws = { OPEN: 1, readyState: 1, pause() {}, resume() {} };
    const connection = { alive: false, inbound: { budget, key: 'a' } };
    const gate = new InboundGate(
      ws as unknown as WebSocket,
      connection as unknown as Connection,
      budget,
      'a',
    );
    const frame = StalledClient.frame(JSON.stringify({ type: 'ping', data: 'x'.repeat(1_500) }));
    gate.read(frame.subarray(0, 500)); // begun: a slot of 'a'
    for (let i = 1; i < BODIES_PER_IDENTITY; i++)
      assert.equal(budget.enter('a', { granted: () => {} }), true);
    const ninth = { granted: () => {} };
    assert.equal(budget.enter('a', ninth), false, "the gate holds one of 'a''s slots");
    budget.cancel('a', ninth);
    for (let i = 1; i < BODIES_PER_IDENTITY; i++) budget.leave('a');

    connection.inbound = { budget, key: 'b' }; // renewed
    gate.read(frame.subarray(500, 1_000)); // more of it: counted for 'b', the slot still 'a''s
    now += 10_000; // 'a' is full again: kept only because the gate's slot is there
    budget.hold('a'); // another connection of the old token
    for (let i = 1; i < BODIES_PER_IDENTITY; i++)
      assert.equal(budget.enter('a', { granted: () => {} }), true);
    const over = { granted: () => {} };
    assert.equal(budget.enter('a', over), false, "the gate's slot is still held at 'a'");
    budget.cancel('a', over);
    for (let i = 1; i < BODIES_PER_IDENTITY; i++) budget.leave('a');
    budget.release('a');
    gate.read(frame.subarray(1_000)); // the rest: counted for 'b', the slot given back to 'a'
    assert.ok(budget.take('b', 1_000) > 0, "the rest of the message was counted for 'b'");
    assert.equal(budget.size, 1, "the slot given back, 'a' is held no more (and full: dropped); 'b' is");
    gate.closed();
    now += 10_000;
    assert.equal(budget.size, 0, 'closed: nothing held');

    // renewed back to the token its message began with: that key is held once, not twice
    connection.inbound = { budget, key: 'a' };
    const back = new InboundGate(
      ws as unknown as WebSocket,
      connection as unknown as Connection,
      budget,
      'a',
    );
    back.read(frame.subarray(0, 500));
    connection.inbound = { budget, key: 'b' };
    back.read(frame.subarray(500, 1_000));
    connection.inbound = { budget, key: 'a' };
    back.read(frame.subarray(1_000));
    back.closed();
    now += 10_000;
    assert.equal(budget.size, 0, 'closed after renewing back and forth: nothing held');
  });
});

describe('anonymous tokens: one holder cannot take the connections of the others', () => {
  for (const kind of ['memory', 'redis'] as const)
    it(
      `maxConnectionsPerClient caps each token without a clientId: one visitor cannot hold every anonymous connection of the key (${kind})`,
      { skip: (kind === 'redis' && redisSkipReason()) || false },
      async () => {
        const fx = await startFixture(kind, {
          limits: { maxConnectionsPerClient: 2, maxAnonymousConnectionsPerKey: 5 },
        });
        try {
          const [a, b] = await Promise.all([createToken(TEST_KEY), createToken(TEST_KEY)]);
          const held = [
            await RawClient.connect(fx.server.url, { token: a.token }),
            await RawClient.connect(fx.server.url, { token: a.token }),
          ];
          await assert.rejects(RawClient.connect(fx.server.url, { token: a.token }), /HTTP 429/);
          const polled = await fetch(`${fx.server.url}/v1/connect/poll?token=${encodeURIComponent(a.token)}`);
          assert.equal(polled.status, 429);
          const refusal = ((await polled.json()) as { error: { code: string; message: string } }).error;
          assert.equal(refusal.code, 'too_many_connections');
          assert.match(refusal.message, /this token \(without a clientId\)/);
          // another visitor's token still connects, and a closed connection gives its place back
          held.push(await RawClient.connect(fx.server.url, { token: b.token }));
          await held.shift()!.close();
          await until(async () => {
            try {
              held.push(await RawClient.connect(fx.server.url, { token: a.token }));
              return true;
            } catch {
              return false;
            }
          }, "a's place given back");
          await Promise.all(held.map((c) => c.close()));
        } finally {
          await fx.close();
        }
      },
    );

  it("one token's connection requests spend its own rate first: past it, nothing of the key's anonymous rate that other tokens share", async () => {
    // each token: a burst of 4 (twice maxConnectionsPerClient), then 1 a second; the key's
    // anonymous tokens together: a burst of 20, then 1 a second
    const fx = await startFixture('memory', {
      limits: {
        maxConnectRate: 1,
        maxConnectionsPerClient: 2,
        maxAnonymousConnectRate: 1,
        maxAnonymousConnectionsPerKey: 10,
      },
    });
    try {
      const [a, b] = await Promise.all([createToken(TEST_KEY), createToken(TEST_KEY)]);
      let opened = 0;
      for (let i = 0; i < 25; i++) {
        try {
          const c = await RawClient.connect(fx.server.url, { token: a.token });
          c.ws.terminate();
          opened += 1;
        } catch (err) {
          assert.match(String(err), /HTTP 429/);
        }
      }
      // a second may have refilled meanwhile
      assert.ok(opened >= 4 && opened <= 5, `one token opened ${opened}, not 4 or 5`);
      for (let i = 0; i < 4; i++) {
        const c = await RawClient.connect(fx.server.url, { token: b.token });
        c.ws.terminate();
      }
    } finally {
      await fx.close();
    }
  });
});

describe('anonymous tokens: what bounds them together stays per key', () => {
  it('maxAnonymousConnectRate counts the connection requests of every anonymous token of the key together', async () => {
    // a burst of twice maxAnonymousConnectionsPerKey (4), then 1 per second, whichever tokens
    const fx = await startFixture('memory', {
      limits: { maxAnonymousConnectRate: 1, maxAnonymousConnectionsPerKey: 2 },
    });
    try {
      const tokens = await Promise.all(
        Array.from({ length: 5 }, () => createToken(TEST_KEY).then((t) => t.token)),
      );
      assert.equal(new Set(tokens).size, 5, 'five holders');
      for (const token of tokens.slice(0, 4)) {
        const c = await RawClient.connect(fx.server.url, { token });
        c.ws.terminate();
      }
      const polled = await fetch(`${fx.server.url}/v1/connect/poll?token=${encodeURIComponent(tokens[4]!)}`);
      assert.equal(polled.status, 429, 'a fifth token buys no more connection requests');
      assert.equal(((await polled.json()) as { error: { code: string } }).error.code, 'rate_limited');
    } finally {
      await fx.close();
    }
  });
});

/** A memory store whose catch-up reads of the channels held wait until opened; `started` lists the reads begun. */
class HeldCatchUps extends MemoryStore {
  readonly started: string[] = [];
  readonly #held = new Map<string, { released: Promise<void>; release: () => void }>();

  hold(channel: string): void {
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#held.set(channel, { released, release });
  }

  /** Lets the reads of `channel` (of every held channel when none is named) go on. */
  open(channel?: string): void {
    for (const [name, gate] of [...this.#held])
      if (channel === undefined || name === channel) {
        gate.release();
        this.#held.delete(name);
      }
  }

  override async readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage> {
    this.started.push(channel);
    await this.#held.get(channel)?.released;
    return super.readSince(channel, after, limit, maxBytes);
  }
}

describe('anonymous tokens: one holder cannot hold the read slots or the leases of the others', () => {
  // conversation: a bounded read holding a slot for the store read alone; A fills its share with
  // history pages
  for (const what of ['messages', 'presence', 'conversation'] as const) {
    it(`read slots (${what}): A's reads it never takes fill its share of the slots and of the line; B's is served`, async () => {
      // two slots and a line of four: one holder runs in one and waits in one
      const store = new MemoryStore();
      let presence: PresenceService | undefined;
      const server = await startServer({
        host: '127.0.0.1',
        port: 0,
        keys: [TEST_KEY],
        store,
        limits: { maxConcurrentReads: 2, maxQueuedReads: 4 },
        presence: (_store, options) => {
          presence = new PresenceService(options);
          return presence;
        },
      });
      const unstick: Array<() => void> = [];
      try {
        // a page or a list far larger than a socket's buffers: it holds its slot while unread
        if (what !== 'presence')
          await store.append(
            'big',
            [{ action: 'create', publisher: '', id: 'h', data: 'h'.repeat(16 * MIB) }],
            {
              maxMessageSize: 32 * MIB,
            },
          );
        else {
          const data = 'p'.repeat(250_000);
          for (let i = 0; i < 100; i++) presence!.enter('big', `c${i}`, `member${i}`, data);
        }
        await store.append('small', [{ action: 'create', publisher: '', id: 's', data: 'small' }], {
          maxMessageSize: MIB,
        });
        const [a, b] = await twoAnonymous();
        const big = `${server.url}/v1/channels/big/${what === 'presence' ? 'presence' : 'messages'}`;
        const small = `${server.url}/v1/channels/small/${what}`;
        for (let i = 0; i < 2; i++) void readNothing(big, a, unstick);
        const refused = await refusedRead(small, a);
        assert.match(
          refused ?? 'not refused',
          /this client already has/,
          "A's own next read is refused: its share is full",
        );
        const theirs = await fetch(small, {
          headers: { authorization: `Bearer ${b}` },
          signal: AbortSignal.timeout(10_000),
        });
        assert.equal(theirs.status, 200, `B's ${what} read is served while A holds its share`);
        if (what === 'messages') {
          const body = (await theirs.json()) as { items: Array<{ data: string }> };
          assert.equal(body.items[0]?.data, 'small');
        } else await theirs.text();
      } finally {
        for (const destroy of unstick) destroy();
        await server.close();
      }
    });
  }

  it("catch-up read slots: A's catch-ups in every slot and first in line; the slot freed goes to B's before A's next", async () => {
    // two catch-up slots: a holder alone may use both, and one freed goes first to a waiting read of
    // a holder under its half
    const store = new HeldCatchUps();
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store,
      limits: { maxConcurrentReads: 2 },
    });
    const clients: RawClient[] = [];
    try {
      for (const channel of ['session:a1', 'session:a2', 'session:a3', 'session:b']) {
        await store.append(channel, [{ action: 'create', publisher: '', id: 'm', data: channel }], {
          maxMessageSize: MIB,
        });
        if (channel !== 'session:b') store.hold(channel);
      }
      const [a, b] = await twoAnonymous();
      const open = async (token: string) => {
        const client = await RawClient.connect(server.url, { token });
        clients.push(client);
        return client;
      };
      // one connection per catch-up: a connection's catch-ups run one after another
      const [a1, a2, a3] = [await open(a), await open(a), await open(a)];
      a1.send({ type: 'attach', ref: 1, channel: 'session:a1', start: true });
      a2.send({ type: 'attach', ref: 2, channel: 'session:a2', start: true });
      await until(() => store.started.length === 2, "A's two catch-ups hold both slots");
      a3.send({ type: 'attach', ref: 3, channel: 'session:a3', start: true });
      await new Promise((r) => setTimeout(r, 200)); // A's third reaches the line first
      const holderB = await open(b);
      const answer = holderB.request({ type: 'attach', channel: 'session:b', start: true });
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(store.started, ['session:a1', 'session:a2'], "both slots A's: B's catch-up waits");
      // a slot frees: B is under its half, A is not. Before, A's third (first in line, and B's
      // owner the same) took it, and B waited for as long as A's reads were held
      store.open('session:a1');
      const attached = await within(answer, 10_000, "B's attach");
      assert.equal(attached.type, 'attached');
      assert.deepEqual(
        holderB.messages('session:b').map((m) => m.data),
        ['session:b'],
      );
      // B's read done, its slot goes to A's third (A alone waits now)
      assert.deepEqual(store.started.slice(0, 3), ['session:a1', 'session:a2', 'session:b']);
    } finally {
      store.open();
      for (const client of clients) client.kill();
      await server.close();
    }
  });

  it("Durable Streams page slots: A's page it never takes holds A's half; B's read is served, A's next waits", async () => {
    // two page slots: one holder streams in one at a time; a page far larger than a socket's buffers
    const fx = await startFixture('memory', {
      durableStreams: { maxConcurrentReads: 2, maxAppendBytes: 32 * MIB, readPageBytes: 32 * MIB },
    });
    const unstick: Array<() => void> = [];
    try {
      const put = (path: string, body: BodyInit) =>
        fetch(`${fx.server.url}/v1/stream/${path}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/octet-stream' },
          body,
        });
      assert.equal((await put('big', Buffer.alloc(24 * MIB, 'b'))).status, 201);
      assert.equal((await put('small', Buffer.from('small'))).status, 201);
      const [a, b] = await twoAnonymous();
      const read = (token: string) =>
        fetch(`${fx.server.url}/v1/stream/small?offset=-1`, {
          headers: { authorization: `Bearer ${token}` },
          signal: AbortSignal.timeout(20_000),
        });
      await readNothing(`${fx.server.url}/v1/stream/big?offset=-1`, a, unstick);
      let mineAnswered = false;
      const mine = read(a).then((res) => {
        mineAnswered = true;
        return res;
      });
      mine.catch(() => {});
      // never refused, but waits: before, B's read waited behind A's half until A's page was cut (30 s)
      const theirs = await within(read(b), 10_000, "B's read");
      assert.equal(theirs.status, 200);
      assert.equal(await theirs.text(), 'small', "B's read is served while A's page holds A's half");
      assert.equal(mineAnswered, false, "A's own next read waits for its half");
      unstick.shift()!();
      unstick.shift()!(); // A's page given up: its slot is free
      assert.equal(await (await mine).text(), 'small', "A's next read is served once its page is gone");
    } finally {
      for (const destroy of unstick) destroy();
      await fx.close();
    }
  });

  for (const kind of ['memory', 'redis'] as const) {
    it(
      `leases (${kind}): A holds maxLeasesPerClient; B's run still takes a lease`,
      { skip: kind === 'redis' ? (redisSkip ?? false) : false },
      async () => {
        const fx = await startFixture(kind, { limits: { maxLeasesPerClient: 2 } });
        try {
          const [a, b] = await twoAnonymous();
          // A's runs over its connection (the connection holds their leases)
          const ws = await RawClient.connect(fx.server.url, { token: a });
          const run = (i: number) =>
            ws.request({ type: 'publish', channel: 'run:anon', ops: [{ data: `A ${i}`, lease: 60_000 }] });
          assert.equal(outcome(await run(0)), 'ok', 'a token without a clientId takes a lease');
          assert.equal(outcome(await run(1)), 'ok');
          const over = await run(2);
          assert.equal(outcome(over), 'too_many_leases', 'A is held to maxLeasesPerClient');
          // B's runs over REST (leases held by activity): B's own limit, not what A left
          const theirs = (i: number) =>
            rest(fx.server, '/v1/channels/run:anon/messages', {
              key: b,
              body: { data: `B ${i}`, lease: 60_000 },
            });
          assert.equal((await theirs(0)).status, 200, "B's run takes a lease while A holds all of its own");
          assert.equal((await theirs(1)).status, 200);
          const refused = await theirs(2);
          assert.equal(refused.status, 429, 'B is held to its own limit');
          assert.equal((refused.body.error as { code: string }).code, 'too_many_leases');
          // the refusal names whose leases: this token's, not every anonymous token's of the key
          assert.match(JSON.stringify(over), /this token \(without a clientId\) already holds 2/);
          await ws.close();
        } finally {
          await fx.close();
        }
      },
    );
  }

  for (const kind of ['memory', 'redis'] as const) {
    it(
      `leases (${kind}): B writing to A's run does not take A's lease; A's connection dropped and recovered still holds it, A's write from a new one takes it along`,
      { skip: kind === 'redis' ? (redisSkip ?? false) : false },
      async () => {
        const fx = await startFixture(kind);
        const channel = 'run:follow';
        /** The run's lease as the inspector shows it (`held`: its holding connection is connected). */
        const lease = async () => {
          const health = await rest(fx.server, `/v1/channels/${channel}/health`);
          return (health.body.leases as Array<{ serial: string; held: boolean }>)[0];
        };
        const closedByClients = async () =>
          (await metricsText(fx.server))
            .split('\n')
            .filter((l) => l.startsWith('mooring_connections_closed_total{') && l.includes('reason="closed"'))
            .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
        try {
          const [a, b] = await twoAnonymous();
          const visitorA = await RawClient.connect(fx.server.url, { token: a });
          const run = await visitorA.publish(channel, [{ data: '', lease: 60_000 }]);
          const serial = run.results[0]!.serial;
          // B (its token may write any message) writes to A's run, then leaves
          const visitorB = await RawClient.connect(fx.server.url, { token: b });
          await visitorB.publish(channel, [{ action: 'update', serial, data: 'B was here' }]);
          await visitorB.close();
          await until(async () => (await closedByClients()) === 1, "the server saw B's connection close");
          // A's network blips: its connection drops and comes back, recovered, within the lease
          visitorA.kill();
          const back = await RawClient.connect(fx.server.url, {
            token: a,
            recover: visitorA.connected.connectionKey,
          });
          assert.equal(back.connected.resumed, true);
          // Before, B's write took the lease over to B's connection (both have no clientId): B gone,
          // it ran out with A connected, and A's run would be marked abandoned under A.
          await until(
            async () => (await lease())?.held === true,
            "A's recovered connection holds its run's lease",
          );
          assert.equal((await lease())?.serial, serial);
          // A's connection lost for good: A's next write to its run, on a new connection, takes the
          // lease along (the same holder: the same token), with no lease field of its own
          back.kill();
          await until(async () => (await lease())?.held === false, "the server saw A's connection go");
          const anew = await RawClient.connect(fx.server.url, { token: a });
          await anew.publish(channel, [{ action: 'append', serial, data: '+' }]);
          await until(async () => (await lease())?.held === true, "A's new connection holds its run's lease");
          await anew.close();
        } finally {
          await fx.close();
        }
      },
    );
  }
});
