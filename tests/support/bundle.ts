/**
 * A browser bundle as a user's bundler makes it: the given module source bundled by esbuild from the
 * built packages (through their `exports`), minified, for the browser; measured minified and
 * min+gzip, with the list of the files that went in (to prove what did not).
 */
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const KB = 1024;

export interface Bundle {
  minified: number;
  gzipped: number;
  inputs: string[];
}

export async function bundle(source: string, external: string[]): Promise<Bundle> {
  const result = await build({
    stdin: { contents: source, resolveDir: ROOT, loader: 'js' },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    metafile: true,
    // `ws` is loaded lazily by the client in Node only; a browser uses its own WebSocket.
    external: ['ws', ...external],
    logLevel: 'silent',
  });
  const code = result.outputFiles[0]!.contents;
  return {
    minified: code.length,
    gzipped: gzipSync(code, { level: 9 }).length,
    inputs: Object.keys(result.metafile.inputs),
  };
}
