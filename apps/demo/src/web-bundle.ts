/**
 * The browser app, bundled once at start with esbuild, in memory: `src/web/main.ts` with
 * `@mooring/client` and `@mooring/ai` → `app.js` (+ its source map), and the page and stylesheet as
 * they are. Nothing is written to disk.
 */
import { readFile } from 'node:fs/promises';
import { build } from 'esbuild';

export interface WebAsset {
  type: string;
  body: Uint8Array;
}

const WEB = new URL('./web/', import.meta.url);

/** Path (`/app.js`, …) → asset. */
export async function buildWebBundle(): Promise<Map<string, WebAsset>> {
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
