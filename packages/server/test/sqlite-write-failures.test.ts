/**
 * The SQLite store when a write fails: a real full database (`PRAGMA max_page_count`, SQLITE_FULL),
 * a real I/O error (a file size limit, EFBIG → SQLITE_IOERR) and a real lock held by another
 * connection (SQLITE_BUSY). Nothing unacknowledged is half-stored,
 * the refusal is a retryable `store_unavailable`, the group commit keeps good batches apart from a bad
 * one, and the in-memory journal view is rebuilt after a rollback, so dedup stays right: a retry of a
 * refused id is stored once, and ids committed before the failure are still known.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { ERRORS, type Message, parseSerial } from '@mooring/protocol';
import { SqliteStore, type SqliteStoreOptions } from '../src/store/sqlite-store.ts';
import type { AppendOptions, NewOperation } from '../src/store/store.ts';
import { StoreError } from '../src/store/store.ts';
import { startFixture } from './support/fixture.ts';
import { RawClient } from './support/raw-client.ts';

const OPTS: AppendOptions = { maxMessageSize: 4 * 1024 * 1024 };
/** Needs far more than SPARE_PAGES new pages (overflow pages of 4 KiB). */
const BIG = 'x'.repeat(256 * 1024);
const SPARE_PAGES = 8;

const unavailable = (e: unknown) =>
  e instanceof StoreError && e.code === 'store_unavailable' && ERRORS[e.code].retryable;

interface Opened {
  store: SqliteStore;
  path: string;
  /** Caps the file at its current size plus a few pages: bigger writes fail with SQLITE_FULL. */
  fill(): void;
  /** Lifts the cap: the disk has room again. */
  unfill(): void;
}

