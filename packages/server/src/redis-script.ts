/**
 * Runs a Lua script on the Redis node owning its first key: in full the first time on a connection
 * and after each reconnect (Redis may have restarted or failed over), then by SHA, and in full once
 * more when Redis answers that it forgot it (`SCRIPT FLUSH`, a Cluster master that never saw it),
 * which caches it again.
 * The scripts are kept as strings in the modules that use them, so a build needs no extra files.
 */
import { createHash } from 'node:crypto';
import type { RedisConnection } from './store/redis-connection.ts';
import { StoreError } from './store/store.ts';

export class RedisScript {
  readonly #text: string;
  readonly #sha: string;

  constructor(text: string) {
    this.#text = text;
    this.#sha = createHash('sha1').update(text).digest('hex');
  }

  /** The connections this script was sent on in full (EVAL), which cached it in Redis: at which epoch. */
  readonly #sentOn = new WeakMap<RedisConnection, number>();

  async run(connection: RedisConnection, keys: string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args];
    // The first run on a connection, and again once it reconnected (`scriptEpoch`: Redis may have
    // restarted), goes in full: a NOSCRIPT answer would send it again after the commands sent
    // behind it, out of the order callers rely on (a give-back after its write).
    const epoch = connection.scriptEpoch ?? 0;
    if (this.#sentOn.get(connection) !== epoch) {
      this.#sentOn.set(connection, epoch);
      return connection.send(keys[0], ['EVAL', this.#text, ...tail]);
    }
    try {
      return await connection.send(keys[0], ['EVALSHA', this.#sha, ...tail]);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT'))
        return connection.send(keys[0], ['EVAL', this.#text, ...tail]);
      throw err;
    }
  }
}

/** A Redis failure as the typed, retryable error a client gets (never a crash or an `internal`). */
export function redisUnavailable(err: unknown, what: string): StoreError {
  if (err instanceof StoreError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new StoreError('store_unavailable', `Redis is unavailable for ${what}: ${detail}; retry`);
}

/**
 * The wait before try `attempt` (1, 2, …) of a Redis write made again while Redis cannot answer (a
 * restart): 250 ms, doubling, 5 s at most.
 */
export function redisRetryDelay(attempt: number): number {
  return Math.min(5_000, 250 * 2 ** (attempt - 1));
}
