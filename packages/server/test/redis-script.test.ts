/**
 * Running a Lua script (`RedisScript`) on a real redis-server: by SHA once Redis knows it, in full
 * again only when Redis answers that it forgot it (NOSCRIPT), never because the script itself failed
 * (what it wrote before failing stays written: a second run would write it twice).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import { RedisScript } from '../src/redis-script.ts';
import { connectRedis } from '../src/store/redis-connection.ts';

describe('RedisScript', { skip: redisSkipReason() ?? false }, () => {
  it('a script that fails runs once per call, by SHA or in full; a forgotten one is sent again in full', async (t) => {
    const redis = await startRedis();
    const connection = await connectRedis(redis.url, () => {});
    t.after(async () => {
      await connection.close();
      await redis.close();
    });
    const failing = new RedisScript(
      "redis.call('INCR', KEYS[1]); return redis.error_reply('refused after counting')",
    );
    const runs = async () => Number(await connection.send('runs', ['GET', 'runs']));
    await assert.rejects(failing.run(connection, ['runs'], []), /refused after counting/); // in full
    assert.equal(await runs(), 1);
    await assert.rejects(failing.run(connection, ['runs'], []), /refused after counting/); // by SHA
    assert.equal(await runs(), 2, 'a failed run was sent again');
    await connection.send(undefined, ['SCRIPT', 'FLUSH']);
    await assert.rejects(failing.run(connection, ['runs'], []), /refused after counting/); // NOSCRIPT, in full
    assert.equal(await runs(), 3);
  });
});
