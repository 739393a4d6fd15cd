/**
 * Tokens for browsers (ARCHITECTURE.md §7, PROTOCOL.md §14): JWTs signed with an API key's secret (HS256 only),
 * `kid` = the key's name, claims `clientId`, `capability`, `exp` (required), `iat`, optional `nbf`;
 * a token minted here without a clientId also carries a random `jti`.
 * Application backends mint them with `createToken()` (or `POST /v1/tokens`, or `mooring token`),
 * signed by `jose`. A token can never do more than the key that signed it.
 *
 * The server verifies a token only in the exact form it was signed in: three base64url parts, the
 * signature the 43 characters of its HMAC-SHA256, compared whole (`verifyToken`). A lenient decoder
 * (`jose`'s skips whitespace anywhere in a part, and takes the spare low bits of the last character
 * and a trailing `=`) verifies endless spellings of one token, and a token without a clientId is
 * its holder's identity for budgets, named by its signature's text: one holder could have spoken
 * as many. The HMAC is computed here with `node:crypto` (a few µs; `jose`'s WebCrypto verify took
 * ~60 µs of the event loop, a quarter of a handshake's CPU in a reconnect storm); the header and
 * claims are parsed by `jose`.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import type { ApiKey } from './auth.ts';
import { CLIENT_ID_RULE, isClientId } from './client-id.ts';
import { ServerError } from './server-error.ts';

export interface TokenRequest {
  /** The identity the token's holder publishes as. Without one, the holder is anonymous. */
  clientId?: string;
  /** Channel glob → operations. Default: everything the signing key may do. */
  capability?: Record<string, readonly string[]>;
  /** Lifetime in ms. Default 1 h; at most 24 h. */
  ttl?: number;
}

export interface MintedToken {
  token: string;
  /** ms since 1970. */
  expiresAt: number;
  clientId?: string;
  capability: Record<string, readonly string[]>;
}

export interface VerifiedToken {
  keyName: string;
  clientId?: string;
  /**
   * A token without a clientId: the token itself, as a short hash of its signature. Its holder's
   * budgets are counted by it (PROTOCOL.md §10), so one anonymous holder cannot spend another's.
   */
  holder?: string;
  capability: unknown;
  expiresAt: number;
}

export const DEFAULT_TOKEN_TTL = 60 * 60 * 1000;
export const MAX_TOKEN_TTL = 24 * 60 * 60 * 1000;

/** Signs a token with an API key (`<keyName>:<secret>`). For application backends. */
export async function createToken(
  key: ApiKey | string,
  request: TokenRequest = {},
  now = Date.now(),
): Promise<MintedToken> {
  const apiKey = typeof key === 'string' ? splitKey(key) : key;
  const ttl = request.ttl ?? DEFAULT_TOKEN_TTL;
  if (!Number.isFinite(ttl) || ttl < 1_000 || ttl > MAX_TOKEN_TTL)
    throw new ServerError('bad_request', `ttl must be between 1 s and 24 h (in ms), got ${ttl}`);
  if (request.clientId !== undefined && !isClientId(request.clientId))
    throw new ServerError('bad_request', CLIENT_ID_RULE);
  const capability = request.capability ?? { '*': ['*'] };
  // `exp` has whole seconds: report exactly the instant the server will enforce
  const expiresAt = Math.floor((now + ttl) / 1000) * 1000;
  const claims: Record<string, unknown> = { capability };
  if (request.clientId !== undefined) claims.clientId = request.clientId;
  // without a clientId the token itself is its holder's identity for budgets (`holderOf`): two
  // visitors given tokens in the same second for the same capability must not get the same token
  else claims.jti = randomBytes(12).toString('base64url');
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', kid: apiKey.name, typ: 'JWT' })
    .setIssuedAt(Math.floor(now / 1000))
    .setExpirationTime(expiresAt / 1000)
    .sign(Buffer.from(apiKey.secret));
  const minted: MintedToken = { token, expiresAt, capability };
  if (request.clientId !== undefined) minted.clientId = request.clientId;
  return minted;
}

