/**
 * The SQLite store's journal merged into `ops` in slices (sqlite-journal.ts): each group commit
 * moves a bounded slice, so the journal is often half merged — some channels' rows in `ops`, some
 * in the journal, one channel's older rows in `ops` and its newer ones in the journal. Reads,
 * dedup, serial counters, a reopen, and a `kill -9` in the middle of a slice must all be right in
 * that state.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { parseSerial } from '@mooring/protocol';
import {
  JOURNAL_HIGH_BYTES,
  JOURNAL_HIGH_ROWS,
  type JournalRow,
  JournalView,
  SLICE_ROWS,
} from '../src/store/sqlite-journal.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import type { AppendOptions } from '../src/store/store.ts';

const OPTS: AppendOptions = { maxMessageSize: 4 * 1024 * 1024 };
const CHANNELS = 300;
/**
 * Rounds of one append per channel: past the journal's high mark, and 16 slices (of 1.5 × 300 rows,
 * what a commit adds being more than SLICE_ROWS) into the generation it starts, part of it merged.
 */
const ROUNDS = Math.ceil(JOURNAL_HIGH_ROWS / CHANNELS) + 16;

const delta = (c: number, i: number) => `<${c}.${i}>`;
const expected = (c: number, n: number) => Array.from({ length: n }, (_, i) => delta(c, i)).join('');

const MERGED = 'EXISTS (SELECT 1 FROM ops WHERE ops.chan = journal.chan AND ops.seq = journal.seq)';

/**
 * Appends per channel in `ops`, in the journal not merged, and merged but still in the journal (a
 * generation not finished), read by another connection.
 */
function where(db: DatabaseSync, table: 'ops' | 'journal' | 'merged'): Map<number, number> {
  const from =
    table === 'ops' ? 'ops WHERE true' : `journal WHERE ${table === 'merged' ? '' : 'NOT '}${MERGED}`;
  const rows = db
    .prepare(`SELECT chan, count(*) AS n FROM ${from} AND action = 'append' GROUP BY chan`)
    .all();
  return new Map(rows.map((r) => [r.chan as number, r.n as number]));
}

