/**
 * The stream space of each store (memory, SQLite, Redis): the guarantees of stream-store.ts, the same
 * cases on each — offsets and reads, immutability, byte-bounded pages, forks and their removal, expiry — and
 * on SQLite, that an append is all or nothing (chunk, tail and producer state in one transaction).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DatabaseSync } from 'node:sqlite';
import { after, before, test } from 'node:test';
import { type RedisServer, redisSkipReason, startRedis, waitFor } from '@mooring/testkit';
import { ErrorReply } from 'redis';
import { MemoryStore } from '../../src/store/memory-store.ts';
import { CommandTimeoutError, connectRedis } from '../../src/store/redis-connection.ts';
import { RedisStore } from '../../src/store/redis-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import type { Store } from '../../src/store/store.ts';
import { StoreError } from '../../src/store/store.ts';
import { MAX_FORK_DEPTH } from '../../src/store/stream-engine.ts';
import { MAX_ATTEMPTS, RedisStreamStore } from '../../src/store/stream-redis-store.ts';
import type { StreamStore } from '../../src/store/stream-store.ts';

const dirs: string[] = [];
const redisSkip = redisSkipReason();
let redis: RedisServer | undefined;
let prefixes = 0;
/** Closed at the end even when a case fails midway (an open Redis connection would hold the run). */
const opened: Store[] = [];
before(async () => {
  if (!redisSkip) redis = await startRedis();
});
after(async () => {
  for (const store of opened) await store.close();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  await redis?.close();
});

async function sqlitePath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-ds-store-'));
  dirs.push(dir);
  return join(dir, 'mooring.db');
}

const STORES: Record<string, () => Promise<Store>> = {
  memory: async () => new MemoryStore(),
  sqlite: async () => new SqliteStore({ path: await sqlitePath() }),
  ...(redisSkip
    ? {}
    : {
        redis: async () => {
          const store = await RedisStore.open({
            url: (redis as RedisServer).url,
            prefix: `ds-store-${++prefixes}`,
          });
          opened.push(store);
          return store;
        },
      }),
};

const bytes = (text: string) => Buffer.from(text);
/** A fork of `source` at its tail, with `data` of its own. */
const fork = (source: string, data = new Uint8Array(0)) => ({
  closed: false,
  data,
  fork: { source, subOffset: 0 },
});
const textOf = (chunks: { data: Uint8Array }[]) => Buffer.concat(chunks.map((c) => c.data)).toString();
const T0 = 1_000_000;

async function make(s: StreamStore, path: string, extra: Partial<Parameters<StreamStore['create']>[1]> = {}) {
  const out = await s.create(
    path,
    { contentType: 'text/plain', closed: false, data: new Uint8Array(0), ...extra },
    T0,
  );
  assert.equal(out.kind, 'created');
  return out;
}

