/**
 * `mooring serve --store redis` started before its Redis: it says that it waits (once, on stderr,
 * without the URL's password), keeps trying, and starts as soon as Redis is there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { redisSkipReason, startRedis, waitFor } from '@mooring/testkit';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));

it('waits for a Redis that is not up yet, saying so without the password, and starts once it is', async (t) => {
  const skip = redisSkipReason();
  if (skip) return t.skip(skip);
  const redis = await startRedis();
  t.after(() => redis.close());
  await redis.stop('SIGKILL'); // its port is known, and nothing listens there now
  const url = `redis://default:hunter2@127.0.0.1:${redis.port}`;
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--port', '0', '--store', 'redis', '--redis', url, '--log-level', 'error'],
    { env: { ...process.env, MOORING_KEY: 'test:secret' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise((resolve) => child.on('exit', resolve));
  t.after(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });

  await waitFor(() => output.includes('waiting for Redis'), {
    timeout: 30_000,
    message: `no word of waiting: ${output}`,
  });
  assert.match(
    output,
    new RegExp(`mooring: waiting for Redis at redis://\\*\\*\\*@127\\.0\\.0\\.1:${redis.port} `),
  );
  assert.ok(!output.includes('hunter2'), 'the password is never printed');
  assert.ok(!output.includes('listening on'), 'no banner before Redis is there');

  await redis.restart();
  await waitFor(() => output.includes('Mooring listening on'), {
    timeout: 30_000,
    message: `never started once Redis came: ${output}`,
  });
  assert.equal(output.match(/waiting for Redis/g)?.length, 1, 'said once');
  assert.ok(!output.includes('hunter2'));
});
