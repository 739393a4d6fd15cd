/**
 * Rate budgets counted in Redis (redis-identity-budgets.ts), driven directly on a real
 * redis-server: two instances on one Redis are two nodes. Through real servers and clients:
 * redis-nodes.test.ts ("publish budgets").
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_LIMITS, type Limits } from '@mooring/protocol';
import { FaultProxy, type RedisServer, redisSkipReason, startRedis } from '@mooring/testkit';
import { type BudgetIdentity, connectRules, publishRules } from '../src/identity-budgets.ts';
import { RedisIdentityBudgets } from '../src/redis-identity-budgets.ts';
import { RedisStore } from '../src/store/redis-store.ts';

const skip = redisSkipReason();

const writer: BudgetIdentity = { keyName: 'test', clientId: 'writer', viaToken: true };

/** The message of the take's rate_limited refusal; undefined when it is granted. */
async function refusal(take: () => Promise<void> | undefined): Promise<string | undefined> {
  try {
    await take();
    return undefined;
  } catch (err) {
    assert.equal((err as { code?: string }).code, 'rate_limited', String(err));
    return (err as Error).message;
  }
}

/** Resolves to true when the take is granted, false when refused with rate_limited. */
const granted = async (take: () => Promise<void> | undefined): Promise<boolean> =>
  (await refusal(take)) === undefined;