for (const [kind, open] of Object.entries(STORES)) {
  test(`${kind}: offsets grow, a read after an offset is exactly what came after, bytes never change`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'a');
    const tails: number[] = [0];
    for (const word of ['one ', 'two ', 'three ']) {
      const out = await s.append('a', { contentType: 'text/plain', data: bytes(word), close: false }, T0);
      assert.equal(out.kind, 'appended');
      if (out.kind === 'appended') tails.push(out.meta.tail);
    }
    assert.deepEqual(tails, [0, 4, 8, 14]);
    for (const [i, after] of tails.entries()) {
      const page = await s.read('a', after, 1 << 20, T0);
      assert.equal(textOf(page?.chunks ?? []), ['one two three ', 'two three ', 'three ', ''][i]);
      assert.equal(page?.upToDate, true);
    }
    const before = textOf((await s.read('a', 4, 1 << 20, T0))?.chunks ?? []);
    await s.append('a', { contentType: 'text/plain', data: bytes('four'), close: true }, T0);
    const later = textOf((await s.read('a', 4, 1 << 20, T0))?.chunks ?? []);
    assert.ok(later.startsWith(before), 'what was at an offset is still there, unchanged');
    assert.equal((await s.get('a', T0))?.closed, true);
    await store.close();
  });

  test(`${kind}: a page holds every chunk that fits in maxBytes, 64 of them and more`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    for (const [path, count] of [
      ['sixty-four', 64],
      ['hundred', 100],
    ] as const) {
      await make(s, path);
      for (let i = 0; i < count; i++)
        await s.append(path, { contentType: 'text/plain', data: bytes('x'), close: false }, T0);
      const page = await s.read(path, 0, 1 << 20, T0);
      assert.equal(page?.chunks.length, count, path);
      assert.equal(page?.upToDate, true, path);
    }
    await store.close();
  });

  test(`${kind}: a page stops at about maxBytes but always holds one chunk`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'p');
    for (let i = 0; i < 10; i++)
      await s.append('p', { contentType: 'text/plain', data: bytes('x'.repeat(100)), close: false }, T0);
    const page = await s.read('p', 0, 250, T0);
    assert.equal(page?.chunks.length, 2);
    assert.equal(page?.upToDate, false);
    const exact = await s.read('p', 0, 200, T0);
    assert.equal(exact?.chunks.length, 2, 'chunks adding up to exactly maxBytes are one page');
    const one = await s.read('p', 0, 10, T0);
    assert.equal(one?.chunks.length, 1, 'a chunk above the budget is still served alone');
    let after = 0;
    let read = 0;
    for (;;) {
      const next = await s.read('p', after, 250, T0);
      assert.ok(next);
      read += next.chunks.length;
      if (next.upToDate) break;
      after = next.chunks.at(-1)?.end ?? after;
    }
    assert.equal(read, 10);
    await store.close();
  });

  test(`${kind}: forks read their source up to the fork offset; deletion soft-deletes and cascades`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'src', { data: bytes('abc') });
    await s.create('f1', { closed: false, data: bytes('D'), fork: { source: 'src', subOffset: 0 } }, T0);
    await s.append('src', { contentType: 'text/plain', data: bytes('zzz'), close: false }, T0);
    await s.create(
      'f2',
      { closed: false, data: new Uint8Array(0), fork: { source: 'f1', offset: 3, subOffset: 0 } },
      T0,
    );
    assert.equal(textOf((await s.read('f1', 0, 1 << 20, T0))?.chunks ?? []), 'abcD');
    assert.equal(textOf((await s.read('f2', 0, 1 << 20, T0))?.chunks ?? []), 'abc');
    assert.equal(await s.delete('src', T0), 'deleted');
    assert.equal((await s.get('src', T0))?.softDeleted, true);
    assert.equal(
      await s.read('src', 0, 1 << 20, T0),
      undefined,
      'a soft-deleted stream is not readable itself',
    );
    assert.equal(await s.delete('f1', T0), 'deleted');
    assert.equal((await s.get('f1', T0))?.softDeleted, true, 'f2 still reads f1');
    assert.equal(textOf((await s.read('f2', 0, 1 << 20, T0))?.chunks ?? []), 'abc');
    assert.equal(await s.delete('f2', T0), 'deleted');
    assert.equal(await s.get('f1', T0), undefined, 'the last fork gone, its soft-deleted source goes');
    assert.equal(await s.get('src', T0), undefined, 'and so does the source of that, up the chain');
    await store.close();
  });

  test(`${kind}: a stream past its TTL is gone and its path is free; reads slide the TTL`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 't', { ttlSeconds: 10 });
    await s.read('t', 0, 100, T0 + 9_000);
    assert.ok(await s.get('t', T0 + 18_000), 'a read at +9 s moved the deadline to +19 s');
    assert.equal(await s.get('t', T0 + 19_000), undefined);
    await make(s, 't');
    await make(s, 'e', { expiresAt: new Date(T0 + 5_000).toISOString() });
    assert.equal(await s.sweep(T0 + 5_000), 1);
    assert.equal(await s.get('e', T0), undefined);
    await store.close();
  });

  test(`${kind}: a sweep counts only what it removes: a deleted stream, or one soft-deleted under its forks, is not due any more`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'gone', { ttlSeconds: 10 });
    assert.equal(await s.delete('gone', T0), 'deleted');
    await make(s, 'src', { ttlSeconds: 10 });
    await s.create('f', { ...fork('src'), ttlSeconds: 1_000 }, T0);
    assert.equal(await s.delete('src', T0), 'deleted');
    assert.equal((await s.get('src', T0))?.softDeleted, true);
    assert.equal(await s.sweep(T0 + 10_000), 0);
    assert.ok(await s.get('f', T0 + 10_000));
    await store.close();
  });

  test(`${kind}: a fork without an expiry of its own ends with its source (Expires-At or TTL)`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    const deadline = new Date(T0 + 5_000).toISOString();
    await make(s, 'dated', { expiresAt: deadline });
    await s.create('dated-fork', fork('dated'), T0);
    assert.equal((await s.get('dated-fork', T0))?.expiresAt, deadline);
    assert.equal(await s.get('dated-fork', T0 + 5_000), undefined, 'the fork does not outlive its source');
    await make(s, 'ttl', { ttlSeconds: 10 });
    await s.create('ttl-fork', fork('ttl'), T0);
    assert.equal((await s.get('ttl-fork', T0))?.ttlSeconds, 10);
    assert.equal(await s.get('ttl-fork', T0 + 10_000), undefined);
    await store.close();
  });

  test(`${kind}: a close without data stores no chunk: a read after it is what it was before`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'c', { data: bytes('abc') });
    const before = await s.read('c', 0, 1 << 20, T0);
    const closed = await s.append('c', { data: new Uint8Array(0), close: true }, T0);
    assert.equal(closed.kind, 'appended');
    const after = await s.read('c', 0, 1 << 20, T0);
    assert.equal(after?.meta.closed, true);
    assert.equal(after?.meta.tail, 3);
    assert.deepEqual(
      after?.chunks.map((c) => [c.start, c.end]),
      before?.chunks.map((c) => [c.start, c.end]),
    );
    await store.close();
  });

  test(`${kind}: forks nest at most MAX_FORK_DEPTH deep: a fork of the deepest one is refused`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'd0', { data: bytes('x') });
    for (let i = 1; i <= MAX_FORK_DEPTH; i++)
      assert.equal((await s.create(`d${i}`, fork(`d${i - 1}`), T0)).kind, 'created', `fork ${i}`);
    assert.equal((await s.create('deeper', fork(`d${MAX_FORK_DEPTH}`), T0)).kind, 'bad_fork');
    assert.equal(textOf((await s.read(`d${MAX_FORK_DEPTH}`, 0, 1 << 20, T0))?.chunks ?? []), 'x');
    await store.close();
  });

  test(`${kind}: a page of a fork stops at maxBytes across the fork boundary too`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'src', { data: bytes('aaaa') });
    await s.create('fork', fork('src', bytes('bbbb')), T0);
    const first = await s.read('fork', 0, 6, T0);
    assert.equal(textOf(first?.chunks ?? []), 'aaaa', "the fork's own chunk does not fit what is left");
    assert.equal(first?.upToDate, false);
    const exact = await s.read('fork', 0, 8, T0);
    assert.equal(
      textOf(exact?.chunks ?? []),
      'aaaabbbb',
      'chunks adding up to exactly maxBytes are one page',
    );
    assert.equal(exact?.upToDate, true);
    await store.close();
  });

  test(`${kind}: a page of a fork cut inside its inherited part goes on there, not at the fork's own chunks`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'src', { data: bytes('aaaa') });
    await s.append('src', { contentType: 'text/plain', data: bytes('bbbb'), close: false }, T0);
    await s.create('fork', fork('src', bytes('c')), T0);
    let after = 0;
    let read = '';
    for (let pages = 0; pages < 10; pages++) {
      const page = await s.read('fork', after, 6, T0);
      read += textOf(page?.chunks ?? []);
      if (!page || page.upToDate) break;
      after = page.chunks.at(-1)?.end ?? after;
    }
    await store.close();
    assert.equal(read, 'aaaabbbbc');
  });

  test(`${kind}: a sub-offset may take a whole append, of bytes or of JSON messages, and no more`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    const at = (source: string, subOffset: number) => ({
      closed: false,
      data: new Uint8Array(0),
      fork: { source, offset: 0, subOffset },
    });
    await make(s, 'b', { data: bytes('hello') });
    assert.equal((await s.create('b-all', at('b', 5), T0)).kind, 'created');
    assert.equal(textOf((await s.read('b-all', 0, 1 << 20, T0))?.chunks ?? []), 'hello');
    assert.equal((await s.create('b-more', at('b', 6), T0)).kind, 'bad_fork');
    await make(s, 'j', { contentType: 'application/json', data: bytes('{"a":1},{"b":2}') });
    assert.equal((await s.create('j-all', at('j', 2), T0)).kind, 'created');
    assert.equal(textOf((await s.read('j-all', 0, 1 << 20, T0))?.chunks ?? []), '{"a":1},{"b":2}');
    assert.equal((await s.create('j-more', at('j', 3), T0)).kind, 'bad_fork');
    await store.close();
  });

  test(`${kind}: a JSON sub-offset ends at message k's comma, found without parsing (commas, brackets and quotes inside strings skipped)`, async (t) => {
    const store = await open();
    const s = store.streams as StreamStore;
    const messages = ['{"a":"x,]\\"}"}', '[1,[2,{"b":[3]}]]', '"é,\\\\"', 'null', '"\\"[{,"'];
    // stored as json-mode.ts stores an append: each message as JSON.stringify wrote it, joined by ','
    for (const m of messages) assert.equal(JSON.stringify(JSON.parse(m)), m, 'canonical');
    await make(s, 'tricky', { contentType: 'application/json', data: bytes(messages.join(',')) });
    const parse = t.mock.method(JSON, 'parse');
    for (let k = 1; k <= messages.length; k++) {
      const out = await s.create(
        `tricky-${k}`,
        { closed: false, data: new Uint8Array(0), fork: { source: 'tricky', offset: 0, subOffset: k } },
        T0,
      );
      assert.equal(out.kind, 'created', `k = ${k}`);
      const page = await s.read(`tricky-${k}`, 0, 1 << 20, T0);
      assert.equal(textOf(page?.chunks ?? []), messages.slice(0, k).join(','), `k = ${k}`);
    }
    const past = await s.create(
      'tricky-6',
      { closed: false, data: new Uint8Array(0), fork: { source: 'tricky', offset: 0, subOffset: 6 } },
      T0,
    );
    assert.equal(
      past.kind === 'bad_fork' && past.reason,
      "Stream-Fork-Sub-Offset is past the append's 5 messages",
    );
    // the stores parse their own rows (metadata), never an append
    assert.ok(
      parse.mock.calls.every((call) => !String(call.arguments[0]).includes('[2,{')),
      'no append was parsed',
    );
    parse.mock.restore();
    await store.close();
  });

  test(`${kind}: a sub-offset fork costing more than its allowance (bytes: the sub-offset; JSON: the append) is fork_unpaid, nothing made`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'pb', { data: bytes('0123456789') });
    await make(s, 'pj', { contentType: 'application/json', data: bytes('1,22,333') });
    const at = (source: string, subOffset: number, allowance: number) => ({
      closed: false,
      data: new Uint8Array(0),
      fork: { source, offset: 0, subOffset, allowance },
    });
    assert.deepEqual(await s.create('fb', at('pb', 4, 3), T0), { kind: 'fork_unpaid', bytes: 4 });
    assert.deepEqual(await s.create('fj', at('pj', 1, 7), T0), { kind: 'fork_unpaid', bytes: 8 });
    for (const path of ['fb', 'fj']) assert.equal(await s.get(path, T0), undefined, `${path} not made`);
    assert.equal((await s.get('pb', T0))?.refCount, 0, 'the source holds no fork');
    assert.equal((await s.create('fb', at('pb', 4, 4), T0)).kind, 'created');
    assert.equal((await s.create('fj', at('pj', 1, 8), T0)).kind, 'created');
    assert.equal(textOf((await s.read('fb', 0, 1 << 20, T0))?.chunks ?? []), '0123');
    assert.equal(textOf((await s.read('fj', 0, 1 << 20, T0))?.chunks ?? []), '1');
    await store.close();
  });

  test(`${kind}: producer state is per scope and Producer-Id: another scope with the same id neither duplicates nor fences`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'shared');
    const send = (scope: string, epoch: number, seq: number, text: string) =>
      s.append(
        'shared',
        {
          contentType: 'text/plain',
          data: bytes(text),
          close: false,
          producer: { id: 'w', epoch, seq, scope },
        },
        T0,
      );
    assert.equal((await send('c:alice', 0, 0, 'a0|')).kind, 'appended');
    assert.equal((await send('c:bob', 0, 1, 'b-forged|')).kind, 'sequence_gap', "bob's own state: none yet");
    assert.equal((await send('c:bob', 1, 0, 'b-fence|')).kind, 'appended');
    assert.equal((await send('c:alice', 0, 1, 'a1|')).kind, 'appended', 'not a duplicate, not fenced');
    assert.equal((await send('c:alice', 0, 1, 'a1|')).kind, 'duplicate', "alice's retry");
    assert.equal(textOf((await s.read('shared', 0, 1 << 20, T0))?.chunks ?? []), 'a0|b-fence|a1|');
    await store.close();
  });

  test(`${kind}: producer state an older version kept by Producer-Id alone goes on under the first scope that appends with it, then is gone`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'upgraded');
    const send = (scope: string | undefined, seq: number, text: string) =>
      s.append(
        'upgraded',
        {
          contentType: 'text/plain',
          data: bytes(text),
          close: false,
          producer: { id: 'w', epoch: 0, seq, ...(scope === undefined ? {} : { scope }) },
        },
        T0,
      );
    // stored as before producers were scoped: under the bare Producer-Id
    assert.equal((await send(undefined, 0, 'old0|')).kind, 'appended');
    assert.equal((await send(undefined, 1, 'old1|')).kind, 'appended');
    assert.equal((await send('c:alice', 1, 'old1|')).kind, 'duplicate', 'a retry across the upgrade');
    assert.equal((await send('c:alice', 2, 'new2|')).kind, 'appended', 'goes on where it was');
    assert.equal((await send('c:alice', 2, 'new2|')).kind, 'duplicate');
    // the bare state moved: another holder reusing the Producer-Id starts afresh
    assert.equal((await send('c:bob', 0, 'bob0|')).kind, 'appended');
    assert.equal(textOf((await s.read('upgraded', 0, 1 << 20, T0))?.chunks ?? []), 'old0|old1|new2|bob0|');
    await store.close();
  });

  test(`${kind}: a fork's first content prepared for another content type than the fork resolves to (its source changed meanwhile) is refused, nothing made`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'was-bytes', { contentType: 'application/json' });
    await make(s, 'was-json');
    const forkWith = (source: string, text: string, dataJson: boolean) => ({
      closed: false,
      data: bytes(text),
      dataJson,
      fork: { source, subOffset: 0 },
    });
    // the request saw a byte stream (body not validated) where a JSON one is now, and the reverse
    assert.deepEqual(await s.create('f1', forkWith('was-bytes', 'not json', false), T0), {
      kind: 'source_changed',
    });
    assert.deepEqual(await s.create('f2', forkWith('was-json', '"a"', true), T0), { kind: 'source_changed' });
    for (const path of ['f1', 'f2']) assert.equal(await s.get(path, T0), undefined, `${path} not made`);
    assert.equal((await s.get('was-bytes', T0))?.refCount, 0);
    assert.equal((await s.create('f1', forkWith('was-bytes', '"a"', true), T0)).kind, 'created');
    assert.equal((await s.create('f2', forkWith('was-json', 'not json', false), T0)).kind, 'created');
    await store.close();
  });

  test(`${kind}: touch slides the TTL as a read does (a waiting live reader keeps its stream)`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'touched', { ttlSeconds: 10 });
    await s.touch('touched', T0 + 9_000);
    assert.ok(await s.get('touched', T0 + 18_000), 'a touch at +9 s moved the deadline to +19 s');
    assert.equal(await s.get('touched', T0 + 19_000), undefined);
    await store.close();
  });

  // a read at `now` touches after its own look-up: the stream may be gone by then (deleted or
  // expired meanwhile), and the read answers with what it found instead of failing
  test(`${kind}: touch of a stream that is not there (never made, deleted, expired) does nothing`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await s.touch('never', T0);
    await make(s, 'deleted');
    await s.delete('deleted', T0);
    await s.touch('deleted', T0);
    await make(s, 'expired', { ttlSeconds: 10 });
    await s.touch('expired', T0 + 10_000);
    for (const path of ['never', 'deleted', 'expired']) assert.equal(await s.get(path, T0), undefined, path);
    await store.close();
  });

  test(`${kind}: a stream past its TTL with forks is soft-deleted: its path stays taken, appends are refused, its forks read it`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'src', { ttlSeconds: 10, data: bytes('abc') });
    await s.create('f', { ...fork('src', bytes('D')), ttlSeconds: 1_000 }, T0);
    const at = T0 + 10_000;
    // the first call after the deadline expires it: its path stays taken for the forks' reads
    assert.equal(
      (await s.create('src', { contentType: 'text/plain', closed: false, data: bytes('new') }, at)).kind,
      'path_in_use',
    );
    assert.equal((await s.get('src', at))?.softDeleted, true);
    assert.equal(
      (await s.append('src', { contentType: 'text/plain', data: bytes('x'), close: false }, at)).kind,
      'gone',
    );
    assert.equal(await s.read('src', 0, 1 << 20, at), undefined);
    assert.equal(textOf((await s.read('f', 0, 1 << 20, at))?.chunks ?? []), 'abcD');
    assert.equal(await s.delete('f', at), 'deleted');
    assert.equal(await s.get('src', at), undefined, 'its last fork gone, the expired source goes');
    await store.close();
  });

  test(`${kind}: a fork created again at another Stream-Fork-Offset is a conflict, at the same one the same create`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'src', { data: bytes('abc') });
    await s.append('src', { contentType: 'text/plain', data: bytes('def'), close: false }, T0);
    const at = (offset: number) => ({
      closed: false,
      data: new Uint8Array(0),
      fork: { source: 'src', offset, subOffset: 0 },
    });
    assert.equal((await s.create('f', at(3), T0)).kind, 'created');
    assert.equal((await s.create('f', at(3), T0)).kind, 'exists');
    assert.equal((await s.create('f', at(6), T0)).kind, 'conflict');
    await store.close();
  });

  // the Durable Streams spec (PROTOCOL.md §8) leaves offsets a client made up undefined: these pin
  // what Mooring does with one that falls inside an append (each append is stored whole)
  test(`${kind}: an offset inside an append reads that whole append; a fork there inherits none of it`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'src', { data: bytes('abc') });
    await s.append('src', { contentType: 'text/plain', data: bytes('defgh'), close: false }, T0);
    const inside = await s.read('src', 5, 1 << 20, T0);
    assert.deepEqual(
      inside?.chunks.map((c) => [c.start, c.end, Buffer.from(c.data).toString()]),
      [[3, 8, 'defgh']],
      'the append is served from its start, not from the offset asked for',
    );
    assert.equal(inside?.upToDate, true);
    const at5 = { closed: false, data: new Uint8Array(0), fork: { source: 'src', offset: 5, subOffset: 0 } };
    assert.equal((await s.create('f', at5, T0)).kind, 'created');
    assert.equal((await s.get('f', T0))?.tail, 5, "the fork's tail is the offset it was given");
    await s.append('f', { contentType: 'text/plain', data: bytes('XY'), close: false }, T0);
    // every page, followed from the start as a reader does
    const pages: [number, number, string][][] = [];
    let after = 0;
    for (let n = 0; n < 5; n++) {
      const page = await s.read('f', after, 1 << 20, T0);
      pages.push((page?.chunks ?? []).map((c) => [c.start, c.end, Buffer.from(c.data).toString()]));
      if (!page || page.upToDate) break;
      after = page.chunks.at(-1)?.end ?? after;
    }
    assert.deepEqual(
      pages,
      [[[0, 3, 'abc']], [[5, 7, 'XY']]],
      "no byte of the cut append is inherited; the fork's own appends start at its offset",
    );
    const sub = { ...at5, fork: { ...at5.fork, subOffset: 1 } };
    assert.equal(
      (await s.create('f-sub', sub, T0)).kind,
      'bad_fork',
      'no append starts there to take part of',
    );
    await store.close();
  });

  test(`${kind}: a stream that is not there is read as none, and an append (with a producer too) or a delete of it is not_found`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'other', { data: bytes('other') });
    assert.equal(await s.read('missing', 0, 1 << 20, T0), undefined);
    assert.equal(await s.get('missing', T0), undefined);
    const data = { contentType: 'text/plain', data: bytes('x'), close: false };
    assert.equal((await s.append('missing', data, T0)).kind, 'not_found');
    const producer = { id: 'w', epoch: 0, seq: 0 };
    assert.equal((await s.append('missing', { ...data, producer }, T0)).kind, 'not_found');
    assert.equal(await s.delete('missing', T0), 'not_found');
    assert.equal(textOf((await s.read('other', 0, 1 << 20, T0))?.chunks ?? []), 'other');
    await store.close();
  });

  test(`${kind}: a fork of a source that is not there is refused, also when the fork's path holds a stream (left as it was)`, async () => {
    const store = await open();
    const s = store.streams as StreamStore;
    await make(s, 'target', { data: bytes('mine') });
    await make(s, 'gone-source', { data: bytes('theirs') });
    assert.equal(await s.delete('gone-source', T0), 'deleted');
    for (const source of ['never-made', 'gone-source']) {
      const out = await s.create('target', { contentType: 'text/plain', ...fork(source) }, T0);
      assert.equal(out.kind, 'source_not_found', source);
      const out2 = await s.create('free', { contentType: 'text/plain', ...fork(source) }, T0);
      assert.equal(out2.kind, 'source_not_found', `${source}, to a free path`);
    }
    const target = await s.get('target', T0);
    assert.equal(target?.tail, 4);
    assert.equal(target?.forkedFrom, undefined);
    assert.equal(textOf((await s.read('target', 0, 1 << 20, T0))?.chunks ?? []), 'mine');
    assert.equal(await s.get('free', T0), undefined);
    await store.close();
  });
}

