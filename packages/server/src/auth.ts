/**
 * Who is calling. API keys (`<keyName>:<secret>`) for now; tokens (JWT, issue 5) will plug in here.
 * Credentials come from `Authorization: Basic|Bearer`, or `?key=` for clients that cannot set
 * headers (browser WebSocket).
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Identity } from './connection-registry.ts';
import { ServerError } from './server-error.ts';

const CLIENT_ID_RE = /^[^\s*?]{1,256}$/;

export interface ApiKey {
  name: string;
  secret: string;
}

export function parseApiKey(text: string): ApiKey {
  const i = text.indexOf(':');
  const name = text.slice(0, i);
  const secret = text.slice(i + 1);
  if (i <= 0 || secret.length === 0 || /\s/.test(text))
    throw new Error(`an API key looks like <keyName>:<secret>, got ${JSON.stringify(text.slice(0, 40))}`);
  return { name, secret };
}

export class Authenticator {
  readonly #keys = new Map<string, Buffer>();

  constructor(keys: ApiKey[]) {
    for (const key of keys) this.#keys.set(key.name, Buffer.from(key.secret));
  }

  /** Authenticates an HTTP request (REST or transport handshake). Throws `unauthorized`. */
  authenticate(req: IncomingMessage, url: URL): Identity {
    const credential = credentialOf(req, url);
    if (credential === undefined)
      throw new ServerError(
        'unauthorized',
        'no credentials: send an API key as ?key=<name>:<secret> or in Authorization',
      );
    const i = credential.indexOf(':');
    const name = credential.slice(0, i);
    const secret = Buffer.from(credential.slice(i + 1));
    const expected = i > 0 ? this.#keys.get(name) : undefined;
    if (!expected || expected.length !== secret.length || !timingSafeEqual(expected, secret))
      throw new ServerError('unauthorized', 'invalid API key: check the key name and secret');
    const identity: Identity = { keyName: name };
    const clientId = url.searchParams.get('clientId') ?? req.headers['x-mooring-client-id'];
    if (typeof clientId === 'string' && clientId !== '') {
      if (!CLIENT_ID_RE.test(clientId))
        throw new ServerError('bad_request', 'clientId must be 1-256 characters without spaces, * or ?');
      identity.clientId = clientId;
    }
    return identity;
  }
}

function credentialOf(req: IncomingMessage, url: URL): string | undefined {
  const header = req.headers.authorization;
  if (header) {
    const [scheme, value] = header.split(' ', 2);
    if (value && scheme?.toLowerCase() === 'basic') return Buffer.from(value, 'base64').toString();
    if (value && scheme?.toLowerCase() === 'bearer') return value;
  }
  return url.searchParams.get('key') ?? undefined;
}