describe('SqliteStore journal slices', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it('merges the journal in bounded slices, and reads, dedup, counters and a reopen are right when it is half merged', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mooring-journal-'));
    const path = join(dir, 'mooring.db');
    const stores: SqliteStore[] = [];
    const reader = () => new DatabaseSync(path, { readOnly: true });
    cleanups.push(async () => {
      for (const s of stores) await s.close();
      await rm(dir, { recursive: true, force: true });
    });
    // c0's message expires in a minute: trimmed below, while a generation is half merged
    const retentionFor = (channel: string) => (channel === 'c0' ? 60_000 : 24 * 3_600_000);
    const store = new SqliteStore({ path, retentionFor });
    stores.push(store);
    const serials = await Promise.all(
      Array.from({ length: CHANNELS }, async (_, c) => {
        const r = await store.append(
          `c${c}`,
          [{ action: 'create', publisher: 'p', id: 'm', data: '' }],
          OPTS,
        );
        return r.results[0]!.serial;
      }),
    );
    const db = reader();
    const opsRows = () => db.prepare('SELECT count(*) AS n FROM ops').get()!.n as number;
    const waiting = () =>
      db.prepare(`SELECT count(*) AS n FROM journal WHERE NOT ${MERGED}`).get()!.n as number;
    let before = opsRows();
    let sliced = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // one group commit per round: every channel's append queued in the same turn
      await Promise.all(
        serials.map((serial, c) =>
          store.append(
            `c${c}`,
            [{ action: 'append', publisher: 'p', id: `a${round}`, serial, data: delta(c, round) }],
            OPTS,
          ),
        ),
      );
      const after = opsRows();
      const moved = after - before; // `ops` gets rows from the journal only
      // the documented bound: max(64 rows, 1.5 × what the commit added)
      assert.ok(
        moved <= Math.max(64, 1.5 * CHANNELS),
        `round ${round}: one commit merged ${moved} journal rows into ops`,
      );
      if (moved > 0) sliced++;
      before = after;
    }
    assert.ok(sliced > 0, 'the journal was merged in slices');
    assert.ok(waiting() <= JOURNAL_HIGH_ROWS + CHANNELS, `${waiting()} rows waiting in the journal`);

    // Half merged: channels with appends in ops and in the journal, and channels only in the journal.
    const inOps = where(db, 'ops');
    const inJournal = where(db, 'journal');
    db.close();
    const split = [...inOps.keys()].filter((chan) => inJournal.has(chan));
    assert.ok(split.length > 0, 'some channel has older appends in ops and newer ones in the journal');
    assert.ok(
      [...inJournal.keys()].some((chan) => !inOps.has(chan)),
      'some channel has its appends only in the journal',
    );

    // Dedup: an id merged into ops and an id still in the journal, on a channel in seven (in one
    // group commit: every commit merges a slice, and the generation must stay half merged).
    const checked = Array.from({ length: Math.ceil(CHANNELS / 7) }, (_, k) => 7 * k);
    const retries = await Promise.all(
      checked.map((c) =>
        store.append(
          `c${c}`,
          [
            { action: 'append', publisher: 'p', id: 'a0', serial: serials[c]!, data: 'x' },
            { action: 'append', publisher: 'p', id: `a${ROUNDS - 1}`, serial: serials[c]!, data: 'x' },
          ],
          OPTS,
        ),
      ),
    );
    for (const [k, again] of retries.entries()) {
      assert.deepEqual(
        again.results.map((r) => r.duplicate),
        [true, true],
        `c${checked[k]}: a retried id was stored again`,
      );
    }
    // Counters: the next op of a channel follows its last one, wherever that one is.
    const info = (await store.info('c1'))!;
    assert.equal(parseSerial(info.head)!.seq, ROUNDS + 1);
    // Reads: catch-up from the middle, and history, for every channel.
    for (let c = 0; c < CHANNELS; c += 10) {
      const page = await store.history(`c${c}`, { direction: 'forwards', limit: 1 });
      assert.equal(page.messages[0]!.data, expected(c, ROUNDS), `c${c} rolled up`);
    }
    const mid = await store.readSince('c2', serials[2], 10);
    assert.equal(mid.messages.length, 1);
    assert.equal(mid.messages[0]!.data, expected(2, ROUNDS));

    // A trim of c0, the first channel swept: its merged rows are still in the journal ...
    const merged = new DatabaseSync(path, { readOnly: true });
    assert.ok(where(merged, 'merged').has(1), 'c0 has merged rows in the journal');
    merged.close();
    assert.equal(await store.trim(Date.now() + 120_000), 1);
    // ... so the trim merged the rest of the generation first, and then deleted all of it from the
    // journal: a merged row left there would look unmerged once its op is trimmed from `ops`
    const trimmed = new DatabaseSync(path, { readOnly: true });
    assert.deepEqual([...where(trimmed, 'merged')], [], 'merged rows left in the journal');
    assert.ok(!where(trimmed, 'journal').has(1), "rows of c0's trimmed message left in the journal");
    trimmed.close();

    // Reopened without a close (what a restart after a crash sees): the same, once; c0 stays trimmed.
    await store.closeAsCrashed();
    const again = new SqliteStore({ path, retentionFor });
    stores.push(again);
    assert.deepEqual((await again.readSince('c0', undefined, 10)).messages, [], 'c0 is trimmed');
    for (let c = 5; c < CHANNELS; c += 5) {
      const page = await again.history(`c${c}`, { direction: 'forwards', limit: 1 });
      assert.equal(page.messages[0]!.data, expected(c, ROUNDS), `c${c} after a reopen`);
      const retry = await again.append(
        `c${c}`,
        [{ action: 'append', publisher: 'p', id: `a${ROUNDS - 2}`, serial: serials[c]!, data: 'x' }],
        OPTS,
      );
      assert.equal(retry.results[0]!.duplicate, true, `c${c}: a retried id was stored again after a reopen`);
    }
  });

  for (const crash of [
    'in the middle of a slice (before its COMMIT)',
    'right after the COMMIT of a slice',
  ] as const)
    it(`keeps every acknowledged append once through kill -9 ${crash}`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'mooring-journal-'));
      const path = join(dir, 'mooring.db');
      cleanups.push(() => rm(dir, { recursive: true, force: true }));
      const storeUrl = pathToFileURL(join(import.meta.dirname, '../src/store/sqlite-store.ts')).href;
      const before = crash.startsWith('in the middle');
      // The child streams appends on CHANNELS channels, printing each ack, and kills itself at the
      // third slice: right after the slice's INSERT into ops, or right after the COMMIT carrying it.
      const child = spawn(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `
          import { DatabaseSync } from 'node:sqlite';
          const prepare = DatabaseSync.prototype.prepare;
          let slices = 0;
          let armed = false;
          const die = () => process.kill(process.pid, 'SIGKILL');
          const wrap = (statement, after) => {
            const wrapped = Object.create(statement);
            Object.defineProperty(wrapped, 'run', { value: (...args) => { const r = statement.run(...args); after(); return r; } });
            return wrapped;
          };
          DatabaseSync.prototype.prepare = function (sql) {
            const statement = prepare.call(this, sql);
            if (/^INSERT INTO ops/.test(sql) && /json_each/.test(sql))
              return wrap(statement, () => { if (++slices === 3) { if (${before}) die(); armed = true; } });
            if (sql === 'COMMIT') return wrap(statement, () => { if (armed) die(); });
            return statement;
          };
          const { SqliteStore } = await import(${JSON.stringify(storeUrl)});
          const store = new SqliteStore({ path: ${JSON.stringify(path)} });
          const opts = { maxMessageSize: 1 << 30 };
          await Promise.all(Array.from({ length: ${CHANNELS} }, async (_, c) => {
            const r = await store.append('c' + c, [{ action: 'create', publisher: 'p', id: 'm', data: '' }], opts);
            const serial = r.results[0].serial;
            for (let i = 0; ; i++) {
              await store.append('c' + c, [{ action: 'append', publisher: 'p', id: 'a' + i, serial, data: '<' + c + '.' + i + '>' }], opts);
              process.stdout.write('ack ' + c + ' ' + i + ' ' + serial + '\\n');
            }
          }));
          `,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const acked = new Map<number, number>();
      const serials = new Map<number, string>();
      const exit = await new Promise<NodeJS.Signals | null>((resolve, reject) => {
        const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
        child.on('error', reject);
        // 'close', not 'exit': every ack printed before the kill is read first
        child.on('close', (_code, signal) => {
          clearTimeout(timer);
          resolve(signal);
        });
        createInterface({ input: child.stdout }).on('line', (line) => {
          const [, c, i, serial] = line.split(' ') as [string, string, string, string];
          acked.set(Number(c), Number(i) + 1);
          serials.set(Number(c), serial);
        });
      });
      assert.equal(exit, 'SIGKILL');

      // The file as the crash left it: a half-merged journal.
      const raw = new DatabaseSync(path);
      const inOps = where(raw, 'ops');
      const inJournal = where(raw, 'journal');
      const mergedInJournal = where(raw, 'merged');
      raw.close();
      // the kill came during a merge: past the journal's high mark. Counted in the file, not from the
      // acks this process read: on a loaded machine the child's last acks (a few thousand lines, queued
      // behind a full pipe) die with it.
      const sum = (counts: Map<number, number>) => [...counts.values()].reduce((a, b) => a + b, 0);
      const committed = sum(inOps) + sum(inJournal);
      assert.ok(
        committed > JOURNAL_HIGH_ROWS - 2 * CHANNELS,
        `the child committed ${committed} appends before dying (${sum(acked)} acknowledged)`,
      );
      assert.ok(
        inOps.size > 0 && inJournal.size > 0,
        'the crash left appends both in ops and in the journal',
      );
      assert.ok(mergedInJournal.size > 0, 'the crash left merged rows of a generation in the journal');

      const store = new SqliteStore({ path });
      cleanups.unshift(() => store.close());
      for (let c = 0; c < CHANNELS; c++) {
        const n = acked.get(c) ?? 0;
        const data = (await store.history(`c${c}`, { direction: 'forwards', limit: 1 })).messages[0]?.data;
        const stored = String(data ?? '').match(/<\d+\.\d+>/g) ?? [];
        // every acknowledged append, in order, once. More may be stored than this process saw acked:
        // the one in flight at the kill, and acks the child printed into a full pipe (a pipe write
        // that would block is queued, and a SIGKILL loses the queue) — seen on a loaded machine.
        assert.ok(stored.length >= n, `c${c}: ${stored.length} stored, ${n} acked`);
        assert.equal(stored.join(''), expected(c, stored.length), `c${c}: stored in order, once`);
        if (n === 0) continue;
        const retry = await store.append(
          `c${c}`,
          Array.from({ length: n }, (_, i) => ({
            action: 'append' as const,
            publisher: 'p',
            id: `a${i}`,
            serial: serials.get(c)!,
            data: 'x',
          })),
          OPTS,
        );
        assert.ok(
          retry.results.every((r) => r.duplicate),
          `c${c}: an acknowledged id was stored again`,
        );
      }
    });
});

