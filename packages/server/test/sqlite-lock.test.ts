/**
 * One store per SQLite file (sqlite-lock.ts): a second opener — a second SqliteStore or server in
 * this process, a second `mooring serve` on a running node's data folder, on its port or another —
 * is refused before it reads or writes anything, so the running node's journal (its acknowledged,
 * not yet merged operations) and its `open` flag (power-loss detection) stay as they were. Without
 * it the second opener merged and emptied the journal, and wrote "closed" at its exit: an outside
 * review lost 178 of 74,411 acknowledged creates. And the hold is the kernel's: a node killed with
 * SIGKILL leaves nothing that stops the next start on its folder. Real processes on port 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startServer } from '../src/index.ts';
import { StoreLockedError } from '../src/store/sqlite-lock.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import type { AppendOptions } from '../src/store/store.ts';
import { TEST_KEY } from './support/fixture.ts';
import { spawnServer } from './support/server-process.ts';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const OPTS: AppendOptions = { maxMessageSize: 1 << 20 };

const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mooring-lock-'));
  dirs.push(dir);
  return dir;
}

/** What a second opener must leave alone: the journal's rows and the `open` flag, read beside the store. */
function fileState(path: string): { journal: number; open: string | undefined } {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const journal = Number(db.prepare('SELECT count(*) AS n FROM journal').get()?.n);
    const open = db.prepare("SELECT value FROM store_state WHERE name = 'open'").get()?.value;
    return { journal, open: open === undefined ? undefined : String(open) };
  } finally {
    db.close();
  }
}

async function createMany(store: SqliteStore, prefix: string, count: number): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      store.append('ch', [{ action: 'create', publisher: '', id: `${prefix}${i}`, data: i }], OPTS),
    ),
  );
}

async function storedIds(path: string): Promise<string[]> {
  const store = new SqliteStore({ path });
  try {
    const page = await store.history('ch', { direction: 'forwards', limit: 10_000 });
    return page.messages.map((m) => m.id);
  } finally {
    await store.close();
  }
}

describe('one SQLite store per file, in this process', () => {
  it('refuses a second SqliteStore on the file with StoreLockedError naming it and this process, and leaves the first one’s journal and open flag as they were', async () => {
    const path = join(await tempDir(), 'mooring.db');
    const first = new SqliteStore({ path });
    await createMany(first, 'a', 300);
    const before = fileState(path);
    assert.ok(before.journal > 0, 'the acknowledged creates wait in the journal');
    assert.equal(before.open, '1');

    for (let attempt = 0; attempt < 2; attempt++) {
      assert.throws(
        () => new SqliteStore({ path }),
        (err: unknown) => {
          assert.ok(err instanceof StoreLockedError, String(err));
          assert.equal(err.code, 'store_unavailable');
          assert.equal(err.pid, process.pid);
          assert.match(err.message, new RegExp(`${path.replaceAll('.', '\\.')} is in use`));
          assert.match(err.message, new RegExp(`this process \\(pid ${process.pid}\\)`));
          return true;
        },
      );
    }
    // not merged, not marked closed: the refused opener read and wrote nothing of the file
    assert.deepEqual(fileState(path), before);

    // the first still holds the file (a refused opener's close let go of nothing) and writes on
    await createMany(first, 'b', 300);
    assert.throws(() => new SqliteStore({ path }), StoreLockedError);
    await first.close();
    const ids = await storedIds(path);
    assert.equal(ids.length, 600);
    assert.deepEqual(new Set(ids), new Set(Array.from({ length: 300 }, (_, i) => [`a${i}`, `b${i}`]).flat()));
  });

  it('refuses a second server on the data folder (its start rejects), and the first serves on with nothing lost', async () => {
    const dataDir = await tempDir();
    const store = { kind: 'sqlite', dataDir } as const;
    const first = await startServer({
      host: '127.0.0.1',
      port: 0,
      keys: [TEST_KEY],
      store,
      logger: 'silent',
    });
    try {
      await createMany(first.store as SqliteStore, 'a', 100);
      const before = fileState(join(dataDir, 'mooring.db'));
      // on the same port (the double start of the review) and on a port of its own alike
      for (const port of [first.port, 0])
        await assert.rejects(
          startServer({ host: '127.0.0.1', port, keys: [TEST_KEY], store, logger: 'silent' }),
          (err: unknown) => err instanceof StoreLockedError && err.pid === process.pid,
        );
      assert.deepEqual(fileState(join(dataDir, 'mooring.db')), before);
      const res = await fetch(`${first.url}/v1/channels/ch/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ action: 'create', id: 'after', data: 1 }),
      });
      assert.equal(res.status, 200, await res.text());
    } finally {
      await first.close();
    }
    assert.equal((await storedIds(join(dataDir, 'mooring.db'))).length, 101);
  });
});

/** `mooring serve` on `dataDir` (and `port`) to its end: its exit code and what it said. */
function serveToEnd(dataDir: string, port: number): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--port', String(port), '--data', dataDir, '--log-level', 'warn'],
    { env: { ...process.env, MOORING_KEY: TEST_KEY }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    // a server that started after all: stop it, the test fails on its exit code
    if (stderr.includes('listening on')) child.kill('SIGTERM');
  });
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

async function publish(url: string, ids: string[]): Promise<void> {
  for (const id of ids) {
    const res = await fetch(`${url}/v1/channels/ch/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: 'create', id, data: id }),
    });
    assert.equal(res.status, 200, await res.text());
  }
}

