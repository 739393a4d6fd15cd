/**
 * The Redis engine's bus (redis-hub.ts, ARCHITECTURE.md §10, PROTOCOL.md §15) driven directly: one
 * `RedisHub` on a real redis-server, a second store on the same Redis standing for another node.
 * Listeners on the node keep receiving while others leave, the last one unsubscribes the bus, a lost
 * batch and a new epoch are read back from the store (in order, once, over several pages, each but
 * the last marked `more`, nothing live between them even when the store fails after some), the
 * position check leaves alone what it should, and `close()` stops everything in flight.
 *
 * The hub's store is seen through `StoreView`, which records the hub's `info` / `readSince` calls and
 * can hold a read's reply: this orders a read against the bus without any timing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep, setImmediate as tick } from 'node:timers/promises';
import type { Message } from '@mooring/protocol';
import { formatSerial, serialSeq } from '@mooring/protocol';
import {
  type Deferred,
  deferred,
  type RedisServer,
  redisSkipReason,
  startRedis,
  waitFor,
} from '@mooring/testkit';
import type { Delivery } from '../src/hub.ts';
import { RedisHub, type RedisHubOptions } from '../src/redis-hub.ts';
import { busBatchHead, busChannel, RedisStore } from '../src/store/redis-store.ts';
import type { NewOperation, RolledUpPage } from '../src/store/store.ts';

const APPEND = { maxMessageSize: 1 << 20 };
/** Bound of every wait: far above a passing run, short enough that a broken hub fails quickly. */
const WAIT = 5_000;

function creates(from: number, n: number): NewOperation[] {
  return Array.from({ length: n }, (_, i) => ({
    action: 'create' as const,
    id: `op${from + i}`,
    publisher: 's:server',
    data: `m${from + i}`,
  }));
}

/** The hub's store, recording what the hub asks it; `hold` keeps read replies until it resolves. */
class StoreView {
  readonly infos: string[] = [];
  readonly reads: { channel: string; after: string | undefined }[] = [];
  /** Channels of the reads whose reply came from Redis (before `hold`). */
  readonly replied: string[] = [];
  hold: Promise<void> | undefined;
  /** Channels of the info calls whose reply came from Redis (before `holdInfo`). */
  readonly infoReplied: string[] = [];
  holdInfo: Promise<void> | undefined;
  /** Reads to fail (as if Redis were unavailable) before asking Redis. */
  failReads = 0;
  /** A read after this serial fails once (as if Redis were unavailable) before asking Redis. */
  failReadAfter: string | undefined;
  /** Info answers "no log" while set (a position check then does nothing). */
  hideInfo = false;
  /** Info calls to fail (as if Redis were unavailable) before asking Redis. */
  failInfos = 0;
  readonly store: RedisStore;

  constructor(real: RedisStore) {
    this.store = {
      prefix: real.prefix,
      connection: real.connection,
      info: async (channel: string) => {
        this.infos.push(channel);
        if (this.failInfos > 0) {
          this.failInfos--;
          throw new Error('Redis is unavailable (test)');
        }
        if (this.hideInfo) return undefined;
        const info = await real.info(channel);
        this.infoReplied.push(channel);
        if (this.holdInfo) await this.holdInfo;
        return info;
      },
      readSince: async (channel: string, after: string | undefined, limit: number, maxBytes?: number) => {
        this.reads.push({ channel, after });
        if (this.failReads > 0 || (after !== undefined && after === this.failReadAfter)) {
          if (after === this.failReadAfter) this.failReadAfter = undefined;
          else this.failReads--;
          throw new Error('Redis is unavailable (test)');
        }
        const page: RolledUpPage = await real.readSince(channel, after, limit, maxBytes);
        this.replied.push(channel);
        if (this.hold) await this.hold;
        return page;
      },
    } as unknown as RedisStore;
  }

  count(list: 'infos' | 'infoReplied' | 'replied', channel: string): number {
    return this[list].filter((c) => c === channel).length;
  }
}

