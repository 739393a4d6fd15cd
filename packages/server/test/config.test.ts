/**
 * The config file of `mooring serve` (ARCHITECTURE.md §13): a key that is not a setting stops the
 * start with a message naming it and the nearest known key, instead of leaving its default in force.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadServeConfig } from '../src/config.ts';

describe('config file', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mooring-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const load = async (content: unknown) => {
    const file = join(dir, `c${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, JSON.stringify(content));
    return () => loadServeConfig(['--config', file], {});
  };

  it('takes every setting it documents', async () => {
    const config = (
      await load({
        host: '127.0.0.1',
        port: 0,
        reusePort: false,
        data: join(dir, 'data'),
        store: 'memory',
        redis: { url: 'redis://127.0.0.1:6379' },
        keys: ['app:secret'],
        heartbeatInterval: '10s',
        connectionStateTtl: '2m',
        presenceGrace: '15s',
        sweepInterval: '1s',
        nodeTtl: '10s',
        firstPollTimeout: '10s',
        limits: { maxFrameRate: 50 },
        namespaces: { chat: { retention: '7d' } },
        logLevel: 'warn',
        durableStreams: {
          open: 'public/*',
          stallTimeout: '20s',
          maxJsonAppendBytes: 65_536,
          maxConcurrentReads: 2,
        },
      })
    )();
    assert.ok(config !== 'help');
    assert.deepEqual(config.durableStreams, {
      open: 'public/*',
      stallTimeout: 20_000,
      maxJsonAppendBytes: 65_536,
      maxConcurrentReads: 2,
    });
    assert.equal(config.heartbeatInterval, 10_000);
    assert.equal(config.limits.maxFrameRate, 50);
    assert.equal(config.logLevel, 'warn');
  });

  it('refuses a key that is not a setting, naming the nearest one', async () => {
    assert.throws(
      await load({ heartbeatIntervall: '10s' }),
      /"heartbeatIntervall" is not a setting; did you mean "heartbeatInterval"\?/,
    );
    assert.throws(await load({ Port: 8080 }), /"Port" is not a setting; did you mean "port"\?/);
    assert.throws(await load({ colour: 'blue' }), /"colour" is not a setting \(known: host, port, /);
  });
});