describe('SqliteStore write failures', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function open(extra: Partial<SqliteStoreOptions> = {}): Promise<Opened> {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-sqlite-fail-'));
    const path = join(dir, 'mooring.db');
    let db: DatabaseSync | undefined;
    const store = new SqliteStore({
      path,
      ...extra,
      onOpen: (handle) => {
        db = handle;
      },
    });
    cleanups.push(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });
    const pages = () => Number(db!.prepare('PRAGMA page_count').get()?.page_count);
    return {
      store,
      path,
      fill: () => db!.exec(`PRAGMA max_page_count = ${pages() + SPARE_PAGES}`),
      unfill: () => db!.exec('PRAGMA max_page_count = 1073741823'),
    };
  }

  async function all(store: SqliteStore, channel: string): Promise<Message[]> {
    return (await store.readSince(channel, undefined, 1000)).messages;
  }

  it('refuses a batch that does not fit, whole and retryable; its retry is stored once when there is room', async () => {
    const { store, fill, unfill } = await open();
    const serial = (await store.append('ch', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    await store.append('ch', [{ action: 'append', publisher: '', id: 'a1', serial, data: 'a1.' }], OPTS);
    const batch: NewOperation[] = [
      { action: 'append', publisher: '', id: 'b1', serial, data: 'b1.' }, // fits on its own
      { action: 'create', publisher: '', id: 'big', data: BIG }, // does not
    ];
    fill();
    await assert.rejects(store.append('ch', batch, OPTS), unavailable);
    await assert.rejects(store.append('ch', batch, OPTS), unavailable, 'still full: refused again');
    unfill();

    const before = await all(store, 'ch');
    assert.deepEqual(
      before.map((m) => [m.id, m.data]),
      [['m', 'a1.']],
      'nothing of the refused batch was stored',
    );
    assert.equal(parseSerial((await store.info('ch'))!.head)!.seq, 2, 'no serial was used up');

    const retry = await store.append('ch', batch, OPTS);
    assert.deepEqual(
      retry.results.map((r) => r.duplicate ?? false),
      [false, false],
      'the retry is not taken for a duplicate of the rolled-back ops',
    );
    const again = await store.append(
      'ch',
      [...batch, { action: 'append', publisher: '', id: 'a1', serial, data: 'a1.' }],
      OPTS,
    );
    assert.ok(
      again.results.every((r) => r.duplicate),
      'a second retry, and the op committed before the failure, are duplicates',
    );
    const after = await all(store, 'ch');
    assert.deepEqual(
      after.map((m) => [m.id, m.id === 'big' ? (m.data as string).length : m.data]),
      [
        ['m', 'a1.b1.'],
        ['big', BIG.length],
      ],
    );
  });

  it('a batch retried alone after its group commit failed gets the serial it would have had', async () => {
    const { store, fill, unfill } = await open();
    const serial = (await store.append('ch', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    fill();
    // One group commit (same turn): two good batches, one on a new channel, and one too big. The
    // transaction is rolled back and each batch retried alone: the good ones are stored.
    const onOld = store.append(
      'ch',
      [{ action: 'append', publisher: '', id: 'a1', serial, data: 'a1.' }],
      OPTS,
    );
    const onNew = store.append('fresh', [{ action: 'create', publisher: '', id: 'n', data: 'n.' }], OPTS);
    const big = store.append('other', [{ action: 'create', publisher: '', id: 'big', data: BIG }], OPTS);
    await assert.rejects(big, unavailable);
    const [old, fresh] = await Promise.all([onOld, onNew]);
    unfill();
    assert.equal(parseSerial(old.results[0]!.serial)!.seq, 2, 'no serial used up by the rolled-back attempt');
    assert.equal(parseSerial(fresh.results[0]!.serial)!.seq, 1);
    assert.deepEqual(
      (await all(store, 'fresh')).map((m) => [m.id, m.data]),
      [['n', 'n.']],
      'the new channel exists: its row was written again, not taken from the rolled-back attempt',
    );
    const next = await store.append(
      'ch',
      [{ action: 'append', publisher: '', id: 'a2', serial, data: 'a2.' }],
      OPTS,
    );
    assert.equal(parseSerial(next.results[0]!.serial)!.seq, 3);
    assert.deepEqual(
      (await all(store, 'ch')).map((m) => [m.id, m.data]),
      [['m', 'a1.a2.']],
    );
    // The message's size is 6 bytes, not 9 (counting the rolled-back 'a1.'): 3 more fit in 9.
    const full = await store.append(
      'ch',
      [{ action: 'append', publisher: '', id: 'a3', serial, data: 'a3.' }],
      { ...OPTS, maxMessageSize: 9 },
    );
    assert.equal(parseSerial(full.results[0]!.serial)!.seq, 4);
  });

  it('rebuilds the journal view after a rollback that had merged the journal (update)', async () => {
    const { store, fill, unfill } = await open();
    const serial = (await store.append('ch', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    // appends committed in the journal, not yet merged into `ops`
    for (let i = 0; i < 5; i++)
      await store.append(
        'ch',
        [{ action: 'append', publisher: '', id: `j${i}`, serial, data: `${i},` }],
        OPTS,
      );
    fill();
    // an update merges the journal inside its transaction, then fails on the big data: all rolled back
    await assert.rejects(
      store.append('ch', [{ action: 'update', publisher: '', id: 'u', serial, data: BIG }], OPTS),
      unavailable,
    );
    unfill();
    const dup = await store.append(
      'ch',
      [{ action: 'append', publisher: '', id: 'j2', serial, data: '2,' }],
      OPTS,
    );
    assert.equal(dup.results[0]!.duplicate, true, 'an id committed before the failure is still known');
    const [m] = await all(store, 'ch');
    assert.equal(m!.data, '0,1,2,3,4,', 'the journal rows are all there, once');
    const next = await store.append(
      'ch',
      [{ action: 'append', publisher: '', id: 'j5', serial, data: '5,' }],
      OPTS,
    );
    assert.equal(parseSerial(next.results[0]!.serial)!.seq, 7, 'the serial counter continues');
  });

  it('isolates a batch that does not fit from the good batches of the same group commit', async () => {
    const { store, fill, unfill } = await open();
    const serial = (await store.append('a', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    fill();
    // three publishes in one turn of the event loop: one transaction, failing on the middle one
    const [good1, bad, good2] = await Promise.allSettled([
      store.append('a', [{ action: 'append', publisher: '', id: 'g1', serial, data: 'g1.' }], OPTS),
      store.append('b', [{ action: 'create', publisher: '', id: 'big', data: BIG }], OPTS),
      store.append('a', [{ action: 'create', publisher: '', id: 'g2', data: 'g2' }], OPTS),
    ]);
    assert.equal(good1.status, 'fulfilled');
    assert.equal(good2.status, 'fulfilled');
    assert.equal(bad.status, 'rejected');
    assert.ok(unavailable(bad.reason));
    unfill();
    assert.deepEqual(
      (await all(store, 'a')).map((m) => [m.id, m.data]),
      [
        ['m', 'g1.'],
        ['g2', 'g2'],
      ],
    );
    assert.equal((await store.info('b'))?.messageCount ?? 0, 0, 'the bad batch left nothing');
    const retry = await store.append('b', [{ action: 'create', publisher: '', id: 'big', data: BIG }], OPTS);
    assert.equal(retry.results[0]!.duplicate ?? false, false);
    assert.equal((await all(store, 'b')).length, 1);
  });

  it('rolls back a batch whose write throws midway, where SQLite itself would not roll back', async () => {
    // SQLite undoes the whole transaction on SQLITE_FULL; an exception between two statements (here a
    // retention rule that throws, after the batch's first row is written) leaves it open: the store
    // must roll it back itself.
    let failing = false;
    const { store } = await open({
      retentionFor: () => {
        if (failing) throw new Error('retention rule failed');
        return 60_000;
      },
    });
    const serial = (await store.append('ch', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    failing = true;
    const batch: NewOperation[] = [
      { action: 'append', publisher: '', id: 'b1', serial, data: 'b1.' },
      { action: 'create', publisher: '', id: 'c', data: 'c' },
    ];
    await assert.rejects(store.append('ch', batch, OPTS), (e: unknown) => e instanceof StoreError);
    failing = false;
    assert.deepEqual(
      (await all(store, 'ch')).map((m) => [m.id, m.data]),
      [['m', '']],
      'nothing of the failed batch was stored',
    );
    const retry = await store.append('ch', batch, OPTS);
    assert.ok(retry.results.every((r) => !r.duplicate));
    assert.deepEqual(
      (await all(store, 'ch')).map((m) => [m.id, m.data]),
      [
        ['m', 'b1.'],
        ['c', 'c'],
      ],
    );
  });

  it('refuses every batch while another connection holds the write lock (SQLITE_BUSY), then stores their retries once', async () => {
    // Counts the store's BEGINs: a flush whose BEGIN meets the lock refuses all its batches at once.
    // Retrying them one by one would wait out the busy timeout once per batch, blocking the event
    // loop each time, with the same outcome (the time cannot be asserted; the attempts can).
    let begins = 0;
    const prepare = DatabaseSync.prototype.prepare;
    DatabaseSync.prototype.prepare = function (this: DatabaseSync, sql: string) {
      const statement = prepare.call(this, sql);
      if (/^\s*BEGIN/i.test(sql)) {
        const run = statement.run.bind(statement) as (...args: unknown[]) => ReturnType<typeof statement.run>;
        statement.run = ((...args: unknown[]) => {
          begins++;
          return run(...args);
        }) as typeof statement.run;
      }
      return statement;
    };
    let opened: Awaited<ReturnType<typeof open>>;
    try {
      opened = await open({ busyTimeoutMs: 20 });
    } finally {
      DatabaseSync.prototype.prepare = prepare;
    }
    const { store, path } = opened;
    await store.append('ch', [{ action: 'create', publisher: '', id: 'm0', data: 'x' }], OPTS);
    const other = new DatabaseSync(path);
    cleanups.unshift(async () => other.close());
    other.exec('BEGIN IMMEDIATE');
    const ops = [1, 2, 3].map((i): NewOperation[] => [
      { action: 'create', publisher: '', id: `m${i}`, data: `${i}` },
    ]);
    const before = begins;
    const outcomes = await Promise.allSettled(ops.map((batch) => store.append('ch', batch, OPTS)));
    for (const o of outcomes) {
      assert.equal(o.status, 'rejected');
      assert.ok(unavailable(o.reason));
    }
    assert.equal(
      begins - before,
      1,
      'the three batches were refused after one BEGIN, not retried one by one',
    );
    other.exec('ROLLBACK');
    for (const batch of ops) {
      const r = await store.append('ch', batch, OPTS);
      assert.equal(r.results[0]!.duplicate ?? false, false);
    }
    for (const batch of ops)
      assert.equal((await store.append('ch', batch, OPTS)).results[0]!.duplicate, true);
    assert.deepEqual(
      (await all(store, 'ch')).map((m) => m.id),
      ['m0', 'm1', 'm2', 'm3'],
    );
  });

  it('refuses a batch hit by a real I/O error (EFBIG past a file size limit), whole; the store goes on, and the retry is stored once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-sqlite-ioerr-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const path = join(dir, 'mooring.db');
    const storeUrl = pathToFileURL(join(import.meta.dirname, '../src/store/sqlite-store.ts')).href;
    // A child process whose files may not grow past 200 KiB (`ulimit -f`): a write past it fails
    // with EFBIG, which SQLite reports as SQLITE_IOERR (SIGXFSZ is ignored so the write returns).
    const script = `
      process.on('SIGXFSZ', () => {});
      const { SqliteStore } = await import(${JSON.stringify(storeUrl)});
      const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
      const store = new SqliteStore({ path: ${JSON.stringify(path)} });
      const opts = { maxMessageSize: 1 << 24 };
      const serial = (await store.append('ch', [{ action: 'create', id: 'm', data: '' }], opts)).results[0].serial;
      out({ serial });
      const batch = [
        { action: 'append', id: 'b1', serial, data: 'b1.' },
        { action: 'create', id: 'big', data: 'x'.repeat(300_000) },
      ];
      await store.append('ch', batch, opts).then(
        () => out({ big: 'stored' }),
        (e) => out({ big: e.code, message: e.message }),
      );
      // the same process carries on: b1 alone is stored (not taken for a duplicate of the rollback)
      const b1 = await store.append('ch', [batch[0]], opts);
      out({ b1: b1.results[0].duplicate ?? false });
      await store.close();
    `;
    const child = spawn(
      'bash',
      ['-c', 'ulimit -S -f 200 && exec "$0" "$@"', process.execPath, '--input-type=module', '-e', script],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let text = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      text += d;
    });
    const [code] = (await once(child, 'exit', { signal: AbortSignal.timeout(30_000) })) as [number | null];
    assert.equal(code, 0, text);
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const serial = String(lines[0]!.serial);
    assert.equal(lines[1]!.big, 'store_unavailable', String(lines[1]!.message));
    assert.match(String(lines[1]!.message), /I\/O error/);
    assert.equal(lines[2]!.b1, false);

    // Reopened without the limit: the failed batch left nothing; its retry stores only what is missing.
    const store = new SqliteStore({ path });
    cleanups.unshift(() => store.close());
    assert.deepEqual(
      (await all(store, 'ch')).map((m) => [m.id, m.data]),
      [['m', 'b1.']],
    );
    const retry = await store.append(
      'ch',
      [
        { action: 'append', publisher: '', id: 'b1', serial, data: 'b1.' },
        { action: 'create', publisher: '', id: 'big', data: 'x'.repeat(300_000) },
      ],
      OPTS,
    );
    assert.deepEqual(
      retry.results.map((r) => r.duplicate ?? false),
      [true, false],
    );
    assert.deepEqual(
      (await all(store, 'ch')).map((m) => m.id),
      ['m', 'big'],
    );
  });

  it('answers a publish the store cannot take with a retryable error, never an ack; the retry is acked once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-sqlite-fail-'));
    let db: DatabaseSync | undefined;
    const store = new SqliteStore({
      path: join(dir, 'mooring.db'),
      onOpen: (handle) => {
        db = handle;
      },
    });
    const fx = await startFixture('memory', { store });
    cleanups.push(async () => {
      await fx.close();
      await rm(dir, { recursive: true, force: true });
    });
    const client = await RawClient.connect(fx.server.url);
    const channel = 'session:full';
    await client.publish(channel, [{ id: 'first', data: 'ok' }]);
    const pages = Number(db!.prepare('PRAGMA page_count').get()?.page_count);
    db!.exec(`PRAGMA max_page_count = ${pages + SPARE_PAGES}`);
    // 8 creates of 60 KB in one publish (each under the 64 KiB operation limit): far past the cap
    const ops = Array.from({ length: 8 }, (_, i) => ({ id: `big${i}`, data: BIG.slice(0, 60_000) }));
    const answer = await client.request({ type: 'publish', channel, ops });
    assert.equal(answer.type, 'error');
    assert.equal(answer.type === 'error' && answer.error.code, 'store_unavailable');
    assert.equal(answer.type === 'error' && answer.error.retryable, true);
    db!.exec('PRAGMA max_page_count = 1073741823');
    const ack = await client.publish(channel, ops);
    assert.ok(ack.results.every((r) => !r.duplicate));
    const dup = await client.publish(channel, ops);
    assert.ok(dup.results.every((r) => r.duplicate));
    const reader = await RawClient.connect(fx.server.url);
    await reader.attach(channel, { start: true });
    assert.deepEqual(
      reader.messages(channel).map((m) => m.id),
      ['first', ...ops.map((op) => op.id)],
    );
    await Promise.all([client.close(), reader.close()]);
  });
});