test('sqlite: an append whose producer state cannot be written stores nothing (one transaction)', async () => {
  let db: DatabaseSync | undefined;
  const store = new SqliteStore({
    path: await sqlitePath(),
    onOpen: (d) => {
      db = d;
    },
  });
  const s = store.streams as StreamStore;
  await make(s, 'x');
  const producer = { id: 'p', epoch: 0, seq: 0 };
  // the producer row fails to write (as a full disk would), after the chunk row was written
  db?.exec(
    `CREATE TRIGGER fail_producer BEFORE INSERT ON ds_producers BEGIN SELECT RAISE(ABORT, 'disk full'); END`,
  );
  await assert.rejects(
    s.append('x', { contentType: 'text/plain', data: bytes('once'), close: false, producer }, T0),
    (err: unknown) => err instanceof StoreError && err.code === 'store_unavailable',
  );
  assert.equal((await s.get('x', T0))?.tail, 0);
  assert.deepEqual((await s.read('x', 0, 100, T0))?.chunks, []);
  db?.exec('DROP TRIGGER fail_producer');
  const retry = await s.append(
    'x',
    { contentType: 'text/plain', data: bytes('once'), close: false, producer },
    T0,
  );
  assert.equal(retry.kind, 'appended', 'the retry is stored (nothing of the failed attempt was)');
  assert.equal(textOf((await s.read('x', 0, 100, T0))?.chunks ?? []), 'once');
  const dup = await s.append(
    'x',
    { contentType: 'text/plain', data: bytes('once'), close: false, producer },
    T0,
  );
  assert.equal(dup.kind, 'duplicate');
  await store.close();
});

