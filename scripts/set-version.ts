/**
 * `npm run set-version -- 0.2.0`: sets the version of every workspace package and every dependency
 * of one workspace package on another, so a release is one consistent set. Internal dependencies are
 * written as the exact version (the packages are released together). Then run `npm install` to
 * refresh package-lock.json and add a CHANGELOG.md section for the version.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SEMVER = /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/;
const DEPENDENCY_FIELDS = ['dependencies', 'devDependencies', 'peerDependencies', 'optionalDependencies'];

/** The workspace folders named by the root package.json (`packages/*`, `apps/*`, `bench`). */
export function workspaceDirs(root: string = ROOT): string[] {
  const { workspaces } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    workspaces: string[];
  };
  return workspaces.flatMap((pattern) => {
    if (!pattern.endsWith('/*')) return [pattern];
    const parent = pattern.slice(0, -2);
    return readdirSync(join(root, parent), { withFileTypes: true })
      .filter((e) => e.isDirectory() && existsSync(join(root, parent, e.name, 'package.json')))
      .map((e) => `${parent}/${e.name}`);
  });
}

export const WORKSPACE_DIRS = workspaceDirs();

type Manifest = { name: string; version: string } & Record<string, unknown>;

/** Rewrites the manifests under `root`; returns the names of the packages it changed. */
export function setVersion(root: string, version: string, dirs: string[] = WORKSPACE_DIRS): string[] {
  if (!SEMVER.test(version)) throw new Error(`not a version: ${JSON.stringify(version)} (want e.g. 0.2.0)`);
  const manifests = dirs.map((dir) => {
    const path = join(root, dir, 'package.json');
    return { path, json: JSON.parse(readFileSync(path, 'utf8')) as Manifest };
  });
  const names = new Set(manifests.map((m) => m.json.name));
  for (const { path, json } of manifests) {
    json.version = version;
    for (const field of DEPENDENCY_FIELDS) {
      const deps = json[field] as Record<string, string> | undefined;
      if (!deps) continue;
      for (const name of Object.keys(deps)) if (names.has(name)) deps[name] = version;
    }
    writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`);
  }
  return [...names];
}

if (import.meta.main) {
  const version = process.argv[2] ?? '';
  try {
    const changed = setVersion(ROOT, version);
    console.log(`set ${changed.length} packages to ${version}: ${changed.join(', ')}`);
    console.log('next: npm install (refreshes package-lock.json), then a CHANGELOG.md section');
  } catch (err) {
    console.error((err as Error).message);
    process.exit(1);
  }
}
