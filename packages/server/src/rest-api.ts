/**
 * The REST API (PROTOCOL.md §11): publish and read channels without holding a connection — for
 * serverless agents, backends and tools. Every answer is JSON; every error is `{ error: ErrorInfo }`
 * with the matching HTTP status.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  errorInfo,
  formatSerial,
  isSerial,
  type Limits,
  type Message,
  type OperationInput,
  parseSerial,
} from '@mooring/protocol';
import { publishBodySchemaFor, tokenRequestSchema } from '@mooring/protocol/schemas';
import type { Logger } from 'pino';
import type { Authenticator } from './auth.ts';
import { type Access, Capability, type Operation, requireAccess } from './capabilities.ts';
import { assertChannelName, type ChannelService, checkOpCount } from './channel-service.ts';
import { DASHBOARD_CSP, DASHBOARD_HTML, DASHBOARD_SCRIPT, dashboardAsset } from './dashboard.ts';
import { channelHealthReport, conversationReport, seesSubscribers, troubleReport } from './health-report.ts';
import { holderKey, type RateBudgets } from './identity-budgets.ts';
import { type Pace, type PacedRead, paced } from './inbound-budget.ts';
import { exceedsDepth } from './json-depth.ts';
import type { MetricsHistory } from './metrics-history.ts';
import type { Presence } from './presence.ts';
import { isExpectedError, issueText, ServerError, toErrorInfo } from './server-error.ts';
import type { HistoryQuery } from './store/store.ts';
import { createToken, type TokenRequest } from './tokens.ts';
import { writeWithin } from './write-within.ts';

export interface RestApiOptions {
  channels: ChannelService;
  presence: Presence;
  auth: Authenticator;
  limits: Limits;
  /** Publish budgets per identity, shared with the identity's realtime connections. */
  budgets: RateBudgets;
  /** Reads a publish's body at its identity's inbound pace (`maxInboundBytesRate`). */
  paced?: PacedRead;
  logger: Logger;
  /** Serve `/metrics` without credentials (for a scraper on a private network). Default false. */
  publicMetrics?: boolean;
  /** Resolves when the store can serve; rejects otherwise. */
  ready: () => Promise<void>;
  /** The last hour of metrics, for the dashboard's charts (`/metrics/history`). */
  history?: MetricsHistory;
}

/**
 * A history page stops once its messages' data reaches this many bytes (always ≥ 1 message), and
 * the rest is one `next` away. PROTOCOL.md §10.
 */
export const HISTORY_PAGE_BYTES = 1024 * 1024;
/** A history response whose reader takes nothing for this long is dropped (it holds a read slot). */
const HISTORY_STALL_MS = 30_000;

const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'authorization, content-type, x-mooring-client-id',
  'access-control-max-age': '600',
};

export class RestApi {
  readonly #o: RestApiOptions;

  constructor(options: RestApiOptions) {
    this.#o = options;
  }