test('sqlite: streams created after a reopen get rows of their own; the earlier ones keep theirs', async () => {
  const path = await sqlitePath();
  let store = new SqliteStore({ path });
  await make(store.streams as StreamStore, 'a', { data: bytes('first') });
  await make(store.streams as StreamStore, 'b', { data: bytes('second') });
  await store.close();
  store = new SqliteStore({ path });
  const s = store.streams as StreamStore;
  await make(s, 'c', { data: bytes('third') });
  for (const [name, text] of [
    ['a', 'first'],
    ['b', 'second'],
    ['c', 'third'],
  ] as const)
    assert.equal(textOf((await s.read(name, 0, 1 << 20, T0))?.chunks ?? []), text, name);
  await store.close();
});

test(
  'redis: a step whose stream keeps changing under it gives up after MAX_ATTEMPTS, retryable, having written nothing',
  {
    skip: redisSkip,
  },
  async (t) => {
    const connection = await connectRedis((redis as RedisServer).url, () => {});
    t.after(() => connection.close());
    const prefix = `ds-store-${++prefixes}`;
    const versions = `${prefix}:ds:{ds}:v`;
    let meddle = false;
    let commits = 0;
    const s = new RedisStreamStore({
      prefix,
      closed: () => false,
      send: async (key, args) => {
        // a commit (ds-commit.lua names 6 keys): another writer changes the stream just before it
        if (meddle && args[0]?.startsWith('EVAL') && args[2] === '6') {
          // (and a step that would never give up fails here instead of running for ever)
          if (++commits > MAX_ATTEMPTS) throw new Error('one attempt too many');
          await connection.send(versions, ['HINCRBY', versions, 'x', '1']);
        }
        return connection.send(key, args);
      },
    });
    await make(s, 'x');
    meddle = true;
    await assert.rejects(
      s.append('x', { contentType: 'text/plain', data: bytes('never'), close: false }, T0),
      (err: unknown) => err instanceof StoreError && err.code === 'store_unavailable',
    );
    assert.equal(commits, MAX_ATTEMPTS, 'one commit per attempt, and no more attempts');
    assert.equal(s.conflicts, MAX_ATTEMPTS);
    meddle = false;
    assert.equal((await s.get('x', T0))?.tail, 0, 'nothing of the append was written');
    assert.equal(
      (await s.append('x', { contentType: 'text/plain', data: bytes('now'), close: false }, T0)).kind,
      'appended',
    );
  },
);

