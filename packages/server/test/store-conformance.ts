/**
 * The store conformance suite (ARCHITECTURE.md §10): the same cases, run against every Store implementation,
 * check the guarantees in src/store/store.ts and the message rules of PROTOCOL.md §3–§4.
 *
 * Usage, from a `*.test.ts` file:
 *
 *   storeConformance('memory', async () => ({ store: new MemoryStore(), cleanup: async () => {} }));
 *
 * `makeStore` gets the options a case needs (retention) and returns a fresh, empty store. `reopen`,
 * when given, closes the store and opens a new one on the same data; the persistence cases run only
 * then. `cleanup` releases everything (the store may already be closed).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { formatSerial, parseSerial } from '@mooring/protocol';
import type { AppendOptions, NewOperation, RetentionFor, Store } from '../src/store/store.ts';
import { StoreError } from '../src/store/store.ts';

export interface StoreFixture {
  store: Store;
  /** Closes `store` and opens the same data again (persistent stores only). */
  reopen?: () => Promise<Store>;
  cleanup: () => Promise<void>;
}

export interface StoreFixtureOptions {
  retentionFor?: RetentionFor;
}

const OPTS: AppendOptions = { maxMessageSize: 1024 * 1024 };
const HOUR = 60 * 60 * 1000;

let counter = 0;
/** A unique op id. */
function uid(prefix = 'op'): string {
  return `${prefix}-${++counter}`;
}

function create(fields: Partial<NewOperation> = {}): NewOperation {
  return { action: 'create', publisher: '', id: uid('c'), ...fields };
}
function append(serial: string, data?: string, fields: Partial<NewOperation> = {}): NewOperation {
  const op: NewOperation = { action: 'append', publisher: '', id: uid('a'), serial, ...fields };
  if (data !== undefined) op.data = data;
  return op;
}
function update(serial: string, fields: Partial<NewOperation> = {}): NewOperation {
  return { action: 'update', publisher: '', id: uid('u'), serial, ...fields };
}
function del(serial: string, fields: Partial<NewOperation> = {}): NewOperation {
  return { action: 'delete', publisher: '', id: uid('d'), serial, ...fields };
}

async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  index?: number,
  message?: RegExp,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (index !== undefined) assert.equal(err.index, index);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

function seqOf(serial: string): number {
  const parts = parseSerial(serial);
  assert.ok(parts, `${serial} is a serial`);
  return parts.seq;
}

