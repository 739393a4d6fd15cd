/**
 * `isStale` (scripts/build.ts): the tests of the built packages build only what changed since the
 * last build, so it must call a package stale whenever a build would differ from its `dist/`, or the
 * last build failed. Run on a tree of files in a temp folder whose times are set by hand (the
 * repository's own are never touched: other test files read its `dist/` meanwhile).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { buildPackage, isStale, PUBLISHED } from '../scripts/build.ts';

/** A file at `root/path`, last modified at second `at`. */
function file(root: string, path: string, at: number): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), '');
  utimesSync(join(root, path), at, at);
}

/** The repository's build inputs at second 100, every package built at second 200. */
function builtTree(): string {
  const root = mkdtempSync(join(tmpdir(), 'mooring-build-'));
  for (const path of ['tsconfig.json', 'package-lock.json', 'scripts/build.ts']) file(root, path, 100);
  for (const name of PUBLISHED) {
    for (const path of ['package.json', 'tsconfig.build.json', 'src/index.ts', 'src/deep/er/x.ts'])
      file(root, `packages/${name}/${path}`, 100);
    file(root, `packages/${name}/dist/.tsbuildinfo`, 200);
  }
  file(root, 'packages/server/src/store/redis/publish.lua', 100);
  return root;
}

const stale = (root: string) => PUBLISHED.filter((name) => isStale(name, root));

test('a package built after every input is not stale; one never built is', (t) => {
  const root = builtTree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  assert.deepEqual(stale(root), []);
  rmSync(join(root, 'packages/ai/dist'), { recursive: true });
  assert.deepEqual(stale(root), ['ai']);
});

test('a package is stale once a source (at any depth, a Lua script too) or its build config changed after its build', (t) => {
  const root = builtTree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  file(root, 'packages/client/src/deep/er/x.ts', 300);
  assert.deepEqual(stale(root), ['client']);
  file(root, 'packages/client/src/deep/er/x.ts', 100);
  file(root, 'packages/server/src/store/redis/publish.lua', 300);
  assert.deepEqual(stale(root), ['server']);
  file(root, 'packages/server/src/store/redis/publish.lua', 100);
  for (const path of ['package.json', 'tsconfig.build.json']) {
    file(root, `packages/react/${path}`, 300);
    assert.deepEqual(stale(root), ['react'], path);
    file(root, `packages/react/${path}`, 100);
  }
});

test("every package is stale once the repository's compiler options, lock file or build script changed", (t) => {
  const root = builtTree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  for (const path of ['tsconfig.json', 'package-lock.json', 'scripts/build.ts']) {
    file(root, path, 300);
    assert.deepEqual(stale(root), [...PUBLISHED], path);
    file(root, path, 100);
  }
});

test('a package built again makes every package after it stale, not those before', (t) => {
  const root = builtTree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  file(root, 'packages/server/dist/.tsbuildinfo', 300);
  assert.deepEqual(stale(root), PUBLISHED.slice(PUBLISHED.indexOf('server') + 1));
});

test('a build that failed leaves its package stale, though tsc wrote its build info', (t) => {
  const root = builtTree();
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'packages/protocol');
  writeFileSync(
    join(dir, 'tsconfig.build.json'),
    JSON.stringify({
      compilerOptions: {
        incremental: true,
        tsBuildInfoFile: 'dist/.tsbuildinfo',
        rootDir: 'src',
        outDir: 'dist',
        types: [],
      },
      include: ['src'],
    }),
  );
  writeFileSync(join(dir, 'src/index.ts'), "export const answer: number = 'forty-two';\n");
  for (const path of ['tsconfig.build.json', 'src/index.ts']) utimesSync(join(dir, path), 100, 100);
  process.stderr.write('  (the TS2322 error below is from the failing build this test makes)\n');
  assert.throws(() => buildPackage('protocol', root));
  assert.ok(isStale('protocol', root), 'a failed build passes for a build of the current sources');
});
