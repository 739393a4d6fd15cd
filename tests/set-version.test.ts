/**
 * `npm run set-version -- <version>`: one command sets every workspace package's version and every
 * internal dependency, so a release is one consistent set (run on copies of the real manifests).
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { setVersion, WORKSPACE_DIRS } from '../scripts/set-version.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
type Manifest = { name: string; version: string } & Record<string, Record<string, string> | string>;

test('sets every package and every internal dependency; refuses what is not a version', () => {
  const temp = mkdtempSync(join(tmpdir(), 'mooring-version-'));
  try {
    for (const dir of WORKSPACE_DIRS)
      cpSync(join(ROOT, dir, 'package.json'), join(temp, dir, 'package.json'));
    const names = setVersion(temp, '0.2.0-rc.1');
    assert.ok(names.includes('@mooring/server') && names.includes('@mooring/ai'));
    for (const dir of WORKSPACE_DIRS) {
      const m = JSON.parse(readFileSync(join(temp, dir, 'package.json'), 'utf8')) as Manifest;
      assert.equal(m.version, '0.2.0-rc.1', dir);
      for (const field of ['dependencies', 'devDependencies', 'peerDependencies']) {
        const deps = (m[field] ?? {}) as Record<string, string>;
        for (const [name, range] of Object.entries(deps))
          if (names.includes(name)) assert.equal(range, '0.2.0-rc.1', `${dir} ${field} ${name}`);
          else assert.notEqual(range, '0.2.0-rc.1', `${dir} ${field} ${name} is not ours`);
      }
    }
    assert.throws(() => setVersion(temp, 'v1'), /not a version/);
    assert.throws(() => setVersion(temp, ''), /not a version/);
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
});

test('the repository is one consistent set today', () => {
  const manifests = WORKSPACE_DIRS.map(
    (dir) => JSON.parse(readFileSync(join(ROOT, dir, 'package.json'), 'utf8')) as Manifest,
  );
  const names = new Set(manifests.map((m) => m.name));
  const version = manifests[0]!.version;
  for (const m of manifests) {
    assert.equal(m.version, version, m.name);
    for (const field of ['dependencies', 'devDependencies', 'peerDependencies']) {
      const deps = (m[field] ?? {}) as Record<string, string>;
      for (const [name, range] of Object.entries(deps))
        if (names.has(name)) assert.equal(range, version, `${m.name} ${field} ${name}`);
    }
  }
});
