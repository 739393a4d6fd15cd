/**
 * The SQLite store's checkpoint worker on its own (sqlite-checkpointer.ts): it asks the store to
 * rewind only once the WAL holds more than `rewindFrames` frames, and a worker that cannot run tells
 * the store once (so that the store goes back to SQLite's automatic checkpoint) and closes at once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { within } from '@mooring/testkit';
import { SqliteCheckpointer } from '../src/store/sqlite-checkpointer.ts';

/**
 * A database in a temp dir whose WAL holds 20 rows of 3 KB (more than 20 frames, counted): its
 * writer's connection stays open (its close would checkpoint and remove the WAL) and never
 * checkpoints by itself, so the WAL keeps the frames written.
 */
async function walOf20Rows(t: TestContext): Promise<{ path: string; frames: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-ckpt-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'wal.db');
  const db = new DatabaseSync(path);
  t.after(() => db.close());
  db.exec('PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v TEXT)');
  for (let i = 0; i < 20; i++) db.prepare('INSERT INTO t VALUES (?)').run('x'.repeat(3000));
  const frames = Number(db.prepare('PRAGMA wal_checkpoint(PASSIVE)').get()?.log);
  assert.ok(frames > 20, `${frames} frames`);
  return { path, frames };
}

describe('SqliteCheckpointer', () => {
  it('asks for a rewind when the WAL holds more than rewindFrames frames, not at rewindFrames', async (t) => {
    const { path, frames } = await walOf20Rows(t);

    const rewinds = { at: 0, below: 0 };
    const failures: Error[] = [];
    const open = (rewindFrames: number, key: keyof typeof rewinds) =>
      new SqliteCheckpointer(path, {
        intervalMs: 10,
        rewindFrames,
        onRewind: () => rewinds[key]++,
        onFailure: (e) => failures.push(e),
      });
    const at = open(frames, 'at');
    const below = open(frames - 1, 'below');
    t.after(() => Promise.all([at.close(), below.close()]));
    // the one below the WAL's size asks (its worker has reported)…
    await within(
      (async () => {
        while (rewinds.below === 0) await sleep(10);
      })(),
      { timeout: 10_000, message: 'no rewind asked with the WAL past rewindFrames' },
    );
    // …the one at it never does, nor after more reports (the WAL did not change: none is sent)
    await sleep(300);
    assert.deepEqual(rewinds, { at: 0, below: 1 });
    assert.deepEqual(failures, []);
  });

  it('a checkpoint that could not run (another connection held the lock) is not taken for the WAL size: no rewind asked again', async (t) => {
    const { path, frames } = await walOf20Rows(t);
    let rewinds = 0;
    const checkpointer = new SqliteCheckpointer(path, {
      intervalMs: 1,
      rewindFrames: frames - 1,
      onRewind: () => rewinds++,
      onFailure: (e) => assert.fail(e),
    });
    t.after(() => checkpointer.close());
    await within(
      (async () => {
        while (rewinds === 0) await sleep(5);
      })(),
      { timeout: 10_000, message: 'no rewind asked with the WAL past rewindFrames' },
    );
    // another connection checkpoints in bursts, as the store's own rewind does: the worker's
    // checkpoints that meet it find the lock taken and answer -1 frames
    const other = new DatabaseSync(path);
    const checkpoint = other.prepare('PRAGMA wal_checkpoint(PASSIVE)');
    let collided = 0;
    for (let burst = 0; burst < 200 && collided < 5; burst++) {
      const until = performance.now() + 20;
      while (performance.now() < until) if (Number(checkpoint.get()?.log) < 0) collided++;
      await sleep(5);
    }
    other.close();
    assert.ok(collided >= 5, `the checkpoints met only ${collided} times`);
    await sleep(100);
    assert.equal(rewinds, 1, 'a rewind asked again though the WAL did not change');
  });

  it('a worker that cannot open its database reports the failure once, and closes at once', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-ckpt-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const failures: Error[] = [];
    const checkpointer = new SqliteCheckpointer(join(dir, 'missing', 'nested', 'x.db'), {
      intervalMs: 10,
      onRewind: () => assert.fail('no rewind without a database'),
      onFailure: (e) => failures.push(e),
    });
    await within(
      (async () => {
        while (failures.length === 0) await sleep(10);
      })(),
      { timeout: 10_000, message: 'the failure was never reported' },
    );
    assert.equal(checkpointer.failed, true);
    // the worker's error and then its exit: still one report
    await sleep(300);
    assert.equal(failures.length, 1, failures.map(String).join('; '));
    const started = Date.now();
    await checkpointer.close();
    assert.ok(Date.now() - started < 2000, `close() took ${Date.now() - started} ms`);
  });
});