test(
  "redis: one node's concurrent writers of a stream take turns: 16 appenders at once, every append stored, none rerun",
  { skip: redisSkip },
  async (t) => {
    const connection = await connectRedis((redis as RedisServer).url, () => {});
    t.after(() => connection.close());
    const s = new RedisStreamStore({
      prefix: `ds-store-${++prefixes}`,
      closed: () => false,
      send: (key, args) => connection.send(key, args),
    });
    await make(s, 'hot');
    const outcomes = await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        const kinds: string[] = [];
        for (let i = 0; i < 20; i++)
          kinds.push(
            (
              await s.append(
                'hot',
                { contentType: 'text/plain', data: bytes(`${w}.${i};`), close: false },
                T0,
              )
            ).kind,
          );
        return kinds;
      }),
    );
    assert.deepEqual(new Set(outcomes.flat()), new Set(['appended']));
    assert.equal(s.conflicts, 0, 'no step ran again because another writer of this node committed first');
    const text = Buffer.from(
      (await s.read('hot', 0, 1 << 20, T0))!.chunks.flatMap((c) => [...c.data]),
    ).toString();
    assert.equal(text.split(';').length - 1, 16 * 20, 'every append stored once');
    for (let w = 0; w < 16; w++) {
      const mine = text.split(';').filter((part) => part.startsWith(`${w}.`));
      assert.deepEqual(
        mine,
        Array.from({ length: 20 }, (_, i) => `${w}.${i}`),
        `writer ${w}'s appends in its order`,
      );
    }
  },
);

