/**
 * The browser app, bundled once at start with esbuild, in memory: `src/web/main.ts` (React) with
 * `@mooring/react`, `@mooring/client`, `@mooring/ai`, React and the AI SDK → `app.js` (+ its source
 * map), and the page and stylesheet as they are. Nothing is written to disk.
 *
 * The page uses the packages as built (`npm run build`, which `npm start` and `npm test` run first),
 * resolved through their `exports` as a user's bundler would, so the demo ships what users get. A
 * missing or stale build is an error that says so, never an old client served silently.
 */
import { readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export interface WebAsset {
  type: string;
  body: Uint8Array;
}

const WEB = new URL('./web/', import.meta.url);

const PACKAGES = fileURLToPath(new URL('../../../packages/', import.meta.url));
/** The packages the page bundles. */
const BUNDLED = ['protocol', 'client', 'ai', 'react'];

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

/** Throws when a bundled package has no build, or sources changed after it. */
export function assertBuilt(): void {
  for (const name of BUNDLED) {
    const built = join(PACKAGES, name, 'dist/.tsbuildinfo'); // touched by every `npm run build`
    let builtAt: number;
    try {
      builtAt = statSync(built).mtimeMs;
    } catch {
      throw new Error(`@mooring/${name} is not built (no ${built}): run \`npm run build\` first`);
    }
    if (newestMtime(join(PACKAGES, name, 'src')) > builtAt)
      throw new Error(`@mooring/${name} changed since it was built: run \`npm run build\` first`);
  }
}

/** Path (`/app.js`, …) → asset. */
export async function buildWebBundle(): Promise<Map<string, WebAsset>> {
  assertBuilt();
  const result = await build({
    entryPoints: [new URL('main.ts', WEB).pathname],
    bundle: true,
    format: 'esm',
    target: 'es2022',
    platform: 'browser',
    minify: true,
    sourcemap: 'linked',
    outfile: 'app.js', // names the outputs; `write: false` keeps them in memory
    write: false,
    // `@mooring/client` loads `ws` lazily in Node only; a browser uses its own WebSocket.
    external: ['ws'],
    define: { 'process.env.NODE_ENV': '"production"' }, // React's production build
    logLevel: 'silent',
  });
  const assets = new Map<string, WebAsset>();
  for (const file of result.outputFiles) {
    const name = file.path.slice(file.path.lastIndexOf('/'));
    const type = name.endsWith('.map') ? 'application/json' : 'text/javascript; charset=utf-8';
    assets.set(name, { type, body: file.contents });
  }
  assets.set('/', { type: 'text/html; charset=utf-8', body: await readFile(new URL('index.html', WEB)) });
  assets.set('/app.css', { type: 'text/css; charset=utf-8', body: await readFile(new URL('app.css', WEB)) });
  return assets;
}
