/**
 * The SQLite schema migration 1 → 2 (publisher-scoped op ids): a data dir written by a server of
 * schema 1 opens, keeps every message, and keeps deduplicating the retries it can attribute.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, it } from 'node:test';
import { formatSerial, newEpoch } from '@mooring/protocol';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import { type AppendOptions, StoreError } from '../src/store/store.ts';

const OPTS: AppendOptions = { maxMessageSize: 1024 * 1024 };

/** The schema of version 1, as servers before publisher scopes wrote it. */
const SCHEMA_1 = `
  CREATE TABLE IF NOT EXISTS leases (
    channel TEXT NOT NULL,
    serial TEXT NOT NULL,
    ms INTEGER NOT NULL,
    client_id TEXT,
    PRIMARY KEY (channel, serial)
  ) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS channels (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    trimmed_through INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE IF NOT EXISTS ops (
    chan INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    msg_seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT,
    headers TEXT,
    client_id TEXT,
    ts INTEGER NOT NULL,
    PRIMARY KEY (chan, seq)
  ) WITHOUT ROWID;
  CREATE UNIQUE INDEX IF NOT EXISTS ops_by_id ON ops (chan, id);
  CREATE INDEX IF NOT EXISTS ops_by_message ON ops (chan, msg_seq, seq);
  CREATE TABLE IF NOT EXISTS journal (
    n INTEGER PRIMARY KEY,
    chan INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    msg_seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT,
    headers TEXT,
    client_id TEXT,
    ts INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS messages (
    chan INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    name TEXT,
    data TEXT,
    kind TEXT NOT NULL,
    headers TEXT,
    client_id TEXT,
    ts INTEGER NOT NULL,
    base_seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER,
    PRIMARY KEY (chan, seq)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;
`;

const dirs: string[] = [];

/** A new schema-1 data dir: its `mooring.db`, open and empty, and an epoch for its channel. */
async function schema1Database(): Promise<{ path: string; epoch: string; now: number; old: DatabaseSync }> {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-migrate-'));
  dirs.push(dir);
  const path = join(dir, 'mooring.db');
  const now = Date.now();
  const epoch = newEpoch(now);
  const old = new DatabaseSync(path);
  old.exec('PRAGMA journal_mode = WAL');
  old.exec(SCHEMA_1);
  old.exec('PRAGMA user_version = 1');
  return { path, epoch, now, old };
}

/** A schema-1 data dir (its `mooring.db`) holding one channel `ch` with one message. */
async function schema1File(): Promise<{ path: string; epoch: string }> {
  const { path, epoch, now, old } = await schema1Database();
  old.prepare('INSERT INTO channels (id, name, epoch, seq) VALUES (1, ?, ?, 1)').run('ch', epoch);
  old
    .prepare(
      `INSERT INTO ops (chan, seq, msg_seq, action, id, data, headers, client_id, ts)
       VALUES (1, 1, 1, 'create', 'run:1', NULL, NULL, 'agent', ?)`,
    )
    .run(now);
  old
    .prepare(
      `INSERT INTO messages (chan, seq, id, name, data, kind, headers, client_id, ts, base_seq, expires_at)
       VALUES (1, 1, 'run:1', NULL, 'Hello', 'string', NULL, 'agent', ?, 1, ?)`,
    )
    .run(now, now + 3_600_000);
  old.close();
  return { path, epoch };
}
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