test(
  "redis: a stream's write that waited past queueWait for this node's earlier ones is refused at once, retryable, without running",
  { skip: redisSkip },
  async (t) => {
    const connection = await connectRedis((redis as RedisServer).url, () => {});
    t.after(() => connection.close());
    let hold: Promise<void> | undefined;
    let sent = 0;
    const s = new RedisStreamStore(
      {
        prefix: `ds-store-${++prefixes}`,
        closed: () => false,
        send: async (key, args) => {
          sent++;
          if (hold) await hold; // a Redis that does not answer for a while
          return connection.send(key, args);
        },
      },
      undefined,
      { queueWait: 100 },
    );
    await make(s, 'slow');
    let release = () => {};
    hold = new Promise((resolve) => {
      release = resolve;
    });
    const first = s.append('slow', { contentType: 'text/plain', data: bytes('first'), close: false }, T0);
    const second = s.append('slow', { contentType: 'text/plain', data: bytes('second'), close: false }, T0);
    await new Promise((r) => setTimeout(r, 300));
    const before = sent;
    hold = undefined;
    release();
    assert.equal((await first).kind, 'appended');
    await assert.rejects(
      second,
      (err: unknown) =>
        err instanceof StoreError &&
        err.code === 'store_unavailable' &&
        /waited over 100 ms/.test(err.message),
    );
    assert.equal(sent - before, 1, "the first append's commit only: the second sent nothing");
    const text = Buffer.from(
      (await s.read('slow', 0, 1 << 20, T0))!.chunks.flatMap((c) => [...c.data]),
    ).toString();
    assert.equal(text, 'first');
  },
);

test(
  "redis: a removed stream's chunks are freed off Redis's main thread (UNLINK): a stream of many appends does not hold Redis while it goes",
  {
    skip: redisSkip,
  },
  async () => {
    const prefix = `ds-store-${++prefixes}`;
    const store = await RedisStore.open({ url: (redis as RedisServer).url, prefix });
    opened.push(store);
    await make(store.streams, 'long', { data: bytes('0') });
    for (let i = 1; i < 200; i++)
      await store.streams.append(
        'long',
        { contentType: 'text/plain', data: bytes(String(i % 10)), close: false },
        T0,
      );
    const lazyfreed = async () =>
      Number(
        /lazyfreed_objects:(\d+)/.exec(await (redis as RedisServer).command('INFO', 'memory'))?.[1] ?? -1,
      );
    const before = await lazyfreed();
    assert.equal(await store.streams.delete('long', T0), 'deleted');
    // Redis frees a value of more than 64 elements in its background thread only when unlinked
    await waitFor(async () => (await lazyfreed()) > before, {
      message: 'the chunks were freed in the command itself (DEL)',
    });
  },
);

