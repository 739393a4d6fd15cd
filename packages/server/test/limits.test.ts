/**
 * The server's limits are checked before anything opens (PROTOCOL.md §10): a misspelt name, a
 * value of the wrong kind, a 0 that would break the server and a JSON depth past the validator's
 * stack stop the start with a message naming the limit.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_LIMITS } from '@mooring/protocol';
import { loadServeConfig } from '../src/config.ts';
import { MAX_JSON_DEPTH, resolveLimits } from '../src/limits.ts';
import { rest, startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

describe('limits', () => {
  it('are the defaults with what was set', () => {
    assert.deepEqual(resolveLimits(undefined), DEFAULT_LIMITS);
    assert.deepEqual(resolveLimits({}), DEFAULT_LIMITS);
    const set = resolveLimits({ maxFrameRate: 5, maxPublishRate: 0.5, maxAnonymousConnectionsPerKey: 0 });
    assert.equal(set.maxFrameRate, 5);
    assert.equal(set.maxPublishRate, 0.5, 'a rate may be fractional');
    assert.equal(set.maxAnonymousConnectionsPerKey, 0, '0: no anonymous tokens');
    assert.equal(set.maxSendBuffer, DEFAULT_LIMITS.maxSendBuffer);
    assert.equal(resolveLimits({ maxJsonDepth: MAX_JSON_DEPTH }).maxJsonDepth, 512);
    assert.equal(resolveLimits({ maxFrameSize: 1 }).maxFrameSize, 1);
  });

  it('refuses to change what the wire format fixes; maxOpsPerPublish may be lowered, not raised', async () => {
    for (const name of ['maxHeaders', 'maxIdLength', 'maxChannelNameLength'] as const) {
      assert.equal(
        resolveLimits({ [name]: DEFAULT_LIMITS[name] })[name],
        DEFAULT_LIMITS[name],
        'the default is taken',
      );
      for (const value of [DEFAULT_LIMITS[name] - 1, DEFAULT_LIMITS[name] * 2])
        assert.throws(
          () => resolveLimits({ [name]: value }),
          new RegExp(`^Error: limits\\.${name} is fixed at ${DEFAULT_LIMITS[name]} by the wire format`),
        );
    }
    assert.throws(
      () => resolveLimits({ maxOpsPerPublish: 101 }),
      /limits\.maxOpsPerPublish may be lowered but not raised past 100 \(the frame format's bound\), got 101/,
    );
    // lowered, it is announced and held, over a connection as over REST
    const fx = await startFixture('memory', { limits: { maxOpsPerPublish: 2 } });
    try {
      const c = await RawClient.connect(fx.server.url);
      assert.equal(c.connected.limits.maxOpsPerPublish, 2);
      const ops = [{ data: 1 }, { data: 2 }, { data: 3 }];
      const refused = await c.request({ type: 'publish', channel: 'session:ops', ops });
      assert.equal(refused.type === 'error' && refused.error.code, 'bad_request', JSON.stringify(refused));
      assert.equal((await c.publish('session:ops', ops.slice(0, 2))).results.length, 2);
      await c.close();
      // REST counts a list against the lowered limit before validating its operations
      const overRest = await rest(fx.server, '/v1/channels/session:ops/messages', {
        body: [{ bogus: 1 }, { bogus: 2 }, { bogus: 3 }],
      });
      assert.equal(overRest.status, 400);
      assert.equal(
        (overRest.body.error as { message: string }).message,
        '3 operations in one publish; at most 2 are allowed',
      );
    } finally {
      await fx.close();
    }
  });

  it('refuses a name that is not a limit, naming the nearest one', () => {
    assert.throws(
      () => resolveLimits({ maxFrameRte: 5 }),
      /^Error: limits\.maxFrameRte is not a limit; did you mean maxFrameRate\?/,
    );
    assert.throws(() => resolveLimits({ MAXFRAMERATE: 5 }), /did you mean maxFrameRate\?/);
    assert.throws(
      () => resolveLimits({ colour: 'blue' }),
      /^Error: limits\.colour is not a limit \(PROTOCOL/,
    );
    assert.throws(() => resolveLimits({ toString: 1 }), /limits\.toString is not a limit/);
  });

  it('maxMessageOps holds over a connection on every store: the append past it is refused message_too_large, naming the limit', async () => {
    for (const store of ['memory', 'sqlite', 'redis'] as const) {
      const fx = await startFixture(store, { limits: { maxMessageOps: 3 } });
      try {
        const c = await RawClient.connect(fx.server.url);
        const [created] = (await c.publish('session:ops', [{ data: 'a' }])).results;
        const serial = created!.serial;
        const appends = await c.publish('session:ops', [
          { action: 'append', serial, data: 'b' },
          { action: 'append', serial, data: '' },
        ]);
        assert.equal(appends.results.length, 2);
        const refused = await c.request({
          type: 'publish',
          channel: 'session:ops',
          ops: [{ action: 'append', serial, data: 'c' }],
        });
        assert.equal(
          refused.type === 'error' && refused.error.code,
          'message_too_large',
          `${store}: ${JSON.stringify(refused)}`,
        );
        assert.match(
          refused.type === 'error' ? refused.error.message : '',
          /limit of 3 operations: start a new message/,
        );
        await c.close();
      } finally {
        await fx.close();
      }
    }
    assert.throws(
      () => resolveLimits({ maxMessageOps: 0 }),
      /limits\.maxMessageOps must be a whole number of at least 1, got 0/,
    );
  });

  it('refuses values of the wrong kind, and 0 where it would break the server', () => {
    for (const [limits, message] of [
      [{ maxFrameRate: '100' }, /limits\.maxFrameRate must be a number of at least 1, got "100"/],
      [
        { maxConnectionsPerKey: 10.5 },
        /limits\.maxConnectionsPerKey must be a whole number of at least 0, got 10\.5/,
      ],
      [{ maxConnectionsPerKey: -1 }, /at least 0, got -1/],
      [{ maxPublishRate: Number.POSITIVE_INFINITY }, /limits\.maxPublishRate must be a number/],
      [{ maxPublishRate: Number.NaN }, /limits\.maxPublishRate must be a number/],
      [{ maxFrameSize: 0 }, /limits\.maxFrameSize must be a whole number of at least 1, got 0/],
      [{ maxJsonDepth: 0 }, /at least 1/],
      [{ maxJsonDepth: MAX_JSON_DEPTH + 1 }, /limits\.maxJsonDepth may be at most 512 levels, got 513/],
      [{ maxSendBuffer: null }, /limits\.maxSendBuffer must be a whole number of at least 1, got null/],
    ] as const)
      assert.throws(() => resolveLimits(limits), message, JSON.stringify(limits));
    for (const limits of [null, [], 'maxFrameRate=5', 5])
      assert.throws(() => resolveLimits(limits), /^Error: limits must be an object/, JSON.stringify(limits));
  });

  it('a server with a misspelt limit in its config file does not start, and leaves nothing open', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-limits-'));
    try {
      const file = join(dir, 'mooring.json');
      await writeFile(file, JSON.stringify({ store: 'memory', limits: { maxConnectionPerKey: 10 } }));
      const config = loadServeConfig(['--config', file], {});
      assert.notEqual(config, 'help');
      if (config === 'help') return;
      await assert.rejects(
        startFixture('memory', { limits: config.limits }),
        /limits\.maxConnectionPerKey is not a limit; did you mean maxConnectionsPerKey\?/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('at the deepest maxJsonDepth allowed, frames that deep are handled and deeper ones refused', async () => {
    const fx = await startFixture('memory', {
      limits: { maxJsonDepth: MAX_JSON_DEPTH, maxOperationSize: 1024 * 1024 },
    });
    const nested = (levels: number) => `${'['.repeat(levels)}1${']'.repeat(levels)}`;
    try {
      const client = await RawClient.connect(fx.server.url, { clientId: 'deep' });
      const send = async (ref: string, frame: string) => {
        client.ws.send(frame);
        return client.next((f) => 'ref' in f && f.ref === ref);
      };
      // levels: the frame (1), `ops` (2), the op (3), then the data's arrays
      const publish = (ref: string, levels: number) =>
        send(ref, `{"type":"publish","ref":"${ref}","channel":"x","ops":[{"data":${nested(levels)}}]}`);
      assert.equal((await publish('p512', MAX_JSON_DEPTH - 3)).type, 'ack', '512 levels: stored');
      // levels: the frame (1), then the data's arrays; the full validator reads presence frames
      const enter = (ref: string, levels: number) =>
        send(
          ref,
          `{"type":"presence","ref":"${ref}","channel":"x","action":"enter","data":${nested(levels)}}`,
        );
      assert.equal((await enter('e512', MAX_JSON_DEPTH - 1)).type, 'ack', '512 levels: entered');
      for (const [ref, answer] of [
        ['p513', await publish('p513', MAX_JSON_DEPTH - 2)],
        ['e513', await enter('e513', MAX_JSON_DEPTH)],
        ['e5000', await enter('e5000', 5_000)],
      ] as const)
        assert.equal(answer.type === 'error' && answer.error.code, 'invalid_frame', ref);
      assert.equal((await client.request({ type: 'ping' })).type, 'pong', 'the connection lives on');
      await client.close();
    } finally {
      await fx.close();
    }
  });
});
