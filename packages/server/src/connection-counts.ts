/**
 * Where connection budgets are counted (PROTOCOL.md §10, §15): how many connections are open under
 * each budget name (a key, the tokens of a key, a key + clientId, a key's anonymous tokens; see
 * `ConnectionManager`). `LocalConnectionCounts` counts this process's connections (one node);
 * `RedisConnectionCounts` (redis-connection-counts.ts) counts every node's in Redis, so a client
 * spread over several nodes holds its budgets once, not once per node.
 */
import { ServerError } from './server-error.ts';

/** One budget a new connection must fit: its name, its limit, and how to name it in a refusal. */
export interface CountCheck {
  name: string;
  limit: number;
  what: string;
}

export interface ConnectionCounts {
  /**
   * Counts one more connection under every check's name if none is at its limit (checked and
   * counted in one step, so connections admitted together each see the others); else throws
   * `too_many_connections` and counts nothing. A promise where counts are shared (Redis).
   */
  take(checks: readonly CountCheck[]): void | Promise<void>;
  /**
   * Counts one more connection under each name, unchecked: one that is open already though its
   * admission's place was given back (it opened after `SEAT_TIMEOUT`, connection-manager.ts).
   */
  add(names: readonly string[]): void;
  /** Counts one connection less under each name (taken before). */
  give(names: readonly string[]): void;
  /** Stops timers; a shared implementation gives back what this node counted. */
  close?(): void | Promise<void>;
}

/** The refusal of a connection over `check`'s budget, which already has `open`. */
export function tooManyConnections(check: CountCheck, open: number, where = ''): ServerError {
  return new ServerError(
    'too_many_connections',
    `${check.what} already has ${open} connections${where} (limit ${check.limit}); close some, or retry later`,
  );
}

/** Open connections per budget name, for one process; also what a shared count keeps of its own node. */
export class LocalConnectionCounts implements ConnectionCounts {
  readonly #open = new Map<string, number>();

  take(checks: readonly CountCheck[]): void {
    for (const check of checks) {
      const open = this.#open.get(check.name) ?? 0;
      if (open >= check.limit) throw tooManyConnections(check, open);
    }
    this.add(checks.map((check) => check.name));
  }

  give(names: readonly string[]): void {
    for (const name of names) {
      const open = (this.#open.get(name) ?? 0) - 1;
      if (open > 0) this.#open.set(name, open);
      else this.#open.delete(name);
    }
  }

  add(names: readonly string[]): void {
    for (const name of names) this.#open.set(name, (this.#open.get(name) ?? 0) + 1);
  }

  entries(): IterableIterator<[string, number]> {
    return this.#open.entries();
  }
}
