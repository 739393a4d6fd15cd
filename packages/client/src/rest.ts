/**
 * REST (PROTOCOL.md §11): publishing and history for code that does not hold a connection — an agent
 * in a serverless function, a backend job, a page loading history after `continuityLost`.
 *
 * Publishes get operation ids when they have none, so a retried request (the client retries network
 * failures and retryable errors a few times, with the same body) is stored once.
 */
import type {
  ChannelStatusResponse,
  HistoryResponse,
  Message,
  OperationInput,
  PublishResponse,
  PublishResult,
} from '@mooring/protocol';
import { markRolledUp } from './apply-message.ts';
import { codeForHttpStatus, errorInfoFromBody, MooringError } from './errors.ts';
import type { Timers } from './timers.ts';

export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface RestDeps {
  /** `http(s)://host:port` of the server. */
  baseUrl: string;
  /** API key `<keyName>:<secret>`. */
  key: string | undefined;
  /**
   * The clientId a key-authenticated client publishes as (PROTOCOL.md §11, `X-Mooring-Client-Id`):
   * the same identity as its realtime connection, so REST and realtime share ownership and dedup
   * scope. Tokens carry their own clientId and never send it.
   */
  clientId?: string;
  /** Token auth instead of a key: the `Authorization` value, and what to do when the server says it expired. */
  auth?: { authorization(): Promise<string>; expired(): void };
  fetch: FetchLike;
  /** An id for an operation published without one (as the realtime connection makes them). */
  nextId(): string;
  timers: Timers;
  /** Extra attempts after a network failure or a retryable error. Default 2. */
  retries?: number;
  /**
   * How long one request may take before it fails with a retryable `network_error`, ms. Default
   * 10 000. Without it, a request on a dead link (no FIN, no RST) would wait for minutes.
   */
  requestTimeout?: number;
}

/** Options of a publish (`Rest.publish`, `Channel.publishResults`). */
export interface PublishOptions {
  /**
   * The publish's precondition (PROTOCOL.md §7): the id of an operation this publisher sent before
   * (in an earlier publish on the same channel). The operations are stored only if that one is;
   * otherwise nothing is stored and the publish fails with `out_of_order` (retryable). Name the last
   * operation of the previous publish when sending before its ack, so that a refused publish is
   * never overtaken by the next.
   */
  after?: string;
}

export interface HistoryOptions {
  /** 1–1000, default 100 (server side). */
  limit?: number;
  /** `backwards` (newest first, the default) or `forwards`. */
  direction?: 'backwards' | 'forwards';
  /** Inclusive lower serial bound. */
  from?: string;
  /** Inclusive upper serial bound. */
  until?: string;
}

export interface HistoryPage {
  channel: string;
  epoch: string;
  /** The channel's head when the page was read. */
  position: string;
  /** Rolled-up messages (PROTOCOL.md §4.1). */
  items: Message[];
  hasNext: boolean;
  /** The following page, or `undefined` at the end. */
  next(): Promise<HistoryPage | undefined>;
}

/** `GET /v1/channels/:channel` (PROTOCOL.md §11). */
export type ChannelStatus = ChannelStatusResponse;

export class Rest {
  readonly #deps: RestDeps;

  constructor(deps: RestDeps) {
    this.#deps = deps;
  }

  /**
   * Publishes operations atomically; resolves once they are stored. Ids are added where missing.
   * `after`: store them only if this publisher's operation with that id is stored (PROTOCOL.md §7).
   */
  async publish(
    channel: string,
    ops: OperationInput | OperationInput[],
    options: PublishOptions = {},
  ): Promise<PublishResult[]> {
    const list = (Array.isArray(ops) ? ops : [ops]).map((op) =>
      op.id ? op : { ...op, id: this.#deps.nextId() },
    );
    const request = options.after === undefined ? { ops: list } : { ops: list, after: options.after };
    const body = await this.#request('POST', `${channelPath(channel)}/messages`, request);
    return (body as PublishResponse).results;
  }

  /** Rolled-up history, one page at a time. */
  async history(channel: string, options: HistoryOptions = {}): Promise<HistoryPage> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    if (options.direction !== undefined) query.set('direction', options.direction);
    if (options.from !== undefined) query.set('from', options.from);
    if (options.until !== undefined) query.set('until', options.until);
    const qs = query.toString();
    return this.#page(`${channelPath(channel)}/messages${qs ? `?${qs}` : ''}`);
  }

