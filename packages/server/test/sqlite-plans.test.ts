/**
 * The SQLite store's query plans, pinned. Without statistics SQLite picks a plan from the shape of
 * a query alone, and the plans that read one message's ops by walking the primary key's range made
 * an old message cost every op of its channel published after it (an outside review: one history
 * page stopped the node for 4.8 s). A plan is a property of the SQL text and the schema, so each
 * statement's is asserted here, on the store's own schema and statements.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, it } from 'node:test';
import { prepare } from '../src/store/sqlite-schema.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';

describe('SQLite store query plans', () => {
  let dir: string;
  let db: DatabaseSync;
  let statements: ReturnType<typeof prepare>;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mooring-plans-'));
    const path = join(dir, 'store.sqlite');
    const store = new SqliteStore({ path });
    await store.append('ch', [{ action: 'create', publisher: '', id: 'a', data: 'x' }], {
      maxMessageSize: 1024,
    });
    await store.close();
    db = new DatabaseSync(path);
    statements = prepare(db);
  });
  after(async () => {
    db.close();
    await rm(dir, { recursive: true, force: true });
  });
  const plan = (name: keyof typeof statements): string =>
    db
      .prepare(`EXPLAIN QUERY PLAN ${statements[name].sourceSQL}`)
      .all()
      .map((row) => String(row.detail))
      .join(' | ');

  it("reads, rolls up, validates, rewrites and trims one message through its own ops (ops_by_message), never its channel's later ops", () => {
    for (const name of [
      'appendedSize',
      'appended',
      'lastHeaders',
      'dropAppends',
      'deleteOps',
      'opCount',
      'lastOp',
      'lastOpOf',
    ] as const) {
      const detail = plan(name);
      assert.match(
        detail,
        /ops USING (COVERING )?INDEX ops_by_message \(chan=\? AND msg_seq=\?/,
        `${name}: ${detail}`,
      );
    }
  });

  it('finds what changed since a recent position in the ops after it, and walks the channel in message order only for a reader far behind', () => {
    assert.match(
      plan('changedSince'),
      /SEARCH ops USING PRIMARY KEY \(chan=\? AND seq>\?\)/,
      plan('changedSince'),
    );
    assert.match(
      plan('changedSinceFar'),
      /ops USING COVERING INDEX ops_by_message \(chan=\?\)/,
      plan('changedSinceFar'),
    );
  });
});
