/**
 * Token auth (ARCHITECTURE.md §7; PROTOCOL.md §5.1, §6.1, §8, §14): where the client's token comes from, when
 * it is renewed, and what an expired or refused token leads to.
 *
 *   before a connection attempt   a token that is still fresh (before its renewal point) is reused;
 *                                 otherwise `authCallback` / `authUrl` is asked for a new one. It
 *                                 goes on the handshake as `?token=` on every transport (a browser
 *                                 WebSocket cannot set headers), and on REST as `Authorization: Bearer`
 *   while connected               at the renewal point (80 % of the token's life, or 30 s before it
 *                                 expires if that is earlier — never before half of its life) a new
 *                                 token is fetched and sent as an `auth` frame: the server answers
 *                                 `authorized { expiresAt }` and the connection runs on — no reconnect,
 *                                 no state change. A failed renewal is retried with backoff until
 *                                 the token expires
 *   token_expired                 (handshake 401, an `error` frame, `disconnect` / close 4011) the
 *                                 token is dropped; the reconnect that follows fetches a new one and
 *                                 resumes as usual
 *   the source fails              (throws, unreachable, 5xx) `auth_failed`, retryable: the connection
 *                                 retries with its normal backoff and shows the error as the reason;
 *                                 401/403 from `authUrl` (or a callback error with `retryable: false`)
 *                                 is permanent: `failed`
 *
 * Expiry times come from the callback (`expiresAt`), else from the JWT's `exp` claim (decoded here,
 * not verified: the server verifies), and after a renewal from the server's `authorized` frame. They
 * are in the server's clock; the offset to the local clock is taken from the `connected` frame's
 * `serverTime`, so a client whose clock is wrong still renews in time.
 */
import type { ConnectedFrame, ServerFrame } from '@mooring/protocol';
import type { ConnectionStateChange } from './connection.ts';
import type { ConnectionState } from './connection-state-machine.ts';
import { errorInfoFromBody, MooringError } from './errors.ts';
import type { FetchLike } from './rest.ts';
import type { Timers } from './timers.ts';
import { TimerSlot } from './timers.ts';
import type { Timings } from './timings.ts';

/** A token and, optionally, when it expires (ms since 1970, the server's clock). */
export interface TokenDetails {
  token: string;
  expiresAt?: number;
}

/** Why a token is asked for: a connection attempt, a renewal over the live connection, or after the server said the token expired. */
export type AuthReason = 'connect' | 'renew' | 'expired';

export interface AuthCallbackParams {
  /** `options.clientId`, when given: the identity the token should be for. */
  clientId?: string;
  reason: AuthReason;
}

/**
 * Returns a token for the client: the JWT itself, or `{ token, expiresAt }` as `POST /v1/tokens` and
 * `createToken()` return it. Throwing is retried with backoff; throw an error with `status` 401 or
 * 403 (or a `MooringError` that is not retryable) to stop the connection (`failed`).
 */
export type AuthCallback = (
  params: AuthCallbackParams,
) => Promise<string | TokenDetails> | string | TokenDetails;

/** What the connection-side of token auth needs from the connection. */
export interface AuthConnection {
  readonly state: ConnectionState;
  send(frame: { type: 'auth'; token: string; ref: number }): boolean;
  nextRef(): number;
}

export interface TokenAuthDeps {
  /** Where new tokens come from; undefined for a fixed token (`options.token`), which cannot be renewed. */
  request: ((params: AuthCallbackParams) => Promise<TokenDetails>) | undefined;
  /** The fixed token, or none. */
  token?: string;
  clientId: string | undefined;
  timers: Timers;
  timings: Pick<Timings, 'realtimeRequestTimeout' | 'initialRetryDelay' | 'disconnectedRetryTimeout'>;
  connection: AuthConnection;
  /** A renewal problem while connected (no state change to carry it). */
  onError(error: MooringError): void;
}

interface TokenRecord {
  token: string;
  /** ms since 1970, server clock; undefined when unknown. */
  expiresAt: number | undefined;
  /** Local time the token was obtained. */
  obtainedAt: number;
}