  /** The channel's epoch, head position and message count; `channel_not_found` when it has no log. */
  async status(channel: string): Promise<ChannelStatus> {
    return (await this.#request('GET', channelPath(channel))) as ChannelStatus;
  }

  async #page(path: string): Promise<HistoryPage> {
    const body = (await this.#request('GET', path)) as HistoryResponse;
    markRolledUp(body.items); // whole messages: `applyMessage` replaces a held copy with them
    const nextPath = body.next ?? undefined;
    return {
      channel: body.channel,
      epoch: body.epoch,
      position: body.position,
      items: body.items,
      hasNext: nextPath !== undefined,
      next: () => (nextPath === undefined ? Promise.resolve(undefined) : this.#page(nextPath)),
    };
  }

  async #request(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    const retries = this.#deps.retries ?? 2;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#once(method, path, body);
      } catch (err) {
        if (err instanceof MooringError && err.code === 'token_expired') this.#deps.auth?.expired();
        if (!(err instanceof MooringError) || !err.retryable || attempt >= retries) throw err;
        await new Promise<void>((resolve) => this.#deps.timers.setTimeout(resolve, 250 * 2 ** attempt));
      }
    }
  }

  async #once(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#deps.auth) headers.authorization = await this.#deps.auth.authorization();
    else if (this.#deps.key) {
      headers.authorization = `Bearer ${this.#deps.key}`;
      if (this.#deps.clientId !== undefined) headers['x-mooring-client-id'] = this.#deps.clientId;
    }
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const url = new URL(path, this.#deps.baseUrl).toString();
    const timeout = this.#deps.requestTimeout ?? 10_000;
    const abort = new AbortController();
    init.signal = abort.signal;
    const timer = this.#deps.timers.setTimeout(() => abort.abort(), timeout);
    try {
      return await this.#exchange(method, path, url, init, abort.signal, timeout);
    } finally {
      this.#deps.timers.clearTimeout(timer);
    }
  }

  async #exchange(
    method: 'GET' | 'POST',
    path: string,
    url: string,
    init: RequestInit,
    signal: AbortSignal,
    timeout: number,
  ): Promise<unknown> {
    let response: Response;
    try {
      response = await this.#deps.fetch(url, init);
    } catch (err) {
      throw new MooringError(
        'network_error',
        signal.aborted
          ? `${method} ${path} got no answer within ${timeout} ms (the link may be dead); retry`
          : `${method} ${path} could not reach the server: ${String(err)}`,
        {
          cause: err,
        },
      );
    }
    let json: unknown;
    try {
      json = await response.json();
    } catch (err) {
      if (signal.aborted)
        throw new MooringError(
          'network_error',
          `${method} ${path}: the answer stopped within ${timeout} ms`,
          {
            cause: err,
          },
        );
      json = undefined;
      if (response.ok) {
        throw new MooringError(
          'protocol_error',
          `${method} ${path} answered ${response.status} without JSON`,
          {
            cause: err,
          },
        );
      }
    }
    if (response.ok) return json;
    const info = errorInfoFromBody(json);
    if (info) throw MooringError.fromInfo(info);
    throw new MooringError(
      codeForHttpStatus(response.status),
      `${method} ${path} answered HTTP ${response.status}`,
      {
        status: response.status,
      },
    );
  }
}

function channelPath(channel: string): string {
  return `/v1/channels/${encodeURIComponent(channel)}`;
}
