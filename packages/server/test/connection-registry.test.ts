/**
 * The node-local connection registry (recovery keys, PROTOCOL.md §5.4): a key recovers its identity
 * within `connectionStateTtl` after its transport is gone, never after — even before the heartbeat's
 * sweep has removed it — and opening a connection does not scan the registry (the sweep is the
 * heartbeat's), so connecting N clients costs O(N).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Identity, LocalConnectionRegistry, parseConnectionKey } from '../src/connection-registry.ts';

const identity = { keyName: 'app', clientId: 'ada', viaToken: false } as unknown as Identity;

describe('LocalConnectionRegistry', () => {
  it('recovers within the TTL, and not after it even when no sweep ran since', () => {
    let now = 1_000;
    const registry = new LocalConnectionRegistry(500, () => now);
    const first = registry.open(identity);
    registry.hold(first.connectionId);
    registry.release(first.connectionId);
    now += 499;
    const again = registry.open(identity, first.connectionKey);
    assert.equal(again.resumed, true);
    assert.equal(again.connectionId, first.connectionId);
    registry.release(first.connectionId);
    now += 500;
    const late = registry.open(identity, first.connectionKey);
    assert.equal(late.resumed, false, 'an expired identity is not recovered');
    assert.notEqual(late.connectionId, first.connectionId);
  });

  it('recovers only for the same key and clientId with the right secret; a refused try leaves the connection to its owner', () => {
    let now = 1_000;
    const registry = new LocalConnectionRegistry(500, () => now);
    const first = registry.open(identity);
    registry.hold(first.connectionId);
    registry.release(first.connectionId);
    const [id, secret] = first.connectionKey.split('.') as [string, string];
    const wrongSecret = `${id}.${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`;
    const tries: Array<[string, Identity, string]> = [
      ['a wrong secret', identity, wrongSecret],
      ['another key', { ...identity, keyName: 'other' } as Identity, first.connectionKey],
      ['another clientId', { ...identity, clientId: 'eve' } as Identity, first.connectionKey],
      ['no clientId', { ...identity, clientId: undefined } as unknown as Identity, first.connectionKey],
    ];
    for (const [what, who, key] of tries) {
      const opened = registry.open(who, key);
      assert.equal(opened.resumed, false, what);
      assert.notEqual(opened.connectionId, first.connectionId, what);
    }
    now += 100;
    const owner = registry.open(identity, first.connectionKey);
    assert.equal(owner.resumed, true, 'the owner still recovers it');
    assert.equal(owner.connectionId, first.connectionId);
  });

  it('a recovery that does not open after all leaves a held connection held, and forgets a new identity', () => {
    let now = 0;
    const registry = new LocalConnectionRegistry(500, () => now);
    const first = registry.open(identity);
    registry.hold(first.connectionId); // its transport lives
    const refused = registry.open(identity, first.connectionKey);
    assert.equal(refused.resumed, true);
    registry.unclaim(refused); // refused by a budget
    now += 10_000;
    registry.sweep();
    assert.equal(registry.open(identity, first.connectionKey).resumed, true, 'still held: never expired');
    const fresh = registry.open(identity);
    registry.unclaim(fresh);
    assert.equal(
      registry.open(identity, fresh.connectionKey).resumed,
      false,
      'the unused identity is forgotten',
    );
  });

  it('at the very end of its window an identity is neither recovered nor kept by the sweep', () => {
    let now = 0;
    const registry = new LocalConnectionRegistry(10, () => now);
    const first = registry.open(identity);
    registry.hold(first.connectionId);
    registry.release(first.connectionId);
    now += 10;
    registry.sweep();
    assert.equal(registry.size, 0, 'swept as its window ends');
    assert.equal(registry.open(identity, first.connectionKey).resumed, false);
  });

  it('reads a connection key as <id>.<secret>, and nothing else', () => {
    assert.deepEqual(parseConnectionKey('c_1.s3cret'), { id: 'c_1', secret: 's3cret' });
    assert.deepEqual(parseConnectionKey('c_1.s.x'), { id: 'c_1', secret: 's.x' });
    for (const malformed of ['', 'c_1', '.s3cret', 'c_1.', '.'])
      assert.equal(parseConnectionKey(malformed), undefined, JSON.stringify(malformed));
  });

  it('opening does not sweep: expired identities wait for the heartbeat’s sweep', () => {
    let now = 0;
    const registry = new LocalConnectionRegistry(10, () => now);
    for (let i = 0; i < 100; i++) registry.release(registry.open(identity).connectionId);
    now += 100;
    registry.open(identity);
    assert.equal(registry.size, 101, 'open left the expired ones to the sweep');
    registry.sweep();
    assert.equal(registry.size, 1);
  });
});
