/**
 * LeaseIndex (lease-index.ts) on its own: removing a lease leaves neither a holder list nor an owner
 * count behind, so what the index keeps stays bounded by the leases held, not by every connection
 * and identity that ever held one.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type HeldLease, LeaseIndex } from '../src/lease-index.ts';

const lease = (serial: string, holder: string | undefined, owner: string | undefined): HeldLease => ({
  channel: 'ch',
  serial,
  holder,
  clientId: 'agent',
  owner,
  ms: 1_000,
});

describe('LeaseIndex', () => {
  it('forgets a holder and an owner once their last lease is removed, and only then', () => {
    const index = new LeaseIndex<HeldLease>();
    index.add('a', lease('a', 'conn-1', 'key:agent'));
    index.add('b', lease('b', 'conn-1', 'key:agent'));
    index.remove('a');
    assert.deepEqual([...(index.keysOf('conn-1') ?? [])], ['b']);
    assert.equal(index.heldBy('key:agent'), 1);
    assert.equal(index.owners, 1);
    index.remove('b');
    assert.equal(index.keysOf('conn-1'), undefined, 'no empty holder list left behind');
    assert.equal(index.heldBy('key:agent'), 0);
    assert.equal(index.owners, 0, 'no owner count of 0 left behind');
    assert.equal(index.size, 0);
  });

  it('a lease taken over by another holder leaves the old holder nothing', () => {
    const index = new LeaseIndex<HeldLease>();
    index.add('a', lease('a', 'conn-1', undefined));
    index.remove('a');
    index.add('a', lease('a', 'conn-2', undefined));
    assert.equal(index.keysOf('conn-1'), undefined);
    assert.deepEqual([...(index.keysOf('conn-2') ?? [])], ['a']);
  });
});
