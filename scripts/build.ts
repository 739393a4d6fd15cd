/**
 * `npm run build`: every published package to JavaScript + `.d.ts` in its `dist/`, in dependency
 * order (each package compiles against the `.d.ts` of the ones it depends on, exactly as a user's
 * compiler will). Plain `tsc` with the repository's own compiler options: no bundler, one file out
 * per file in, source maps and declaration maps pointing back at `src/`. Incremental, so an
 * unchanged package costs a fraction of a second.
 *
 * `tsc` rewrites `./x.ts` to `./x.js` in the JavaScript it emits but not in declarations, so this
 * script rewrites relative specifiers in `.d.ts` files afterwards: a consumer's compiler must not
 * need `allowImportingTsExtensions`.
 */
import { execFileSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Dependency order: a package comes after everything it imports. */
export const PUBLISHED = ['protocol', 'client', 'testkit', 'server', 'ai', 'temporal', 'react'] as const;

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

function* declarationFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* declarationFiles(path);
    else if (entry.name.endsWith('.d.ts')) yield path;
  }
}

/** `from './x.ts'` / `import('./x.ts')` → `.js`, in relative specifiers only. */
export function rewriteDeclaration(text: string): string {
  return text.replace(/(['"])(\.\.?\/[^'"]*?)\.ts\1/g, '$1$2.js$1');
}

/** Every file under `dir` that `tsc` does not compile (the Redis store's Lua scripts), relative. */
function* assetFiles(dir: string, under = ''): Generator<string> {
  for (const entry of readdirSync(join(dir, under), { withFileTypes: true })) {
    const path = join(under, entry.name);
    if (entry.isDirectory()) yield* assetFiles(dir, path);
    else if (!entry.name.endsWith('.ts')) yield path;
  }
}

export function buildPackage(name: string, root = ROOT): void {
  const dir = join(root, 'packages', name);
  try {
    execFileSync(process.execPath, [TSC, '-p', join(dir, 'tsconfig.build.json')], { stdio: 'inherit' });
  } catch (err) {
    // tsc emits, and writes its build info, even when it reports errors: a failed build must not
    // pass for a build of the current sources (isStale), so its stamp goes back to the epoch.
    if (existsSync(join(dir, 'dist/.tsbuildinfo'))) utimesSync(join(dir, 'dist/.tsbuildinfo'), 0, 0);
    throw err;
  }
  // Files the code reads beside itself (`new URL('./redis/x.lua', import.meta.url)`) go to the same
  // place in dist, or the built package would look for them in vain.
  for (const asset of assetFiles(join(dir, 'src'))) {
    mkdirSync(dirname(join(dir, 'dist', asset)), { recursive: true });
    copyFileSync(join(dir, 'src', asset), join(dir, 'dist', asset));
  }
  for (const file of declarationFiles(join(dir, 'dist'))) {
    const text = readFileSync(file, 'utf8');
    const rewritten = rewriteDeclaration(text);
    if (rewritten !== text) writeFileSync(file, rewritten);
  }
  // The build info is the package's build stamp: touched on every build, even one that found nothing
  // to emit, so "sources newer than it" means exactly "changed since the last build".
  const now = new Date();
  utimesSync(join(dir, 'dist/.tsbuildinfo'), now, now);
}

/** The newest modification time of `path`, or of anything under it if it is a folder; 0 if absent. */
function newestUnder(path: string): number {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(path);
  } catch {
    return 0;
  }
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = 0;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestUnder(join(path, entry)));
  return newest;
}

/**
 * Whether a build of `name` would not be the one in its `dist/`: it has no build stamp, or something
 * its build reads changed after the stamp — its sources (Lua scripts included), its package.json or
 * build config, the repository's tsconfig.json or lock file (the compiler and the types), this
 * script, or the stamp of a package before it in PUBLISHED (whose declarations it may compile
 * against; rebuilt, that one's stamp is newer).
 */
export function isStale(name: (typeof PUBLISHED)[number], root = ROOT): boolean {
  const dir = join(root, 'packages', name);
  const stamp = newestUnder(join(dir, 'dist/.tsbuildinfo'));
  if (stamp === 0) return true;
  const before = PUBLISHED.slice(0, PUBLISHED.indexOf(name));
  const inputs = [
    join(dir, 'src'),
    join(dir, 'package.json'),
    join(dir, 'tsconfig.build.json'),
    join(root, 'tsconfig.json'),
    join(root, 'package-lock.json'),
    join(root, 'scripts/build.ts'),
    ...before.map((other) => join(root, 'packages', other, 'dist/.tsbuildinfo')),
  ];
  return inputs.some((input) => newestUnder(input) > stamp);
}

/**
 * Builds the published packages that are stale (`isStale`), in dependency order: what the tests of
 * the built packages call first. `npm test` has just run `npm run build`, and `tsc`, incremental as
 * it is, loads the whole program before it finds nothing to do (about 20 s of CPU for the seven
 * packages): built again by each such test file, that was a minute of the run doing nothing.
 */
export function buildStale(): void {
  for (const name of PUBLISHED) if (isStale(name)) buildPackage(name);
}

if (import.meta.main) {
  const only = process.argv.slice(2);
  for (const name of PUBLISHED) {
    if (only.length > 0 && !only.includes(name)) continue;
    const started = performance.now();
    buildPackage(name);
    console.log(`built @mooring/${name} (${Math.round(performance.now() - started)} ms)`);
  }
}
