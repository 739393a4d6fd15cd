/**
 * The Durable Streams reference server (`@durable-streams/server`, `DurableStreamTestServer`), in
 * memory or (argv `file`) file-backed in a fresh temporary directory removed on close: the peer of
 * Mooring's `/v1/stream/*` endpoint in the streams scenario.
 *
 *   node ds-reference-server.ts [memory|file]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DurableStreamTestServer } from '@durable-streams/server';
import { serveChild } from './server-child.ts';

const file = process.argv[2] === 'file';

await serveChild(async () => {
  const dir = file ? mkdtempSync(join(tmpdir(), 'ds-reference-bench-')) : undefined;
  const cleanup = (): void => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  const server = new DurableStreamTestServer({
    port: 0,
    host: '127.0.0.1',
    ...(dir ? { dataDir: dir } : {}),
  });
  const url = await server.start();
  return {
    port: Number(new URL(url).port),
    close: async () => {
      await server.stop();
      cleanup();
    },
  };
});