class Recorder {
  readonly deliveries: Delivery[] = [];
  readonly listener = (delivery: Delivery): void => {
    this.deliveries.push(delivery);
  };
  messages(): Message[] {
    return this.deliveries.flatMap((d) => d.messages);
  }
  seqs(): number[] {
    return this.messages().map((m) => serialSeq(m.version));
  }
  versions(): string[] {
    return this.messages().map((m) => m.version);
  }
  /** Each delivery: its seqs and whether it was marked rolled up. */
  shape(): [number[], boolean][] {
    return this.deliveries.map((d) => [d.messages.map((m) => serialSeq(m.version)), d.rolledUp === true]);
  }
  /** Each delivery: its first seq, its length, and `live`, `more` (a read-back page not its last) or `last`. */
  pages(): [number, number, 'live' | 'more' | 'last'][] {
    return this.deliveries.map((d) => [
      serialSeq(d.messages[0]!.version),
      d.messages.length,
      d.rolledUp ? (d.more ? 'more' : 'last') : 'live',
    ]);
  }
}

interface Node {
  prefix: string;
  hub: RedisHub;
  view: StoreView;
  /** Another node's store on the same prefix: what it stores reaches the hub over the bus only. */
  other: RedisStore;
  errors: unknown[];
  close(): Promise<void>;
}

const skip = redisSkipReason();

