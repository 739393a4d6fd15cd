/**
 * Connection identities in Redis (PROTOCOL.md §5.4, §15): a recovery key issued by one node recovers
 * the connection on any node, with the same connectionId, for `connectionStateTtl` after its
 * transport is gone — including when the node that held it died.
 *
 * One key per connection, `<prefix>:connection:<id>`, holding what a recovery checks — a SHA-256 of
 * the secret (Redis never sees the secret itself), the key name and the clientId — and who holds the
 * connection now: a holder mark, `<node id>.<n>`, new for every open. Expiry is Redis's: the key's
 * TTL. The node holding the transport refreshes it every heartbeat, so a live connection never
 * expires and one whose node died expires on its own one TTL after the node's last refresh. A
 * deliberate close deletes it.
 *
 * A recovery checks the key and takes the holder mark over in one script (TAKE), and answers the
 * mark it replaced: when that names another node, the caller tells that node its transport was
 * replaced (the old one may not have noticed it is dead, or it is a second client with the same
 * key), as a single node drops the old transport at a takeover. Recoveries racing through several
 * nodes are ordered by Redis: each is told the mark of the one before, so exactly the last keeps
 * the connection. (The secret's hash is compared in the script, in Redis: a timing difference there
 * could tell about the hash, never about the secret.)
 *
 * A Redis that lost the key of a connection whose transport lives (a FLUSHALL, a restore from an older
 * snapshot, a failover) would leave it unrecoverable for as long as it lives: the node keeps what it
 * wrote for each connection it holds, and the heartbeat's refresh writes the key again when it is
 * gone (REFRESH).
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
import { RedisScript, redisUnavailable } from './redis-script.ts';
import type { RedisConnection } from './store/redis-connection.ts';

export interface RedisConnectionRegistryOptions {
  connection: RedisConnection;
  prefix: string;
  /** connectionStateTtl, ms. */
  ttl: number;
  /** How often held identities are refreshed (the heartbeat), ms: the TTL is never shorter than 3 of them. */
  refreshEvery: number;
  /** This node's id on the node bus (holder marks start with it). */
  nodeId: string;
  onError: (err: unknown) => void;
}

interface StoredIdentity {
  /** SHA-256 of the secret, base64url. */
  s: string;
  k: string;
  c?: string;
  /** The holder mark of the open that holds the connection (absent: written by an older node). */
  n?: string;
}

/**
 * KEYS: the identity. ARGV: the secret's hash, keyName, '1' + clientId or '0', the new holder mark,
 * ttl ms. → false when absent or not matching (recovers nothing), else the mark it replaced ('' for
 * none), the key now holding the new mark.
 */
const TAKE = new RedisScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local ok, v = pcall(cjson.decode, raw)
if not ok or type(v) ~= 'table' or v.s ~= ARGV[1] or v.k ~= ARGV[2] then return false end
if ARGV[3] == '0' then
  if v.c ~= nil then return false end
elseif v.c ~= string.sub(ARGV[3], 2) then return false end
local replaced = v.n
if type(replaced) ~= 'string' then replaced = '' end
v.n = ARGV[4]
redis.call('SET', KEYS[1], cjson.encode(v), 'PX', ARGV[5])
return replaced
`);

/**
 * KEYS: the identity. ARGV: the mark to find, the mark to put in its place ('' for none), ttl ms or
 * '' (keep the expiry). Swaps only if the key still holds the first mark.
 */
const SWAP = new RedisScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, v = pcall(cjson.decode, raw)
if not ok or type(v) ~= 'table' or v.n ~= ARGV[1] then return 0 end
if ARGV[2] == '' then v.n = nil else v.n = ARGV[2] end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], cjson.encode(v), 'KEEPTTL')
else
  redis.call('SET', KEYS[1], cjson.encode(v), 'PX', ARGV[3])
end
return 1
`);

/**
 * KEYS: the identity. ARGV: its value as the holding node wrote it, ttl ms. Moves the expiry; writes
 * the key again if Redis lost it. → 1 when written again.
 */
const REFRESH = new RedisScript(`
if redis.call('PEXPIRE', KEYS[1], ARGV[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`);

