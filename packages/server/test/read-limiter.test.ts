/** The read slots (read-limiter.ts): a bounded number of large reads, and one owner's share of them. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReadLimiter } from '../src/read-limiter.ts';
import { ServerError } from '../src/server-error.ts';

/** Lets every settled acquire's continuation run. */
const turn = () => new Promise((r) => setImmediate(r));

describe('ReadLimiter', () => {
  it('runs one owner in at most half the slots; the others run beside it', async () => {
    const limiter = new ReadLimiter(4, 16);
    const granted: string[] = [];
    const take = (owner: string) =>
      limiter.acquire('bounded', owner).then((release) => {
        granted.push(owner);
        return release;
      });
    const mallory = [take('m'), take('m'), take('m'), take('m')];
    await turn();
    assert.deepEqual(granted, ['m', 'm'], 'two of four slots, the rest wait');
    const alice = await take('a');
    const bob = await take('b');
    assert.deepEqual(granted, ['m', 'm', 'a', 'b']);
    assert.equal(limiter.running, 4);
    // a slot freed by alice goes to no one of mallory's: she holds her share
    alice();
    await turn();
    assert.deepEqual(granted, ['m', 'm', 'a', 'b']);
    assert.equal(limiter.running, 3);
    // one of mallory's own ends: her next waiter takes its place
    (await mallory[0]!)();
    await turn();
    assert.deepEqual(granted, ['m', 'm', 'a', 'b', 'm']);
    bob();
    for (const m of mallory.slice(1)) (await m)();
  });

  it('refuses an owner past a quarter of the line while others still queue', async () => {
    const limiter = new ReadLimiter(2, 8);
    const held = [await limiter.acquire('bounded', 'm')];
    const waiting = [limiter.acquire('bounded', 'm'), limiter.acquire('bounded', 'm')];
    await assert.rejects(limiter.acquire('bounded', 'm'), (err) => {
      assert.ok(err instanceof ServerError);
      assert.equal(err.code, 'rate_limited');
      return true;
    });
    // the server's own reads and other clients are not held to mallory's share
    held.push(await limiter.acquire('bounded', 'a'));
    const queued = limiter.acquire('bounded', 'b');
    assert.equal(limiter.waiting, 3);
    for (const release of held) release();
    for (const w of [...waiting, queued]) (await w)();
    assert.equal(limiter.running, 0);
    assert.equal(limiter.waiting, 0);
  });

  it('two slots freed in one turn do not both go to one owner past its share', async () => {
    const limiter = new ReadLimiter(2, 8);
    const a = await limiter.acquire('bounded', 'a');
    const b = await limiter.acquire('bounded', 'b');
    let mallory = 0;
    const waiters = [0, 1].map(() =>
      limiter.acquire('bounded', 'm').then((release) => {
        mallory++;
        return release;
      }),
    );
    a();
    b(); // the same turn: mallory's first waiter has not resumed yet
    await turn();
    assert.equal(mallory, 1, 'one slot for her, the other stays free');
    assert.equal(limiter.running, 1);
    (await waiters[0]!)();
    (await waiters[1]!)();
    assert.equal(limiter.running, 0);
  });
  it('a release called twice frees one slot; the line holds exactly maxWaiting', async () => {
    const limiter = new ReadLimiter(1, 2);
    const first = await limiter.acquire();
    const waiting = [limiter.acquire(), limiter.acquire()]; // the line is full at 2, not before
    await assert.rejects(
      limiter.acquire(),
      (e: unknown) => e instanceof ServerError && e.code === 'rate_limited',
    );
    first();
    first(); // again: nothing more is freed
    await turn();
    assert.equal(limiter.running, 1, 'one slot, handed to the first waiter only');
    const second = await waiting[0]!;
    second();
    (await waiting[1]!)();
    await turn();
    assert.equal(limiter.running, 0);
  });

  it("with shares held only when contended (catch-up pages): one owner takes every idle slot, and the next freed goes to another owner's waiter ahead of its line", async () => {
    const limiter = new ReadLimiter(4, 64, 'contended');
    const granted: string[] = [];
    const take = (owner: string) =>
      limiter.acquire('always', owner).then((release) => {
        granted.push(owner);
        return release;
      });
    const mallory = Array.from({ length: 10 }, () => take('m'));
    await turn();
    assert.deepEqual(granted, ['m', 'm', 'm', 'm'], 'nobody else waits: all four slots are hers');
    assert.equal(limiter.waiting, 6);
    const alice = take('a');
    (await mallory[0]!)();
    await turn();
    assert.deepEqual(granted.slice(4), ['a'], "the freed slot goes to alice, ahead of mallory's six");
    // alice done, mallory over her share with nobody else waiting: her line goes on at full width
    (await alice)();
    await turn();
    assert.equal(granted.length, 6);
    assert.equal(limiter.running, 4);
    for (const m of mallory.slice(1)) {
      (await m)();
      await turn();
    }
    assert.equal(granted.filter((o) => o === 'm').length, 10, 'every read of hers ran');
    assert.equal(limiter.running, 0);
    assert.equal(limiter.waiting, 0);
  });

  it('with strict shares (history pages), one owner never takes more than half, even of idle slots', async () => {
    const limiter = new ReadLimiter(4, 64);
    let running = 0;
    const reads = Array.from({ length: 4 }, () =>
      limiter.acquire('always', 'm').then((release) => {
        running++;
        return release;
      }),
    );
    await turn();
    assert.equal(running, 2);
    assert.equal(limiter.running, 2, 'two slots stay free for others');
    for (const r of reads) (await r)();
  });

  it('forgets an owner once it has nothing running or waiting', async () => {
    const limiter = new ReadLimiter(2, 8);
    const a = await limiter.acquire('bounded', 'a');
    const b = await limiter.acquire('bounded', 'b');
    const queued = limiter.acquire('bounded', 'c');
    assert.equal(limiter.owners, 3, 'running or waiting: remembered');
    a();
    await turn();
    assert.equal(limiter.owners, 2, "a's read is done");
    b();
    (await queued)();
    await turn();
    assert.equal(limiter.owners, 0, 'nothing kept for owners that came and went');
  });
});
