/** Makes a store from a plain description (CLI, config file, tests). */
import { join } from 'node:path';
import { MemoryStore } from './memory-store.ts';
import type { RetentionFor, Store } from './store.ts';

export type StoreSpec =
  | { kind: 'memory' }
  /** `path` is the database file; `dataDir` puts `mooring.db` in that folder. */
  | {
      kind: 'sqlite';
      path?: string;
      dataDir?: string;
      synchronous?: 'normal' | 'full';
      /** Every channel in a new epoch at open (after restoring a backup of the file). */
      newEpochs?: boolean;
    }
  /**
   * `url`: `redis://host:port`; `prefix` of every key (default `mooring`); `commandTimeout`: deadline
   * of one Redis command in ms (default 5,000), past which calls fail with `store_unavailable`.
   */
  | { kind: 'redis'; url: string; prefix?: string; commandTimeout?: number };

/** Where a store reports what it cannot return to a caller (garbage in Redis keys, reconnects). */
export interface StoreLog {
  warn(detail: Record<string, unknown>, message: string): void;
  error(detail: Record<string, unknown>, message: string): void;
}

export async function createStore(
  spec: StoreSpec,
  retentionFor: RetentionFor,
  log?: StoreLog,
): Promise<Store> {
  if (spec.kind === 'memory') return new MemoryStore({ retentionFor });
  if (spec.kind === 'redis') {
    const { RedisStore } = await import('./redis-store.ts');
    return RedisStore.open({
      url: spec.url,
      retentionFor,
      ...(spec.prefix === undefined ? {} : { prefix: spec.prefix }),
      ...(spec.commandTimeout === undefined ? {} : { commandTimeout: spec.commandTimeout }),
      onCorrupt: (channel, detail) =>
        log?.error({ channel, detail }, 'Redis keys of this channel hold data Mooring did not write'),
      onError: (err) => log?.warn({ err }, 'Redis connection problem'),
      onWarning: (message, err) => log?.warn({ err }, message),
    });
  }
  // an empty value (an unset variable) is refused, never read as "the current folder"
  if (spec.path === '' || spec.dataDir === '')
    throw new TypeError(
      `the SQLite store's ${spec.path === '' ? 'path' : 'dataDir'} is empty: give a file (path) or a folder (dataDir)`,
    );
  const path = spec.path ?? join(spec.dataDir ?? '.mooring', 'mooring.db');
  const { SqliteStore } = await import('./sqlite-store.ts');
  return new SqliteStore({
    path,
    retentionFor,
    ...(spec.synchronous ? { synchronous: spec.synchronous } : {}),
    ...(spec.newEpochs ? { newEpochs: true } : {}),
  });
}