describe('the journal view', () => {
  const row = (n: number, seq: number, msgSeq: number, bytes = 0): JournalRow => ({
    n,
    seq,
    msgSeq,
    key: `k${n}`,
    bytes,
    append: bytes > 0,
  });

  it("counts a message's appends one by one, and forgets them when a partial merge takes them all", () => {
    const view = new JournalView();
    view.add(1, row(1, 10, 5, 100)); // two appends to message 5
    view.add(1, row(2, 11, 5, 30));
    view.add(1, row(3, 12, 12)); // a create after them, left in the journal
    assert.equal(view.appendedBytes(1, 5), 130);
    view.merged({ ns: [1], taken: [[1, 1]], remove: true });
    assert.equal(view.appendedBytes(1, 5), 30, 'one append merged, one left');
    view.merged({ ns: [2], taken: [[1, 1]], remove: true });
    assert.equal(view.appendedBytes(1, 5), undefined, 'no append of it left in the journal');
    assert.deepEqual([view.rows, view.bytes, view.lastSeq(1)], [1, 0, 12]);
    assert.deepEqual([...view.keys(1)], ['k3']);
  });

  it('starts a generation at exactly its high marks, rows or bytes, and merges it in bounded slices', () => {
    const fill = (view: JournalView, from: number, count: number, bytes = 0) => {
      for (let n = from; n < from + count; n++) view.add(n % 2, row(n, n, n, bytes));
    };
    const short = new JournalView();
    fill(short, 1, JOURNAL_HIGH_ROWS - 1);
    assert.equal(short.commitSlice(), undefined, 'one row short: no generation');
    const rows = new JournalView();
    fill(rows, 1, JOURNAL_HIGH_ROWS - 100);
    assert.equal(rows.commitSlice(), undefined);
    fill(rows, JOURNAL_HIGH_ROWS - 99, 100); // exactly the mark, 100 rows added by this commit
    const sizes: number[] = [];
    for (let slice = rows.commitSlice(); slice !== undefined; slice = rows.commitSlice()) {
      sizes.push(slice.ns.length);
      rows.merged(slice);
      if (sizes.length > 1_000) break;
    }
    assert.deepEqual(
      sizes.slice(0, 3),
      [150, SLICE_ROWS, SLICE_ROWS],
      '1.5 × what the commit added, then the least',
    );
    assert.equal(
      sizes.reduce((a, b) => a + b, 0),
      JOURNAL_HIGH_ROWS,
      'the whole generation, once',
    );
    assert.equal(rows.rows, 0);
    // exactly the bytes mark in 4 appends of 1 MiB, the last 2 added by this commit: a slice bound
    // of 1.5 × 2 MiB, met exactly by 3 of them
    const bytes = new JournalView();
    fill(bytes, 1, 2, JOURNAL_HIGH_BYTES / 4);
    assert.equal(bytes.commitSlice(), undefined);
    fill(bytes, 3, 2, JOURNAL_HIGH_BYTES / 4);
    const first = bytes.commitSlice();
    assert.deepEqual(first?.ns, [2, 4, 1], 'the bytes mark starts a generation too; channel 0 first');
    if (first) bytes.merged(first);
    assert.deepEqual(bytes.commitSlice()?.ns, [3], 'the rest in the next slice');
  });

  it('a generation resumed after a reload ends with its last row, not one before; rows past it do not count', () => {
    // a reload found rows 1…65 merged by an unfinished generation (channel 0) and rows 66…70 after
    // it (channel 1). The generation's end deletes its rows from the journal table: ending one row
    // early would delete a row not yet in `ops`.
    const view = new JournalView();
    for (let n = 1; n <= 65; n++) view.add(0, row(n, n, n));
    for (let n = 66; n <= 70; n++) view.add(1, row(n, n, n));
    assert.equal(view.commitSlice(), undefined, 'below the marks, no generation of its own'); // (and slices of 64 from now on)
    view.resumeGeneration(65);
    // a read of channel 1 merges its rows at once: past the generation, they do not count in it
    const read = view.channel(1)!;
    assert.deepEqual(view.merged(read).dropThrough, undefined);
    const first = view.commitSlice()!;
    assert.equal(first.ns.length, SLICE_ROWS, 'a slice of 64: one row of the generation left');
    assert.equal(view.merged(first).dropThrough, undefined, 'the generation ended one row early');
    const last = view.commitSlice()!;
    assert.deepEqual(last.ns, [65]);
    assert.equal(view.merged(last).dropThrough, 65);
    assert.equal(view.rows, 0);
    assert.equal(view.commitSlice(), undefined);
  });

  it("does not skip a channel's last row of the generation when a slice ends just before it", () => {
    // channel 1 holds rows 1…32,617, channel 0 the last 151 (its last row ends the generation);
    // the first slice (1.5 × 100 added) ends one row short of channel 0's end
    const view = new JournalView();
    const split = JOURNAL_HIGH_ROWS - 151;
    for (let n = 1; n <= split; n++) view.add(1, row(n, n, n));
    for (let n = split + 1; n <= JOURNAL_HIGH_ROWS - 100; n++) view.add(0, row(n, n, n));
    assert.equal(view.commitSlice(), undefined);
    for (let n = JOURNAL_HIGH_ROWS - 99; n <= JOURNAL_HIGH_ROWS; n++) view.add(0, row(n, n, n));
    let merged = 0;
    for (let i = 0, slice = view.commitSlice(); slice && i < 1_000; i++, slice = view.commitSlice()) {
      merged += slice.ns.length;
      view.merged(slice);
    }
    assert.equal(merged, JOURNAL_HIGH_ROWS);
    assert.equal(view.rows, 0, 'the generation ended: nothing left in the journal');
  });
});
