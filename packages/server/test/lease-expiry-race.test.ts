/**
 * A lease's expiry reads the message, then writes `status: abandoned` over it. A run that ends (or
 * is written at all) between the two must not be overwritten: the write is conditional on the
 * version read (`ifVersion`), and the lease's owner decides again. Seen in the Redis soak: finished
 * runs turned `abandoned` by an expiry already under way when the run ended.
 *
 * The store here holds the expiry's read back until the test has written to the message, so the
 * race happens every time, on the node-local leases and on Redis leases.
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { DEFAULT_LIMITS, type Message, type PublishResult } from '@mooring/protocol';
import { type Deferred, deferred, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { ChannelService, type PublishIdentity } from '../src/channel-service.ts';
import { LocalHub } from '../src/hub.ts';
import type { LeaseManagerOptions, Leases } from '../src/leases.ts';
import { RedisLeases } from '../src/redis-leases.ts';
import { MemoryStore } from '../src/store/memory-store.ts';
import { connectRedis } from '../src/store/redis-connection.ts';
import type { HistoryQuery, RolledUpPage } from '../src/store/store.ts';

const CHANNEL = 'session:expiry-race';

/** A memory store whose next read of one message (the expiry's) is held until `release` resolves. */
class HeldReadStore extends MemoryStore {
  held: { serial: string; before: boolean; reading: Deferred<void>; release: Deferred<void> } | undefined;

  /**
   * The next read of `serial` is held, after it has read (its page goes back stale) or, `before`,
   * before it reads; `reading` resolves once it is held.
   */
  holdNextRead(serial: string, before = false) {
    this.held = { serial, before, reading: deferred<void>(), release: deferred<void>() };
    return this.held;
  }

  override async history(channel: string, query: HistoryQuery): Promise<RolledUpPage> {
    const held = this.held;
    if (!held || query.from !== held.serial || query.until !== held.serial)
      return super.history(channel, query);
    this.held = undefined;
    if (held.before) {
      held.reading.resolve();
      await held.release.promise;
      return super.history(channel, query);
    }
    const page = await super.history(channel, query);
    held.reading.resolve();
    await held.release.promise;
    return page;
  }
}

const agent = (connectionId?: string): PublishIdentity => {
  const identity: PublishIdentity = {
    keyName: 'test',
    viaToken: false,
    clientId: 'agent',
    access: { allows: () => true },
  };
  if (connectionId !== undefined) identity.connectionId = connectionId;
  return identity;
};

async function current(service: ChannelService, serial: string): Promise<Message> {
  const page = await service.history(CHANNEL, {
    direction: 'forwards',
    from: serial,
    until: serial,
    limit: 1,
  });
  return page.messages[0]!;
}

/** A run of the agent with a 100 ms lease, `partial` so far. */
async function startRun(service: ChannelService, holder: string | undefined): Promise<PublishResult> {
  const [run] = await service.publish(
    CHANNEL,
    [{ name: 'ai.run', data: 'partial', headers: { status: 'running' }, lease: 100 }],
    agent(holder),
  );
  return run!;
}

/** Records what each expiry resolved to (the service's leases call `expireLease` on the instance). */
function watchExpiries(service: ChannelService, outcomes: boolean[] = []): boolean[] {
  const expire = service.expireLease.bind(service);
  service.expireLease = async (channel, serial, due) => {
    const outcome = await expire(channel, serial, due);
    outcomes.push(outcome);
    return outcome;
  };
  return outcomes;
}

/** The two kinds of leases, each with a ChannelService over a HeldReadStore. */
const kinds: {
  name: string;
  skip?: string | undefined;
  /** `retryAfter`: the Redis leases' (an ending mark lives that long); default 150 ms. */
  start(
    t: TestContext,
    options?: { retryAfter?: number },
  ): Promise<{
    service: ChannelService;
    store: HeldReadStore;
    holder?: string;
    node?: () => ChannelService;
  }>;
}[] = [
  {
    name: 'node-local leases',
    async start(t) {
      const store = new HeldReadStore();
      const service = new ChannelService(store, new LocalHub(), DEFAULT_LIMITS);
      t.after(() => service.leases.close());
      // no connection: a REST publisher's lease runs out `ms` after its last write
      return { service, store };
    },
  },
  {
    name: 'Redis leases',
    skip: redisSkipReason(),
    async start(t, given = {}) {
      const redis = await startRedis();
      const connection = await connectRedis(redis.url, () => {});
      const store = new HeldReadStore();
      const errors: unknown[] = [];
      const nodes: ChannelService[] = [];
      // a node: its own ChannelService and leases; the store and Redis shared
      const node = () => {
        const made = new ChannelService(
          store,
          new LocalHub(),
          DEFAULT_LIMITS,
          undefined,
          (err) => errors.push(err),
          (options: LeaseManagerOptions): Leases =>
            new RedisLeases({
              ...options,
              connection,
              prefix: 'expiry-race',
              sweepInterval: 20,
              retryAfter: given.retryAfter ?? 150,
              holderTtl: 10_000,
            }),
        );
        nodes.push(made);
        return made;
      };
      const service = node();
      t.after(async () => {
        for (const made of nodes) await made.leases.close();
        await connection.close();
        await redis.close();
        assert.deepEqual(errors, []);
      });
      return { service, store, holder: 'conn-1', node };
    },
  },
];

