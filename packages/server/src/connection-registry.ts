/**
 * Connection identities and their recovery window (PROTOCOL.md §5.4).
 *
 * A connection's identity (connectionId, who it is) outlives its transport for
 * `connectionStateTtl`: a client that reconnects with `recover=<connectionKey>` in that window gets
 * the same connectionId back (presence membership does not flap). The key is `<id>.<secret>`, so an
 * id seen by others (presence) cannot be used to take a connection over.
 *
 * `ConnectionRegistry` is the seam: `LocalConnectionRegistry` keeps identities in this process (one
 * node); `RedisConnectionRegistry` (redis-registry.ts) keeps them in Redis so a key issued by one node
 * recovers the connection on any other.
 */
import { randomBytes } from 'node:crypto';
import type { Access } from './capabilities.ts';
import { safeEqual } from './safe-equal.ts';

export interface Identity {
  /** The API key (or token issuer key) that authenticated the connection. */
  keyName: string;
  clientId?: string;
  /**
   * A token without a clientId: which token (a short hash of it, tokens.ts). Its per-holder budgets
   * (publish and inbound rates, bodies read at once) are counted by it, not shared by the key's
   * anonymous tokens; what bounds those together (their connections, connection rate) stays per key.
   */
  holder?: string;
  /** What it may do. */
  access: Access;
  /** When its token expires (ms since 1970); absent for API keys. */
  expiresAt?: number;
  viaToken: boolean;
}

interface Held {
  secret: string;
  identity: Identity;
  /** Set while no transport holds the connection; the time after which it is forgotten. */
  expiresAt: number | undefined;
}

export interface OpenedConnection {
  connectionId: string;
  connectionKey: string;
  resumed: boolean;
  /**
   * A registry shared by nodes (Redis): this open's holder mark, `<node id>.<n>`, which a later
   * takeover elsewhere names when it tells this node to drop the transport (`replaced`).
   */
  holder?: string;
  /**
   * A takeover on a shared registry: the holder mark it replaced (another node's, or this one's),
   * present only while that open holds a transport (a release forgets its mark).
   */
  replaced?: string;
}

/**
 * Where connection identities live. `open` resolves a recovery key (or makes a new identity) before a
 * transport exists; `hold` marks it taken by a live transport; `release` starts its recovery window;
 * `discard` forgets it; `sweep` runs every heartbeat with the ids this node holds.
 */
export interface ConnectionRegistry {
  open(identity: Identity, recoverKey?: string): OpenedConnection | Promise<OpenedConnection>;
  hold(connectionId: string): void;
  /** The transport is gone; `holder`: the open it held (a shared registry forgets the mark then). */
  release(connectionId: string, holder?: string): void;
  /**
   * What `open` claimed will not open after all (refused by a budget, its socket gone first): a new
   * identity is forgotten; a recovery changes nothing (a shared registry gives the holder mark back
   * to the open it replaced, if no later recovery took it since).
   */
  unclaim(opened: OpenedConnection): void;
  discard(connectionId: string): void;
  sweep(held: Iterable<string>): void;
  close?(): void;
}

/** The node a holder mark (`OpenedConnection.holder`, `<node id>.<n>`) names. */
export function nodeOfHolder(holder: string): string {
  return holder.slice(0, holder.lastIndexOf('.'));
}

/** Splits `<id>.<secret>`; undefined for anything else. */
export function parseConnectionKey(key: string): { id: string; secret: string } | undefined {
  const dot = key.indexOf('.');
  if (dot <= 0 || dot === key.length - 1) return undefined;
  return { id: key.slice(0, dot), secret: key.slice(dot + 1) };
}

/** A new connection id and secret. */
export function newConnectionKey(): { connectionId: string; secret: string } {
  return {
    connectionId: `c_${randomBytes(9).toString('base64url')}`,
    secret: randomBytes(12).toString('base64url'),
  };
}

export class LocalConnectionRegistry implements ConnectionRegistry {
  readonly #held = new Map<string, Held>();
  readonly #ttl: number;
  readonly #now: () => number;

  constructor(ttlMs: number, now: () => number = Date.now) {
    this.#ttl = ttlMs;
    this.#now = now;
  }

  /**
   * Opens a connection, taking over `recoverKey`'s identity when it is still held and matches. The
   * identity starts in its recovery window until `hold` (a transport that never arrives leaks nothing).
   */
  open(identity: Identity, recoverKey?: string): OpenedConnection {
    // No sweep here: the heartbeat sweeps. A sweep per open made connecting N clients O(N²) — 7 % of
    // the server's profile at 10,000 connections. An expired identity is refused by its own check.
    if (recoverKey) {
      const [id, secret] = recoverKey.split('.', 2);
      const held = id === undefined ? undefined : this.#held.get(id);
      const now = this.#now();
      if (
        id !== undefined &&
        secret !== undefined &&
        held &&
        (held.expiresAt === undefined || held.expiresAt > now) &&
        safeEqual(held.secret, secret) &&
        held.identity.keyName === identity.keyName &&
        held.identity.clientId === identity.clientId
      ) {
        // a transport still holding it keeps it held until the takeover opens (or does not)
        if (held.expiresAt !== undefined) held.expiresAt = now + this.#ttl;
        return { connectionId: id, connectionKey: recoverKey, resumed: true };
      }
    }
    const { connectionId, secret } = newConnectionKey();
    this.#held.set(connectionId, { secret, identity, expiresAt: this.#now() + this.#ttl });
    return { connectionId, connectionKey: `${connectionId}.${secret}`, resumed: false };
  }

  /** A transport holds the connection: no expiry while it lives. */
  hold(connectionId: string): void {
    const held = this.#held.get(connectionId);
    if (held) held.expiresAt = undefined;
  }

  /** The transport is gone: keep the identity for the TTL. */
  release(connectionId: string, _holder?: string): void {
    const held = this.#held.get(connectionId);
    if (held) held.expiresAt = this.#now() + this.#ttl;
  }

  /** The client closed on purpose: forget at once. */
  discard(connectionId: string): void {
    this.#held.delete(connectionId);
  }

  unclaim(opened: OpenedConnection): void {
    if (!opened.resumed) this.discard(opened.connectionId);
  }

  sweep(_held?: Iterable<string>): void {
    const now = this.#now();
    for (const [id, held] of this.#held)
      if (held.expiresAt !== undefined && held.expiresAt <= now) this.#held.delete(id);
  }

  get size(): number {
    return this.#held.size;
  }
}