export function storeConformance(
  name: string,
  makeStore: (options?: StoreFixtureOptions) => Promise<StoreFixture>,
): void {
  describe(`Store conformance: ${name}`, () => {
    const fixtures: StoreFixture[] = [];
    async function fresh(options?: StoreFixtureOptions): Promise<StoreFixture> {
      const f = await makeStore(options);
      fixtures.push(f);
      return f;
    }
    async function open(options?: StoreFixtureOptions): Promise<Store> {
      return (await fresh(options)).store;
    }
    /** Stores one op and returns its serial. */
    async function put(store: Store, channel: string, op: NewOperation, options = OPTS): Promise<string> {
      const r = await store.append(channel, [op], options);
      return r.results[0]!.serial;
    }
    async function only(store: Store, channel: string): Promise<Message> {
      const page = await store.history(channel, { direction: 'forwards', limit: 100 });
      assert.equal(page.messages.length, 1);
      return page.messages[0]!;
    }
    afterEach(async () => {
      for (const f of fixtures.splice(0)) await f.cleanup();
    });

    describe('serials', () => {
      it('are parseable, start at 1 and increase by one per op, with one epoch per channel', async () => {
        const store = await open();
        const serials: string[] = [];
        for (let i = 0; i < 3; i++) serials.push(await put(store, 'ch', create({ data: `m${i}` })));
        const batch = await store.append('ch', [create(), create(), create()], OPTS);
        serials.push(...batch.results.map((r) => r.serial));
        const parts = serials.map((s) => parseSerial(s));
        assert.deepEqual(
          parts.map((p) => p?.seq),
          [1, 2, 3, 4, 5, 6],
        );
        const epoch = parts[0]!.epoch;
        assert.ok(parts.every((p) => p?.epoch === epoch));
        assert.equal(batch.epoch, epoch);
        for (let i = 1; i < serials.length; i++) assert.ok(serials[i - 1]! < serials[i]!);

        const info = await store.info('ch');
        assert.deepEqual(info, {
          channel: 'ch',
          epoch,
          head: serials.at(-1),
          trimmedThrough: 0,
          messageCount: 6,
        });
        const other = await put(store, 'other', create());
        assert.equal(seqOf(other), 1);
      });

      it('reports no log for a channel never appended to, and empty pages for it', async () => {
        const store = await open();
        assert.equal(await store.info('nothing'), undefined);
        const empty = { epoch: '', head: '', messages: [], more: false };
        assert.deepEqual(await store.readSince('nothing', undefined, 10), empty);
        assert.deepEqual(await store.history('nothing', { direction: 'backwards', limit: 10 }), empty);
        // A rejected first batch does not create the log either.
        await rejectsWith(store.append('nothing', [create(), append('x')], OPTS), 'invalid_serial', 1);
        assert.equal(await store.info('nothing'), undefined);
      });
    });

    describe('live messages', () => {
      it('returns each stored op in live form, omitting absent fields', async () => {
        const store = await open();
        const c = await store.append(
          'ch',
          [
            create({ id: 'c1', name: 'text', data: 'He', headers: { step: 1 }, clientId: 'alice' }),
            create({ id: 'c2' }),
          ],
          { ...OPTS, now: 1000 },
        );
        const [s1, s2] = c.results.map((r) => r.serial) as [string, string];
        assert.deepEqual(c.messages, [
          {
            serial: s1,
            version: s1,
            action: 'create',
            id: 'c1',
            name: 'text',
            data: 'He',
            headers: { step: 1 },
            clientId: 'alice',
            timestamp: 1000,
          },
          { serial: s2, version: s2, action: 'create', id: 'c2', timestamp: 1000 },
        ]);
        const a = await store.append(
          'ch',
          [
            append(s1, 'llo', { id: 'a1', clientId: 'bob', headers: { step: 2 } }),
            update(s2, { id: 'u1', data: 'AAE=', encoding: 'base64', clientId: 'bob' }),
            del(s2, { id: 'd1', clientId: 'bob' }),
          ],
          { ...OPTS, now: 2000 },
        );
        const [v1, v2, v3] = a.results.map((r) => r.serial) as [string, string, string];
        assert.deepEqual(a.messages, [
          {
            serial: s1,
            version: v1,
            action: 'append',
            id: 'a1',
            data: 'llo',
            headers: { step: 2 },
            clientId: 'bob',
            timestamp: 2000,
          },
          {
            serial: s2,
            version: v2,
            action: 'update',
            id: 'u1',
            data: 'AAE=',
            encoding: 'base64',
            clientId: 'bob',
            timestamp: 2000,
          },
          { serial: s2, version: v3, action: 'delete', id: 'd1', clientId: 'bob', timestamp: 2000 },
        ]);
      });
    });

    describe('batches', () => {
      it('are atomic: one bad op stores nothing and reports its index', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ data: 'a' }));
        const before = await store.info('ch');
        const bogus = formatSerial(parseSerial(s1)!.epoch, 999);
        await rejectsWith(
          store.append('ch', [create(), append(s1, 'b'), append(bogus, 'c'), create()], OPTS),
          'message_not_found',
          2,
        );
        assert.deepEqual(await store.info('ch'), before);
        assert.equal((await only(store, 'ch')).data, 'a');
        // Nothing of the failed batch is remembered for dedup either: the same ids store normally.
        const retry = await store.append('ch', [append(s1, 'b', { id: 'retry-1' })], OPTS);
        assert.equal(retry.results[0]!.duplicate, undefined);
      });

      it('validate each op against the earlier ops of the same batch', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ data: 'a' }));
        await rejectsWith(store.append('ch', [del(s1), append(s1, 'b')], OPTS), 'message_deleted', 1);
        await rejectsWith(
          store.append('ch', [update(s1, { data: { n: 1 } }), append(s1, 'b')], OPTS),
          'not_appendable',
          1,
        );
        // A create then an append to it in one batch (the serial is predictable: head + 1).
        const epoch = parseSerial(s1)!.epoch;
        const next = formatSerial(epoch, 2);
        const r = await store.append('ch', [create({ data: 'x' }), append(next, 'y')], OPTS);
        assert.equal(r.results[0]!.serial, next);
        const m = (await store.history('ch', { direction: 'backwards', limit: 1 })).messages[0]!;
        assert.equal(m.data, 'xy');
        const first = (await store.history('ch', { direction: 'forwards', limit: 1 })).messages[0]!;
        assert.equal(first.data, 'a');
        // …its owner and its size too (head is now 3)
        const third = formatSerial(epoch, 4);
        const owned = [
          create({ data: 'abc', clientId: 'alice' }),
          append(third, 'd', { requireOwner: 'alice' }),
        ];
        assert.equal((await store.append('ch', owned, OPTS)).results[1]!.serial, formatSerial(epoch, 5));
        const fifth = formatSerial(epoch, 6);
        const small: AppendOptions = { maxMessageSize: 5 };
        await rejectsWith(
          store.append('ch', [create({ data: 'abcd' }), append(fifth, 'ef')], small),
          'message_too_large',
          1,
        );
      });

      it('from concurrent callers fail alone: the other calls still store', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ data: '' }));
        const calls = [
          store.append('ch', [append(s1, 'a')], OPTS),
          store.append('ch', [append('not-a-serial', 'x')], OPTS),
          store.append('ch', [append(s1, 'b')], OPTS),
        ];
        const settled = await Promise.allSettled(calls);
        assert.equal(settled[0]!.status, 'fulfilled');
        assert.equal(settled[1]!.status, 'rejected');
        assert.equal(settled[2]!.status, 'fulfilled');
        await rejectsWith(calls[1]!, 'invalid_serial', 0);
        assert.equal((await only(store, 'ch')).data, 'ab');
      });
    });

    describe('idempotency', () => {
      it('acknowledges a repeated id with the original serial and stores nothing', async () => {
        const store = await open();
        const first = await store.append('ch', [create({ id: 'same', data: 'one' })], OPTS);
        const head = (await store.info('ch'))!.head;
        const again = await store.append('ch', [create({ id: 'same', data: 'two' })], OPTS);
        assert.deepEqual(again.results, [{ serial: first.results[0]!.serial, duplicate: true }]);
        assert.deepEqual(again.messages, []);
        assert.equal(again.epoch, first.epoch);
        assert.equal((await store.info('ch'))!.head, head);
        assert.equal((await only(store, 'ch')).data, 'one');
      });

      it('dedups within one batch and across op kinds, before validating', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ data: '' }));
        const r = await store.append(
          'ch',
          [append(s1, 'a', { id: 'x' }), append(s1, 'a', { id: 'x' })],
          OPTS,
        );
        assert.equal(r.results[1]!.serial, r.results[0]!.serial);
        assert.equal(r.results[1]!.duplicate, true);
        assert.equal(r.results[0]!.duplicate, undefined);
        assert.equal(r.messages.length, 1);
        await put(store, 'ch', del(s1));
        // A retried append whose message has since been deleted is still just acknowledged.
        const retry = await store.append('ch', [append(s1, 'a', { id: 'x' })], OPTS);
        assert.deepEqual(retry.results, [{ serial: r.results[0]!.serial, duplicate: true }]);
        // Ids are per channel.
        const elsewhere = await store.append('other', [create({ id: 'x' })], OPTS);
        assert.equal(elsewhere.results[0]!.duplicate, undefined);
      });

      it('scopes ids by publisher: one publisher cannot make another’s op a duplicate', async () => {
        const store = await open();
        // The attacker stores the victim's next (predictable) id first…
        const attacker = await put(
          store,
          'ch',
          create({ id: 'run:1', publisher: 'c:mallory', data: 'fake' }),
        );
        // …and the victim's op is still stored, not acknowledged as the attacker's.
        const victim = await store.append(
          'ch',
          [create({ id: 'run:1', publisher: 'c:agent', data: 'real' })],
          OPTS,
        );
        assert.equal(victim.results[0]!.duplicate, undefined);
        assert.notEqual(victim.results[0]!.serial, attacker);
        assert.equal(victim.messages.length, 1);
        // The same id in the same batch from two publishers: two ops. The empty scope is a scope too.
        const both = await store.append(
          'ch',
          [
            create({ id: 'p0:1', publisher: 'c:agent' }),
            create({ id: 'p0:1', publisher: 'k:test' }),
            create({ id: 'p0:1' }),
          ],
          OPTS,
        );
        assert.deepEqual(
          both.results.map((r) => r.duplicate),
          [undefined, undefined, undefined],
        );
        assert.equal(new Set(both.results.map((r) => r.serial)).size, 3);
        // Each publisher's retry is a duplicate of its own op, in any batch position.
        const retry = await store.append(
          'ch',
          [
            create({ id: 'p0:1' }),
            create({ id: 'run:1', publisher: 'c:agent' }),
            create({ id: 'p0:1', publisher: 'k:test' }),
            create({ id: 'run:1', publisher: 'c:mallory' }),
          ],
          OPTS,
        );
        assert.deepEqual(retry.results, [
          { serial: both.results[2]!.serial, duplicate: true },
          { serial: victim.results[0]!.serial, duplicate: true },
          { serial: both.results[1]!.serial, duplicate: true },
          { serial: attacker, duplicate: true },
        ]);
        assert.deepEqual(retry.messages, []);
        // Scope and id never run together: ('c:a', 'bc') and ('c:ab', 'c') are different ops.
        const run1 = await store.append('ch', [create({ id: 'bc', publisher: 'c:a' })], OPTS);
        const run2 = await store.append('ch', [create({ id: 'c', publisher: 'c:ab' })], OPTS);
        assert.equal(run1.results[0]!.duplicate, undefined);
        assert.equal(run2.results[0]!.duplicate, undefined);
        // …within one batch too (a store that keeps ids per publisher checks a batch by its keys).
        const pair = await store.append(
          'ch',
          [create({ id: 'yz', publisher: 'c:x' }), create({ id: 'z', publisher: 'c:xy' })],
          OPTS,
        );
        assert.deepEqual(
          pair.results.map((r) => r.duplicate),
          [undefined, undefined],
        );
        // Appends are scoped too: another publisher's append id does not swallow the agent's.
        const s1 = victim.results[0]!.serial;
        await put(store, 'ch', append(s1, '!', { id: 'run:1:2', publisher: 'c:mallory' }));
        const real = await store.append(
          'ch',
          [append(s1, ' and more', { id: 'run:1:2', publisher: 'c:agent' })],
          OPTS,
        );
        assert.equal(real.results[0]!.duplicate, undefined);
        const message = (await store.history('ch', { direction: 'forwards', from: s1, until: s1, limit: 1 }))
          .messages[0]!;
        assert.equal(message.data, 'real! and more');
      });

      it('remembers an id for as long as its op is retained, and forgets it with its op', async () => {
        const store = await open();
        const t0 = 1_700_000_000_000;
        const at = (ms: number): AppendOptions => ({ ...OPTS, now: ms });
        const old = await put(store, 'ch', create({ id: 'old', publisher: 'c:a', data: 'o' }), at(t0));
        await put(store, 'ch', append(old, '+', { id: 'old:1', publisher: 'c:a' }), at(t0 + 1000));
        const young = await put(
          store,
          'ch',
          create({ id: 'young', publisher: 'c:a', data: 'y' }),
          at(t0 + 2 * HOUR),
        );
        // An append to the young message made before the old one expires, by the same publisher.
        const youngAppend = await put(
          store,
          'ch',
          append(young, '+', { id: 'young:1', publisher: 'c:a' }),
          at(t0 + 3 * HOUR),
        );
        // Another channel's messages expire at the same time: trimming them forgets nothing here.
        await put(store, 'other', create({ id: 'gone', publisher: 'c:a' }), at(t0));

        // Just before expiry every id is remembered.
        assert.equal(await store.trim(t0 + 24 * HOUR - 1), 0);
        const before = await store.append(
          'ch',
          [create({ id: 'old', publisher: 'c:a' })],
          at(t0 + 24 * HOUR - 1),
        );
        assert.deepEqual(before.results, [{ serial: old, duplicate: true }]);

        // The old message (and its append) expire: the trim removes only them.
        assert.equal(await store.trim(t0 + 25 * HOUR), 2);
        const later = at(t0 + 25 * HOUR);
        // Ids of retained ops are still remembered after a trim of other, older ops.
        const retained = await store.append(
          'ch',
          [
            create({ id: 'young', publisher: 'c:a' }),
            append(young, 'x', { id: 'young:1', publisher: 'c:a' }),
          ],
          later,
        );
        assert.deepEqual(retained.results, [
          { serial: young, duplicate: true },
          { serial: youngAppend, duplicate: true },
        ]);
        // Ids of trimmed ops are forgotten: the same ids store anew.
        const anew = await store.append(
          'ch',
          [create({ id: 'old', publisher: 'c:a', data: 'new' }), create({ id: 'old:1', publisher: 'c:a' })],
          later,
        );
        assert.deepEqual(
          anew.results.map((r) => r.duplicate),
          [undefined, undefined],
        );
        assert.ok(seqOf(anew.results[0]!.serial) > seqOf(youngAppend));
        const again = await store.append('other', [create({ id: 'gone', publisher: 'c:a' })], later);
        assert.equal(again.results[0]!.duplicate, undefined);
        // A trim that removes nothing changes nothing.
        assert.equal(await store.trim(t0 + 25 * HOUR), 0);
        const still = await store.append('ch', [create({ id: 'old', publisher: 'c:a' })], later);
        assert.deepEqual(still.results, [{ serial: anew.results[0]!.serial, duplicate: true }]);
      });
    });

    describe('precondition (after)', () => {
      const after = (id: string): AppendOptions => ({ ...OPTS, after: id });

      it('stores a batch only behind its publisher’s named op; else nothing, out_of_order', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ id: 'm', publisher: 'c:a', data: '' }));
        await put(store, 'ch', append(s1, 'a', { id: 'd1', publisher: 'c:a' }));
        const head = (await store.info('ch'))!.head;
        // the op it must follow was never stored (refused, or still on its way): nothing of it is
        await rejectsWith(
          store.append('ch', [append(s1, 'c', { id: 'd3', publisher: 'c:a' })], after('d2')),
          'out_of_order',
          undefined,
          /'d2'/,
        );
        assert.equal((await store.info('ch'))!.head, head);
        assert.equal((await only(store, 'ch')).data, 'a');
        // another publisher's op of that id does not meet it: ids are per publisher
        await put(store, 'ch', append(s1, 'b', { id: 'd2', publisher: 'c:mallory' }));
        await rejectsWith(
          store.append('ch', [append(s1, 'c', { id: 'd3', publisher: 'c:a' })], after('d2')),
          'out_of_order',
        );
        // once it is stored, the batch is
        await put(store, 'ch', append(s1, 'B', { id: 'd2', publisher: 'c:a' }));
        const r = await store.append('ch', [append(s1, 'c', { id: 'd3', publisher: 'c:a' })], after('d2'));
        assert.equal(r.results[0]!.duplicate, undefined);
        assert.equal(r.messages.length, 1);
        assert.equal((await only(store, 'ch')).data, 'abBc');
      });

      it('answers a resend of a stored batch as duplicates whatever it names; refuses one with anything new', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ id: 'm', publisher: 'c:a', data: '' }));
        const first = await store.append(
          'ch',
          [append(s1, 'x', { id: 'd1', publisher: 'c:a' }), append(s1, 'y', { id: 'd2', publisher: 'c:a' })],
          OPTS,
        );
        // all duplicates: stored before, when its precondition held (an id since forgotten or never
        // named cannot make a stored batch fail)
        const again = await store.append(
          'ch',
          [append(s1, 'x', { id: 'd1', publisher: 'c:a' }), append(s1, 'y', { id: 'd2', publisher: 'c:a' })],
          after('gone'),
        );
        assert.deepEqual(
          again.results,
          first.results.map((r) => ({ serial: r.serial, duplicate: true })),
        );
        // a duplicate then a new op: the new one is checked, and the whole batch refused
        const head = (await store.info('ch'))!.head;
        await rejectsWith(
          store.append(
            'ch',
            [
              append(s1, 'y', { id: 'd2', publisher: 'c:a' }),
              append(s1, 'z', { id: 'd3', publisher: 'c:a' }),
            ],
            after('gone'),
          ),
          'out_of_order',
        );
        assert.equal((await store.info('ch'))!.head, head);
        assert.equal((await only(store, 'ch')).data, 'xy');
      });

      it('refuses on a channel with no log, and starts none', async () => {
        const store = await open();
        await rejectsWith(
          store.append('new', [create({ id: 'c1', publisher: 'c:a', data: 'x' })], after('c0')),
          'out_of_order',
        );
        assert.equal(await store.info('new'), undefined);
      });
    });

    describe('rollup', () => {
      it('folds appends into one message whose version is the last op', async () => {
        const store = await open();
        const s1 = await put(
          store,
          'ch',
          create({ id: 'msg', name: 'text', data: 'Hel', clientId: 'alice' }),
          { ...OPTS, now: 500 },
        );
        await put(store, 'ch', append(s1, 'lo', { clientId: 'bob' }), { ...OPTS, now: 600 });
        const last = await put(store, 'ch', append(s1, ' world', { clientId: 'bob' }), { ...OPTS, now: 700 });
        const expected: Message = {
          serial: s1,
          version: last,
          action: 'update',
          id: 'msg',
          name: 'text',
          data: 'Hello world',
          clientId: 'alice',
          timestamp: 500,
        };
        assert.deepEqual(await only(store, 'ch'), expected);
        assert.deepEqual((await store.readSince('ch', undefined, 10)).messages, [expected]);
      });

      it('keeps an empty name as given (it is a name: the schema allows it), live and in history', async () => {
        const store = await open();
        const c = await store.append('ch', [create({ id: 'n', name: '', data: 'x' })], OPTS);
        assert.equal(c.messages[0]?.name, '');
        assert.equal((await only(store, 'ch')).name, '');
      });

      it('treats a create without data as an empty string', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ id: 'empty' }));
        const m = await only(store, 'ch');
        assert.equal(m.action, 'create');
        assert.equal('data' in m, false);
        await put(store, 'ch', append(s1));
        assert.equal((await only(store, 'ch')).data, '');
        await put(store, 'ch', append(s1, 'x'));
        assert.equal((await only(store, 'ch')).data, 'x');
      });

      it('replaces headers on append and update, and keeps them otherwise', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ data: 'a', headers: { a: 1 } }));
        await put(store, 'ch', append(s1, 'b', { headers: { b: true } }));
        await put(store, 'ch', append(s1, 'c'));
        let m = await only(store, 'ch');
        assert.deepEqual(m.headers, { b: true });
        assert.equal(m.data, 'abc');
        await put(store, 'ch', update(s1, { headers: { c: 'x' } }));
        m = await only(store, 'ch');
        assert.deepEqual(m.headers, { c: 'x' });
        assert.equal(m.data, 'abc');
        await put(store, 'ch', append(s1, 'd'));
        m = await only(store, 'ch');
        assert.deepEqual(m.headers, { c: 'x' });
        assert.equal(m.data, 'abcd');
      });

      it('update replaces data and its encoding', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ name: 'n', data: 'draft', headers: { h: 1 } }));
        await put(store, 'ch', append(s1, ' more'));
        const v = await put(store, 'ch', update(s1, { data: { final: [1, 2] } }));
        let m = await only(store, 'ch');
        assert.deepEqual(m, {
          serial: s1,
          version: v,
          action: 'update',
          id: m.id,
          name: 'n',
          data: { final: [1, 2] },
          headers: { h: 1 },
          timestamp: m.timestamp,
        });
        await put(store, 'ch', update(s1, { data: 'AAEC', encoding: 'base64' }));
        m = await only(store, 'ch');
        assert.equal(m.data, 'AAEC');
        assert.equal(m.encoding, 'base64');
        await put(store, 'ch', update(s1, { data: 'plain' }));
        await put(store, 'ch', append(s1, ' again'));
        m = await only(store, 'ch');
        assert.equal(m.data, 'plain again');
        assert.equal('encoding' in m, false);
      });

      it('delete leaves a tombstone', async () => {
        const store = await open();
        const s1 = await put(
          store,
          'ch',
          create({ id: 'gone', name: 'n', data: 'x', headers: { a: 1 }, clientId: 'alice' }),
          { ...OPTS, now: 42 },
        );
        await put(store, 'ch', append(s1, 'y'));
        const v = await put(store, 'ch', del(s1, { clientId: 'alice' }));
        const tomb: Message = {
          serial: s1,
          version: v,
          action: 'delete',
          id: 'gone',
          clientId: 'alice',
          timestamp: 42,
        };
        assert.deepEqual(await only(store, 'ch'), tomb);
        assert.deepEqual((await store.readSince('ch', s1, 10)).messages, [tomb]);
        assert.equal((await store.info('ch'))!.messageCount, 1);
      });
    });

    describe('errors', () => {
      it('refuse ops on deleted, non-string, unknown and foreign messages with the right code', async () => {
        const store = await open();
        const text = await put(store, 'ch', create({ data: 'x' }));
        const json = await put(store, 'ch', create({ data: { a: 1 } }));
        const num = await put(store, 'ch', create({ data: 3 }));
        const bytes = await put(store, 'ch', create({ data: 'AAE=', encoding: 'base64' }));
        const gone = await put(store, 'ch', create({ data: 'x' }));
        const anAppend = await put(store, 'ch', append(text, 'y'));
        await put(store, 'ch', del(gone));
        const foreign = await put(store, 'other', create({ data: 'x' }));
        const epoch = parseSerial(text)!.epoch;

        await rejectsWith(store.append('ch', [append(gone, 'z')], OPTS), 'message_deleted', 0);
        await rejectsWith(store.append('ch', [update(gone, { data: 'z' })], OPTS), 'message_deleted', 0);
        await rejectsWith(store.append('ch', [del(gone)], OPTS), 'message_deleted', 0);
        // every store says the same: what the message holds, and what to do instead
        await rejectsWith(
          store.append('ch', [append(json, 'z')], OPTS),
          'not_appendable',
          0,
          /holds a JSON value/,
        );
        await rejectsWith(
          store.append('ch', [append(num, 'z')], OPTS),
          'not_appendable',
          0,
          /holds a JSON value/,
        );
        await rejectsWith(store.append('ch', [append(bytes, 'z')], OPTS), 'not_appendable', 0, /holds bytes/);
        await rejectsWith(
          store.append('ch', [append(formatSerial(epoch, 9999), 'z')], OPTS),
          'message_not_found',
          0,
        );
        await rejectsWith(store.append('ch', [append(anAppend, 'z')], OPTS), 'message_not_found', 0);
        // Same sequence number, other channel's epoch.
        const fakeForeign = formatSerial(parseSerial(foreign)!.epoch, seqOf(text));
        if (fakeForeign !== text) {
          await rejectsWith(store.append('ch', [append(fakeForeign, 'z')], OPTS), 'message_not_found', 0);
        }
        await rejectsWith(
          store.append('ch', [append('garbage', 'z')], OPTS),
          'invalid_serial',
          0,
          /'garbage' is not a serial/,
        );
        await rejectsWith(
          store.append('ch', [{ action: 'append', publisher: '', id: uid() }], OPTS),
          'invalid_serial',
          0,
          /an append needs the serial of its message/,
        );
        // Updating non-string data is fine, and the message stays as it was after refusals.
        await put(store, 'ch', update(json, { data: { a: 2 } }));
        const page = await store.history('ch', { direction: 'forwards', limit: 10 });
        assert.deepEqual(
          page.messages.map((m) => m.data),
          ['xy', { a: 2 }, 3, 'AAE=', undefined],
        );
      });

      it('enforces requireOwner against the creator', async () => {
        const store = await open();
        const mine = await put(store, 'ch', create({ data: '', clientId: 'alice' }));
        const anon = await put(store, 'ch', create({ data: '' }));
        await rejectsWith(
          store.append('ch', [append(mine, 'x', { clientId: 'bob', requireOwner: 'bob' })], OPTS),
          'not_owner',
          0,
        );
        await rejectsWith(store.append('ch', [del(mine, { requireOwner: 'bob' })], OPTS), 'not_owner', 0);
        await rejectsWith(
          store.append('ch', [append(anon, 'x', { requireOwner: 'bob' })], OPTS),
          'not_owner',
          0,
        );
        await put(store, 'ch', append(mine, 'x', { clientId: 'alice', requireOwner: 'alice' }));
        // Without requireOwner anyone may append (the server decides when to ask).
        await put(store, 'ch', append(mine, 'y', { clientId: 'bob' }));
        const m = (await store.history('ch', { direction: 'forwards', limit: 1 })).messages[0]!;
        assert.equal(m.data, 'xy');
        assert.equal(m.clientId, 'alice');
      });

      it('keeps the creator as owner through appends and updates, in the batch and after it', async () => {
        const f = await fresh();
        let store = f.store;
        const mine = await put(store, 'ch', create({ data: '', clientId: 'alice' }));
        // each op of the batch sees the owner the earlier ones left
        await store.append(
          'ch',
          [
            append(mine, 'a', { clientId: 'alice', requireOwner: 'alice' }),
            update(mine, { headers: { step: 1 }, clientId: 'alice', requireOwner: 'alice' }),
            append(mine, 'b', { clientId: 'alice', requireOwner: 'alice' }),
          ],
          OPTS,
        );
        await put(store, 'ch', append(mine, 'c', { clientId: 'alice', requireOwner: 'alice' }));
        if (f.reopen) store = await f.reopen(); // the owner as the store finds it on open
        await rejectsWith(
          store.append('ch', [append(mine, 'x', { clientId: 'bob', requireOwner: 'bob' })], OPTS),
          'not_owner',
          0,
        );
        await put(store, 'ch', append(mine, 'd', { clientId: 'alice', requireOwner: 'alice' }));
        assert.equal((await only(store, 'ch')).data, 'abcd');
      });

      it('refuses an append whose delta is not a plain string, and one naming sequence number 0', async () => {
        const store = await open();
        const s1 = await put(store, 'ch', create({ data: 'a' }));
        await rejectsWith(
          store.append('ch', [append(s1, undefined, { data: { a: 1 } })], OPTS),
          'bad_request',
          0,
        );
        await rejectsWith(store.append('ch', [append(s1, undefined, { data: 5 })], OPTS), 'bad_request', 0);
        await rejectsWith(
          store.append('ch', [append(s1, undefined, { data: 'AAE=', encoding: 'base64' })], OPTS),
          'bad_request',
          0,
        );
        // a well-formed serial of this log before its first op names no message
        const zero = formatSerial(parseSerial(s1)!.epoch, 0);
        await rejectsWith(store.append('ch', [append(zero, 'z')], OPTS), 'message_not_found', 0);
        assert.equal((await only(store, 'ch')).data, 'a');
      });

      it('applies an op with ifVersion only to the message version it names, else version_changed', async () => {
        const f = await fresh();
        let store = f.store;
        const s1 = await put(store, 'ch', create({ data: 'a' }));
        const stale = (op: NewOperation, index = 0) =>
          rejectsWith(store.append('ch', [op], OPTS), 'version_changed', index);
        await stale(update(s1, { headers: { x: 1 }, ifVersion: seqOf(s1) + 1 }));
        const a1 = await put(store, 'ch', append(s1, 'b', { id: 'a1', ifVersion: seqOf(s1) }));
        await stale(append(s1, 'x', { ifVersion: seqOf(s1) }));
        // a resend is a duplicate before it is checked; another message moves only its own version
        assert.equal(await put(store, 'ch', append(s1, 'b', { id: 'a1', ifVersion: 1 })), a1);
        await put(store, 'ch', create({ data: '' }));
        const u1 = await put(store, 'ch', update(s1, { headers: { x: 1 }, ifVersion: seqOf(a1) }));
        const a2 = await put(store, 'ch', append(s1, 'c', { ifVersion: seqOf(u1) }));
        // within a batch, an op sees the version the earlier ops of the batch made
        const batch = await store.append(
          'ch',
          [append(s1, 'd', { ifVersion: seqOf(a2) }), append(s1, 'e', { ifVersion: seqOf(a2) + 1 })],
          OPTS,
        );
        const last = batch.results[1]!.serial;
        const both = [append(s1, 'y', { ifVersion: seqOf(last) }), append(s1, 'z', { ifVersion: seqOf(a2) })];
        await rejectsWith(store.append('ch', both, OPTS), 'version_changed', 1);
        if (f.reopen) store = await f.reopen(); // the version as the store finds it on open
        await stale(update(s1, { ifVersion: seqOf(a2) }));
        const m = (await store.history('ch', { direction: 'forwards', limit: 1 })).messages[0]!;
        assert.equal(m.data, 'abcde', 'a refused batch stored nothing');
        assert.equal(m.version, last);
        await put(store, 'ch', update(s1, { data: 'new', ifVersion: seqOf(last) }));
        await put(store, 'ch', del(s1));
        await rejectsWith(store.append('ch', [update(s1, { ifVersion: 1 })], OPTS), 'message_deleted', 0);
      });

      it('enforces maxMessageSize in UTF-8 bytes on append and update', async () => {
        const store = await open();
        const small: AppendOptions = { maxMessageSize: 10 };
        const s1 = await put(store, 'ch', create({ data: 'hello' }), small);
        // 11 bytes: what the create stored counts (the first append after it checks it too)
        await rejectsWith(store.append('ch', [append(s1, 'world!')], small), 'message_too_large', 0);
        await put(store, 'ch', append(s1, 'worl'), small); // 9 bytes
        await rejectsWith(store.append('ch', [append(s1, 'é')], small), 'message_too_large', 0); // 11 bytes
        await put(store, 'ch', append(s1, 'd'), small); // exactly 10
        await rejectsWith(store.append('ch', [append(s1, 'x')], small), 'message_too_large', 0);
        await rejectsWith(
          store.append('ch', [update(s1, { data: 'x'.repeat(11) })], small),
          'message_too_large',
          0,
        );
        await rejectsWith(
          store.append('ch', [update(s1, { data: { k: 'xxxxxxx' } })], small),
          'message_too_large',
          0,
        );
        await put(store, 'ch', update(s1, { data: 'short' }), small);
        await put(store, 'ch', append(s1, '12345'), small);
        assert.equal((await only(store, 'ch')).data, 'short12345');
      });

      it('enforces maxMessageOps: a message takes that many operations, its create included, then refuses appends and updates (in a batch too) but not a delete', async () => {
        const store = await open();
        const few: AppendOptions = { ...OPTS, maxMessageOps: 4 };
        const tooMany = /limit of 4 operations/;
        const s1 = await put(store, 'ch', create({ data: 'a' }), few);
        await store.append('ch', [append(s1, 'b'), append(s1, '')], few); // empty appends count
        await rejectsWith(
          store.append('ch', [append(s1, 'c'), append(s1, 'd')], few),
          'message_too_large',
          1,
          tooMany,
        );
        await put(store, 'ch', update(s1, { data: 'x' }), few); // the fourth
        await rejectsWith(store.append('ch', [append(s1, 'y')], few), 'message_too_large', 0, tooMany);
        await rejectsWith(
          store.append('ch', [update(s1, { data: 'z' })], few),
          'message_too_large',
          0,
          tooMany,
        );
        const s2 = await put(store, 'ch', create({ data: 'other' }), few);
        await put(store, 'ch', append(s2, '!'), few);
        await put(store, 'ch', del(s1), few);
        const page = await store.history('ch', { direction: 'forwards', limit: 10 });
        assert.deepEqual(
          page.messages.map((m) => [m.action, m.data]),
          [
            ['delete', undefined],
            ['update', 'other!'], // a changed message reads as an update
          ],
        );
      });
    });

    describe('readSince', () => {
      it('returns messages touched after a position, ordered by version, in pages', async () => {
        const store = await open();
        const [m1, m2, m3, m4] = (
          await store.append('ch', [create({ data: '1' }), create({ data: '2' }), create(), create()], OPTS)
        ).results.map((r) => r.serial) as [string, string, string, string];
        await put(store, 'ch', append(m2, 'b'));
        const head = await put(store, 'ch', append(m1, 'a'));

        const p1 = await store.readSince('ch', undefined, 2);
        assert.deepEqual(
          p1.messages.map((m) => m.serial),
          [m3, m4],
        );
        assert.equal(p1.more, true);
        assert.equal(p1.head, head);
        assert.equal(p1.epoch, parseSerial(m1)!.epoch);
        const p2 = await store.readSince('ch', p1.messages.at(-1)!.version, 2);
        assert.deepEqual(
          p2.messages.map((m) => [m.serial, m.data]),
          [
            [m2, '2b'],
            [m1, '1a'],
          ],
        );
        assert.equal(p2.more, false);
        assert.equal(p2.messages.at(-1)!.version, head);
        assert.deepEqual((await store.readSince('ch', head, 10)).messages, []);
        assert.deepEqual(
          (await store.readSince('ch', m4, 10)).messages.map((m) => m.serial),
          [m2, m1],
        );
        // A position of another epoch reads from the start.
        const stale = formatSerial('000000000000', 3);
        assert.equal((await store.readSince('ch', stale, 10)).messages.length, 4);
      });

      it('pages through everything touched since a position, each message once', async () => {
        const store = await open();
        const serials: string[] = [];
        for (let i = 0; i < 12; i++) serials.push(await put(store, 'ch', create({ data: `${i}:` })));
        const position = (await store.info('ch'))!.head;
        const touched = new Map<string, string>();
        for (let round = 0; round < 3; round++) {
          for (let i = round; i < serials.length; i += 2) {
            await put(store, 'ch', append(serials[i]!, `${round}`));
            touched.set(serials[i]!, '');
          }
        }
        const c = await put(store, 'ch', create({ data: 'new' }));
        touched.set(c, '');
        for (const s of serials) touched.set(s, '');
        const seen: string[] = [];
        let after: string | undefined = position;
        let last = position;
        for (;;) {
          const page = await store.readSince('ch', after, 5);
          for (const m of page.messages) {
            assert.ok(m.version > last, 'versions increase across pages');
            last = m.version;
            seen.push(m.serial);
          }
          if (!page.more) break;
          after = page.messages.at(-1)!.version;
        }
        assert.equal(new Set(seen).size, seen.length, 'each message once');
        assert.deepEqual(new Set(seen), new Set(touched.keys()));
        assert.equal(last, (await store.info('ch'))!.head);
      });
    });

    describe('history', () => {
      it('reads by serial in both directions with from/until and paging', async () => {
        const store = await open();
        const s: string[] = [];
        for (let i = 0; i < 5; i++) s.push(await put(store, 'ch', create({ data: `m${i}` })));
        await put(store, 'ch', append(s[1]!, '+'));
        await put(store, 'ch', del(s[3]!));
        const data = (p: { messages: Message[] }) => p.messages.map((m) => m.data ?? m.action);

        const b1 = await store.history('ch', { direction: 'backwards', limit: 2 });
        assert.deepEqual(data(b1), ['m4', 'delete']);
        assert.equal(b1.more, true);
        const b2 = await store.history('ch', { direction: 'backwards', until: s[2]!, limit: 2 });
        assert.deepEqual(data(b2), ['m2', 'm1+']);
        assert.equal(b2.more, true);
        const b3 = await store.history('ch', { direction: 'backwards', until: s[0]!, limit: 2 });
        assert.deepEqual(data(b3), ['m0']);
        assert.equal(b3.more, false);
        const b4 = await store.history('ch', { direction: 'backwards', from: s[1]!, until: s[2]!, limit: 5 });
        assert.deepEqual(data(b4), ['m2', 'm1+'], 'from is inclusive backwards too');
        assert.equal(b4.more, false);

        const f1 = await store.history('ch', { direction: 'forwards', from: s[1]!, limit: 10 });
        assert.deepEqual(data(f1), ['m1+', 'm2', 'delete', 'm4']);
        assert.equal(f1.more, false);
        const f2 = await store.history('ch', { direction: 'forwards', from: s[1]!, until: s[3]!, limit: 2 });
        assert.deepEqual(data(f2), ['m1+', 'm2']);
        assert.equal(f2.more, true);
        const f3 = await store.history('ch', { direction: 'forwards', from: s[3]!, until: s[3]!, limit: 2 });
        assert.deepEqual(data(f3), ['delete']);
        assert.equal(f3.more, false);
        assert.equal(f1.head, (await store.info('ch'))!.head);
        const none = await store.history('ch', {
          direction: 'forwards',
          from: s[4]!,
          until: s[0]!,
          limit: 5,
        });
        assert.deepEqual(none.messages, []);
      });

      it('reads a bound of another epoch as before the start (an older one) or past the end (a newer one)', async () => {
        const store = await open();
        const s: string[] = [];
        for (let i = 0; i < 3; i++) s.push(await put(store, 'ch', create({ data: `m${i}` })));
        const epoch = s[0]!.split('.')[0]!;
        const older = `${'0'.repeat(11)}1.0000000000000002`;
        const newer = `${'z'.repeat(12)}.0000000000000002`;
        assert.ok(older < epoch && newer > epoch);
        const read = async (direction: 'forwards' | 'backwards', from?: string, until?: string) =>
          (
            await store.history('ch', {
              direction,
              limit: 10,
              ...(from === undefined ? {} : { from }),
              ...(until === undefined ? {} : { until }),
            })
          ).messages.map((m) => m.data);
        // not the same sequence in this epoch: a serial of another log names none of these messages
        assert.deepEqual(await read('forwards', older), ['m0', 'm1', 'm2']);
        assert.deepEqual(await read('forwards', newer), []);
        assert.deepEqual(await read('forwards', undefined, older), []);
        assert.deepEqual(await read('forwards', undefined, newer), ['m0', 'm1', 'm2']);
        assert.deepEqual(await read('backwards', undefined, newer), ['m2', 'm1', 'm0']);
        assert.deepEqual(await read('backwards', older, s[1]), ['m1', 'm0']);
      });
    });

    describe('byte-bounded pages (maxBytes)', () => {
      it('hold no more than maxBytes of data, always at least one message, and page on to the end', async () => {
        const store = await open();
        const big = 'x'.repeat(10_000);
        const serials: string[] = [];
        for (let i = 0; i < 6; i++) {
          const s = await put(store, 'ch', create({ data: big.slice(0, 5_000) }));
          await put(store, 'ch', append(s, big.slice(5_000)));
          serials.push(s);
        }
        // appends count: each message holds 10,000 bytes once rolled up
        const one = await store.readSince('ch', undefined, 100, 1);
        assert.equal(one.messages.length, 1, 'at least one message even when it alone exceeds maxBytes');
        assert.equal(one.more, true);
        assert.equal((one.messages[0]!.data as string).length, 10_000);
        const two = await store.readSince('ch', undefined, 100, 25_000);
        assert.equal(two.messages.length, 2, 'as many as fit in maxBytes, never more');
        assert.equal(two.more, true);
        const exact = await store.readSince('ch', undefined, 100, 20_000);
        assert.equal(exact.messages.length, 2, 'messages filling maxBytes exactly fit in it');
        const unbounded = await store.readSince('ch', undefined, 100, 0);
        assert.equal(unbounded.messages.length, 6, 'maxBytes 0: no byte bound');
        assert.equal(unbounded.more, false);
        const seen: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await store.readSince('ch', after, 100, 35_000);
          assert.equal(page.messages.length, Math.min(3, 6 - seen.length));
          seen.push(...page.messages.map((m) => m.serial));
          if (!page.more) break;
          after = page.messages.at(-1)!.version;
        }
        assert.deepEqual(seen, serials, 'every message once, in order');
        const back = await store.history('ch', { direction: 'backwards', limit: 100, maxBytes: 25_000 });
        assert.deepEqual(
          back.messages.map((m) => m.serial),
          [serials[5], serials[4]],
        );
        assert.equal(back.more, true);
        const fwd = await store.history('ch', { direction: 'forwards', limit: 100, maxBytes: 1 });
        assert.deepEqual(
          fwd.messages.map((m) => m.serial),
          [serials[0]],
        );
        assert.equal(fwd.more, true);
        const all = await store.history('ch', { direction: 'forwards', limit: 100 });
        assert.equal(all.messages.length, 6, 'no maxBytes: only the count bounds the page');
        assert.equal(all.more, false);
      });
    });

    describe('concurrency', () => {
      it('gives concurrent callers distinct serials, increasing in the order each issued them', async () => {
        const store = await open();
        const callers = 20;
        const perCaller = 25;
        const results = await Promise.all(
          Array.from({ length: callers }, async (_, c) => {
            const serials = [await put(store, 'ch', create({ data: '', clientId: `w${c}` }))];
            for (let i = 0; i < perCaller; i++)
              serials.push(await put(store, 'ch', append(serials[0]!, `${i},`)));
            return serials;
          }),
        );
        const all = results.flat();
        assert.equal(new Set(all).size, callers * (perCaller + 1));
        for (const serials of results) {
          for (let i = 1; i < serials.length; i++) assert.ok(serials[i - 1]! < serials[i]!);
        }
        assert.equal(seqOf((await store.info('ch'))!.head), callers * (perCaller + 1));
        const expected = Array.from({ length: perCaller }, (_, i) => `${i},`).join('');
        const page = await store.history('ch', { direction: 'forwards', limit: callers + 1 });
        assert.equal(page.messages.length, callers);
        for (const m of page.messages) assert.equal(m.data, expected);
      });

      it('orders calls issued without waiting in the order they were made', async () => {
        const store = await open();
        const calls = Array.from({ length: 50 }, (_, i) =>
          store.append('ch', [create({ data: `${i}` })], OPTS),
        );
        const serials = (await Promise.all(calls)).map((r) => r.results[0]!.serial);
        assert.deepEqual(serials, [...serials].sort());
        assert.equal(new Set(serials).size, 50);
      });
    });

    describe('retention', () => {
      it('trim removes expired messages with their ops and raises trimmedThrough', async () => {
        const store = await open({ retentionFor: (ch) => (ch.startsWith('keep:') ? Infinity : 24 * HOUR) });
        const t0 = 1_700_000_000_000;
        const at = (ms: number): AppendOptions => ({ ...OPTS, now: ms });
        const old = await put(store, 'ch', create({ id: 'old', data: 'a' }), at(t0));
        await put(store, 'ch', append(old, 'b', { id: 'old-append' }), at(t0 + 1000));
        const young = await put(store, 'ch', create({ data: 'y' }), at(t0 + 2 * HOUR));
        const oldAppend2 = await put(store, 'ch', append(old, 'c'), at(t0 + 3 * HOUR));
        const forever = await put(store, 'keep:x', create({ data: 'k' }), at(t0));
        const epoch = (await store.info('ch'))!.epoch;

        assert.equal(await store.trim(t0 + 24 * HOUR - 1), 0);
        assert.equal(
          await store.trim(t0 + 24 * HOUR),
          1,
          'a message expires once its retention has passed, to the ms',
        );
        const info = (await store.info('ch'))!;
        assert.equal(info.trimmedThrough, seqOf(oldAppend2));
        assert.equal(info.messageCount, 1);
        assert.equal(info.epoch, epoch);
        assert.deepEqual(
          (await store.history('ch', { direction: 'forwards', limit: 10 })).messages.map((m) => m.serial),
          [young],
        );
        assert.deepEqual(
          (await store.readSince('ch', undefined, 10)).messages.map((m) => m.serial),
          [young],
        );
        await rejectsWith(store.append('ch', [append(old, 'd')], at(t0 + 25 * HOUR)), 'message_not_found', 0);
        // The log goes on with the same epoch and counter.
        const next = await put(store, 'ch', create(), at(t0 + 25 * HOUR));
        assert.equal(parseSerial(next)!.epoch, epoch);
        assert.equal(seqOf(next), seqOf(oldAppend2) + 1);
        // The next message of the channel expires when due (not a retention after the last trim), and
        // trimmedThrough never goes down: the young message's version is below the old one's.
        assert.equal(await store.trim(t0 + 26 * HOUR), 1);
        assert.equal((await store.info('ch'))!.trimmedThrough, seqOf(oldAppend2));
        // Infinite retention is never trimmed.
        assert.equal(await store.trim(t0 + 1000 * 24 * HOUR), 1);
        assert.equal((await store.info('keep:x'))!.messageCount, 1);
        assert.equal((await store.info('keep:x'))!.trimmedThrough, 0);
        assert.equal(
          (await store.history('keep:x', { direction: 'forwards', limit: 5 })).messages[0]!.serial,
          forever,
        );
        assert.equal((await store.info('ch'))!.trimmedThrough, seqOf(next));
        assert.equal((await store.info('ch'))!.head, next);
      });
    });

    describe('lifecycle', () => {
      it('ping resolves while open; every call after close rejects with store_unavailable', async () => {
        const store = await open();
        await store.ping();
        const s1 = await put(store, 'ch', create({ data: '' }));
        // Queued appends are stored before close resolves.
        const pending = store.append('ch', [append(s1, 'last')], OPTS);
        await store.close();
        await pending;
        await rejectsWith(store.ping(), 'store_unavailable');
        await rejectsWith(store.append('ch', [create()], OPTS), 'store_unavailable');
        await rejectsWith(store.info('ch'), 'store_unavailable');
        await rejectsWith(store.readSince('ch', undefined, 1), 'store_unavailable');
        await rejectsWith(store.history('ch', { direction: 'forwards', limit: 1 }), 'store_unavailable');
        await rejectsWith(store.trim(), 'store_unavailable');
      });
    });

    describe('persistence (stores that can reopen)', () => {
      it('keeps messages, serial counters and dedup across a reopen', async (t) => {
        const f = await fresh();
        if (!f.reopen) {
          t.skip('this store does not persist');
          return;
        }
        const s1 = await put(
          f.store,
          'ch',
          create({ id: 'c', data: 'a', headers: { h: 1 }, clientId: 'alice' }),
        );
        await put(f.store, 'ch', append(s1, 'b', { id: 'a1' }));
        const json = await put(f.store, 'ch', create({ data: [1] }));
        const before = await f.store.history('ch', { direction: 'forwards', limit: 10 });
        const info = await f.store.info('ch');

        const store = await f.reopen();
        assert.deepEqual(await store.info('ch'), info);
        assert.deepEqual(await store.history('ch', { direction: 'forwards', limit: 10 }), before);
        const dup = await store.append('ch', [append(s1, 'b', { id: 'a1' }), create({ id: 'c' })], OPTS);
        assert.deepEqual(
          dup.results.map((r) => r.duplicate),
          [true, true],
        );
        assert.equal(dup.results[1]!.serial, s1);
        const next = await put(store, 'ch', append(s1, 'c', { requireOwner: 'alice' }));
        assert.equal(seqOf(next), seqOf(info!.head) + 1);
        assert.equal(parseSerial(next)!.epoch, info!.epoch);
        await rejectsWith(store.append('ch', [append(json, 'x')], OPTS), 'not_appendable', 0);
        await rejectsWith(
          store.append('ch', [append(s1, 'x', { requireOwner: 'bob' })], OPTS),
          'not_owner',
          0,
        );
        await rejectsWith(
          store.append('ch', [append(s1, 'x')], { maxMessageSize: 3 }),
          'message_too_large',
          0,
        );
        // the operations counted before the reopen (create and two appends) still count
        await rejectsWith(
          store.append('ch', [append(s1, 'x')], { ...OPTS, maxMessageOps: 3 }),
          'message_too_large',
          0,
          /limit of 3 operations/,
        );
        assert.equal(
          (await store.history('ch', { direction: 'forwards', limit: 1 })).messages[0]!.data,
          'abc',
        );
      });

      it('keeps publisher scopes and the dedup window across a reopen and a trim', async (t) => {
        const f = await fresh();
        if (!f.reopen) {
          t.skip('this store does not persist');
          return;
        }
        const t0 = 1_700_000_000_000;
        const at = (ms: number): AppendOptions => ({ ...OPTS, now: ms });
        const old = await put(f.store, 'ch', create({ id: 'run:1', publisher: 'c:agent' }), at(t0));
        const young = await put(
          f.store,
          'ch',
          create({ id: 'run:2', publisher: 'c:agent', data: '' }),
          at(t0 + 2 * HOUR),
        );
        // Still in the journal (not merged) when the store is reopened: both paths are covered.
        const hot = await put(
          f.store,
          'ch',
          append(young, 'x', { id: 'run:2:1', publisher: 'c:agent' }),
          at(t0 + 2 * HOUR),
        );

        let store = await f.reopen();
        const scoped = await store.append(
          'ch',
          [create({ id: 'run:2', publisher: 'c:mallory' })],
          at(t0 + 3 * HOUR),
        );
        assert.equal(scoped.results[0]!.duplicate, undefined, 'another scope stores the same id anew');
        const retry = await store.append(
          'ch',
          [
            create({ id: 'run:1', publisher: 'c:agent' }),
            append(young, 'x', { id: 'run:2:1', publisher: 'c:agent' }),
          ],
          at(t0 + 3 * HOUR),
        );
        assert.deepEqual(retry.results, [
          { serial: old, duplicate: true },
          { serial: hot, duplicate: true },
        ]);

        assert.equal(await store.trim(t0 + 25 * HOUR), 1);
        store = await f.reopen();
        const after = await store.append(
          'ch',
          [create({ id: 'run:2', publisher: 'c:agent' }), create({ id: 'run:1', publisher: 'c:agent' })],
          at(t0 + 25 * HOUR),
        );
        assert.deepEqual(after.results[0], { serial: young, duplicate: true }, 'a retained op is remembered');
        assert.equal(after.results[1]!.duplicate, undefined, 'a trimmed op is forgotten');
      });
    });
  });
}
