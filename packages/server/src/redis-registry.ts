/**
 * Connection identities in Redis (PROTOCOL.md §5.4, §15): a recovery key issued by one node recovers
 * the connection on any node, with the same connectionId, for `connectionStateTtl` after its
 * transport is gone — including when the node that held it died.
 *
 * One key per connection, `<prefix>:connection:<id>`, holding only what a recovery checks: a SHA-256
 * of the secret (compared in constant time; Redis never sees the secret itself), the key name and
 * the clientId. Expiry is Redis's: the key's TTL. The node holding the transport refreshes it every
 * heartbeat, so a live connection never expires and one whose node died expires on its own one TTL
 * after the node's last refresh. A deliberate close deletes it.
 *
 * Writes other than the recovery check are not awaited (a lost refresh costs at most an early
 * expiry); errors go to `onError`.
 */
import { createHash } from 'node:crypto';
import {
  type ConnectionRegistry,
  type Identity,
  newConnectionKey,
  type OpenedConnection,
  parseConnectionKey,
} from './connection-registry.ts';
import { redisUnavailable } from './redis-script.ts';
import { safeEqual } from './safe-equal.ts';
import type { RedisConnection } from './store/redis-connection.ts';

export interface RedisConnectionRegistryOptions {
  connection: RedisConnection;
  prefix: string;
  /** connectionStateTtl, ms. */
  ttl: number;
  /** How often held identities are refreshed (the heartbeat), ms: the TTL is never shorter than 3 of them. */
  refreshEvery: number;
  onError: (err: unknown) => void;
}

interface StoredIdentity {
  /** SHA-256 of the secret, base64url. */
  s: string;
  k: string;
  c?: string;
}

export class RedisConnectionRegistry implements ConnectionRegistry {
  readonly #o: RedisConnectionRegistryOptions;
  readonly #ttl: number;

  constructor(options: RedisConnectionRegistryOptions) {
    this.#o = options;
    this.#ttl = Math.max(options.ttl, 3 * options.refreshEvery);
  }

  async open(identity: Identity, recoverKey?: string): Promise<OpenedConnection> {
    try {
      return await this.#open(identity, recoverKey);
    } catch (err) {
      throw redisUnavailable(err, 'connection recovery');
    }
  }

  async #open(identity: Identity, recoverKey?: string): Promise<OpenedConnection> {
    const parsed = recoverKey === undefined ? undefined : parseConnectionKey(recoverKey);
    if (parsed !== undefined && recoverKey !== undefined) {
      const raw = await this.#o.connection.send(this.#key(parsed.id), ['GET', this.#key(parsed.id)], true);
      const stored = decode(raw);
      if (
        stored !== undefined &&
        safeEqual(stored.s, hash(parsed.secret)) &&
        stored.k === identity.keyName &&
        stored.c === identity.clientId
      ) {
        this.#expireIn(parsed.id, this.#ttl);
        return { connectionId: parsed.id, connectionKey: recoverKey, resumed: true };
      }
    }
    const { connectionId, secret } = newConnectionKey();
    const stored: StoredIdentity = { s: hash(secret), k: identity.keyName };
    if (identity.clientId !== undefined) stored.c = identity.clientId;
    const key = this.#key(connectionId);
    // awaited: the key must exist before the client can learn it and present it elsewhere
    await this.#o.connection.send(key, ['SET', key, JSON.stringify(stored), 'PX', String(this.#ttl)]);
    return { connectionId, connectionKey: `${connectionId}.${secret}`, resumed: false };
  }

  hold(connectionId: string): void {
    this.#expireIn(connectionId, this.#ttl);
  }

  release(connectionId: string): void {
    this.#expireIn(connectionId, this.#ttl);
  }

  discard(connectionId: string): void {
    const key = this.#key(connectionId);
    this.#o.connection.send(key, ['DEL', key]).catch(this.#o.onError);
  }

  /** Every heartbeat: the identities this node holds live on. */
  sweep(held: Iterable<string>): void {
    for (const id of held) this.#expireIn(id, this.#ttl);
  }

  #expireIn(connectionId: string, ms: number): void {
    const key = this.#key(connectionId);
    this.#o.connection.send(key, ['PEXPIRE', key, String(ms)]).catch(this.#o.onError);
  }

  #key(connectionId: string): string {
    return `${this.#o.prefix}:connection:${connectionId}`;
  }
}

function hash(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}

/** A stored identity, or undefined for a missing or unreadable key (which then recovers nothing). */
function decode(raw: unknown): StoredIdentity | undefined {
  if (raw === null || raw === undefined) return undefined;
  try {
    const value = JSON.parse(String(raw)) as Partial<StoredIdentity>;
    if (typeof value.s !== 'string' || typeof value.k !== 'string') return undefined;
    if (value.c !== undefined && typeof value.c !== 'string') return undefined;
    return value as StoredIdentity;
  } catch {
    return undefined;
  }
}
