/**
 * The SQLite store's schema and prepared statements (see sqlite-store.ts for the design: ops, the
 * append journal merged into ops in sorted batches, messages rewritten only on create/update/delete,
 * lease records).
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';

/**
 * Bumped when the schema changes incompatibly; additive tables use IF NOT EXISTS. Version 2 scopes
 * op ids by publisher (`ops.publisher`, `journal.publisher`, UNIQUE (chan, publisher, id)); a
 * version 1 database is migrated on open by `MIGRATE_FROM_1`.
 */
export const SCHEMA_VERSION = 2;

/**
 * Version 1 → 2. Ops stored before publisher scopes existed get the scope a publisher with their
 * clientId has now (`c:<clientId>`, the server's mapping in channel-service.ts), so a publisher with
 * a clientId retrying across the upgrade is still deduplicated. Ops without a clientId get the legacy
 * scope '', into which nobody publishes any more: their ids can no longer be claimed by anyone (and an
 * anonymous publisher's retry of one, in flight across the upgrade, would be stored again).
 */
export const MIGRATE_FROM_1 = `
ALTER TABLE ops ADD COLUMN publisher TEXT NOT NULL DEFAULT '';
ALTER TABLE journal ADD COLUMN publisher TEXT NOT NULL DEFAULT '';
UPDATE ops SET publisher = 'c:' || client_id WHERE client_id IS NOT NULL;
UPDATE journal SET publisher = 'c:' || client_id WHERE client_id IS NOT NULL;
DROP INDEX IF EXISTS ops_by_id;
`;

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS leases (
  channel TEXT NOT NULL,
  serial TEXT NOT NULL,
  ms INTEGER NOT NULL,
  client_id TEXT,
  owner TEXT,
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
  publisher TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (chan, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS ops_by_publisher_id ON ops (chan, publisher, id);
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
  ts INTEGER NOT NULL,
  publisher TEXT NOT NULL DEFAULT ''
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
CREATE TABLE IF NOT EXISTS channel_epochs (
  chan INTEGER PRIMARY KEY,
  epoch TEXT NOT NULL,
  through INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS store_state (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
`;

/**
 * Keeps each channel's epoch and the last sequence it reached in `channel_epochs`, before the
 * channels go on in a new epoch (sqlite-store.ts, "A power loss").
 */
export const NEW_EPOCHS = `
INSERT OR REPLACE INTO channel_epochs (chan, epoch, through)
  SELECT c.id, c.epoch, max(c.seq, coalesce((SELECT max(j.seq) FROM journal j WHERE j.chan = c.id), 0))
  FROM channels c;
`;

/**
 * Lease records name their owner (`leases.owner`, so a restart counts them against it) since after
 * schema 2: an older table gets the column, null in the records it has (they count against no one).
 * Additive, so no new schema version: an older server still writes the table, naming its columns.
 */
export function addLeaseOwners(db: DatabaseSync): void {
  const columns = db.prepare('PRAGMA table_info(leases)').all();
  if (!columns.some((c) => c.name === 'owner')) db.exec('ALTER TABLE leases ADD COLUMN owner TEXT');
}

/**
 * The statements of the store. Those that look at one message's ops name `ops_by_message`
 * (`INDEXED BY`): without statistics SQLite plans `chan = ? AND msg_seq = ? AND seq > ?` on the
 * primary key's range (chan, seq > ?) and filters msg_seq as it goes, so an old message cost every
 * op published in its channel after it — a history page of 1,000 old messages stopped the node for
 * 4.8 s in an outside review's probe. `sqlite-plans.test.ts` pins each plan.
 */
export function prepare(db: DatabaseSync) {
  const p = (sql: string): StatementSync => db.prepare(sql);
  return {
    begin: p('BEGIN IMMEDIATE'),
    commit: p('COMMIT'),
    rollback: p('ROLLBACK'),
    ping: p('SELECT 1'),
    getChannel: p(
      'SELECT c.id, c.epoch, c.seq, c.trimmed_through, e.epoch AS prev_epoch, e.through AS prev_through FROM channels c LEFT JOIN channel_epochs e ON e.chan = c.id WHERE c.name = ?',
    ),
    insertChannel: p('INSERT INTO channels (name, epoch, seq) VALUES (?, ?, ?) RETURNING id'),
    setChannelSeq: p('UPDATE channels SET seq = ? WHERE id = ?'),
    raiseTrimmed: p('UPDATE channels SET trimmed_through = ? WHERE id = ? AND trimmed_through < ?'),
    findId: p('SELECT seq FROM ops WHERE chan = ? AND publisher = ? AND id = ?'),
    /** Every op id of a channel merged into `ops` (its journal's are in memory: sqlite-journal.ts). */
    channelIds: p('SELECT publisher, id FROM ops WHERE chan = ?'),
    journalOp: p(
      `INSERT INTO journal (chan, seq, msg_seq, action, id, data, headers, client_id, ts, publisher)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    clearJournal: p('DELETE FROM journal'),
    /** A slice of the journal (its row ids, a JSON array) into `ops`, in key order. */
    mergeRows: p(
      `INSERT INTO ops (chan, seq, msg_seq, action, id, data, headers, client_id, ts, publisher)
       SELECT chan, seq, msg_seq, action, id, data, headers, client_id, ts, publisher
       FROM journal WHERE n IN (SELECT value FROM json_each(?)) ORDER BY chan, seq`,
    ),
    deleteRows: p('DELETE FROM journal WHERE n IN (SELECT value FROM json_each(?))'),
    /** A merged generation (sqlite-journal.ts). */
    dropJournal: p('DELETE FROM journal WHERE n <= ?'),
    /** The journal, each row with whether it is merged already (in `ops`: a generation not finished). */
    journalRows: p(
      `SELECT n, chan, seq, msg_seq, action, publisher, id, octet_length(data) AS size,
         EXISTS (SELECT 1 FROM ops WHERE ops.chan = journal.chan AND ops.seq = journal.seq) AS merged
       FROM journal ORDER BY n`,
    ),
    insertMessage: p(
      `INSERT INTO messages (chan, seq, id, name, data, kind, headers, client_id, ts, base_seq, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    rewriteMessage: p(
      'UPDATE messages SET data = ?, kind = ?, headers = ?, base_seq = ?, deleted = ? WHERE chan = ? AND seq = ?',
    ),
    /** Appends folded into a rewritten message: their data is no longer needed. */
    dropAppends: p(
      'UPDATE ops INDEXED BY ops_by_message SET data = NULL, headers = NULL WHERE chan = ? AND msg_seq = ? AND seq > ? AND seq < ?',
    ),
    getMeta: p(
      'SELECT kind, client_id, deleted, base_seq, octet_length(data) AS size FROM messages WHERE chan = ? AND seq = ?',
    ),
    appendedSize: p(
      `SELECT count(*) AS n, coalesce(sum(octet_length(data)), 0) AS size
       FROM ops INDEXED BY ops_by_message WHERE chan = ? AND msg_seq = ? AND seq > ?`,
    ),
    getMessage: p(
      `SELECT seq, id, name, data, kind, headers, client_id, ts, base_seq, deleted
       FROM messages WHERE chan = ? AND seq = ?`,
    ),
    appended: p(
      `SELECT group_concat(data, '' ORDER BY seq) AS data, max(seq) AS version, count(*) AS n
       FROM ops INDEXED BY ops_by_message WHERE chan = ? AND msg_seq = ? AND seq > ?`,
    ),
    lastOpOf: p('SELECT max(seq) AS version FROM ops WHERE chan = ? AND msg_seq = ?'),
    opCount: p('SELECT count(*) AS n FROM ops WHERE chan = ? AND msg_seq = ?'),
    lastHeaders: p(
      `SELECT headers FROM ops INDEXED BY ops_by_message WHERE chan = ? AND msg_seq = ? AND seq > ? AND headers IS NOT NULL
       ORDER BY seq DESC LIMIT 1`,
    ),
    countMessages: p('SELECT count(*) AS n FROM messages WHERE chan = ?'),
    /**
     * Messages changed after a position, for a reader near the head: the primary key's range from
     * the position (`+msg_seq` keeps SQLite from walking the channel's every op in `ops_by_message`
     * order to spare the GROUP BY a sort: a resume with nothing new cost 35 ms on a channel of
     * 1,000,000 ops, now what changed since).
     */
    changedSince: p(
      `SELECT msg_seq, max(seq) AS version FROM ops WHERE chan = ? AND seq > ?
       GROUP BY +msg_seq ORDER BY version LIMIT ?`,
    ),
    /**
     * The same for a reader far behind (`CHANGED_FAR` ops or more): one walk of the channel in
     * message order groups without a sort, cheaper when most of the channel changed since.
     */
    changedSinceFar: p(
      `SELECT msg_seq, max(seq) AS version FROM ops INDEXED BY ops_by_message WHERE chan = ? AND seq > ?
       GROUP BY msg_seq ORDER BY version LIMIT ?`,
    ),
    historyForwards: p(
      `SELECT seq, id, name, data, kind, headers, client_id, ts, base_seq, deleted
       FROM messages WHERE chan = ? AND seq >= ? AND seq <= ? ORDER BY seq ASC LIMIT ?`,
    ),
    historyBackwards: p(
      `SELECT seq, id, name, data, kind, headers, client_id, ts, base_seq, deleted
       FROM messages WHERE chan = ? AND seq >= ? AND seq <= ? ORDER BY seq DESC LIMIT ?`,
    ),
    expired: p('SELECT chan, seq FROM messages WHERE expires_at <= ? LIMIT ?'),
    lastOp: p('SELECT max(seq) AS seq FROM ops WHERE chan = ? AND msg_seq = ?'),
    deleteOps: p('DELETE FROM ops INDEXED BY ops_by_message WHERE chan = ? AND msg_seq = ?'),
    deleteMessage: p('DELETE FROM messages WHERE chan = ? AND seq = ?'),
    saveLease: p(
      'INSERT OR REPLACE INTO leases (channel, serial, ms, client_id, owner) VALUES (?, ?, ?, ?, ?)',
    ),
    removeLease: p('DELETE FROM leases WHERE channel = ? AND serial = ?'),
    allLeases: p('SELECT channel, serial, ms, client_id, owner FROM leases'),
  };
}