/** Renew at 80 % of a token's life… */
const RENEW_FRACTION = 0.8;
/** …or this long before it expires, whichever is earlier… */
const RENEW_MARGIN = 30_000;
/** …but never before this fraction of its life (short tokens would otherwise renew in a loop). */
const MIN_RENEW_FRACTION = 0.5;
/** And never sooner than this after the last renewal was scheduled. */
const MIN_RENEW_DELAY = 500;
/** The longest delay setTimeout holds (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_DELAY = 2_147_483_647;

export class TokenAuth {
  readonly #deps: TokenAuthDeps;
  /** The newest token obtained. */
  #current: TokenRecord | undefined;
  /** The token of the latest handshake (`params()`). */
  #handshake: TokenRecord | undefined;
  /** The token the live connection runs on, as far as the client knows. */
  #onServer: TokenRecord | undefined;
  #fetching: Promise<TokenRecord> | undefined;
  /** Why the next token is asked for. */
  #nextReason: AuthReason = 'connect';
  /** serverTime − local time, from the latest `connected` frame. */
  #skew = 0;
  /** An `auth` frame waiting for its answer. */
  #inFlight: { ref: number; record: TokenRecord } | undefined;
  #renewing = false;
  #failures = 0;
  readonly #renewTimer: TimerSlot;
  readonly #answerTimer: TimerSlot;

  constructor(deps: TokenAuthDeps) {
    this.#deps = deps;
    this.#renewTimer = new TimerSlot(deps.timers);
    this.#answerTimer = new TimerSlot(deps.timers);
    if (deps.token !== undefined) {
      this.#current = {
        token: deps.token,
        expiresAt: jwtExpiry(deps.token),
        obtainedAt: deps.timers.now(),
      };
    }
  }

  /** The current token, if one was obtained. */
  get token(): string | undefined {
    return this.#current?.token;
  }

  /** When the current token expires (ms since 1970, server clock), when known. */
  get expiresAt(): number | undefined {
    return this.#current?.expiresAt;
  }

  /** Query parameters of a connection attempt: a fresh token (fetched if needed) and the clientId. */
  async params(): Promise<Record<string, string>> {
    const record = await this.#valid();
    this.#handshake = record;
    const params: Record<string, string> = { token: record.token };
    if (this.#deps.clientId !== undefined) params.clientId = this.#deps.clientId;
    return params;
  }

  /** `Authorization` header value for REST. */
  async authorization(): Promise<string> {
    return `Bearer ${(await this.#valid()).token}`;
  }

  /** The server said the token expired (REST, handshake, frames): the next use fetches a new one. */
  expired(): void {
    if (this.#deps.request === undefined) {
      // a fixed token cannot be renewed: the next attempt fails for good
      this.#current = undefined;
      return;
    }
    this.#current = undefined;
    this.#nextReason = 'expired';
  }

  /** A `connected` frame (a new connection, or a transport switch): schedule the renewal. */
  onConnected(frame: ConnectedFrame): void {
    if (typeof frame.serverTime === 'number' && frame.serverTime > 0)
      this.#skew = frame.serverTime - this.#deps.timers.now();
    this.#onServer = this.#handshake;
    this.#inFlight = undefined; // an answer on the previous transport will not come
    this.#answerTimer.clear();
    const current = this.#current;
    if (current !== undefined && current !== this.#onServer && this.#usable(current)) this.#send(current);
    else this.#schedule();
  }

  /** Takes `authorized` and the answers to `auth` frames; watches for `token_expired`. */
  onFrame(frame: ServerFrame): boolean {
    if (frame.type === 'authorized') {
      const inFlight = this.#inFlight;
      if (inFlight === undefined || frame.ref !== inFlight.ref) return true; // stale: ignore
      this.#inFlight = undefined;
      this.#answerTimer.clear();
      this.#failures = 0;
      if (typeof frame.expiresAt === 'number' && frame.expiresAt > 0)
        inFlight.record.expiresAt = frame.expiresAt;
      this.#onServer = inFlight.record;
      this.#schedule();
      return true;
    }
    if (frame.type !== 'error') return false;
    const inFlight = this.#inFlight;
    if (inFlight !== undefined && frame.ref === inFlight.ref) {
      this.#inFlight = undefined;
      this.#answerTimer.clear();
      const refused = MooringError.fromInfo(frame.error);
      if (refused.code === 'token_expired') {
        if (this.#current === inFlight.record) this.expired();
        this.#retryLater();
        return true;
      }
      // Refused for now (`rate_limited`: renewals count with the identity's connection requests):
      // the same token again after a backoff, the connection on its current one meanwhile.
      if (refused.retryable) {
        this.#deps.onError(
          new MooringError(
            refused.code,
            `the token renewal was refused for now (${refused.message}); retrying`,
            {
              status: refused.status,
              retryable: true,
              cause: refused,
            },
          ),
        );
        this.#retryLater();
        return true;
      }
      // Refused for good (another clientId, a key the server does not know): no retry loop. The
      // connection keeps its current token until it expires; the reconnect then shows the refusal.
      this.#deps.onError(
        new MooringError(
          refused.code,
          `the server refused the renewed token (${refused.message}); the connection runs on its ` +
            'current token until it expires',
          { status: refused.status, retryable: false, cause: refused },
        ),
      );
      return true;
    }
    if (frame.error.code === 'token_expired') {
      this.expired();
      void this.#renew();
    }
    return false;
  }

  onStateChange(change: ConnectionStateChange): void {
    if (change.current !== 'connected') {
      this.#renewTimer.clear();
      this.#answerTimer.clear();
      this.#inFlight = undefined;
    }
    const code = change.reason?.code;
    if (code === 'token_expired') this.expired();
    else if (
      change.current === 'failed' &&
      this.#deps.request !== undefined &&
      (code === 'unauthorized' || code === 'forbidden')
    )
      this.#current = undefined; // `connect()` after fixing the cause asks for a new token
  }

  /** A token that is still good for a new connection: fetched now if there is none or it is due for renewal. */
  #valid(): Promise<TokenRecord> {
    const current = this.#current;
    if (current !== undefined && (this.#deps.request === undefined || this.#usable(current)))
      return Promise.resolve(current);
    return this.#fetch(this.#nextReason);
  }

  #usable(record: TokenRecord): boolean {
    const at = this.#renewAt(record);
    return at === undefined || this.#deps.timers.now() < at;
  }

  /** Local time at which `record` should be replaced; undefined when its expiry is unknown. */
  #renewAt(record: TokenRecord): number | undefined {
    if (record.expiresAt === undefined) return undefined;
    const life = record.expiresAt - this.#skew - record.obtainedAt;
    const after = Math.max(life * MIN_RENEW_FRACTION, Math.min(life * RENEW_FRACTION, life - RENEW_MARGIN));
    return record.obtainedAt + after;
  }

  #fetch(reason: AuthReason): Promise<TokenRecord> {
    if (this.#fetching) return this.#fetching;
    const request = this.#deps.request;
    if (request === undefined) {
      return Promise.reject(
        new MooringError(
          'token_expired',
          'options.token has expired and cannot be renewed; use authCallback or authUrl for tokens that renew',
          { retryable: false },
        ),
      );
    }
    const { timers, timings } = this.#deps;
    const params: AuthCallbackParams = { reason };
    if (this.#deps.clientId !== undefined) params.clientId = this.#deps.clientId;
    const fetching = new Promise<TokenRecord>((resolve, reject) => {
      const timeout = timings.realtimeRequestTimeout;
      const timer = timers.setTimeout(
        () => reject(new MooringError('auth_failed', `no token from the auth source within ${timeout} ms`)),
        timeout,
      );
      Promise.resolve()
        .then(() => request(params))
        .then(
          (details) => {
            timers.clearTimeout(timer);
            resolve({
              token: details.token,
              expiresAt: earliest(details.expiresAt, jwtExpiry(details.token)),
              obtainedAt: timers.now(),
            });
          },
          (err: unknown) => {
            timers.clearTimeout(timer);
            reject(err);
          },
        );
    }).then(
      (record) => {
        if (this.#fetching === fetching) {
          this.#fetching = undefined;
          this.#current = record;
          this.#nextReason = 'connect';
        }
        return record;
      },
      (err: unknown) => {
        if (this.#fetching === fetching) this.#fetching = undefined;
        throw err;
      },
    );
    this.#fetching = fetching;
    return fetching;
  }

  /** Schedules the renewal of the token the connection runs on. */
  #schedule(): void {
    this.#renewTimer.clear();
    if (this.#deps.request === undefined || this.#deps.connection.state !== 'connected') return;
    const record = this.#onServer;
    const at = record === undefined ? undefined : this.#renewAt(record);
    if (at === undefined) return; // expiry unknown: the server's 4011 will say
    const delay = Math.max(MIN_RENEW_DELAY, at - this.#deps.timers.now());
    // timers hold at most ~24.8 days (a longer delay fires at once): wait in steps, then look again
    if (delay > MAX_TIMER_DELAY) this.#renewTimer.set(MAX_TIMER_DELAY, () => this.#schedule());
    else this.#renewTimer.set(delay, () => void this.#renew());
  }

  /** Gets a new token and hands it to the live connection (an `auth` frame). */
  async #renew(): Promise<void> {
    if (this.#renewing || this.#inFlight !== undefined) return;
    if (this.#deps.connection.state !== 'connected' || this.#deps.request === undefined) return;
    this.#renewing = true;
    let record: TokenRecord;
    try {
      const current = this.#current;
      record =
        current !== undefined && current !== this.#onServer && this.#usable(current)
          ? current
          : await this.#fetch('renew');
    } catch (err) {
      this.#renewing = false;
      this.#deps.onError(authFailure(err, 'renewing the token'));
      this.#retryLater();
      return;
    }
    this.#renewing = false;
    this.#send(record);
  }

  #send(record: TokenRecord): void {
    const connection = this.#deps.connection;
    if (connection.state !== 'connected') return; // the next connection's handshake carries it
    if (record === this.#onServer) {
      this.#schedule();
      return;
    }
    const ref = connection.nextRef();
    // Not sent (reconnecting, or switching transports): the next `connected` comes with it.
    if (!connection.send({ type: 'auth', token: record.token, ref })) return;
    this.#inFlight = { ref, record };
    const timeout = this.#deps.timings.realtimeRequestTimeout;
    this.#answerTimer.set(timeout, () => {
      if (this.#inFlight?.ref !== ref) return;
      this.#inFlight = undefined;
      this.#deps.onError(new MooringError('timeout', `no answer to the token renewal within ${timeout} ms`));
      this.#retryLater();
    });
  }

  /** A renewal failed: try again with backoff (the connection lives on its current token meanwhile). */
  #retryLater(): void {
    if (this.#deps.connection.state !== 'connected') return;
    this.#failures += 1;
    const { initialRetryDelay, disconnectedRetryTimeout } = this.#deps.timings;
    const delay = Math.min(disconnectedRetryTimeout, initialRetryDelay * 2 ** (this.#failures - 1));
    this.#renewTimer.set(delay, () => void this.#renew());
  }
}

/** `authCallback` as a token source: checks what it returns. */
export function callbackSource(
  callback: AuthCallback,
): (params: AuthCallbackParams) => Promise<TokenDetails> {
  return async (params) => {
    let result: unknown;
    try {
      result = await callback(params);
    } catch (err) {
      throw authFailure(err, 'authCallback');
    }
    const details = tokenDetails(result);
    if (details === undefined) {
      throw new MooringError(
        'auth_failed',
        `authCallback must return a token string or { token, expiresAt? }, got ${describe(result)}`,
        { retryable: false },
      );
    }
    return details;
  };
}

export interface AuthUrlOptions {
  url: string;
  /** Default GET. */
  method: 'GET' | 'POST';
  headers: Record<string, string> | undefined;
  /** Sent as query parameters (GET) or as the JSON body (POST), with `clientId` when given. */
  params: Record<string, string | number | boolean> | undefined;
  fetch: FetchLike;
}

/**
 * `authUrl` as a token source: GET (or POST) the URL; the answer is the JWT as text, or JSON — a
 * string, or `{ token, expiresAt? }` as `POST /v1/tokens` answers.
 */
export function authUrlSource(o: AuthUrlOptions): (params: AuthCallbackParams) => Promise<TokenDetails> {
  const base = resolveAuthUrl(o.url);
  return async ({ clientId }) => {
    const values: Record<string, string | number | boolean> = { ...o.params };
    if (clientId !== undefined && values.clientId === undefined) values.clientId = clientId;
    const url = new URL(base);
    const headers: Record<string, string> = { accept: 'application/json, text/plain', ...o.headers };
    const init: RequestInit = { method: o.method, headers, cache: 'no-store' };
    if (o.method === 'GET') {
      for (const [name, value] of Object.entries(values)) url.searchParams.set(name, String(value));
    } else {
      headers['content-type'] ??= 'application/json';
      init.body = JSON.stringify(values);
    }
    let res: Response;
    let text: string;
    try {
      res = await o.fetch(url.toString(), init);
      text = await res.text();
    } catch (err) {
      throw new MooringError('auth_failed', `authUrl ${o.url} could not be reached: ${message(err)}`, {
        cause: err,
      });
    }
    if (!res.ok) {
      let detail = text.slice(0, 200);
      try {
        detail = errorInfoFromBody(JSON.parse(text))?.message ?? detail;
      } catch {
        // not JSON: the text itself
      }
      const permanent = res.status === 401 || res.status === 403;
      throw new MooringError(
        'auth_failed',
        `authUrl ${o.url} answered HTTP ${res.status}${detail ? `: ${detail}` : ''}`,
        { status: res.status, retryable: !permanent },
      );
    }
    const trimmed = text.trim();
    let result: unknown = trimmed;
    if (trimmed.startsWith('{') || trimmed.startsWith('"')) {
      try {
        result = JSON.parse(trimmed);
      } catch {
        result = undefined;
      }
    }
    const details = tokenDetails(result);
    if (details === undefined || !looksLikeJwt(details.token)) {
      throw new MooringError(
        'auth_failed',
        `authUrl ${o.url} answered something that is not a token (expected the JWT as text, or ` +
          `{ "token": "…", "expiresAt": … }): ${JSON.stringify(trimmed.slice(0, 80))}`,
        { retryable: false },
      );
    }
    return details;
  };
}

/** Checks `authUrl` now (a relative URL is resolved against the page's). */
export function resolveAuthUrl(url: string): string {
  const page = (globalThis as { location?: { href?: string } }).location?.href;
  try {
    return new URL(url, page).toString();
  } catch {
    throw new MooringError(
      'bad_request',
      `invalid authUrl ${JSON.stringify(url)}; pass an absolute URL (or a path, in a browser)`,
    );
  }
}

/** The `exp` claim of a JWT in ms, decoded without verifying (the server verifies). */
export function jwtExpiry(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    const exp = (claims as { exp?: unknown } | null)?.exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The earlier of two expiry times. `createToken()` and `POST /v1/tokens` report `expiresAt` to the
 * millisecond while the JWT's `exp` (what the server enforces) is in whole seconds, rounded down.
 */
function earliest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}

function looksLikeJwt(value: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(value);
}

function tokenDetails(value: unknown): TokenDetails | undefined {
  if (typeof value === 'string') return value === '' ? undefined : { token: value };
  if (typeof value !== 'object' || value === null) return undefined;
  const { token, expiresAt } = value as { token?: unknown; expiresAt?: unknown };
  if (typeof token !== 'string' || token === '') return undefined;
  if (expiresAt === undefined || expiresAt === null) return { token };
  // a time, ms since 1970: NaN or Infinity would make the token look due for renewal at every use
  return typeof expiresAt === 'number' && Number.isFinite(expiresAt) ? { token, expiresAt } : undefined;
}

/**
 * A token source's failure as a `MooringError`: retryable (`auth_failed`), unless it says otherwise
 * (a `MooringError` that is not retryable, or an error with `status` 401 or 403).
 */
export function authFailure(err: unknown, what: string): MooringError {
  if (err instanceof MooringError) return err;
  const status = (err as { status?: unknown } | null)?.status;
  const permanent = status === 401 || status === 403;
  return new MooringError('auth_failed', `${what} failed: ${message(err)}`, {
    cause: err,
    retryable: !permanent,
    ...(typeof status === 'number' ? { status } : {}),
  });
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function describe(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? String(value);
  return `an object with keys ${JSON.stringify(Object.keys(value))}`;
}