  /** Handles a request; never throws. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      await this.#route(req, res, url);
    } catch (err) {
      if (err instanceof RequestAborted) {
        // the client went away mid-body: nobody to answer, nothing went wrong here
        this.#o.logger.debug({ path: url.pathname }, 'request aborted by the client');
        res.destroy();
        return;
      }
      if (!isExpectedError(err)) this.#o.logger.error({ err, path: url.pathname }, 'request failed');
      const error = toErrorInfo(err);
      this.#o.channels.metrics.errors.inc({ code: error.code });
      send(res, error.status, { error });
    }
  }

  async #route(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') {
      res.writeHead(204, CORS_HEADERS).end();
      return;
    }
    const path = url.pathname;
    if (path === '/health') return only(method, 'GET', () => send(res, 200, { status: 'ok' }));
    if (path === '/dashboard' || path === '/dashboard.js') {
      return only(method, 'GET', () => {
        const html = path === '/dashboard';
        res
          .writeHead(200, {
            'content-type': html ? 'text/html; charset=utf-8' : 'text/javascript; charset=utf-8',
            'cache-control': 'no-store',
            'content-security-policy': DASHBOARD_CSP,
          })
          .end(html ? DASHBOARD_HTML : DASHBOARD_SCRIPT);
      });
    }
    if (path.startsWith('/dashboard/')) {
      return only(method, 'GET', async () => {
        const asset = await dashboardAsset(path);
        if (!asset) throw new ServerError('not_found', `no such file: ${path.slice(0, 200)}`);
        res
          .writeHead(200, {
            'content-type': asset.type,
            'cache-control': 'public, max-age=3600',
            'content-security-policy': DASHBOARD_CSP,
          })
          .end(asset.body);
      });
    }
    if (path === '/metrics/history') {
      return only(method, 'GET', async () => {
        if (!this.#o.publicMetrics) await this.#o.auth.authenticate(req, url);
        if (!this.#o.history) throw new ServerError('not_found', 'metrics history is off');
        send(res, 200, this.#o.history.snapshot());
      });
    }
    if (path === '/v1/health') {
      return only(method, 'GET', async () => {
        const identity = await this.#o.auth.authenticate(req, url);
        send(
          res,
          200,
          troubleReport(
            this.#o.channels,
            identity.access,
            url.searchParams.get('limit'),
            seesSubscribers(identity),
          ),
        );
      });
    }
    if (path === '/metrics') {
      return only(method, 'GET', async () => {
        if (!this.#o.publicMetrics) await this.#o.auth.authenticate(req, url);
        const { metrics } = this.#o.channels;
        const text = await metrics.text();
        res.writeHead(200, { 'content-type': metrics.contentType, 'cache-control': 'no-store' }).end(text);
      });
    }
    if (path === '/ready') {
      return only(method, 'GET', async () => {
        try {
          await this.#o.ready();
          send(res, 200, { status: 'ready' });
        } catch {
          send(res, 503, { error: errorInfo('store_unavailable', 'the store does not answer') });
        }
      });
    }
    if (path === '/v1/tokens') return only(method, 'POST', () => this.#mintToken(req, res, url));
    const match = /^\/v1\/channels\/([^/]+)(\/messages|\/presence|\/health|\/conversation)?$/.exec(path);
    if (!match) throw new ServerError('not_found', `no such endpoint: ${method} ${path.slice(0, 200)}`);
    const channel = decodeChannel(match[1]!);
    const identity = await this.#o.auth.authenticate(req, url);
    if (match[2] === '/health') {
      return only(method, 'GET', async () =>
        send(
          res,
          200,
          await channelHealthReport(
            this.#o.channels,
            this.#o.presence,
            identity.access,
            channel,
            holderKey(identity),
            seesSubscribers(identity),
          ),
        ),
      );
    }
    if (match[2] === '/conversation') {
      return only(method, 'GET', async () =>
        send(
          res,
          200,
          await conversationReport(
            this.#o.channels,
            identity.access,
            channel,
            url.searchParams.get('limit'),
            holderKey(identity),
          ),
        ),
      );
    }
    if (match[2] === '/presence') {
      return only(method, 'GET', async () => {
        requireEither(identity.access, channel, 'presence', 'subscribe');
        await this.#presence(res, channel, holderKey(identity));
      });
    }
    if (match[2]) {
      if (method === 'POST') {
        const read = (pace?: Pace) => this.#readBody(req, pace ? { pace } : undefined);
        const body = await (this.#o.paced ? this.#o.paced(identity, read) : read());
        // counted before validated: zod checks every item of a list, however many there are
        refuseTooManyOps(body, this.#o.limits.maxOpsPerPublish);
        // validated against the one form its shape asks for: a refusal names the field at fault
        const parsed = publishBodySchemaFor(body).safeParse(body);
        if (!parsed.success) {
          throw new ServerError('bad_request', issueText(parsed.error.issues, 'invalid body'));
        }
        const ops: OperationInput[] = Array.isArray(parsed.data)
          ? parsed.data
          : 'ops' in parsed.data
            ? (parsed.data.ops as OperationInput[])
            : [parsed.data as OperationInput];
        // one budget per identity: REST and the identity's connections draw from the same bucket
        await this.#o.budgets.take(identity, ops.length, ops);
        const after = Array.isArray(parsed.data) || !('ops' in parsed.data) ? undefined : parsed.data.after;
        const results = await this.#o.channels.publish(channel, ops, identity, after);
        send(res, 200, { channel, results });
        return;
      }
      return only(method, 'GET', () => {
        requireAccess(identity.access, channel, 'history');
        return this.#history(res, url, channel, holderKey(identity));
      });
    }
    return only(method, 'GET', async () => {
      requireEither(identity.access, channel, 'subscribe', 'history');
      const info = await this.#o.channels.info(channel);
      if (!info) throw new ServerError('channel_not_found', `channel ${channel} has no messages`);
      send(res, 200, { channel, epoch: info.epoch, position: info.head, messages: info.messageCount });
    });
  }

  /** `POST /v1/tokens` (API key only): `{ clientId?, capability?, ttl? }` → a signed token. */
  async #mintToken(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const key = this.#o.auth.authenticateKey(req, url);
    // every field is optional: no body at all asks for the defaults, as `{}` and `null` do
    const body = await this.#readBody(req, { empty: {} });
    const parsed = tokenRequestSchema.safeParse(body ?? {});
    if (!parsed.success) throw new ServerError('bad_request', issueText(parsed.error.issues, 'invalid body'));
    const request: TokenRequest = {};
    if (parsed.data.clientId !== undefined) request.clientId = parsed.data.clientId;
    if (parsed.data.ttl !== undefined) request.ttl = parsed.data.ttl;
    if (parsed.data.capability !== undefined) {
      Capability.parse(parsed.data.capability, 'capability');
      request.capability = parsed.data.capability;
    }
    send(res, 200, await createToken({ name: key.name, secret: key.secret }, request));
  }

  async #readBody(req: IncomingMessage, options?: { empty?: unknown; pace?: Pace }): Promise<unknown> {
    const body = await readJson(req, this.#o.limits.maxHttpBody, options);
    if (exceedsDepth(body, this.#o.limits.maxJsonDepth))
      throw new ServerError(
        'bad_request',
        `the body is nested deeper than ${this.#o.limits.maxJsonDepth} levels`,
      );
    return body;
  }

  /**
   * `GET …/presence`: the members as stored (their JSON, not parsed and written again), read while
   * holding a read slot as a history page is (a channel's members may hold
   * `maxPresenceMembers` × `maxPresenceBytesPerConnection`), and streamed member by member.
   */
  async #presence(res: ServerResponse, channel: string, reader: string): Promise<void> {
    const { presence } = this.#o;
    const release = await this.#o.channels.reads.acquire('bounded', reader);
    try {
      const members = presence.memberJsons
        ? await presence.memberJsons(channel)
        : (await presence.members(channel)).map((member) => JSON.stringify(member));
      const head = `{"channel":${JSON.stringify(channel)},"members":[`;
      await streamJson(res, head, members.length, (i) => members[i]!, ']}');
    } finally {
      release();
    }
  }

  /**
   * `GET …/messages`: one page bounded in count AND bytes, read while holding a read slot (at most a
   * few large reads at once; beyond a queue, `rate_limited`), and streamed message by message —
   * never one string for the whole page — yielding to the event loop between messages and waiting
   * for the reader to take each chunk.
   */
  async #history(res: ServerResponse, url: URL, channel: string, reader: string): Promise<void> {
    const q = url.searchParams;
    const limit = q.has('limit') ? Number(q.get('limit')) : 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      throw new ServerError('bad_request', 'limit must be an integer from 1 to 1000');
    const direction = q.get('direction') ?? 'backwards';
    if (direction !== 'backwards' && direction !== 'forwards')
      throw new ServerError('bad_request', "direction must be 'backwards' or 'forwards'");
    const from = serialParam(q, 'from');
    const until = serialParam(q, 'until');
    const query: HistoryQuery = { direction, limit, maxBytes: HISTORY_PAGE_BYTES };
    if (from !== undefined) query.from = from;
    if (until !== undefined) query.until = until;
    // held while the page streams, at its reader's pace: one reader's share of the slots is bounded
    const release = await this.#o.channels.reads.acquire('bounded', reader);
    try {
      const page = await this.#o.channels.history(channel, query);
      let next: string | undefined;
      const last = page.messages[page.messages.length - 1];
      if (page.more && last) {
        const params = new URLSearchParams(q);
        // never echo credentials into a link that ends up in logs, caches and Referer headers
        for (const secret of ['key', 'token', 'connectionKey']) params.delete(secret);
        const { epoch, seq } = parseSerial(last.serial)!;
        if (direction === 'backwards') params.set('until', formatSerial(epoch, seq - 1));
        else params.set('from', formatSerial(epoch, seq + 1));
        next = `/v1/channels/${encodeURIComponent(channel)}/messages?${params}`;
      }
      await streamPage(res, channel, page.epoch, page.head, page.messages, next);
    } finally {
      release();
    }
  }
}