describe('RedisIdentityBudgets', { skip: skip ?? false }, () => {
  let redis: RedisServer;
  let store: RedisStore;
  let prefix = 0;
  before(async () => {
    redis = await startRedis();
    store = await RedisStore.open({ url: redis.url, prefix: 'unused' });
  });
  after(async () => {
    await store?.close();
    await redis?.close();
  });

  const budgets = (
    p: string,
    limits: Partial<Limits>,
    connection = store.connection,
    onError: (err: unknown) => void = () => {},
  ) =>
    new RedisIdentityBudgets({
      connection,
      prefix: p,
      rules: publishRules({ ...DEFAULT_LIMITS, ...limits }),
      onError,
    });

  it('two nodes draw from one bucket: what one spent, the other cannot', async () => {
    const p = `t${++prefix}`;
    const a = budgets(p, { maxPublishRate: 10 });
    const b = budgets(p, { maxPublishRate: 10 });
    assert.ok(await granted(() => a.take(writer, 8, 0)));
    // 2 left (and a tenth of a token per 10 ms): 8 more on the other node are refused, whole
    assert.equal(await granted(() => b.take(writer, 8, 0)), false);
    assert.ok(await granted(() => b.take(writer, 2, 0)));
    assert.equal(await granted(() => a.take(writer, 1, 0)), false);
    // another identity has a bucket of its own
    assert.ok(await granted(() => b.take({ ...writer, clientId: 'other' }, 10, 0)));
  });

  it('bytes: two nodes draw from one bucket, and one publish over the burst passes when it is full', async () => {
    const p = `t${++prefix}`;
    const limits = { maxPublishRate: 1_000, maxPublishBytesRate: 1_000 };
    const a = budgets(p, limits);
    const b = budgets(p, limits);
    assert.ok(await granted(() => a.take(writer, 1, 600)));
    assert.equal(await granted(() => b.take(writer, 1, 600)), false);
    assert.ok(await granted(() => b.take(writer, 1, [{ data: 'x'.repeat(300) }])));
    const large = { ...writer, clientId: 'large' };
    assert.ok(await granted(() => a.take(large, 1, 5_000)));
    assert.equal(await granted(() => b.take(large, 1, 1)), false);
  });

  it('a take refused for its bytes takes no operations, and one refused for its operations no bytes', async () => {
    const p = `t${++prefix}`;
    const a = budgets(p, { maxPublishRate: 2, maxPublishBytesRate: 1_000 });
    assert.ok(await granted(() => a.take(writer, 1, 900)));
    assert.equal(await granted(() => a.take(writer, 1, 900)), false); // bytes short
    assert.ok(await granted(() => a.take(writer, 1, 50))); // the second operation is still there
    assert.equal(await granted(() => a.take(writer, 1, 1)), false); // operations short
    const b = budgets(p, { maxPublishRate: 2, maxPublishBytesRate: 1_000 });
    assert.ok(await granted(() => b.take({ ...writer, clientId: 'fresh' }, 1, 1_000)), 'a full bytes bucket');
  });

  it('asks Redis for bytes alone when its operations allowance covers the take, and says which budget refused', async () => {
    const p = `t${++prefix}`;
    const a = budgets(p, { maxPublishRate: 1_000, maxPublishBytesRate: 1_000 });
    assert.ok(await granted(() => a.take(writer, 1, 10))); // an allowance of operations, 10 bytes
    assert.ok(await granted(() => a.take(writer, 1, 100)), 'more bytes asked for, no operations');
    assert.match(
      (await refusal(() => a.take(writer, 1, 5_000))) ?? 'granted',
      /1000 bytes published per second/,
    );
    const b = budgets(p, { maxPublishRate: 1, maxPublishBytesRate: 1_000 });
    const other = { ...writer, clientId: 'other' };
    assert.ok(await granted(() => b.take(other, 1, 1)));
    assert.match(
      (await refusal(() => b.take(other, 1, 1))) ?? 'granted',
      /1 operations published per second/,
    );
  });

  it('a bytes limit turned on for an identity already counted (a node with the new limits) starts from a full bucket', async () => {
    const p = `t${++prefix}`;
    const before = budgets(p, { maxPublishRate: 1_000, maxPublishBytesRate: 0 });
    assert.ok(await granted(() => before.take(writer, 1, 10))); // operations counted, bytes not
    const errors: unknown[] = [];
    const after = budgets(p, { maxPublishRate: 1_000, maxPublishBytesRate: 1_000 }, store.connection, (err) =>
      errors.push(err),
    );
    assert.ok(await granted(() => after.take(writer, 1, 1_000)), 'the whole burst of bytes');
    assert.deepEqual(errors, [], 'Redis answered the take');
  });

  it('a node spends its allowance without asking Redis, and never more than Redis granted', async () => {
    const p = `t${++prefix}`;
    const a = budgets(p, { maxPublishRate: 1_000 });
    // the first take asks Redis for an allowance of 10 (a hundredth of a second's rate)
    assert.ok(await granted(() => a.take(writer, 1, 0)));
    for (let i = 0; i < 9; i++)
      assert.equal(a.take(writer, 1, 0), undefined, `take ${i + 2} waited for Redis`);
    // the eleventh is beyond the allowance: it asks again
    const eleventh = a.take(writer, 1, 0);
    assert.ok(eleventh instanceof Promise, 'spent more than the allowance without asking Redis');
    await eleventh;
  });

  it('takes of one identity are decided in the order they were asked for, even when an earlier one waits for Redis', async () => {
    const p = `t${++prefix}`;
    const a = budgets(p, { maxPublishRate: 1_000 });
    await a.take(writer, 8, 0); // an allowance of 10: 2 left
    const decided: string[] = [];
    const big = a.take(writer, 5, 0); // beyond the allowance: waits for Redis
    assert.ok(big instanceof Promise);
    void big.then(() => decided.push('5 ops'));
    // within the allowance, but asked after the waiting one: it must not overtake it
    const small = a.take(writer, 1, 0);
    if (small === undefined) decided.push('1 op');
    else void small.then(() => decided.push('1 op'));
    await Promise.all([big, small]);
    assert.deepEqual(decided, ['5 ops', '1 op']);
  });

  it('a refused take leaves the next one of the identity undisturbed', async () => {
    const p = `t${++prefix}`;
    const a = budgets(p, { maxPublishRate: 10 });
    const over = a.take(writer, 11, 0);
    const fits = a.take(writer, 10, 0);
    assert.equal(await granted(() => over), false);
    assert.ok(await granted(() => fits));
  });

  it('tokens without a clientId: each token (holder) has buckets of its own, whose keys expire once full', async () => {
    const p = `t${++prefix}`;
    const limits = { maxPublishRate: 10, maxPublishBytesRate: 1_000 };
    const a = budgets(p, limits);
    const b = budgets(p, limits);
    const holderA: BudgetIdentity = { keyName: 'test', viaToken: true, holder: 'token-a' };
    const holderB: BudgetIdentity = { keyName: 'test', viaToken: true, holder: 'token-b' };
    assert.ok(await granted(() => a.take(holderA, 10, 900)));
    assert.equal(await granted(() => b.take(holderA, 1, 1)), false, "A's budget, on either node");
    assert.ok(await granted(() => b.take(holderB, 10, 900)), "B's budget is B's own");
    assert.equal(await granted(() => a.take(holderB, 5, 1)), false);
    const keys = (await store.connection.send(undefined, ['KEYS', `${p}:rate:publish:*`])) as string[];
    assert.equal(keys.length, 2, 'one hash per token');
    for (const key of keys) {
      const ttl = Number(await store.connection.send(key, ['PTTL', key]));
      assert.ok(ttl > 0 && ttl <= 3_000, `${key} expires once full again (PTTL ${ttl})`);
    }
  });

  it('API keys without maxKeyPublishRate are not counted: nothing is asked of Redis', async () => {
    const p = `t${++prefix}`;
    const a = budgets(p, { maxPublishRate: 1 });
    for (let i = 0; i < 100; i++)
      assert.equal(a.take({ keyName: 'test', clientId: 'agent', viaToken: false }, 10, 0), undefined);
    assert.equal(a.size, 0);
  });

  it('connection requests: a token clientId gets a burst of twice its connection budget, then maxConnectRate; keys are not counted', async () => {
    const p = `t${++prefix}`;
    const limits = { ...DEFAULT_LIMITS, maxConnectRate: 2, maxConnectionsPerClient: 3 };
    const a = new RedisIdentityBudgets({
      connection: store.connection,
      prefix: p,
      rules: connectRules(limits),
      onError: () => {},
    });
    const b = new RedisIdentityBudgets({
      connection: store.connection,
      prefix: p,
      rules: connectRules(limits),
      onError: () => {},
    });
    for (let i = 0; i < 6; i++)
      assert.ok(await granted(() => (i % 2 ? a : b).take(writer, 1, 0)), `request ${i + 1}`);
    assert.equal(
      await granted(() => a.take(writer, 1, 0)),
      false,
      'a seventh request at once, on either node',
    );
    assert.equal(await granted(() => b.take(writer, 1, 0)), false);
    const agent = { keyName: 'test', clientId: 'agent', viaToken: false };
    for (let i = 0; i < 20; i++) assert.equal(a.take(agent, 1, 0), undefined);
  });

  it('while Redis does not answer, the node counts alone (told once) instead of refusing or hanging', async () => {
    const proxy = await FaultProxy.start({ port: redis.port });
    const errors: unknown[] = [];
    const cut = await RedisStore.open({
      url: `redis://127.0.0.1:${proxy.port}`,
      prefix: 'unused',
      commandTimeout: 300,
    });
    try {
      const a = budgets(`t${++prefix}`, { maxPublishRate: 10 }, cut.connection, (err) => errors.push(err));
      proxy.blackhole();
      assert.ok(await granted(() => a.take(writer, 6, 0)));
      assert.ok(await granted(() => a.take(writer, 4, 0)));
      // the node's own bucket still limits: 10 per second
      assert.equal(await granted(() => a.take(writer, 5, 0)), false);
      assert.equal(errors.length, 1, 'the outage was told more than once');
    } finally {
      cut.connection.destroy();
      await proxy.close();
    }
  });
});
