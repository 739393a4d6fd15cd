// LocalConnectionCounts (connection-counts.ts): checked and counted in one step, all or nothing, and
// a name whose connections all ended is forgotten (churn through many clientIds holds no memory).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LocalConnectionCounts } from '../src/connection-counts.ts';
import { ServerError } from '../src/server-error.ts';

describe('LocalConnectionCounts', () => {
  const key = { name: 'key:k', limit: 3, what: 'key k' };
  const client = { name: 'client:k:c', limit: 1, what: 'clientId c of key k' };

  it('counts under every name at once, and refuses all of them when one is full', () => {
    const counts = new LocalConnectionCounts();
    counts.take([key, client]);
    assert.throws(
      () => counts.take([key, client]),
      (err: unknown) =>
        err instanceof ServerError &&
        err.code === 'too_many_connections' &&
        err.message.includes('clientId c of key k already has 1 connections (limit 1)'),
    );
    assert.deepEqual(
      [...counts.entries()],
      [
        ['key:k', 1],
        ['client:k:c', 1],
      ],
      'the refusal counted nothing',
    );
  });

  it('forgets a name once its last connection ended', () => {
    const counts = new LocalConnectionCounts();
    for (let i = 0; i < 100; i++) {
      const check = { name: `client:k:${i}`, limit: 1, what: `clientId ${i}` };
      counts.take([{ ...key, limit: 1_000 }, check]);
      counts.give(['key:k', check.name]);
    }
    assert.deepEqual([...counts.entries()], [], 'no name left behind by clients that came and went');
  });
});
