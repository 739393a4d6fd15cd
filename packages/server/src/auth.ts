/**
 * Who is calling, and what they may do (ARCHITECTURE.md §7, PROTOCOL.md §14).
 *
 * - API keys `<keyName>:<secret>` for trusted backends and agents, each with a capability (default:
 *   everything). A key may name any clientId (`?clientId=`): it is trusted.
 * - Tokens (JWT, see tokens.ts) for browsers: the clientId is the token's and cannot be changed; the
 *   capability is the token's, restricted by its signing key's.
 *
 * Credentials come from `Authorization: Basic|Bearer`, or `?key=` / `?token=` for clients that cannot
 * set headers (browser WebSocket, EventSource).
 */
import type { IncomingMessage } from 'node:http';
import { type Access, bothOf, Capability, type CapabilitySpec } from './capabilities.ts';
import { CLIENT_ID_RULE, isClientId } from './client-id.ts';
import type { Identity } from './connection-registry.ts';
import { safeEqual } from './safe-equal.ts';
import { ServerError } from './server-error.ts';
import { verifyToken } from './tokens.ts';

export interface ApiKey {
  name: string;
  secret: string;
  /** Channel glob → operations. Default: every operation on every channel. */
  capability?: CapabilitySpec;
}

export function parseApiKey(text: string): ApiKey {
  const i = text.indexOf(':');
  const name = text.slice(0, i);
  const secret = text.slice(i + 1);
  // the message never repeats the secret: start-up errors end up in logs
  if (i <= 0 || secret.length === 0 || /\s/.test(text))
    throw new Error(
      `an API key looks like <keyName>:<secret> without whitespace, got ${i > 0 ? `${JSON.stringify(name.slice(0, 40))}:` : ''}<${text.length - Math.max(i + 1, 0)} characters>${/\s/.test(text) ? ' with whitespace in it (a trailing newline from a secret file?)' : ''}`,
    );
  return { name, secret };
}

/** Secrets shorter than this are warned about at start: a token's HMAC can be guessed offline. */
export const SHORT_SECRET = 32;

/**
 * Checks an API key given as an object (as a string it was checked by `parseApiKey`): a name
 * without `:` or whitespace, a secret that is a non-empty string without whitespace, and a
 * capability that is absent or an object — `null`, `false` or `""` (a template's unset value) would
 * otherwise read as "every operation", and an empty secret would let anyone in and sign tokens.
 */
export function checkApiKey(key: ApiKey): void {
  const name: unknown = key?.name;
  if (typeof name !== 'string' || !/^[^:\s]+$/.test(name))
    throw new Error(
      `an API key's name is a non-empty string without ':' or whitespace, got ${JSON.stringify(name)}`,
    );
  if (typeof key.secret !== 'string' || key.secret.length === 0 || /\s/.test(key.secret))
    throw new Error(`API key ${name}: its secret must be a non-empty string without whitespace`);
  const capability: unknown = key.capability;
  if (
    capability !== undefined &&
    (typeof capability !== 'object' || capability === null || Array.isArray(capability))
  )
    throw new Error(
      `API key ${name}: its capability must be an object of channel glob → operations (leave it out for every operation), got ${JSON.stringify(capability)}`,
    );
}

interface KeyEntry {
  secret: Buffer;
  capability: Capability;
}

type Credential = { kind: 'key'; value: string } | { kind: 'token'; value: string };

export class Authenticator {
  readonly #keys = new Map<string, KeyEntry>();