test(
  'redis: stream keys are unique across nodes, also past a block of reserved keys: no two streams share rows',
  {
    skip: redisSkip,
  },
  async () => {
    const prefix = `ds-store-${++prefixes}`;
    const url = (redis as RedisServer).url;
    const one = await RedisStore.open({ url, prefix });
    opened.push(one);
    const two = await RedisStore.open({ url, prefix });
    opened.push(two);
    await make(one.streams, 'a', { data: bytes('first') });
    // node two reserves the block after node one's, uses it up (1000 keys) and reserves the next
    for (let i = 0; i <= 1000; i++) await make(two.streams, `b${i}`, { data: bytes('b') });
    assert.equal(textOf((await one.streams.read('a', 0, 1 << 20, T0))?.chunks ?? []), 'first');
    for (const i of [0, 999, 1000])
      assert.equal(textOf((await two.streams.read(`b${i}`, 0, 1 << 20, T0))?.chunks ?? []), 'b', `b${i}`);
  },
);

test(
  "redis: a read's page ends at the tail of the meta it read, also when another node appends while it reads",
  {
    skip: redisSkip,
  },
  async (t) => {
    const url = (redis as RedisServer).url;
    const prefix = `ds-store-${++prefixes}`;
    const writer = await RedisStore.open({ url, prefix });
    opened.push(writer);
    const connection = await connectRedis(url, () => {});
    t.after(() => connection.close());
    let meddle = false;
    const reader = new RedisStreamStore({
      prefix,
      closed: () => false,
      send: async (key, args) => {
        const reply = await connection.send(key, args);
        // after each load of rows (ds-load.lua names 3 keys), another node appends to the stream
        if (meddle && args[0]?.startsWith('EVAL') && args[2] === '3')
          await writer.streams.append(
            'x',
            { contentType: 'text/plain', data: bytes('+more'), close: false },
            T0,
          );
        return reply;
      },
    });
    await make(writer.streams, 'x', { data: bytes('first') });
    meddle = true;
    const page = await reader.read('x', 0, 1 << 20, T0);
    meddle = false;
    assert.equal(page?.meta.tail, 5);
    assert.equal(textOf(page?.chunks ?? []), 'first', 'a chunk past the tail the page names');
    assert.equal(page?.upToDate, true);
  },
);

test(
  'redis: a commit whose answer was lost, or that Redis refused, is not sent again: the caller hears it, stored at most once',
  {
    skip: redisSkip,
  },
  async (t) => {
    const connection = await connectRedis((redis as RedisServer).url, () => {});
    t.after(() => connection.close());
    let fault: 'lost' | 'refused' | undefined;
    const s = new RedisStreamStore({
      prefix: `ds-store-${++prefixes}`,
      closed: () => false,
      send: async (key, args) => {
        // the next commit (ds-commit.lua names 6 keys) run by SHA meets the fault, once
        const now = args[0] === 'EVALSHA' && args[2] === '6' ? fault : undefined;
        if (now) fault = undefined;
        if (now === 'refused') throw new ErrorReply('OOM command not allowed when used memory > maxmemory');
        const reply = await connection.send(key, args);
        if (now === 'lost') throw new CommandTimeoutError(5_000);
        return reply;
      },
    });
    await make(s, 'x', { data: bytes('first') });
    const more = (text: string) =>
      s.append('x', { contentType: 'text/plain', data: bytes(text), close: false }, T0);
    fault = 'lost';
    await assert.rejects(
      more('+lost'),
      (err: unknown) => err instanceof StoreError && err.code === 'store_unavailable',
    );
    fault = 'refused';
    await assert.rejects(
      more('+refused'),
      (err: unknown) => err instanceof StoreError && err.code === 'internal',
    );
    assert.equal(
      textOf((await s.read('x', 0, 1 << 20, T0))?.chunks ?? []),
      'first+lost',
      'the commit whose answer was lost was run once, the refused one never',
    );
  },
);

test(
  'redis: a step whose Redis was flushed between its load and its commit writes nothing there (a version and a key given again match the old ones) and runs again on the emptied Redis',
  {
    skip: redisSkip,
  },
  async (t) => {
    const own = await startRedis();
    t.after(() => own.close());
    const prefix = 'ds-flushed';
    const other = await RedisStore.open({ url: own.url, prefix });
    t.after(() => other.close());
    const connection = await connectRedis(own.url, () => {});
    t.after(() => connection.close());
    let meddle = false;
    const s = new RedisStreamStore({
      prefix,
      closed: () => false,
      send: async (key, args) => {
        // before the next commit (ds-commit.lua names 6 keys): a FLUSHALL, and another node creates
        // the stream again: the same path, version and stream key as the one the step read
        if (meddle && args[0]?.startsWith('EVAL') && args[2] === '6') {
          meddle = false;
          await connection.send(key, ['FLUSHALL']);
          await make(other.streams, 'x', { data: bytes('new') });
        }
        return connection.send(key, args);
      },
    });
    await make(s, 'x', { data: bytes('lost!') });
    meddle = true;
    const out = await s.append('x', { contentType: 'text/plain', data: bytes('+more'), close: false }, T0);
    assert.equal(out.kind, 'appended');
    const page = await other.streams.read('x', 0, 1 << 20, T0);
    assert.equal(page?.meta.tail, 8, "appended to the stream there is, not with the lost one's tail");
    assert.equal(textOf(page?.chunks ?? []), 'new+more');
  },
);