for (const kind of kinds) {
  describe(`a lease expiry racing a write (${kind.name})`, { skip: kind.skip ?? false }, () => {
    it('a run that ends while its expiry is under way stays ended, not abandoned', async (t) => {
      const { service, store, holder } = await kind.start(t);
      const outcomes = watchExpiries(service);
      const run = await startRun(service, holder);
      const held = store.holdNextRead(run.serial);
      if (holder !== undefined) service.leases.holderLost(holder); // the agent's connection dropped
      await held.reading.promise; // the lease ran out, and its expiry has read the message…
      // …when the agent, back, ends the run
      await service.publish(
        CHANNEL,
        [{ action: 'update', serial: run.serial, id: 'end', headers: { status: 'done' }, lease: 0 }],
        agent(),
      );
      held.release.resolve();
      await waitFor(() => outcomes.length > 0, { message: 'the expiry never settled' });
      assert.deepEqual(outcomes, [false], 'the expiry stored nothing: the message had changed');
      // Past a retry (Redis: retryAfter 150 ms; node-local: the lease's 100 ms), the run is still done.
      await new Promise((r) => setTimeout(r, 400));
      const message = await current(service, run.serial);
      assert.equal(message.headers?.status, 'done');
      assert.deepEqual(outcomes, [false], 'a released lease is not expired again');
      assert.equal(service.leases.has(CHANNEL, run.serial), false);
    });

    for (const when of ['after', 'before'] as const) {
      it(`a message deleted while its expiry is under way (${when} the expiry's read) stays deleted`, async (t) => {
        // A delete ends a run like `lease: 0` does. Through a node that does not know the lease it
        // sets no ending mark (Redis): the expiry finds the lease released before it writes, or its
        // write is refused (after: `message_deleted`), or it reads the tombstone (before), and
        // either way the lease is done, nothing stored (an expiry that took the refusal for a
        // failure was retried, and logged as one).
        const { service, store, holder, node } = await kind.start(t);
        const deleting = node?.() ?? service;
        const outcomes = watchExpiries(service);
        if (deleting !== service) watchExpiries(deleting, outcomes); // its sweep may claim the lease
        const run = await startRun(service, holder);
        const held = store.holdNextRead(run.serial, when === 'before');
        if (holder !== undefined) service.leases.holderLost(holder);
        await held.reading.promise;
        await deleting.publish(CHANNEL, [{ action: 'delete', serial: run.serial, id: 'gone' }], agent());
        held.release.resolve();
        await waitFor(() => outcomes.length > 0, { message: 'the expiry never settled' });
        // the lease is done: the write found the tombstone (true), or (Redis, after) the expiry saw
        // before writing that the delete had released the lease (false); nothing stored either way
        const settled = [...outcomes];
        assert.equal(settled.length, 1);
        await new Promise((r) => setTimeout(r, 400)); // past a retry
        assert.equal((await current(service, run.serial)).action, 'delete');
        assert.deepEqual(outcomes, settled, 'not expired again');
        assert.equal(service.leases.has(CHANNEL, run.serial), false);
      });
    }

    it('a run written to (not ended) while its expiry is under way runs out again, with that write', async (t) => {
      const { service, store, holder } = await kind.start(t);
      const outcomes = watchExpiries(service);
      const run = await startRun(service, holder);
      const held = store.holdNextRead(run.serial);
      if (holder !== undefined) service.leases.holderLost(holder);
      await held.reading.promise;
      // a token from another client (no lease of its own: the run's lease is not renewed by it)
      await service.publish(
        CHANNEL,
        [{ action: 'append', serial: run.serial, id: 'late', data: ' and more' }],
        { ...agent(), clientId: 'someone-else' },
      );
      held.release.resolve();
      await waitFor(() => outcomes.includes(true), { message: 'the lease never ran out again' });
      assert.equal(outcomes[0], false);
      const message = await current(service, run.serial);
      assert.equal(message.headers?.status, 'abandoned');
      assert.equal(message.data, 'partial and more');
    });
  });
}

