/** Makes a store from a plain description (CLI, config file, tests). */
import { join } from 'node:path';
import { MemoryStore } from './memory-store.ts';
import type { RetentionFor, Store } from './store.ts';

export type StoreSpec =
  | { kind: 'memory' }
  /** `path` is the database file; `dataDir` puts `mooring.db` in that folder. */
  | { kind: 'sqlite'; path?: string; dataDir?: string; synchronous?: 'normal' | 'full' };

export async function createStore(spec: StoreSpec, retentionFor: RetentionFor): Promise<Store> {
  if (spec.kind === 'memory') return new MemoryStore({ retentionFor });
  const path = spec.path ?? join(spec.dataDir ?? '.mooring', 'mooring.db');
  const { SqliteStore } = await import('./sqlite-store.ts');
  return new SqliteStore({
    path,
    retentionFor,
    ...(spec.synchronous ? { synchronous: spec.synchronous } : {}),
  });
}