const ids = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`);

describe('one SQLite store per data folder, between processes', () => {
  it('a second `mooring serve` on a running node’s folder exits 1 naming the folder and the node’s pid, and the node loses nothing', async () => {
    const dataDir = await tempDir();
    const path = join(dataDir, 'mooring.db');
    const node = await spawnServer(['--data', dataDir]);
    try {
      await publish(node.url, ids('a', 100));
      const before = fileState(path);
      assert.ok(before.journal > 0, 'the acknowledged creates wait in the journal');
      const port = Number(new URL(node.url).port);
      // the review's double start (same port: EADDRINUSE came after the store was opened), and a
      // second node on a port of its own
      for (const at of [port, 0]) {
        const second = await serveToEnd(dataDir, at);
        assert.equal(second.code, 1, second.stderr);
        assert.match(second.stderr, /^mooring: the SQLite store at .*mooring\.db is in use/m);
        assert.match(second.stderr, new RegExp(`process ${node.child.pid} holds it: stop that node first`));
        assert.deepEqual(fileState(path), before, 'the refused process touched the file');
      }
      await publish(node.url, ids('b', 100));
    } finally {
      node.child.kill('SIGTERM');
      await node.exited;
    }
    assert.equal(await node.exited, 0);
    assert.deepEqual(new Set(await storedIds(path)), new Set([...ids('a', 100), ...ids('b', 100)]));
  });

  it('a node killed with SIGKILL leaves its folder free: the next start opens it, with every acknowledged create', async () => {
    const dataDir = await tempDir();
    const first = await spawnServer(['--data', dataDir]);
    try {
      await publish(first.url, ids('a', 50));
    } finally {
      first.child.kill('SIGKILL');
    }
    assert.equal(await first.exited, 'SIGKILL');
    const next = await spawnServer(['--data', dataDir]);
    try {
      const res = await fetch(`${next.url}/v1/channels/ch`, {
        headers: { authorization: `Bearer ${TEST_KEY}` },
      });
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as { messages: number }).messages, 50);
      await publish(next.url, ids('b', 10));
    } finally {
      next.child.kill('SIGTERM');
      await next.exited;
    }
    assert.equal((await storedIds(join(dataDir, 'mooring.db'))).length, 60);
  });
});