describe(
  'a lease expiry reading a run whose end is stored but not yet released (Redis leases)',
  {
    skip: redisSkipReason(),
  },
  () => {
    for (const via of ['the node holding the lease', 'a node that does not know the lease']) {
      it(`an end stored before the expiry reads the message is not abandoned while its release is on the way (the end through ${via})`, async (t) => {
        // On Redis the end's release is sent after the end is stored, so an expiry on another node can
        // read the ended message while the lease is still there. The end marks the run before it is
        // stored (Leases.ending), and the expiry looks for the mark between its read and its write.
        const { service, store, holder, node } = await kinds[1]!.start(t);
        // the agent may have reconnected to another node, which has not looked the lease up yet
        const ending = via.startsWith('a node') ? node!() : service;
        // either node's sweep may claim the overdue lease: both are watched
        const outcomes = watchExpiries(service);
        if (ending !== service) watchExpiries(ending, outcomes);
        const run = await startRun(service, holder);
        const held = store.holdNextRead(run.serial, true);
        service.leases.holderLost(holder!);
        await held.reading.promise; // the lease ran out; its expiry is about to read the message
        // the agent ends the run, and its release is held back on the way to Redis
        const release = ending.leases.release.bind(ending.leases);
        let released: (() => void) | undefined;
        ending.leases.release = (channel, serial) => {
          released = () => release(channel, serial);
        };
        await ending.publish(
          CHANNEL,
          [{ action: 'update', serial: run.serial, id: 'end', headers: { status: 'done' }, lease: 0 }],
          agent(holder),
        );
        assert.ok(released, 'the end released its lease');
        held.release.resolve(); // the expiry reads the ended message now
        await waitFor(() => outcomes.length > 0, { message: 'the expiry never settled' });
        assert.deepEqual(outcomes, [false], 'the expiry saw the run being ended and stored nothing');
        released();
        await new Promise((r) => setTimeout(r, 400)); // past the claim's retryAfter (150 ms)
        assert.equal((await current(service, run.serial)).headers?.status, 'done');
        assert.deepEqual(outcomes, [false]);
      });
    }

    it('an end is stored only once its mark is in Redis', async (t) => {
      // An expiry on another node (its own connection to Redis) looks for the mark after it read the
      // ended message: a mark still on its way when the end is stored would come too late for it.
      const { service, store, holder } = await kinds[1]!.start(t);
      const run = await startRun(service, holder);
      const order: string[] = [];
      const mark = service.leases.ending!.bind(service.leases);
      service.leases.ending = async (channel, serial) => {
        await new Promise(setImmediate); // a mark slower than the store's write
        await mark(channel, serial);
        order.push('marked');
      };
      const append = store.append.bind(store);
      store.append = (channel, ops, options) => {
        order.push('stored');
        return append(channel, ops, options);
      };
      await service.publish(
        CHANNEL,
        [{ action: 'update', serial: run.serial, id: 'end', headers: { status: 'done' }, lease: 0 }],
        agent(holder),
      );
      assert.deepEqual(order, ['marked', 'stored']);
    });

    it('a publish marks the runs it ends (lease 0, or a delete of a run this node holds), and no other write', async (t) => {
      const { service, holder } = await kinds[1]!.start(t);
      const marked: string[] = [];
      const mark = service.leases.ending!.bind(service.leases);
      service.leases.ending = async (channel, serial) => {
        marked.push(serial);
        await mark(channel, serial);
      };
      const a = await startRun(service, holder);
      const b = await startRun(service, holder);
      await service.publish(CHANNEL, [{ action: 'append', serial: a.serial, data: ' more' }], agent(holder));
      await service.publish(CHANNEL, [{ action: 'update', serial: a.serial, data: 'all' }], agent(holder));
      assert.deepEqual(marked, [], 'a write that ends nothing was marked (a round trip to Redis per token)');
      await service.publish(CHANNEL, [{ action: 'delete', serial: b.serial }], agent(holder));
      assert.deepEqual(marked, [b.serial], 'the delete of a held run was not marked');
      await service.publish(
        CHANNEL,
        [{ action: 'update', serial: a.serial, id: 'end', headers: { status: 'done' }, lease: 0 }],
        agent(holder),
      );
      assert.deepEqual(marked, [b.serial, a.serial]);
    });

    it('a run marked ending whose end never came (refused, or its node died) is still abandoned later', async (t) => {
      // a mark that lives 2 s: the first expiry finds it fresh however loaded the machine is
      const { service, holder } = await kinds[1]!.start(t, { retryAfter: 2_000 });
      const outcomes = watchExpiries(service);
      const run = await startRun(service, holder);
      await service.leases.ending!(CHANNEL, run.serial); // the end's mark; the end itself is lost
      service.leases.holderLost(holder!);
      await waitFor(() => outcomes.includes(true), { message: 'the lease never ran out' });
      assert.equal(outcomes[0], false, 'a fresh mark holds the expiry back');
      assert.equal((await current(service, run.serial)).headers?.status, 'abandoned');
    });
  },
);