  constructor(keys: ApiKey[]) {
    for (const key of keys) {
      checkApiKey(key);
      if (this.#keys.has(key.name))
        throw new Error(`API key ${key.name} is given twice: each key needs a name of its own`);
      const capability =
        key.capability === undefined
          ? Capability.all()
          : Capability.parse(key.capability, `capability of key ${key.name}`);
      this.#keys.set(key.name, { secret: Buffer.from(key.secret), capability });
    }
  }

  /** Authenticates an HTTP request (REST or a transport handshake). Throws `unauthorized` & co. */
  async authenticate(req: Pick<IncomingMessage, 'headers'>, url: URL): Promise<Identity> {
    const credential = credentialOf(req, url);
    if (credential === undefined)
      throw new ServerError(
        'unauthorized',
        'no credentials: send an API key (?key=<name>:<secret>) or a token (?token=<jwt>), or use Authorization',
      );
    const requested = url.searchParams.get('clientId') ?? req.headers['x-mooring-client-id'];
    const clientId = typeof requested === 'string' && requested !== '' ? requested : undefined;
    if (credential.kind === 'key') return this.#fromKey(credential.value, clientId);
    const identity = await this.verifyToken(credential.value);
    if (clientId !== undefined && clientId !== identity.clientId)
      throw new ServerError(
        'forbidden',
        'a token cannot choose its clientId: it is the one the token was issued for',
      );
    return identity;
  }

  /** Verifies a token into an identity (also used when a live connection renews its token). */
  async verifyToken(token: string): Promise<Identity> {
    const verified = await verifyToken(token, (name) => this.#keys.get(name)?.secret.toString());
    const key = this.#keys.get(verified.keyName)!;
    let capability: Capability;
    try {
      capability = Capability.parse(verified.capability, 'token capability');
    } catch (err) {
      // The claim is signed: a bad one is a bad credential (401), not a bad request the caller can fix.
      throw new ServerError('unauthorized', err instanceof Error ? err.message : 'invalid token capability');
    }
    const identity: Identity = {
      keyName: verified.keyName,
      access: bothOf(capability, key.capability),
      expiresAt: verified.expiresAt,
      viaToken: true,
    };
    if (verified.clientId !== undefined) identity.clientId = verified.clientId;
    if (verified.holder !== undefined) identity.holder = verified.holder;
    return identity;
  }

  /** Authenticates an API key only (token minting is for keys, not tokens). */
  authenticateKey(req: IncomingMessage, url: URL): { name: string; secret: string; access: Access } {
    const credential = credentialOf(req, url);
    if (credential?.kind !== 'key')
      throw new ServerError('unauthorized', 'this endpoint needs an API key, not a token');
    const identity = this.#fromKey(credential.value, undefined);
    return {
      name: identity.keyName,
      secret: credential.value.slice(identity.keyName.length + 1),
      access: identity.access,
    };
  }

  #fromKey(credential: string, clientId: string | undefined): Identity {
    const i = credential.indexOf(':');
    const name = credential.slice(0, i);
    const secret = Buffer.from(credential.slice(i + 1));
    const entry = i > 0 ? this.#keys.get(name) : undefined;
    if (!entry || !safeEqual(entry.secret, secret))
      throw new ServerError('unauthorized', 'invalid API key: check the key name and secret');
    const identity: Identity = { keyName: name, access: entry.capability, viaToken: false };
    if (clientId !== undefined) {
      if (!isClientId(clientId)) throw new ServerError('bad_request', CLIENT_ID_RULE);
      identity.clientId = clientId;
    }
    return identity;
  }
}

function credentialOf(req: Pick<IncomingMessage, 'headers'>, url: URL): Credential | undefined {
  const header = req.headers.authorization;
  if (header) {
    const [scheme, value] = header.split(' ', 2);
    if (value && scheme?.toLowerCase() === 'basic')
      return { kind: 'key', value: Buffer.from(value, 'base64').toString() };
    if (value && scheme?.toLowerCase() === 'bearer')
      return looksLikeJwt(value) ? { kind: 'token', value } : { kind: 'key', value };
  }
  const token = url.searchParams.get('token');
  if (token) return { kind: 'token', value: token };
  const key = url.searchParams.get('key');
  return key ? { kind: 'key', value: key } : undefined;
}

function looksLikeJwt(value: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value);
}
