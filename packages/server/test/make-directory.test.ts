/**
 * The data folder is made level by level: `--data` under `/proc` (where every level answers ENOENT
 * with its parent there, and Node's own recursive mkdir retries for ever) is refused at start with
 * the path in the error, never a server that hangs before it listens.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeDirectory } from '../src/make-directory.ts';
import { startServer } from '../src/server.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mooring-mkdir-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('makeDirectory', () => {
  it('makes every missing level, and a folder already there is fine', () => {
    const deep = join(dir, 'a', 'b', 'c');
    makeDirectory(deep);
    assert.ok(statSync(deep).isDirectory());
    makeDirectory(deep);
    makeDirectory(join(dir, 'a'));
    assert.ok(statSync(deep).isDirectory());
  });

  it('refuses a file in the way, at the level or above it', () => {
    const file = join(dir, 'file');
    writeFileSync(file, 'x');
    assert.throws(() => makeDirectory(file), { code: 'EEXIST' });
    assert.throws(() => makeDirectory(join(file, 'below')), { code: 'ENOTDIR' });
  });
});

describe('a data folder that cannot be made (under /proc)', { skip: !existsSync('/proc/self') }, () => {
  it('makeDirectory throws ENOENT naming the path', () => {
    assert.throws(() => makeDirectory('/proc/mooring-nowhere/data'), {
      code: 'ENOENT',
      message: /\/proc\/mooring-nowhere/,
    });
  });

  it('the SQLite store refuses it as store_unavailable', () => {
    assert.throws(() => new SqliteStore({ path: '/proc/mooring-nowhere/mooring.db' }), {
      code: 'store_unavailable',
    });
  });

  for (const key of [undefined, 'ops:mkdir-secret']) {
    it(`mooring serve --data /proc/… exits with the path in its error (${key ? 'with a key' : 'dev key'})`, () => {
      const { NODE_OPTIONS: _, MOORING_KEY: __, ...env } = process.env;
      const r = spawnSync(
        process.execPath,
        [CLI, 'serve', '--port', '0', '--data', '/proc/mooring-nowhere'],
        {
          env: key ? { ...env, MOORING_KEY: key } : env,
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
      assert.equal(r.signal, null, 'the server hung at start');
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /ENOENT.*\/proc\/mooring-nowhere/);
    });
  }
});

describe('an empty SQLite path or data folder (an unset variable)', () => {
  for (const store of [
    { kind: 'sqlite', path: '' },
    { kind: 'sqlite', dataDir: '' },
  ] as const) {
    it(`startServer refuses ${JSON.stringify(store)}, naming it, instead of a file in the current folder`, async () => {
      await assert.rejects(
        startServer({ port: 0, keys: ['a:b'], store, logger: 'silent' }),
        new RegExp(`the SQLite store's ${'path' in store ? 'path' : 'dataDir'} is empty`),
      );
    });
  }
});