/**
 * Writes `count` pieces of JSON (`piece(i)`, made as it is written) between `head` and `tail`, one
 * per write, waiting for the reader to take each and yielding to the event loop between them: an
 * answer nobody reads holds a piece and the socket's buffer, never the whole answer.
 */
async function streamJson(
  res: ServerResponse,
  head: string,
  count: number,
  piece: (i: number) => string,
  tail: string,
): Promise<void> {
  res.writeHead(200, {
    ...CORS_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  });
  if (!(await writeWithin(res, head, HISTORY_STALL_MS))) return;
  for (let i = 0; i < count; i++) {
    if (!(await writeWithin(res, (i > 0 ? ',' : '') + piece(i), HISTORY_STALL_MS))) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  res.end(tail);
}

/** Writes a history page as JSON, one message per chunk (see #history). */
async function streamPage(
  res: ServerResponse,
  channel: string,
  epoch: string,
  position: string,
  messages: Message[],
  next: string | undefined,
): Promise<void> {
  const head = `{"channel":${JSON.stringify(channel)},"epoch":${JSON.stringify(epoch)},"position":${JSON.stringify(position)},"items":[`;
  const tail = next === undefined ? ']}' : `],"next":${JSON.stringify(next)}}`;
  await streamJson(res, head, messages.length, (i) => JSON.stringify(messages[i]), tail);
}

function requireEither(access: Access, channel: string, a: Operation, b: Operation): void {
  if (!access.allows(channel, a)) requireAccess(access, channel, b);
}

async function only(method: string, allowed: string, handler: () => unknown): Promise<void> {
  if (method !== allowed) throw new ServerError('method_not_allowed', `use ${allowed} here`);
  await handler();
}

function decodeChannel(segment: string): string {
  let channel: string;
  try {
    channel = decodeURIComponent(segment);
  } catch {
    throw new ServerError('invalid_channel', 'the channel name in the path is not valid percent-encoding');
  }
  assertChannelName(channel);
  return channel;
}

function serialParam(q: URLSearchParams, name: string): string | undefined {
  const value = q.get(name);
  if (value === null) return undefined;
  if (!isSerial(value as unknown))
    throw new ServerError('invalid_serial', `${name} is not a serial: ${String(value).slice(0, 80)}`);
  return value;
}

export function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...CORS_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    // answered before its body was all read (refused as too large): the connection cannot carry
    // another request, so it is closed after this answer instead of drained to the body's end
    ...(unreadBodies.has(res.req) ? { connection: 'close' } : {}),
  });
  res.end(text);
}

