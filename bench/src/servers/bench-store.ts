/**
 * The store of a bench Mooring server: memory, a SQLite file in a fresh temporary directory
 * (removed by `cleanup`, and when the process exits), or the Redis store on a redis-server the
 * parent started.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StoreSpec } from '@mooring/server';

export function benchStore(
  kind: 'memory' | 'sqlite' | 'redis',
  redisUrl = '',
): { store: StoreSpec; cleanup(): void } {
  if (kind === 'redis') return { store: { kind: 'redis', url: redisUrl }, cleanup: () => {} };
  if (kind === 'memory') return { store: { kind: 'memory' }, cleanup: () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'mooring-bench-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  process.on('exit', cleanup);
  return { store: { kind: 'sqlite', path: join(dir, 'bench.db') }, cleanup };
}
