/**
 * The SQLite store: the conformance suite on real files in a temp dir, plus what only a persistent,
 * cached store can get wrong (reopen with cold caches, WAL, long messages).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { parseSerial } from '@mooring/protocol';
import { JOURNAL_HIGH_ROWS } from '../src/store/sqlite-journal.ts';
import type { SqliteStoreOptions } from '../src/store/sqlite-store.ts';
import { MAX_FILTERED_IDS, SqliteStore } from '../src/store/sqlite-store.ts';
import type { AppendOptions, Store } from '../src/store/store.ts';
import { StoreError } from '../src/store/store.ts';
import { storeConformance } from './store-conformance.ts';

const OPTS: AppendOptions = { maxMessageSize: 4 * 1024 * 1024 };
const BOOT_ID = '/proc/sys/kernel/random/boot_id';

async function tempDb(): Promise<{ dir: string; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-sqlite-'));
  return { dir, path: join(dir, 'nested', 'mooring.db') };
}

storeConformance('sqlite', async (options) => {
  const { dir, path } = await tempDb();
  let store: Store = new SqliteStore({ path, ...options });
  return {
    store,
    reopen: async () => {
      await store.close();
      store = new SqliteStore({ path, ...options });
      return store;
    },
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('SqliteStore', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });
  async function open(extra: Partial<SqliteStoreOptions> = {}) {
    const { dir, path } = await tempDb();
    const opened: SqliteStore[] = [];
    const make = (more: Partial<SqliteStoreOptions> = {}) => {
      const s = new SqliteStore({ path, ...extra, ...more });
      opened.push(s);
      return s;
    };
    cleanups.push(async () => {
      for (const s of opened) await s.close();
      await rm(dir, { recursive: true, force: true });
    });
    return { path, store: make(), make };
  }

  it('runs in WAL mode with the requested synchronous level', async () => {
    // `synchronous` is a setting of the store's own connection: read it there (onOpen hands it out).
    const levels: Record<string, number> = {};
    for (const synchronous of ['full', 'normal', undefined] as const) {
      let level = -1;
      const { path, store } = await open({
        ...(synchronous ? { synchronous } : {}),
        onOpen: (db) => {
          level = Number(db.prepare('PRAGMA synchronous').get()?.synchronous);
        },
      });
      await store.append('ch', [{ action: 'create', publisher: '', id: 'a' }], OPTS);
      levels[synchronous ?? 'default'] = level;
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        assert.equal(db.prepare('PRAGMA journal_mode').get()?.journal_mode, 'wal');
      } finally {
        db.close();
      }
    }
    // SQLite's numbers: 1 = NORMAL, 2 = FULL
    assert.deepEqual(levels, { full: 2, normal: 1, default: 1 });
  });

  describe(
    'a file left open on another boot (a power loss may have undone its last commits)',
    { skip: !existsSync(BOOT_ID) && `${BOOT_ID} is missing` },
    () => {
      /** The store's file as a power loss leaves it, once closed: `open` still '1' (null: as it is), on `boot`. */
      function leftOpen(path: string, boot: string | undefined, open: string | null = '1'): void {
        const db = new DatabaseSync(path);
        try {
          if (open !== null) db.prepare("UPDATE store_state SET value = ? WHERE name = 'open'").run(open);
          if (boot !== undefined)
            db.prepare("UPDATE store_state SET value = ? WHERE name = 'boot'").run(boot);
        } finally {
          db.close();
        }
      }
      const create = (id: string, data: string) => ({ action: 'create' as const, publisher: '', id, data });

      it('goes on in a new, later epoch; a kept message is still reached by its old serial, a later one is not', async () => {
        const { path, store, make } = await open();
        const kept = await store.append('ch', [create('a', 'a'), create('b', 'b')], OPTS);
        // another channel whose epoch was made by a clock a year ahead: the new one sorts after it too
        const ahead = `${(Date.now() + 365 * 24 * 3600_000).toString(36).padStart(9, '0')}zzz`;
        await store.append('ahead', [create('x', 'x')], OPTS);
        await store.close();
        const db = new DatabaseSync(path);
        db.prepare("UPDATE channels SET epoch = ? WHERE name = 'ahead'").run(ahead);
        db.close();
        leftOpen(path, 'another-boot');

        const again = make();
        const info = await again.info('ch');
        assert.ok(
          info!.epoch > kept.epoch && info!.epoch > ahead,
          `${info!.epoch} after ${kept.epoch} and ${ahead}`,
        );
        assert.deepEqual(info!.previous, { epoch: kept.epoch, through: 2 });
        assert.equal(info!.head, `${info!.epoch}.0000000000000002`);
        const grown = await again.append(
          'ch',
          [{ action: 'append', publisher: '', id: 'late', serial: kept.results[0]!.serial, data: '+' }],
          OPTS,
        );
        assert.equal(grown.messages[0]?.serial, `${info!.epoch}.0000000000000001`);
        // the last kept message (its sequence is `through`) is reached by its old serial too
        const last = await again.append(
          'ch',
          [{ action: 'append', publisher: '', id: 'later', serial: kept.results[1]!.serial, data: '+' }],
          OPTS,
        );
        assert.equal(last.messages[0]?.serial, `${info!.epoch}.0000000000000002`);
        await assert.rejects(
          again.append(
            'ch',
            [
              {
                action: 'append',
                publisher: '',
                id: 'never',
                serial: `${kept.epoch}.0000000000000003`,
                data: '+',
              },
            ],
            OPTS,
          ),
          (err: unknown) => err instanceof StoreError && err.code === 'message_not_found',
        );
        const page = await again.history('ch', { direction: 'forwards', limit: 10 });
        assert.deepEqual(
          page.messages.map((m) => [m.serial, m.data]),
          [
            [`${info!.epoch}.0000000000000001`, 'a+'],
            [`${info!.epoch}.0000000000000002`, 'b+'],
          ],
        );
        // history bounds of the old epoch name the same messages, as far as it was kept
        const bounded = async (from?: string, until?: string) =>
          (
            await again.history('ch', {
              direction: 'forwards',
              limit: 10,
              ...(from === undefined ? {} : { from }),
              ...(until === undefined ? {} : { until }),
            })
          ).messages.map((m) => m.data);
        assert.deepEqual(await bounded(undefined, kept.results[0]!.serial), ['a+']);
        assert.deepEqual(await bounded(kept.results[1]!.serial), ['b+']);
        assert.deepEqual(await bounded(`${kept.epoch}.0000000000000003`), []);
        assert.deepEqual(await bounded(undefined, `${kept.epoch}.0000000000000009`), ['a+', 'b+']);
        // an epoch older than the one the log went on from names none of its messages: before the start
        assert.deepEqual(await bounded(`${'0'.repeat(11)}1.0000000000000002`), ['a+', 'b+']);
        // closed cleanly and opened again on this boot: the same epoch
        await again.close();
        assert.equal((await make().info('ch'))?.epoch, info!.epoch);
      });

      it('keeps its epoch after a process crash on this boot, after a clean close before a reboot, and with synchronous full', async () => {
        for (const [what, boot, openFlag, synchronous] of [
          ['a kill -9 (same boot)', undefined, '1', 'normal'],
          ['a clean close (as close() leaves it), then a reboot', 'another-boot', null, 'normal'],
          ['synchronous full (the flag as a run under FULL leaves it)', 'another-boot', 'while open', 'full'],
        ] as const) {
          const { path, store, make } = await open({ synchronous });
          const first = await store.append('ch', [create('a', 'a')], OPTS);
          const reader = new DatabaseSync(path);
          const whileOpen = String(
            reader.prepare("SELECT value FROM store_state WHERE name = 'open'").get()?.value,
          );
          reader.close();
          await store.close();
          leftOpen(path, boot, openFlag === 'while open' ? whileOpen : openFlag);
          const info = await make({ synchronous }).info('ch');
          assert.equal(info?.epoch, first.epoch, what);
          assert.equal(info?.previous, undefined, what);
        }
      });

      it('goes on in a new epoch when the run that left it open had synchronous normal, whatever the next one asks for', async () => {
        // left open by a run under NORMAL (its last commits may be undone), opened again under FULL
        // (an operator who switched after the crash): the lost serials must not be handed out again
        const { path, store, make } = await open({ synchronous: 'normal' });
        const first = await store.append('ch', [create('a', 'a')], OPTS);
        await store.close();
        leftOpen(path, 'another-boot');
        const info = await make({ synchronous: 'full' }).info('ch');
        assert.ok(info!.epoch > first.epoch, `${info!.epoch} after ${first.epoch}`);
        assert.deepEqual(info!.previous, { epoch: first.epoch, through: 1 });
      });
    },
  );

  it('stores an append as its delta: the message row keeps its base, the deltas are rows of their own (O(delta), not O(message))', async () => {
    const { store, path } = await open();
    const base = 'b'.repeat(256 * 1024);
    const created = await store.append(
      'ch',
      [{ action: 'create', publisher: '', id: 'm', data: base }],
      OPTS,
    );
    const serial = created.results[0]!.serial;
    for (let i = 0; i < 300; i++)
      await store.append(
        'ch',
        [{ action: 'append', publisher: '', id: `a${i}`, serial, data: `<${i}>` }],
        OPTS,
      );
    const deltas = Array.from({ length: 300 }, (_, i) => `<${i}>`).join('');
    const [rolledUp] = (await store.history('ch', { direction: 'forwards', limit: 1 })).messages;
    assert.equal(rolledUp?.data, base + deltas);
    await store.close(); // merges the journal into ops
    const db = new DatabaseSync(path, { readOnly: true });
    try {
      const row = db.prepare('SELECT length(data) AS bytes FROM messages').get() as { bytes: number };
      assert.equal(row.bytes, base.length, 'the message row was not rewritten by the appends');
      const ops = db
        .prepare('SELECT count(*) AS n, sum(length(data)) AS bytes FROM ops WHERE data IS NOT NULL')
        .get() as {
        n: number;
        bytes: number;
      };
      assert.deepEqual({ ...ops }, { n: 300, bytes: deltas.length }, 'each append holds its delta only');
    } finally {
      db.close();
    }
  });

  it('trims expired answers of many appends in transactions of bounded size, letting the event loop run between them', async () => {
    // 30 answers of 1,000 appends each expire together: one transaction of 30,000 op deletions held
    // the event loop (about 2.5 µs each); the trim now stops a transaction past 20,000 ops and
    // yields before the next, and still removes every message and op id.
    const { store } = await open({ retentionFor: () => 1000 });
    const t0 = 1_700_000_000_000;
    for (let m = 0; m < 30; m++) {
      const created = await store.append('ch', [{ action: 'create', publisher: '', id: `m${m}`, data: '' }], {
        ...OPTS,
        now: t0,
      });
      const serial = created.results[0]!.serial;
      for (let b = 0; b < 10; b++)
        await store.append(
          'ch',
          Array.from({ length: 100 }, (_, i) => ({
            action: 'append' as const,
            publisher: '',
            id: `m${m}a${b * 100 + i}`,
            serial,
            data: 'x',
          })),
          { ...OPTS, now: t0 },
        );
    }
    let turns = 0;
    let trimming = true;
    const count = () => {
      if (!trimming) return;
      turns++;
      setImmediate(count);
    };
    setImmediate(count);
    const removed = await store.trim(t0 + 1000);
    trimming = false;
    assert.equal(removed, 30);
    assert.ok(turns >= 1, 'the trim ran as one transaction, the event loop never turned');
    assert.equal((await store.info('ch'))?.messageCount, 0);
    const again = await store.append(
      'ch',
      [{ action: 'create', publisher: '', id: 'm0', data: 'new' }],
      OPTS,
    );
    assert.equal(again.results[0]!.duplicate, undefined, 'the op id outlived its message');
  });

  it('ends a read page once it has joined 100,000 appends, whatever few bytes they hold: history and catch-up page on', async () => {
    // Three messages of 50,000 empty appends: bytes would put them in one page, and a page of many
    // such messages was one long stop of the event loop; the third goes to the next page.
    const { store } = await open();
    const serials: string[] = [];
    for (let m = 0; m < 3; m++) {
      const created = await store.append(
        'ch',
        [{ action: 'create', publisher: '', id: `m${m}`, data: `<${m}>` }],
        OPTS,
      );
      const serial = created.results[0]!.serial;
      serials.push(serial);
      for (let b = 0; b < 50; b++)
        await store.append(
          'ch',
          Array.from({ length: 1000 }, (_, i) => ({
            action: 'append' as const,
            publisher: '',
            id: `m${m}a${b}.${i}`,
            serial,
            data: '',
          })),
          OPTS,
        );
    }
    const first = await store.history('ch', { direction: 'forwards', limit: 10, maxBytes: 1 << 20 });
    assert.deepEqual(
      first.messages.map((m) => m.data),
      ['<0>', '<1>'],
    );
    assert.equal(first.more, true);
    const rest = await store.history('ch', {
      direction: 'forwards',
      limit: 10,
      maxBytes: 1 << 20,
      from: serials[2]!,
    });
    assert.deepEqual(
      rest.messages.map((m) => m.data),
      ['<2>'],
    );
    const caughtUp = await store.readSince('ch', undefined, 10, 1 << 20);
    assert.equal(caughtUp.messages.length, 2);
    assert.equal(caughtUp.more, true);
    const after = await store.readSince('ch', caughtUp.messages.at(-1)!.version, 10, 1 << 20);
    assert.deepEqual(
      after.messages.map((m) => m.data),
      ['<2>'],
    );
  });

  it('rolls up a 20,000-append message and keeps validating it after a reopen', async () => {
    const { store, make } = await open();
    const created = await store.append('ch', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS);
    const serial = created.results[0]!.serial;
    const parts: string[] = [];
    const writers = 20;
    const total = 20_000;
    // 20 concurrent writers, each appending its own numbered deltas in order.
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let i = w; i < total; i += writers) {
          await store.append(
            'ch',
            [{ action: 'append', publisher: '', id: `a${i}`, serial, data: `<${i}>` }],
            OPTS,
          );
        }
      }),
    );
    const page = await store.history('ch', { direction: 'forwards', limit: 1 });
    const m = page.messages[0]!;
    assert.equal(m.action, 'update');
    assert.equal(m.version, page.head);
    assert.equal(parseSerial(m.version)!.seq, total + 1);
    const data = m.data as string;
    for (let i = 0; i < total; i++) parts.push(`<${i}>`);
    assert.equal(data.length, parts.join('').length);
    assert.deepEqual(new Set(data.match(/<\d+>/g)), new Set(parts));
    // Each writer's deltas kept its order.
    const positions = new Map((data.match(/<\d+>/g) ?? []).map((p, i) => [p, i]));
    for (let i = writers; i < total; i++)
      assert.ok(positions.get(`<${i}>`)! > positions.get(`<${i - writers}>`)!);

    await store.close();
    const again = make();
    const size = Buffer.byteLength(data);
    await assert.rejects(
      again.append('ch', [{ action: 'append', publisher: '', id: 'x', serial, data: 'xy' }], {
        maxMessageSize: size + 1,
      }),
      (e: unknown) => e instanceof StoreError && e.code === 'message_too_large',
    );
    await again.append('ch', [{ action: 'append', publisher: '', id: 'y', serial, data: 'z' }], {
      maxMessageSize: size + 1,
    });
    const after = (await again.readSince('ch', page.head, 10)).messages;
    assert.equal(after.length, 1);
    assert.equal(after[0]!.data, `${data}z`);
  });

  it('validates from the database when the message cache is smaller than the working set', async () => {
    const { store, make } = await open({ cacheSize: 2 });
    const serials: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await store.append(
        'ch',
        [{ action: 'create', publisher: '', id: `c${i}`, data: i % 2 ? '' : { n: i }, clientId: `w${i}` }],
        OPTS,
      );
      serials.push(r.results[0]!.serial);
    }
    for (let round = 0; round < 3; round++) {
      for (let i = 1; i < 10; i += 2) {
        await store.append(
          'ch',
          [{ action: 'append', publisher: '', id: `a${round}-${i}`, serial: serials[i]!, data: 'ab' }],
          OPTS,
        );
      }
    }
    for (let i = 0; i < 10; i++) {
      const op = {
        action: 'append' as const,
        publisher: '',
        id: `z${i}`,
        serial: serials[i]!,
        data: 'x',
        requireOwner: `w${i}`,
      };
      if (i % 2) {
        await assert.rejects(
          store.append('ch', [op], { maxMessageSize: 6 }),
          (e: unknown) => e instanceof StoreError && e.code === 'message_too_large',
        );
      } else {
        await assert.rejects(
          store.append('ch', [op], OPTS),
          (e: unknown) => e instanceof StoreError && e.code === 'not_appendable',
        );
      }
    }
    await store.append('ch', [{ action: 'delete', publisher: '', id: 'd1', serial: serials[1]! }], OPTS);
    await store.close();
    const fresh = make({ cacheSize: 1 });
    await assert.rejects(
      fresh.append(
        'ch',
        [{ action: 'append', publisher: '', id: 'late', serial: serials[1]!, data: 'x' }],
        OPTS,
      ),
      (e: unknown) => e instanceof StoreError && e.code === 'message_deleted',
    );
    await fresh.append(
      'ch',
      [{ action: 'update', publisher: '', id: 'u3', serial: serials[3]!, headers: { k: 1 } }],
      OPTS,
    );
    await fresh.append(
      'ch',
      [{ action: 'append', publisher: '', id: 'a3', serial: serials[3]!, data: '!' }],
      OPTS,
    );
    const page = await fresh.history('ch', { direction: 'forwards', limit: 10 });
    assert.deepEqual(page.messages[3]!.data, 'ababab!');
    assert.deepEqual(page.messages[3]!.headers, { k: 1 });
    assert.equal(page.messages[1]!.action, 'delete');
  });

  it('keeps every acknowledged append through kill -9 (ARCHITECTURE.md §10)', async () => {
    const { dir, path } = await tempDb();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const storeUrl = pathToFileURL(join(import.meta.dirname, '../src/store/sqlite-store.ts')).href;
    // The child creates one message, then 50 writers append to it until killed, printing each ack.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
        import { SqliteStore } from ${JSON.stringify(storeUrl)};
        const store = new SqliteStore({ path: ${JSON.stringify(path)} });
        const opts = { maxMessageSize: 1 << 30 };
        const r = await store.append('ch', [{ action: 'create', id: 'm', data: '' }], opts);
        const serial = r.results[0].serial;
        process.stdout.write('serial ' + serial + '\\n');
        let n = 0;
        // Meanwhile another writer creates and updates messages: updates merge the journal mid-commit.
        const other = async () => {
          for (let k = 0; ; k++) {
            const c = await store.append('ch', [{ action: 'create', id: 'o' + k, data: 'x' }], opts);
            await store.append('ch', [
              { action: 'append', id: 'oa' + k, serial: c.results[0].serial, data: 'y' },
              { action: 'update', id: 'ou' + k, serial: c.results[0].serial, data: 'z' },
              { action: 'append', id: 'ob' + k, serial: c.results[0].serial, data: '!' },
            ], opts);
          }
        };
        await Promise.all([other(), ...Array.from({ length: 50 }, async () => {
          for (;;) {
            const i = n++;
            await store.append('ch', [{ action: 'append', id: 'a' + i, serial, data: '<' + i + '>' }], opts);
            process.stdout.write('ack ' + i + '\\n');
          }
        })]);
        `,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const acked: number[] = [];
    let serial = '';
    await new Promise<void>((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', () => resolve());
      createInterface({ input: child.stdout }).on('line', (line) => {
        const [kind, value] = line.split(' ') as [string, string];
        if (kind === 'serial') serial = value;
        else acked.push(Number(value));
        if (acked.length >= 12_000 && !child.killed) child.kill('SIGKILL');
      });
    });
    assert.ok(acked.length >= 12_000, `the child acknowledged ${acked.length} appends before dying`);

    const store = new SqliteStore({ path });
    cleanups.unshift(() => store.close());
    const m = (await store.history('ch', { direction: 'forwards', limit: 1 })).messages[0]!;
    const present = new Set((m.data as string).match(/<\d+>/g));
    const lost = acked.filter((i) => !present.has(`<${i}>`));
    assert.deepEqual(lost, [], 'no acknowledged append is lost');
    for (let from = 0; from < acked.length; from += 1000) {
      const ops = acked
        .slice(from, from + 1000)
        .map((i) => ({ action: 'append' as const, publisher: '', id: `a${i}`, serial, data: `<${i}>` }));
      const r = await store.append('ch', ops, OPTS);
      assert.ok(
        r.results.every((x) => x.duplicate),
        'acknowledged ids are remembered',
      );
    }
    // The serial counter did not go back: the next op follows the head, and every op has its own serial.
    const info = (await store.info('ch'))!;
    const next = await store.append('ch', [{ action: 'create', publisher: '', id: 'after-crash' }], OPTS);
    assert.equal(parseSerial(next.results[0]!.serial)!.seq, parseSerial(info.head)!.seq + 1);
    const all = await store.readSince('ch', undefined, 1_000_000);
    assert.equal(all.messages.at(-1)!.id, 'after-crash');
    for (const other of all.messages.filter((x) => x.id.startsWith('o'))) {
      assert.ok(other.data === 'x' || other.data === 'xy' || other.data === 'z' || other.data === 'z!');
    }
  });

  it('recovers serial counters and dedup from an unmerged journal (a crash without close)', async () => {
    const { store, make } = await open();
    const a = (await store.append('a', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    const b = (await store.append('b', [{ action: 'create', publisher: '', id: 'n', data: '' }], OPTS))
      .results[0]!.serial;
    // One group commit: the update on b merges the journal, a's append included, mid-transaction.
    await Promise.all([
      store.append('a', [{ action: 'append', publisher: '', id: 'x', serial: a, data: 'x' }], OPTS),
      store.append('b', [{ action: 'update', publisher: '', id: 'u', serial: b, data: 'u' }], OPTS),
      store.append('b', [{ action: 'append', publisher: '', id: 'v', serial: b, data: 'v' }], OPTS),
    ]);
    // The first let go as by kill -9 (never closed), a second store on the same file: what a restart
    // after the crash sees.
    await store.closeAsCrashed();
    const after = make();
    assert.equal(parseSerial((await after.info('a'))!.head)!.seq, 2);
    assert.equal(parseSerial((await after.info('b'))!.head)!.seq, 3);
    const dup = await after.append(
      'b',
      [{ action: 'append', publisher: '', id: 'v', serial: b, data: 'v' }],
      OPTS,
    );
    assert.equal(dup.results[0]!.duplicate, true);
    const next = await after.append(
      'a',
      [{ action: 'append', publisher: '', id: 'y', serial: a, data: 'y' }],
      OPTS,
    );
    assert.equal(parseSerial(next.results[0]!.serial)!.seq, 3);
    assert.equal((await after.history('a', { direction: 'forwards', limit: 1 })).messages[0]!.data, 'xy');
    assert.equal((await after.history('b', { direction: 'forwards', limit: 1 })).messages[0]!.data, 'uv');
  });

  it('deduplicates an op id held in ops or the journal, however its id filter was built (new channel, grown past its size, reopened)', async () => {
    const { store, make } = await open();
    const serial = (await store.append('f', [{ action: 'create', publisher: 'p', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    // Past the id filter's first size (1,024: rebuilt from the tables, bigger) and past the journal's
    // high mark (slices merged), so the early ids are in `ops`, the last ones in the journal.
    const total = JOURNAL_HIGH_ROWS + 2_000;
    const serials: string[] = [];
    await Promise.all(
      Array.from({ length: 10 }, async (_, w) => {
        for (let i = w; i < total; i += 10) {
          const r = await store.append(
            'f',
            [{ action: 'append', publisher: 'p', id: `a${i}`, serial, data: '.' }],
            OPTS,
          );
          serials[i] = r.results[0]!.serial;
        }
      }),
    );
    const resend = async (s: Store, i: number) =>
      (await s.append('f', [{ action: 'append', publisher: 'p', id: `a${i}`, serial, data: '.' }], OPTS))
        .results[0]!;
    for (const i of [0, 500, 1_500, 8_000, 30_000, total - 1]) {
      assert.deepEqual(await resend(store, i), { serial: serials[i], duplicate: true }, `a${i} stored twice`);
    }
    // Another publisher's id is its own (dedup scope), and is stored.
    const other = await store.append(
      'f',
      [{ action: 'append', publisher: 'q', id: 'a0', serial, data: '!' }],
      OPTS,
    );
    assert.equal(other.results[0]!.duplicate, undefined);
    await store.close();
    // Reopened: no filter in memory, every id only in the tables.
    const again = make();
    for (const i of [1, 4_000, total - 2]) {
      assert.deepEqual(
        await resend(again, i),
        { serial: serials[i], duplicate: true },
        `a${i} stored twice after a reopen`,
      );
    }
    const page = await again.history('f', { direction: 'forwards', limit: 1 });
    assert.equal(page.messages[0]!.data, `${'.'.repeat(total)}!`, 'no resend was stored');
  });

  it('scopes ids by publisher in a channel too large for an id filter (every id looked up in the index)', async () => {
    const { store, make } = await open();
    // Past MAX_FILTERED_IDS the channel has no id filter: a new id is not ruled out by it (which
    // answers for a publisher's key), so the index lookup alone keeps publishers' ids apart.
    const batches = Array.from({ length: MAX_FILTERED_IDS / 100 + 1 }, (_, b) =>
      store.append(
        'big',
        Array.from({ length: 100 }, (_, i) => ({
          action: 'create' as const,
          publisher: 'p',
          id: `a${b * 100 + i}`,
        })),
        OPTS,
      ),
    );
    const serials = (await Promise.all(batches)).flatMap((r) => r.results.map((x) => x.serial));
    const check = async (s: Store, id: string) => {
      const other = await s.append('big', [{ action: 'create', publisher: 'q', id }], OPTS);
      assert.equal(other.results[0]!.duplicate, undefined, `q's ${id} taken for p's`);
      const i = Number(id.slice(1));
      const retry = await s.append('big', [{ action: 'create', publisher: 'p', id }], OPTS);
      assert.deepEqual(retry.results[0], { serial: serials[i], duplicate: true }, `p's ${id} stored twice`);
    };
    await check(store, 'a5');
    await store.close();
    await check(make(), 'a6'); // reopened: every id in `ops`
  });

  it('merges its journal before it holds more than a few MiB of appended text (a merge blocks the event loop)', async () => {
    const { store, path } = await open();
    const big = { ...OPTS, maxMessageSize: 64 * 1024 * 1024 };
    const serial = (await store.append('big', [{ action: 'create', publisher: '', id: 'm', data: '' }], big))
      .results[0]!.serial;
    const chunk = 'x'.repeat(60_000);
    for (let i = 0; i < 150; i++)
      await store.append('big', [{ action: 'append', publisher: '', id: `a${i}`, serial, data: chunk }], big);
    // 9 MB appended in 150 rows, far below the row threshold: the byte bound must have merged
    const reader = new DatabaseSync(path, { readOnly: true });
    const held = Number(
      reader
        .prepare(
          `SELECT coalesce(sum(octet_length(data)), 0) AS n FROM journal
           WHERE NOT EXISTS (SELECT 1 FROM ops WHERE ops.chan = journal.chan AND ops.seq = journal.seq)`,
        )
        .get()?.n,
    );
    reader.close();
    assert.ok(held <= 4 * 1024 * 1024 + chunk.length, `${held} bytes waiting in the journal`);
    const page = await store.history('big', { direction: 'forwards', limit: 1 });
    assert.equal((page.messages[0]!.data as string).length, 150 * chunk.length, 'nothing lost by merging');
  });

  it('checkpoints its WAL off the event loop and keeps it bounded (the main connection never checkpoints)', async () => {
    let main: DatabaseSync | undefined;
    const { store, path } = await open({
      onOpen: (db) => {
        main = db;
      },
    });
    // SQLite's automatic checkpoint would run inside a COMMIT, on the event loop: it must be off.
    assert.equal(Number(main?.prepare('PRAGMA wal_autocheckpoint').get()?.wal_autocheckpoint), 0);
    const serial = (await store.append('wal', [{ action: 'create', publisher: '', id: 'm', data: '' }], OPTS))
      .results[0]!.serial;
    const chunk = 'y'.repeat(2000);
    // ~40 MB written (~20,000 pages, more with the journal merges). Nothing is rewound by SQLite
    // itself any more: the WAL holds every frame unless the checkpointer rewinds it.
    for (let i = 0; i < 20_000; i++) {
      const channel = `wal${i % 10}`;
      await store.append(channel, [{ action: 'create', publisher: '', id: `m${i}`, data: chunk }], OPTS);
    }
    await store.append('wal', [{ action: 'append', publisher: '', id: 'a', serial, data: 'end' }], OPTS);
    const reader = new DatabaseSync(path);
    const frames = Number(reader.prepare('PRAGMA wal_checkpoint(PASSIVE)').get()?.log);
    reader.close();
    assert.ok(frames < 16_000, `${frames} frames in the WAL: it was not rewound`);
    // The file may grow past journal_size_limit in a burst between two rewinds (the worker reports
    // on its own clock; a busy machine delays it): the limit truncates it at the write after the
    // next rewind. So it must come back within the limit while writes go on.
    const withinLimit = () => statSync(`${path}-wal`).size <= 64 * 1024 * 1024 + 65_536;
    for (let i = 0; i < 500 && !withinLimit(); i++) {
      await store.append('wal', [{ action: 'append', publisher: '', id: `w${i}`, serial, data: '' }], OPTS);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(withinLimit(), 'WAL file back within journal_size_limit');
    const page = await store.history('wal', { direction: 'forwards', limit: 1 });
    assert.equal(page.messages[0]!.data, 'end');
  });

  it('refuses to open a file that is not a database', async () => {
    const { dir } = await tempDb();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const { writeFile } = await import('node:fs/promises');
    const path = join(dir, 'junk.db');
    await writeFile(path, 'not a database, just some text that is long enough to have a header'.repeat(20));
    assert.throws(
      () => new SqliteStore({ path }),
      (e: unknown) => e instanceof StoreError && e.code === 'store_unavailable',
    );
  });
});