test(
  "redis: a producer's state read after the prefetch missed it (the 'p' item) is the stream's own: a retry is a duplicate, a gap is seen",
  {
    skip: redisSkip,
  },
  async (t) => {
    const connection = await connectRedis((redis as RedisServer).url, () => {});
    t.after(() => connection.close());
    let fallbacks = 0;
    const s = new RedisStreamStore({
      prefix: `ds-store-${++prefixes}`,
      closed: () => false,
      send: async (key, args) => {
        // a load (ds-load.lua names 3 keys): the 'P' hint (path, producer) dropped, so the engine's
        // producer read misses and loads it with a 'p' item (stream key, producer)
        if (args[0]?.startsWith('EVAL') && args[2] === '3') {
          const at = args.indexOf('P', 10);
          if (at > 0) args = [...args.slice(0, at), ...args.slice(at + 3)];
          if (args.indexOf('p', 10) > 0) fallbacks++;
        }
        return connection.send(key, args);
      },
    });
    await make(s, 'other');
    await make(s, 'x');
    const send = (path: string, seq: number, text: string) =>
      s.append(
        path,
        { contentType: 'text/plain', data: bytes(text), close: false, producer: { id: 'w', epoch: 0, seq } },
        T0,
      );
    assert.equal((await send('other', 0, 'o')).kind, 'appended');
    assert.equal((await send('other', 1, 'o')).kind, 'appended');
    assert.equal((await send('x', 0, 'a')).kind, 'appended');
    assert.equal((await send('x', 0, 'a')).kind, 'duplicate', 'the retry of seq 0');
    const gap = await send('x', 2, 'c');
    assert.deepEqual(gap.kind === 'sequence_gap' ? [gap.expected, gap.received] : gap.kind, [1, 2]);
    assert.equal((await send('x', 1, 'b')).kind, 'appended');
    assert.equal(textOf((await s.read('x', 0, 1 << 20, T0))?.chunks ?? []), 'ab');
    assert.ok(fallbacks >= 6, `every producer read went through the 'p' item (${fallbacks})`);
  },
);

test(
  'redis: a step whose Redis came back from a snapshot between its load and its commit (the same mark there, another run_id) writes nothing there: its stream key is not given to another node',
  {
    skip: redisSkip,
  },
  async (t) => {
    const own = await startRedis();
    t.after(() => own.close());
    const prefix = 'ds-restored';
    const other = await RedisStore.open({ url: own.url, prefix, onError: () => {} });
    t.after(() => other.close());
    const connection = await connectRedis(own.url, () => {});
    t.after(() => connection.close());
    let restart = false;
    const s = new RedisStreamStore({
      prefix,
      closed: () => false,
      send: async (key, args) => {
        // before the next commit (ds-commit.lua names 6 keys): Redis restarts from the snapshot,
        // which holds the mark the step read but not the key block it reserved after it
        if (restart && args[0]?.startsWith('EVAL') && args[2] === '6') {
          restart = false;
          await own.stop('SIGKILL');
          await own.restart();
          await waitFor(
            () =>
              connection.send(key, ['PING']).then(
                () => true,
                () => false,
              ),
            { message: 'the connection never came back' },
          );
        }
        return connection.send(key, args);
      },
    });
    await make(other.streams, 'b0', { data: bytes('b0') });
    await own.command('SAVE');
    restart = true;
    assert.equal((await make(s, 'a1', { data: bytes('a1') })).kind, 'created');
    await waitFor(
      () =>
        other.ping().then(
          () => true,
          () => false,
        ),
      { message: 'the other node never reconnected' },
    );
    await make(other.streams, 'b1', { data: bytes('b1') });
    const read = async (path: string) =>
      textOf((await other.streams.read(path, 0, 1 << 20, T0))?.chunks ?? []);
    assert.equal(await read('a1'), 'a1');
    assert.equal(await read('b1'), 'b1');
    assert.notEqual((await other.streams.get('a1', T0))?.key, (await other.streams.get('b1', T0))?.key);
  },
);

test(
  "redis: a node that never saw this Redis's mark, finding one of another run (a restore) made by a clock ahead, starts new streams in a generation after it",
  {
    skip: redisSkip,
  },
  async (t) => {
    const prefix = `ds-store-${++prefixes}`;
    const connection = await connectRedis((redis as RedisServer).url, () => {});
    t.after(() => connection.close());
    const ahead = Date.now() + 365 * 24 * 3600_000;
    const mark = `${prefix}:ds:{ds}:mark`;
    await connection.send(mark, ['SET', mark, `0123456789abcdef ${ahead} 00ff`]);
    const store = await RedisStore.open({ url: (redis as RedisServer).url, prefix });
    opened.push(store);
    const made = await make(store.streams, 'x');
    assert.deepEqual(made.kind === 'created' ? made.meta.generations : made.kind, [[ahead + 1, 0]]);
    const now = String(await connection.send(mark, ['GET', mark]));
    assert.match(now, new RegExp(`^[0-9a-f]+ ${ahead + 1} [0-9a-f]+$`), 'the mark of this run');
  },
);

test(
  'redis: a node reserves stream keys once per block, not per step, and a step that reserved them runs on the rows it loaded',
  {
    skip: redisSkip,
  },
  async (t) => {
    const connection = await connectRedis((redis as RedisServer).url, () => {});
    t.after(() => connection.close());
    const calls = { loads: 0, reserves: 0 };
    const s = new RedisStreamStore({
      prefix: `ds-store-${++prefixes}`,
      closed: () => false,
      send: async (key, args) => {
        const reply = await connection.send(key, args);
        // counted once answered (an EVALSHA Redis did not know is sent again as EVAL): ds-load.lua names 3
        // keys, the key reservation 2
        if (args[0]?.startsWith('EVAL') && args[2] === '3') calls.loads++;
        if (args[0]?.startsWith('EVAL') && args[2] === '2') calls.reserves++;
        return reply;
      },
    });
    await make(s, 's0');
    assert.deepEqual(calls, { loads: 1, reserves: 1 }, 'the first create: one load, one reservation');
    for (let i = 1; i < 5; i++) await make(s, `s${i}`);
    await s.append('s0', { contentType: 'text/plain', data: bytes('x'), close: false }, T0);
    assert.deepEqual(calls, { loads: 6, reserves: 1 }, 'one load a step, no reservation more');
  },
);