export class RedisConnectionRegistry implements ConnectionRegistry {
  readonly #o: RedisConnectionRegistryOptions;
  readonly #ttl: number;
  #opens = 0;
  /** The connections whose transport this node holds: connection id → its key's value, with this open's mark. */
  readonly #held = new Map<string, { value: string; holder: string }>();

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
    const holder = `${this.#o.nodeId}.${++this.#opens}`;
    const parsed = recoverKey === undefined ? undefined : parseConnectionKey(recoverKey);
    if (parsed !== undefined && recoverKey !== undefined) {
      const key = this.#key(parsed.id);
      const client = identity.clientId === undefined ? '0' : `1${identity.clientId}`;
      const replaced = await TAKE.run(
        this.#o.connection,
        [key],
        [hash(parsed.secret), identity.keyName, client, holder, String(this.#ttl)],
      );
      if (typeof replaced === 'string') {
        this.#held.set(parsed.id, { value: storedIdentity(parsed.secret, identity, holder), holder });
        const opened: OpenedConnection = {
          connectionId: parsed.id,
          connectionKey: recoverKey,
          resumed: true,
          holder,
        };
        if (replaced !== '') opened.replaced = replaced;
        return opened;
      }
    }
    const { connectionId, secret } = newConnectionKey();
    const key = this.#key(connectionId);
    const value = storedIdentity(secret, identity, holder);
    // awaited: the key must exist before the client can learn it and present it elsewhere
    await this.#o.connection.send(key, ['SET', key, value, 'PX', String(this.#ttl)]);
    this.#held.set(connectionId, { value, holder });
    return { connectionId, connectionKey: `${connectionId}.${secret}`, resumed: false, holder };
  }

  hold(connectionId: string): void {
    this.#refresh(connectionId);
  }

  /** The transport is gone: its mark forgotten (no transport holds the connection), the TTL from now. */
  release(connectionId: string, holder?: string): void {
    this.#forget(connectionId, holder);
    if (holder === undefined) {
      this.#expireIn(connectionId, this.#ttl);
      return;
    }
    const key = this.#key(connectionId);
    // only if still its mark: a later open (taken over meanwhile) keeps its own, and its expiry
    SWAP.run(this.#o.connection, [key], [holder, '', String(this.#ttl)]).catch(this.#o.onError);
  }

  unclaim(opened: OpenedConnection): void {
    this.#forget(opened.connectionId, opened.holder);
    if (!opened.resumed) {
      this.discard(opened.connectionId);
      return;
    }
    if (opened.holder === undefined) return;
    const key = this.#key(opened.connectionId);
    SWAP.run(this.#o.connection, [key], [opened.holder, opened.replaced ?? '', '']).catch(this.#o.onError);
  }

  discard(connectionId: string): void {
    this.#held.delete(connectionId);
    const key = this.#key(connectionId);
    this.#o.connection.send(key, ['DEL', key]).catch(this.#o.onError);
  }

  /** Every heartbeat: the identities this node holds live on. */
  sweep(held: Iterable<string>): void {
    for (const id of held) this.#refresh(id);
  }

  /** The TTL from now; the key written again if Redis lost it (a transport of this node holds it). */
  #refresh(connectionId: string): void {
    const held = this.#held.get(connectionId);
    if (!held) {
      this.#expireIn(connectionId, this.#ttl);
      return;
    }
    REFRESH.run(this.#o.connection, [this.#key(connectionId)], [held.value, String(this.#ttl)]).catch(
      this.#o.onError,
    );
  }

  /** No transport of this node holds the connection (its open's, or any when `holder` is undefined). */
  #forget(connectionId: string, holder: string | undefined): void {
    if (holder === undefined || this.#held.get(connectionId)?.holder === holder)
      this.#held.delete(connectionId);
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

/** The identity key's value (StoredIdentity, JSON) for a connection with `secret`, held by `holder`. */
function storedIdentity(secret: string, identity: Identity, holder: string): string {
  const stored: StoredIdentity = { s: hash(secret), k: identity.keyName, n: holder };
  if (identity.clientId !== undefined) stored.c = identity.clientId;
  return JSON.stringify(stored);
}