/**
 * A compact JWS as `createToken` writes it: header and payload in base64url (no padding), and a
 * signature of 43 base64url characters, which 32 bytes of HMAC-SHA256 are.
 */
const COMPACT_HS256 = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})$/;

/**
 * Verifies a token against the configured keys; throws `unauthorized` (also for a missing
 * `capability` claim or an invalid `clientId` claim) or `token_expired`.
 */
export async function verifyToken(
  token: string,
  secretOf: (keyName: string) => string | undefined,
): Promise<VerifiedToken> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new ServerError('unauthorized', 'the token is not a JWT');
  }
  const kid = header.kid;
  const secret = kid === undefined ? undefined : secretOf(kid);
  if (kid === undefined || secret === undefined)
    throw new ServerError(
      'unauthorized',
      'the token is not signed by a key this server knows (check its kid)',
    );
  if (header.alg !== 'HS256') throw new ServerError('unauthorized', 'tokens must be signed with HS256');
  if (header.crit !== undefined)
    throw new ServerError(
      'unauthorized',
      'the token names header parameters this server does not know (crit)',
    );
  const parts = COMPACT_HS256.exec(token);
  if (!parts)
    throw new ServerError(
      'unauthorized',
      'the token is not in compact form: three base64url parts without padding or spaces',
    );
  const expected = createHmac('sha256', secret).update(`${parts[1]}.${parts[2]}`).digest('base64url');
  // the text, not the bytes it decodes to: one signature has one spelling
  if (!timingSafeEqual(Buffer.from(expected), Buffer.from(parts[3]!)))
    throw new ServerError('unauthorized', 'the token signature does not verify');
  let payload: ReturnType<typeof decodeJwt>;
  try {
    payload = decodeJwt(token);
  } catch {
    throw new ServerError('unauthorized', 'the token payload is not a JSON object');
  }
  const now = Math.floor(Date.now() / 1000);
  // JSON numbers only (`Number.isFinite` is false for text, and for 1e999, which JSON reads as Infinity)
  const { exp, iat, nbf } = payload;
  if (!Number.isFinite(exp))
    throw new ServerError('unauthorized', 'the token is not valid: exp must be a number of seconds');
  if (iat !== undefined && !Number.isFinite(iat))
    throw new ServerError('unauthorized', 'the token is not valid: iat must be a number of seconds');
  if (nbf !== undefined && !Number.isFinite(nbf))
    throw new ServerError('unauthorized', 'the token is not valid: nbf must be a number of seconds');
  if (nbf !== undefined && nbf > now)
    throw new ServerError('unauthorized', 'the token is not valid yet (nbf)');
  if ((exp as number) <= now) throw new ServerError('token_expired', 'the token has expired: get a new one');
  const verified: VerifiedToken = {
    keyName: kid,
    capability: payload.capability,
    expiresAt: (exp as number) * 1000,
  };
  if (payload.capability === undefined)
    throw new ServerError('unauthorized', 'the token has no capability claim');
  if (payload.clientId !== undefined) {
    // A token is a credential: a bad claim makes it invalid (401), like a bad signature.
    if (!isClientId(payload.clientId))
      throw new ServerError('unauthorized', `the token's clientId is not valid: ${CLIENT_ID_RULE}`);
    verified.clientId = payload.clientId;
  } else verified.holder = holderOf(token);
  return verified;
}

/**
 * The holder a verified token without a clientId stands for: a short hash (96 bits) of its
 * signature, so of the token itself (the signature covers header and claims). Not secret-bearing:
 * it names the token in budget keys (also in Redis) without being usable as a credential.
 */
function holderOf(token: string): string {
  const signature = token.slice(token.lastIndexOf('.') + 1);
  return createHash('sha256').update(signature).digest('base64url').slice(0, 16);
}

function splitKey(text: string): ApiKey {
  const i = text.indexOf(':');
  if (i <= 0 || i === text.length - 1) throw new Error('an API key looks like <keyName>:<secret>');
  return { name: text.slice(0, i), secret: text.slice(i + 1) };
}