if (skip) {
  describe('RedisHub', () => {
    it('needs redis-server', (t) => t.skip(skip));
  });
} else {
  describe('RedisHub', () => {
    let redis: RedisServer;
    let prefixes = 0;

    before(async () => {
      redis = await startRedis();
    });
    after(async () => {
      await redis.close();
    });

    /** A hub on its own key prefix; the position check is off (a minute) unless a test sets it. */
    async function node(
      options: Omit<RedisHubOptions, 'store' | 'onError'> = {},
      commandTimeout?: number,
    ): Promise<Node> {
      const prefix = `hub${++prefixes}`;
      const store = await RedisStore.open({
        url: redis.url,
        prefix,
        ...(commandTimeout ? { commandTimeout } : {}),
      });
      const other = await RedisStore.open({ url: redis.url, prefix });
      const view = new StoreView(store);
      const errors: unknown[] = [];
      const hub = await RedisHub.open({
        checkInterval: 60_000,
        gapGrace: 20,
        ...options,
        store: view.store,
        onError: (err) => errors.push(err),
      });
      return {
        prefix,
        hub,
        view,
        other,
        errors,
        async close() {
          await hub.close();
          await store.close();
          await other.close();
        },
      };
    }

    /** Subscribes and waits until the feed is live: its first read-back answered and was handled. */
    async function subscribeLive(
      n: Node,
      channel: string,
      listener: (d: Delivery) => void,
    ): Promise<() => void> {
      const replies = n.view.count('replied', channel);
      const leave = n.hub.subscribe(channel, listener);
      await waitFor(() => n.view.count('replied', channel) > replies, {
        timeout: WAIT,
        message: `the feed of ${channel} never read back its start`,
      });
      await tick();
      return leave;
    }

    /** Subscribers of the channel's bus, as Redis counts them. */
    async function busSubscribers(n: Node, channel: string): Promise<number> {
      const reply = await redis.command('PUBSUB', 'SHARDNUMSUB', busChannel(n.prefix, channel));
      return Number(/:(\d+)\r\n$/.exec(reply)?.[1]);
    }

    /** Redis loses the channel (as after a flush): its next operation starts a new epoch. */
    async function forget(n: Node, channel: string): Promise<void> {
      await redis.command(
        'EVAL',
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 1",
        '0',
        `${n.prefix}:{${channel}}:*`,
      );
    }

    const until = (predicate: () => boolean, message: string) =>
      waitFor(predicate, { timeout: WAIT, message });

    it('a subscriber keeps receiving when another on the node leaves; the last to leave unsubscribes the bus', async () => {
      const n = await node();
      try {
        const a = new Recorder();
        const b = new Recorder();
        const leaveA = await subscribeLive(n, 'room', a.listener);
        const leaveB = n.hub.subscribe('room', b.listener);
        await n.other.append('room', creates(1, 1), APPEND);
        await until(() => a.seqs().length === 1 && b.seqs().length === 1, 'both subscribers got op 1');

        leaveA();
        assert.equal(n.hub.subscriberCount('room'), 1);
        await n.other.append('room', creates(2, 1), APPEND);
        await until(() => b.seqs().length === 2, 'the remaining subscriber got op 2 from another node');
        assert.deepEqual(b.seqs(), [1, 2]);
        assert.deepEqual(a.seqs(), [1], 'the one that left got nothing more');
        assert.equal(await busSubscribers(n, 'room'), 1);

        leaveB();
        assert.equal(n.hub.subscriberCount('room'), 0);
        await waitFor(async () => (await busSubscribers(n, 'room')) === 0, {
          timeout: WAIT,
          message: 'the bus subscription did not end with the last subscriber',
        });
        assert.doesNotThrow(leaveB, 'leaving twice is harmless');

        // subscribed again: a new feed, from the head of then
        const c = new Recorder();
        const leaveC = await subscribeLive(n, 'room', c.listener);
        assert.equal(await busSubscribers(n, 'room'), 1);
        await n.other.append('room', creates(3, 1), APPEND);
        await until(() => c.seqs().length === 1, 'the new subscriber got op 3');
        await tick();
        assert.deepEqual(c.seqs(), [3]);
        assert.deepEqual(b.seqs(), [1, 2]);
        leaveC();
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a subscribe right after the last unsubscribe keeps its bus subscription (30 rounds)', async () => {
      // node-redis took a channel whose unsubscribe was unanswered for subscribed: the subscribe only
      // added a listener, and the unsubscribe's answer left the node subscribed to nothing (4 in 30)
      const n = await node();
      try {
        for (let round = 0; round < 30; round++) {
          const channel = `again-${round}`;
          const leave = await subscribeLive(n, channel, new Recorder().listener);
          assert.equal(await busSubscribers(n, channel), 1);
          leave();
          const r = new Recorder();
          const leaveAgain = await subscribeLive(n, channel, r.listener); // before Redis answered
          await n.other.append(channel, creates(1, 1), APPEND);
          await until(() => r.seqs().length === 1, `round ${round}: op 1 never came over the bus`);
          assert.equal(await busSubscribers(n, channel), 1, `round ${round}`);
          leaveAgain();
        }
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a batch lost on the bus is read back after gapGrace: in order, once, marked rolled up; the stats count it', async () => {
      const n = await node({
        gapGrace: 20,
        filter: (_channel, payload) => busBatchHead(payload)?.last !== 2,
      });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'gap', r.listener);
        await n.other.append('gap', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        await n.other.append('gap', creates(2, 1), APPEND); // lost on the bus
        await n.other.append('gap', creates(3, 1), APPEND);
        await until(() => r.seqs().length === 3, 'the lost op 2 was read back with op 3');
        await n.other.append('gap', creates(4, 1), APPEND);
        await until(() => r.seqs().length === 4, 'op 4 delivered');
        await tick();
        assert.deepEqual(r.seqs(), [1, 2, 3, 4]);
        assert.deepEqual(r.shape(), [
          [[1], false],
          [[2, 3], true],
          [[4], false],
        ]);
        assert.deepEqual({ ...n.hub.stats }, { received: 3, dropped: 1, repairs: 1, skipped: 0 });
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a read-back over several pages starts after the last delivered op, goes on from each page, delivers all once', async () => {
      const lost = (payload: string) => {
        const last = busBatchHead(payload)?.last ?? 0;
        return last >= 2 && last <= 1201;
      };
      const n = await node({ gapGrace: 20, filter: (_channel, payload) => !lost(payload) });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'pages', r.listener);
        const first = await n.other.append('pages', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        for (let i = 0; i < 3; i++) await n.other.append('pages', creates(2 + i * 400, 400), APPEND); // lost
        await n.other.append('pages', creates(1202, 1), APPEND);
        await until(() => r.seqs().length >= 1202, 'ops 2..1202 read back');
        await tick();
        assert.deepEqual(
          r.seqs(),
          Array.from({ length: 1202 }, (_, i) => i + 1),
        );
        const at = (seq: number) => formatSerial(first.epoch, seq);
        assert.deepEqual(
          n.view.reads.filter((x) => x.channel === 'pages').map((x) => x.after),
          [undefined, at(1), at(501), at(1001)],
          'the start read, then one repair of three pages (500 each) after op 1, 501 and 1001',
        );
        assert.deepEqual(
          r.pages(),
          [
            [1, 1, 'live'],
            [2, 500, 'more'],
            [502, 500, 'more'],
            [1002, 201, 'last'],
          ],
          'every page but the last says the read-back goes on',
        );
        assert.equal(n.hub.stats.repairs, 1);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a read-back that fails after a page marked `more` delivers nothing live until it is read back to its end', async () => {
      // ops 2..7 lost, read back two a page; the third read fails: page [2, 3] went out marked
      // `more`, so its subscribers hold messages changed later (4..7) in an older state. An op that
      // follows the last delivered one (4, this node's own publish) must not reach them as an
      // operation: it is held, and the read-back made again from page [2, 3] on
      const n = await node({
        gapGrace: 20,
        readBackPage: 2,
        filter: (_channel, payload) => {
          const last = busBatchHead(payload)?.last ?? 0;
          return last < 2 || last > 7;
        },
      });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'failing', r.listener);
        const first = await n.other.append('failing', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        const lost = await n.other.append('failing', creates(2, 6), APPEND); // lost on the bus
        const at = (seq: number) => formatSerial(first.epoch, seq);
        n.view.failReadAfter = at(5);
        await n.other.append('failing', creates(8, 1), APPEND); // the jump
        await until(() => n.errors.length === 1, 'the third read of the read-back failed');
        assert.deepEqual(r.pages(), [
          [1, 1, 'live'],
          [2, 2, 'more'],
        ]);
        n.hub.publish('failing', [lost.messages[2]!]); // op 4
        await until(() => r.seqs().at(-1) === 8, 'ops 4..8 delivered');
        await tick();
        assert.deepEqual(r.pages(), [
          [1, 1, 'live'],
          [2, 2, 'more'],
          [4, 2, 'more'],
          [6, 2, 'more'],
          [8, 1, 'last'],
        ]);
        assert.deepEqual(
          n.view.reads.filter((x) => x.channel === 'failing').map((x) => x.after),
          [undefined, at(1), at(3), at(5), at(3), at(5), at(7)],
          'read back again from the last page delivered',
        );
      } finally {
        await n.close();
      }
    });

    it('a read-back that failed with batches held is made again by the position check (no further batch comes)', async () => {
      const n = await node({
        gapGrace: 20,
        checkInterval: 20,
        filter: (_channel, payload) => {
          const last = busBatchHead(payload)?.last ?? 0;
          return last !== 2 && last !== 3;
        },
      });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'stalled', r.listener);
        n.view.hideInfo = true; // no position check finds the lost ops before the gap does
        await n.other.append('stalled', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        n.view.failReads = 1;
        await n.other.append('stalled', creates(2, 2), APPEND); // lost
        await n.other.append('stalled', creates(4, 1), APPEND); // held behind the gap; its read-back fails
        await until(() => n.errors.length === 1, 'the read-back failed');
        n.view.hideInfo = false;
        await until(() => r.seqs().length === 4, 'ops 2..4 read back by the position check');
        assert.deepEqual(r.seqs(), [1, 2, 3, 4]);
      } finally {
        await n.close();
      }
    });

    it('a new epoch on the bus is delivered from its start; a late batch of the older epoch is dropped', async () => {
      const payloads: string[] = [];
      const n = await node({
        filter: (_channel, payload) => {
          payloads.push(payload);
          return true;
        },
      });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'epochs', r.listener);
        const e1 = (await n.other.append('epochs', creates(1, 1), APPEND)).epoch;
        await until(() => r.seqs().length === 1, 'op 1 of the first epoch delivered');
        const stale = payloads[0]!;
        await forget(n, 'epochs');
        const e2 = (await n.other.append('epochs', creates(2, 2), APPEND)).epoch;
        assert.ok(e2 > e1, 'the new epoch sorts after the old one');
        await until(() => r.seqs().length === 3, 'the first batch of the new epoch delivered from the bus');
        assert.equal(n.hub.stats.repairs, 0, 'delivered from the bus, not read back');

        await redis.command('SPUBLISH', busChannel(n.prefix, 'epochs'), stale);
        await until(() => n.hub.stats.received === 3, 'the stale batch reached the hub');
        await n.other.append('epochs', creates(4, 1), APPEND);
        await until(() => r.seqs().length >= 4, 'op 3 of the new epoch delivered');
        await tick();
        assert.deepEqual(r.versions(), [
          formatSerial(e1, 1),
          formatSerial(e2, 1),
          formatSerial(e2, 2),
          formatSerial(e2, 3),
        ]);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a log that goes on in a new epoch (a new Redis) is read back from where the feed was, not from its start', async () => {
      const n = await node();
      try {
        const r = new Recorder();
        await subscribeLive(n, 'goes-on', r.listener);
        const e1 = (await n.other.append('goes-on', creates(1, 5), APPEND)).epoch;
        await until(() => r.seqs().length === 5, 'the first five delivered');
        // as after a Redis restart: the channel was written by another Redis
        await redis.command('HSET', `${n.prefix}:{goes-on}:meta`, 'run', 'another-redis');
        const e2 = (await n.other.append('goes-on', creates(6, 1), APPEND)).epoch;
        assert.ok(e2 > e1);
        await until(() => r.versions().includes(formatSerial(e2, 6)), 'op 6, in the new epoch, delivered');
        await tick();
        assert.deepEqual(
          r.versions(),
          [1, 2, 3, 4, 5].map((seq) => formatSerial(e1, seq)).concat(formatSerial(e2, 6)),
          'only what changed after the feed’s position, not the whole log again',
        );
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a new epoch whose batches were all lost is found by the position check and read back from its start', async () => {
      let dropAll = false;
      const n = await node({ checkInterval: 30, filter: () => !dropAll });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'reset', r.listener);
        const e1 = (await n.other.append('reset', creates(1, 5), APPEND)).epoch;
        await until(() => r.seqs().length === 5, 'ops 1..5 of the first epoch delivered');
        dropAll = true;
        await forget(n, 'reset');
        const e2 = (await n.other.append('reset', creates(6, 3), APPEND)).epoch;
        assert.notEqual(e2, e1);
        await until(() => r.seqs().length >= 8, 'the new epoch read back');
        await tick();
        assert.deepEqual(r.versions(), [
          ...[1, 2, 3, 4, 5].map((s) => formatSerial(e1, s)),
          ...[1, 2, 3].map((s) => formatSerial(e2, s)),
        ]);
        assert.deepEqual(r.shape().at(-1), [[1, 2, 3], true]);
        assert.equal(n.hub.stats.repairs, 1);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a batch held while the feed starts is delivered once the start read-back (empty) is done', async () => {
      const n = await node();
      try {
        await n.other.append('held', creates(1, 1), APPEND);
        const gate = deferred();
        n.view.hold = gate.promise;
        const r = new Recorder();
        n.hub.subscribe('held', r.listener);
        // the start read (after op 1) has its answer, held back: the feed is still starting
        await until(() => n.view.count('replied', 'held') === 1, 'the start read answered');
        await n.other.append('held', creates(2, 1), APPEND);
        await until(() => n.hub.stats.received === 1, 'op 2 reached the starting feed');
        assert.deepEqual(r.seqs(), [], 'held while starting');
        gate.resolve();
        n.view.hold = undefined;
        await until(() => r.seqs().length === 1, 'op 2 delivered after the start');
        await tick();
        assert.deepEqual(r.seqs(), [2]);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('the position check reads back neither a channel that is up to date or has no log, nor one waiting out a gap', async () => {
      const rejections: unknown[] = [];
      const onRejection = (reason: unknown) => rejections.push(reason);
      process.on('unhandledRejection', onRejection);
      const n = await node({ gapGrace: 60_000, checkInterval: 20 });
      try {
        const gapped = new Recorder();
        await subscribeLive(n, 'gapped', gapped.listener);
        await subscribeLive(n, 'empty', () => {});
        await n.other.append('idle', creates(1, 1), APPEND);
        await subscribeLive(n, 'idle', () => {});
        const m1 = (await n.other.append('gapped', creates(1, 1), APPEND)).messages[0]!;
        await until(() => gapped.seqs().length === 1, 'op 1 delivered');
        // this node's own publish of op 3 (op 2 is not stored): a jump, held for gapGrace (a minute)
        const v3 = formatSerial(m1.version.slice(0, m1.version.indexOf('.')), 3);
        n.hub.publish('gapped', [{ ...m1, id: 'op3', serial: v3, version: v3 }]);
        const gappedInfos = n.view.count('infos', 'gapped');
        const idleInfos = n.view.count('infos', 'idle');
        await until(() => n.view.count('infos', 'idle') >= idleInfos + 3, 'three position checks ran');
        await tick();
        assert.equal(
          n.view.count('infos', 'gapped'),
          gappedInfos,
          'the channel waiting out a gap was not checked',
        );
        assert.equal(n.hub.stats.repairs, 0, 'nothing was read back');
        assert.deepEqual(gapped.seqs(), [1]);
        assert.ok(n.view.count('infos', 'empty') > 0, 'the channel without a log was checked');
        assert.deepEqual(rejections, []);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
        process.off('unhandledRejection', onRejection);
      }
    });

    it('after the bus reconnects, the position check is made again until it works, then no more (not every 2 s for ever)', async () => {
      const n = await node(); // the periodic check a minute away: only the catch-up checks
      try {
        await subscribeLive(n, 'reconnected', () => {});
        const before = n.view.count('infos', 'reconnected');
        n.view.failInfos = 1; // the first check after the reconnect fails (Redis still coming back)
        await redis.command('CLIENT', 'KILL', 'TYPE', 'pubsub');
        await until(
          () => n.view.count('infos', 'reconnected') >= before + 2,
          'the failed check was not made again',
        );
        const checks = n.view.count('infos', 'reconnected');
        // the retry delay doubles up to 2 s: a catch-up that went on after it worked would check again
        await sleep(3_000);
        assert.equal(n.view.count('infos', 'reconnected'), checks, 'checked again after a check that worked');
        // (the bus's own lost connection is reported too)
        assert.equal(
          n.errors.filter((e) => String(e).includes('unavailable (test)')).length,
          1,
          'the failed check was reported',
        );
      } finally {
        await n.close();
      }
    });

    it('close() drops a read-back in flight: nothing is delivered after it', async () => {
      const n = await node({
        gapGrace: 10,
        filter: (_channel, payload) => busBatchHead(payload)?.last !== 2,
      });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'closing', r.listener);
        await n.other.append('closing', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        const gate: Deferred<void> = deferred();
        n.view.hold = gate.promise;
        const replies = n.view.count('replied', 'closing');
        await n.other.append('closing', creates(2, 1), APPEND); // lost
        await n.other.append('closing', creates(3, 1), APPEND);
        await until(() => n.view.count('replied', 'closing') > replies, 'the repair read answered');
        await n.hub.close();
        gate.resolve();
        await tick();
        await tick();
        assert.deepEqual(r.seqs(), [1], 'the read-back ended with close()');
      } finally {
        await n.close();
      }
    });

    it('a subscribe after close() starts nothing: its start fails once and is not retried', async () => {
      // the closed subscriber connection never answers: its deadline (commandTimeout) fails the start
      const n = await node({}, 300);
      try {
        await n.hub.close();
        n.hub.subscribe('late', () => {});
        await until(() => n.errors.length >= 1, 'the start after close failed');
        // a retry would come 500 ms after the failure: wait past it (the one fixed wait here)
        await new Promise((resolve) => setTimeout(resolve, 1_200));
        assert.equal(n.errors.length, 1, `retried: ${n.errors.map(String).join('; ')}`);
      } finally {
        await n.close();
      }
    });

    it('a bus payload that is not a stored batch is ignored', async () => {
      const n = await node();
      try {
        const r = new Recorder();
        await subscribeLive(n, 'noise', r.listener);
        await redis.command('SPUBLISH', busChannel(n.prefix, 'noise'), 'not a batch');
        await until(() => n.hub.stats.received === 1, 'the payload reached the hub');
        await n.other.append('noise', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('a leaver’s read-back still in flight delivers nothing to a later subscriber of the channel', async () => {
      const n = await node({
        gapGrace: 10,
        filter: (_channel, payload) => busBatchHead(payload)?.last !== 2,
      });
      try {
        const first = new Recorder();
        const leave = await subscribeLive(n, 'again', first.listener);
        await n.other.append('again', creates(1, 1), APPEND);
        await until(() => first.seqs().length === 1, 'op 1 delivered');
        const gate = deferred();
        n.view.hold = gate.promise;
        const replies = n.view.count('replied', 'again');
        await n.other.append('again', creates(2, 1), APPEND); // lost
        await n.other.append('again', creates(3, 1), APPEND);
        await until(
          () => n.view.count('replied', 'again') === replies + 1,
          'the repair read (ops 2, 3) answered',
        );
        leave();
        // (the bus unsubscribe is let through first: a subscribe racing it can lose the subscription)
        await waitFor(async () => (await busSubscribers(n, 'again')) === 0, {
          timeout: WAIT,
          message: 'the bus subscription did not end',
        });
        // a new subscriber: a new feed, starting after op 3 (its own read is held as well)
        const second = new Recorder();
        n.hub.subscribe('again', second.listener);
        await until(
          () => n.view.count('replied', 'again') === replies + 2,
          'the new feed’s start read answered',
        );
        gate.resolve();
        n.view.hold = undefined;
        await tick();
        await n.other.append('again', creates(4, 1), APPEND);
        await until(() => second.seqs().length >= 1, 'op 4 delivered');
        await tick();
        assert.deepEqual(second.seqs(), [4], 'the old feed’s read-back (ops 2, 3) was not delivered');
        assert.deepEqual(first.seqs(), [1]);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('more than 10,000 ops held behind a gap are dropped and read back at once, not after gapGrace', async () => {
      const n = await node({
        gapGrace: 60_000,
        filter: (_channel, payload) => busBatchHead(payload)?.last !== 2,
      });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'flood', r.listener);
        await n.other.append('flood', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        await n.other.append('flood', creates(2, 1), APPEND); // lost
        for (let i = 0; i < 11; i++) await n.other.append('flood', creates(3 + i * 1000, 1000), APPEND);
        await waitFor(() => r.seqs().length >= 11_002, {
          timeout: 15_000,
          message: 'the 11,000 ops held behind the gap were not read back',
        });
        await tick();
        const seqs = r.seqs();
        assert.equal(seqs.length, 11_002);
        assert.ok(
          seqs.every((s, i) => s === i + 1),
          'every op once, in order',
        );
        assert.equal(n.hub.stats.repairs, 1);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('more than 10,000 ops held while a read-back runs are read back right after it, not at the next position check', async () => {
      const n = await node({
        gapGrace: 20,
        filter: (_channel, payload) => busBatchHead(payload)?.last !== 2,
      });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'overflow', r.listener);
        await n.other.append('overflow', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        const gate = deferred();
        n.view.hold = gate.promise;
        const replied = n.view.count('replied', 'overflow');
        await n.other.append('overflow', creates(2, 1), APPEND); // lost
        await n.other.append('overflow', creates(3, 1), APPEND); // the jump: a read-back of 2..3
        await until(() => n.view.count('replied', 'overflow') > replied, 'the read-back read 2..3');
        // stored after that read, and held while the read-back runs (behind op 3, held since the
        // jump): 10,001 ops, too many to hold, dropped with the last batch — none comes after it
        const received = n.hub.stats.received;
        for (let i = 0; i < 10; i++) await n.other.append('overflow', creates(4 + i * 1000, 1000), APPEND);
        await until(() => n.hub.stats.received === received + 10, 'the 10 batches reached the node');
        n.view.hold = undefined;
        gate.resolve();
        await until(() => r.seqs().length === 10_003, 'ops 4..10,003 read back');
        await tick();
        assert.ok(
          r.seqs().every((s, i) => s === i + 1),
          'every op once, in order',
        );
        // and that read-back was the last: the feed is live again, reading nothing more
        const reads = n.view.count('replied', 'overflow');
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.equal(n.view.count('replied', 'overflow'), reads, 'no read-back after the one that caught up');
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });

    it('after a read-back fails, a gap timer with nothing held reads nothing back (the position check will)', async () => {
      const n = await node({ gapGrace: 30, filter: () => false });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'failed', r.listener);
        const m1 = (await n.other.append('failed', creates(1, 1), APPEND)).messages[0]!;
        n.hub.publish('failed', [m1]);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        // this node's own publish of 10,001 ops after a gap: too many to hold, read back at once (failing)
        const epoch = m1.version.slice(0, m1.version.indexOf('.'));
        const flood = Array.from({ length: 10_001 }, (_, i) => {
          const v = formatSerial(epoch, 3 + i);
          return { ...m1, id: `f${i}`, serial: v, version: v };
        });
        n.view.failReads = 1;
        const reads = n.view.reads.length;
        n.hub.publish('failed', flood);
        assert.equal(n.hub.stats.repairs, 1, 'read back at once');
        // the gap timer (30 ms) was set before this one (60 ms): it has fired when this one fires
        await new Promise((resolve) => setTimeout(resolve, 60));
        await tick();
        assert.equal(n.view.reads.length, reads + 1, 'only the failed read');
        assert.equal(n.hub.stats.repairs, 1);
        assert.equal(n.errors.length, 1);
      } finally {
        await n.close();
      }
    });

    it('a position check answered after its channel’s last subscriber left reads nothing back', async () => {
      const n = await node({
        checkInterval: 20,
        filter: (_channel, payload) => busBatchHead(payload)?.last !== 2,
      });
      try {
        const r = new Recorder();
        const leave = await subscribeLive(n, 'gone', r.listener);
        await n.other.append('gone', creates(1, 1), APPEND);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        const gate = deferred();
        n.view.holdInfo = gate.promise;
        const answered = n.view.count('infoReplied', 'gone');
        await n.other.append('gone', creates(2, 1), APPEND); // lost: the check would read it back
        const head = await n.other.info('gone');
        assert.equal(head && serialSeq(head.head), 2);
        // a check sent after op 2 was stored, its answer (head 2) held
        await until(() => n.view.count('infoReplied', 'gone') >= answered + 2, 'a check after op 2 answered');
        const reads = n.view.reads.length;
        leave();
        gate.resolve();
        n.view.holdInfo = undefined;
        await tick();
        await tick();
        assert.equal(n.hub.stats.repairs, 0);
        assert.equal(n.view.reads.length, reads, 'no read for a feed that ended');
        assert.deepEqual(r.seqs(), [1]);
      } finally {
        await n.close();
      }
    });

    it('checkInterval 0 checks at every turn (0 is not “the default”)', async () => {
      const n = await node({ checkInterval: 0 });
      try {
        await subscribeLive(n, 'often', () => {});
        const infos = n.view.count('infos', 'often');
        // a 1 ms check interval runs well within 1 s (a check in flight under load delays the
        // next one); the default 5 s would not
        await waitFor(() => n.view.count('infos', 'often') > infos, {
          timeout: 1_000,
          message: 'the position check ran within 1 s',
        });
      } finally {
        await n.close();
      }
    });

    it('gapGrace 0 reads a gap back at once (0 is not “the default”)', async () => {
      const n = await node({ gapGrace: 0, filter: () => false });
      try {
        const r = new Recorder();
        await subscribeLive(n, 'zero', r.listener);
        const r1 = await n.other.append('zero', creates(1, 1), APPEND);
        n.hub.publish('zero', r1.messages);
        await until(() => r.seqs().length === 1, 'op 1 delivered');
        // this node's own publishes, out of order: op 3 (a jump past op 2), then op 2 20 ms later
        const r2 = await n.other.append('zero', creates(2, 1), APPEND);
        const r3 = await n.other.append('zero', creates(3, 1), APPEND);
        n.hub.publish('zero', r3.messages);
        assert.equal(n.hub.stats.repairs, 0);
        // a gap timer of 0 ms (made before this 20 ms one) has fired; one of 50 ms would not have
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.equal(n.hub.stats.repairs, 1, 'the gap was read back at once');
        n.hub.publish('zero', r2.messages);
        await until(() => r.seqs().length >= 3, 'ops 2, 3 delivered');
        await tick();
        assert.deepEqual(r.seqs(), [1, 2, 3]);
        assert.deepEqual(n.errors, []);
      } finally {
        await n.close();
      }
    });
  });
}