/**
 * The client closed the connection before its request body was complete: not an error of the server
 * (never logged as one, never counted), and there is nobody left to answer.
 */
export class RequestAborted extends Error {
  constructor() {
    super('the request was aborted by the client');
    this.name = 'RequestAborted';
  }
}

/** Requests whose body was refused before it was all read: their connection is closed after the answer. */
const unreadBodies = new WeakSet<IncomingMessage>();

/** The rest of a refused body is read and dropped while the 413 goes out; `send` then closes the connection. */
function refuseBody(req: IncomingMessage): void {
  unreadBodies.add(req);
  req.resume();
}

/**
 * Reads a JSON body of at most `max` bytes; `body_too_large` beyond, `bad_request` if not JSON. A
 * body of no bytes is not JSON either, unless `empty` gives the value it stands for. With `pace`,
 * each piece is counted as it arrives and reading waits as long as `pace` says before the next one
 * (TCP then slows the sender).
 */
export async function readJson(
  req: IncomingMessage,
  max: number,
  options?: { empty?: unknown; pace?: Pace },
): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > max) {
    refuseBody(req);
    throw new ServerError('body_too_large', `the body is ${declared} bytes; at most ${max} are accepted`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) {
        refuseBody(req);
        throw new ServerError('body_too_large', `the body is over ${max} bytes`);
      }
      chunks.push(chunk);
      await paced(options?.pace, chunk.length);
    }
  } catch (err) {
    if (err instanceof ServerError) throw err;
    // the stream failed: the peer reset or aborted the request (ECONNRESET, 'aborted')
    throw new RequestAborted();
  }
  if (size === 0 && options && 'empty' in options) return options.empty;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ServerError('bad_request', 'the body is not valid JSON');
  }
}

/**
 * A publish body listing more operations than `max` (as a list, or `{ ops }`) is refused by its
 * length, with the message `ChannelService.publish` gives, before any operation is validated.
 */
function refuseTooManyOps(body: unknown, max: number): void {
  const ops =
    typeof body === 'object' && body !== null && !Array.isArray(body) && 'ops' in body
      ? (body as { ops: unknown }).ops
      : body;
  if (Array.isArray(ops) && ops.length > max) checkOpCount(ops.length, max);
}