it('opens a schema-1 data dir: ids of clientIds keep deduplicating in their scope, anonymous ids in none', async () => {
  const { path, epoch, now, old } = await schema1Database();
  old.prepare('INSERT INTO channels (id, name, epoch, seq) VALUES (1, ?, ?, 2)').run('ch', epoch);
  const op = old.prepare(
    'INSERT INTO ops (chan, seq, msg_seq, action, id, data, headers, client_id, ts) VALUES (1, ?, ?, ?, ?, ?, NULL, ?, ?)',
  );
  const message = old.prepare(
    `INSERT INTO messages (chan, seq, id, name, data, kind, headers, client_id, ts, base_seq, expires_at)
     VALUES (1, ?, ?, NULL, ?, 'string', NULL, ?, ?, ?, ?)`,
  );
  op.run(1, 1, 'create', 'run:1', null, 'agent', now);
  message.run(1, 'run:1', 'Hel', 'agent', now, 1, now + 3_600_000);
  op.run(2, 2, 'create', 'anon:1', null, null, now);
  message.run(2, 'anon:1', 'x', null, now, 2, now + 3_600_000);
  // An append still in the journal (the server was killed before merging it).
  old
    .prepare(
      `INSERT INTO journal (chan, seq, msg_seq, action, id, data, headers, client_id, ts)
       VALUES (1, 3, 1, 'append', 'run:1:1', 'lo', NULL, 'agent', ?)`,
    )
    .run(now);
  old.close();

  let store = new SqliteStore({ path });
  const s = (seq: number) => formatSerial(epoch, seq);
  assert.deepEqual(
    (await store.history('ch', { direction: 'forwards', limit: 10 })).messages.map((m) => [m.serial, m.data]),
    [
      [s(1), 'Hello'],
      [s(2), 'x'],
    ],
  );
  // The agent's retries (scope c:agent) are still duplicates, in ops and in the journal.
  const retry = await store.append(
    'ch',
    [
      { action: 'create', id: 'run:1', publisher: 'c:agent' },
      { action: 'append', id: 'run:1:1', serial: s(1), data: 'lo', publisher: 'c:agent' },
    ],
    OPTS,
  );
  assert.deepEqual(retry.results, [
    { serial: s(1), duplicate: true },
    { serial: s(3), duplicate: true },
  ]);
  // Another publisher's op with the agent's id is stored; so is an anonymous id (legacy scope '').
  const others = await store.append(
    'ch',
    [
      { action: 'create', id: 'run:1', publisher: 'c:mallory' },
      { action: 'create', id: 'anon:1', publisher: 'k:test' },
    ],
    OPTS,
  );
  assert.deepEqual(
    others.results.map((r) => [r.serial, r.duplicate]),
    [
      [s(4), undefined],
      [s(5), undefined],
    ],
  );
  await store.close();
  const db = new DatabaseSync(path);
  assert.equal(db.prepare('PRAGMA user_version').get()?.user_version, 2);
  db.close();
  // And it opens again as a schema-2 file.
  store = new SqliteStore({ path });
  const again = await store.append('ch', [{ action: 'create', id: 'run:1', publisher: 'c:mallory' }], OPTS);
  assert.deepEqual(again.results, [{ serial: s(4), duplicate: true }]);
  await store.close();
});

it('a migration that fails midway changes nothing: the file stays schema 1, and migrates whole once it can', async () => {
  const { path, epoch } = await schema1File();
  // the migration's columns are added, then its rewrite of the journal fails
  let db = new DatabaseSync(path);
  db.exec(`CREATE TRIGGER refuse BEFORE UPDATE ON journal BEGIN SELECT RAISE(ABORT, 'refused'); END;
    INSERT INTO journal (chan, seq, msg_seq, action, id, data, headers, client_id, ts)
    VALUES (1, 2, 1, 'append', 'run:1:1', ' world', NULL, 'agent', 0)`);
  db.close();
  assert.throws(
    () => new SqliteStore({ path }),
    (e: unknown) => e instanceof StoreError && e.code === 'store_unavailable' && /refused/.test(e.message),
  );
  db = new DatabaseSync(path);
  assert.equal(db.prepare('PRAGMA user_version').get()?.user_version, 1);
  const columns = db
    .prepare('PRAGMA table_info(ops)')
    .all()
    .map((c) => c.name);
  assert.ok(!columns.includes('publisher'), `ops kept the migration's column: ${columns.join(', ')}`);
  assert.ok(
    db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'ops_by_id'").get(),
    'the old index was dropped',
  );
  db.exec('DROP TRIGGER refuse');
  db.close();

  const store = new SqliteStore({ path });
  const s1 = formatSerial(epoch, 1);
  assert.deepEqual(
    (await store.history('ch', { direction: 'forwards', limit: 10 })).messages.map((m) => [m.serial, m.data]),
    [[s1, 'Hello world']],
  );
  const retry = await store.append('ch', [{ action: 'create', id: 'run:1', publisher: 'c:agent' }], OPTS);
  assert.deepEqual(retry.results, [{ serial: s1, duplicate: true }]);
  await store.close();
});
