// LeaseManager (leases.ts) on its own, with real timers and an expiry the test answers: renewal by
// activity, a lost holder armed once, an expiry that fails or is overtaken by a release, and close().
// Checks that a lease did run out sleep past its deadline (timers fire in the order they are due);
// checks that it did not leave hundreds of ms between a renewal and the deadline.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LeaseManager } from '../src/leases.ts';
import type { LeaseRecord, LeaseRecords } from '../src/store/store.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A manager whose expiries the test settles; `expiries` lists the serials as they come due.
 * `recorded`: the lease records it finds on start (`restore`).
 */
function manager(
  answer: (serial: string) => Promise<boolean> = async () => true,
  recorded: LeaseRecord[] = [],
) {
  const expiries: string[] = [];
  const removed: string[] = [];
  const records: LeaseRecords = {
    save: () => {},
    remove: (_channel: string, serial: string) => {
      removed.push(serial);
    },
    all: () => recorded,
  };
  const leases = new LeaseManager({
    expire: (_channel, serial) => {
      expiries.push(serial);
      return answer(serial);
    },
    onError: () => {},
    records,
  });
  return { leases, expiries, removed };
}

describe('LeaseManager', () => {
  it("a lease held over REST (no connection) is renewed by its clientId's activity, and runs out after it", async () => {
    const { leases, expiries } = manager();
    // a 400 ms lease renewed every 50 ms: a loaded machine may stall the loop, not by 350 ms
    leases.hold('ch', 's1', undefined, 400, 'agent');
    for (let i = 0; i < 12; i++) {
      await sleep(50);
      leases.touch('ch', 's1', undefined, 'agent'); // each publish of the run renews it
    }
    assert.deepEqual(expiries, [], 'renewed for 600 ms by activity: never ran out');
    leases.touch('ch', 's1', undefined, 'someone-else'); // not its clientId: renews nothing
    await sleep(600); // due before this sleep ends: timers fire in order
    assert.deepEqual(expiries, ['s1'], 'ran out once the activity stopped');
    leases.close();
  });

  it('a lost holder arms its leases once, however often it is reported lost', async () => {
    const { leases, expiries } = manager();
    leases.hold('ch', 's1', 'conn-1', 100, 'agent');
    leases.holderLost('conn-1');
    await sleep(50);
    leases.holderLost('conn-1'); // reported again (another node's notice): the deadline stays
    await sleep(200);
    assert.deepEqual(expiries, ['s1']);
    leases.close();
  });

  it('a lease that followed its publisher to another connection is not armed when the old one is lost', async () => {
    const { leases, expiries } = manager();
    leases.hold('ch', 's1', 'conn-1', 100, 'agent');
    leases.touch('ch', 's1', 'conn-2', 'agent'); // the run goes on from the publisher's new connection
    leases.holderLost('conn-1');
    await sleep(250); // due before this sleep ends, had it been armed: timers fire in order
    assert.deepEqual(expiries, [], 'held by conn-2, which lives: it did not run out');
    leases.holderLost('conn-2');
    await sleep(250);
    assert.deepEqual(expiries, ['s1'], 'its holder now is lost: it runs out');
    leases.close();
  });

  it('an expiry that stored nothing gives the lease back with its clientId, so activity still renews it', async () => {
    let first = true;
    const { leases, expiries } = manager(async () => {
      const stored = !first;
      first = false;
      return stored; // the first expiry found the message written meanwhile
    });
    leases.hold('ch', 's1', undefined, 300, 'agent', 'owner-1');
    await sleep(330); // the first expiry ran (at 300 ms) and stored nothing: the lease is back
    assert.deepEqual(expiries, ['s1']);
    assert.equal(leases.heldBy('owner-1'), 1, 'the returned lease still counts against its owner');
    for (let i = 0; i < 8; i++) {
      await sleep(50);
      leases.touch('ch', 's1', undefined, 'agent');
    }
    assert.deepEqual(expiries, ['s1'], "the returned lease is still the agent's: renewed");
    leases.close();
  });

  it('a lease taken without a clientId follows only its own holder: another anonymous token’s write leaves it with A’s connection', async () => {
    const { leases, expiries } = manager();
    leases.hold('ch', 's1', 'conn-1', 100, undefined, 'anonymous-A');
    leases.touch('ch', 's1', 'conn-2', undefined, 'anonymous-B'); // visitor B writes to A's run
    leases.holderLost('conn-2'); // …and leaves
    leases.holderLost('conn-1'); // A's network blips: its connection is lost and recovered
    leases.holderBack('conn-1');
    await sleep(250); // due before this sleep ends, had it been armed: timers fire in order
    assert.deepEqual(expiries, [], "held by A's live connection: it did not run out");
    leases.touch('ch', 's1', 'conn-3', undefined, 'anonymous-A'); // A, on a new connection
    leases.holderLost('conn-1');
    await sleep(250);
    assert.deepEqual(expiries, [], 'it followed A to its new connection');
    leases.holderLost('conn-3');
    await sleep(250);
    assert.deepEqual(expiries, ['s1'], 'its holder now is lost: it runs out');
    leases.close();
  });

  it('a lease restored from a record of an older version (no owner) follows any writer without a clientId', async () => {
    const { leases, expiries } = manager(undefined, [{ channel: 'ch', serial: 's1', ms: 100 }]);
    assert.equal(leases.restore(), 1);
    leases.touch('ch', 's1', 'conn-1', undefined, 'anonymous-A'); // its publisher writes again
    await sleep(250); // due before this sleep ends, had it stayed armed: timers fire in order
    assert.deepEqual(expiries, [], 'taken back by a live connection: it did not run out');
    leases.close();
  });

  it('a release while its expiry runs removes the record, and a failing expiry does not bring the lease back', async () => {
    let fail: (err: Error) => void = () => {};
    const { leases, expiries, removed } = manager(
      () =>
        new Promise<boolean>((_, reject) => {
          fail = reject;
        }),
    );
    leases.hold('ch', 's1', undefined, 30, 'agent');
    await sleep(60);
    assert.deepEqual(expiries, ['s1'], 'the expiry is under way');
    leases.release('ch', 's1'); // the run ended meanwhile
    assert.deepEqual(removed, ['s1'], 'its record goes: a restart must not re-arm it');
    fail(new Error('store unreachable'));
    await sleep(100);
    assert.deepEqual(expiries, ['s1'], 'released: not retried');
    assert.equal(leases.has('ch', 's1'), false);
    leases.close();
  });

  it('after close() a failing expiry is not retried', async () => {
    let fail: (err: Error) => void = () => {};
    const { leases, expiries } = manager(
      () =>
        new Promise<boolean>((_, reject) => {
          fail = reject;
        }),
    );
    leases.hold('ch', 's1', undefined, 30, 'agent');
    await sleep(60);
    leases.close(); // shutdown while the expiry runs
    fail(new Error('store closed'));
    await sleep(100);
    assert.deepEqual(expiries, ['s1']);
    assert.equal(leases.has('ch', 's1'), false, 'no lease (and no timer) after close');
  });
});
