/**
 * No sticky sessions for the HTTP transports (PROTOCOL.md §12, §15): a request on
 * `/v1/connections/:id/…` (upstream frames, a long-poll) that lands on a node which does not hold the
 * connection's downstream is carried over Redis to the node that does, and its answer comes back the
 * same way to the client that asked.
 *
 *   client ─POST frames─▶ node A ──SPUBLISH node:{B} {req}──▶ node B (holds the SSE stream / poll queue)
 *          ◀──202────────  node A ◀─SPUBLISH node:{A} {ans}──  handles the frames like a local POST
 *
 * - Routes: a node holding an HTTP connection writes `route:{<id>}` = `<node> <sha256(key)>` (then,
 *   for a token identity, ` <its inbound budget key>`) before the client learns the id (so a first
 *   POST anywhere finds it), and refreshes its expiry every heartbeat round while it holds the
 *   connection; a takeover (`recover`) on another node rewrites it. The node a POST lands on reads
 *   its body at that identity's inbound pace there (`maxInboundBytesRate` guards each node's loop).
 *   Any node can so check a connection key without the holder's memory; the holder checks it again.
 * - Each node listens on its own sharded pub/sub channel `node:{<node>}`. SPUBLISH answers how many
 *   listened: none means the holder is gone → `unknown_connection` at once (the client reconnects
 *   with `recover` and resumes).
 * - Bounded: a forwarded request waits at most its timeout (frames: `forwardTimeout`; polls:
 *   `pollTimeout` + `forwardTimeout`), then answers `store_unavailable` (retryable). A forwarded poll
 *   whose client goes away is cancelled on the holder, like a local poll whose socket closed, so the
 *   holder keeps its queued frames for the next poll instead of sending them to nobody.
 * - Exactly once: A forwards each request once and never retries it; the 202 is sent only after the
 *   holder handled the frames. A timed-out request may or may not have been handled: the client
 *   reconnects and resends what was not acknowledged, which idempotency stores once.
 * - The same channel carries takeovers, whatever the transport: a node that recovered a connection
 *   another node held tells that node (`replaced`, naming the holder mark it replaced), which drops
 *   its transport as a single node does at a takeover (redis-registry.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { errorInfo } from '@mooring/protocol';
import { nodeOfHolder } from './connection-registry.ts';
import { errorBody, type Reply } from './http-reply.ts';
import { type Pace, paced } from './inbound-budget.ts';
import { ServerError } from './server-error.ts';
import type { BusConnection, RedisConnection } from './store/redis-connection.ts';

/** A request on `/v1/connections/:id/…`, as the holder handles it. */
export interface ConnectionRequest {
  kind: 'frames' | 'poll';
  connectionId: string;
  connectionKey: string;
  /** The transport id the request names (`transport=`), if any (PROTOCOL.md §12). */
  transportId?: string;
  /**
   * The upstream frames (kind `frames`), read lazily for a local request. The node holding the
   * connection passes its identity's inbound budget as `pace` (`maxInboundBytesRate`): a local body
   * is read at that pace, a forwarded one waits for its bytes before its frames are handled.
   */
  frames: (pace?: Pace) => Promise<unknown[]>;
}

export type ConnectionRequestHandler = (request: ConnectionRequest, reply: Reply) => void;

export interface RequestForwarderOptions {
  connection: RedisConnection;
  /** Key prefix (the store's). */
  prefix: string;
  /** How long a route lives without a refresh, ms. */
  routeTtl: number;
  onError?: (err: unknown) => void;
}

interface RequestMessage {
  t: 'req';
  rid: string;
  from: string;
  kind: 'frames' | 'poll';
  id: string;
  key: string;
  transport?: string;
  frames?: unknown[];
}
interface AnswerMessage {
  t: 'ans';
  rid: string;
  /** 0: drop the client's request without an answer. */
  status: number;
  body?: string;
}
interface CancelMessage {
  t: 'cancel';
  rid: string;
}
/** A connection this node held was recovered elsewhere: drop its transport if `holder` is still its open. */
interface ReplacedMessage {
  t: 'replaced';
  id: string;
  holder: string;
}
type BusMessage = RequestMessage | AnswerMessage | CancelMessage | ReplacedMessage;

interface Waiting {
  reply: Reply;
  holder: string;
  timer: NodeJS.Timeout;
}

export class RequestForwarder {
  /** This node's name on the bus (random per process). */
  readonly nodeId = `n_${randomBytes(9).toString('base64url')}`;
  readonly #o: RequestForwarderOptions;
  #sub: BusConnection | undefined;
  #handler: ConnectionRequestHandler = (_request, reply) =>
    reply.json(404, errorBody(errorInfo('unknown_connection', 'this node serves no connections yet')));
  #onReplaced: (connectionId: string, holder: string) => void = () => {};
  #next = 0;
  /** Requests this node forwarded, waiting for their answer. */
  readonly #waiting = new Map<string, Waiting>();
  /** Requests forwarded to this node and not answered yet: cancelled when their client goes away. */
  readonly #serving = new Map<string, () => void>();
  #closed = false;

  private constructor(options: RequestForwarderOptions) {
    this.#o = options;
  }

  /** Subscribes this node's channel on a connection of its own. */
  static async open(options: RequestForwarderOptions): Promise<RequestForwarder> {
    const forwarder = new RequestForwarder(options);
    const sub = await options.connection.subscriber((err) => options.onError?.(err));
    forwarder.#sub = sub;
    await sub.subscribe(forwarder.#channel(forwarder.nodeId), (payload) => forwarder.#onMessage(payload));
    return forwarder;
  }

  /** Who handles the requests forwarded to this node. */
  serve(handler: ConnectionRequestHandler): void {
    this.#handler = handler;
  }

  /** Who drops a transport when its connection was recovered on another node. */
  onReplaced(handler: (connectionId: string, holder: string) => void): void {
    this.#onReplaced = handler;
  }

  /** Tells the node of `holder` that connection `id` was recovered here (not awaited; errors to onError). */
  tellReplaced(holder: string, id: string): void {
    this.#publish(nodeOfHolder(holder), { t: 'replaced', id, holder });
  }

  /**
   * Records that this node holds connection `id` (awaited before the client learns the id), with
   * the key of its identity's inbound budget if it has one.
   */
  async claim(id: string, key: string, budget?: string): Promise<void> {
    const route = this.#route(id);
    await this.#o.connection.send(route, [
      'SET',
      route,
      `${this.nodeId} ${keyHash(key)}${budget === undefined ? '' : ` ${budget}`}`,
      'PX',
      String(this.#o.routeTtl),
    ]);
  }

  /** Keeps the routes of the connections this node holds (whoever wrote them last). */
  refresh(ids: Iterable<string>): void {
    if (this.#closed) return;
    for (const id of ids) {
      const route = this.#route(id);
      this.#o.connection
        .send(route, ['PEXPIRE', route, String(this.#o.routeTtl)])
        .catch((err: unknown) => this.#o.onError?.(err));
    }
  }

  /**
   * Carries `request` to the node holding the connection; its answer (or a timeout's) goes to
   * `reply`. Throws a ServerError when no node holds the connection or Redis cannot be reached.
   * `paced` reads a POST's body at the pace of the budget the route names, if it names one.
   */
  async forward(
    request: ConnectionRequest,
    reply: Reply,
    timeout: number,
    paced?: (budget: string, read: (pace?: Pace) => Promise<unknown[]>) => Promise<unknown[]>,
  ): Promise<void> {
    if (this.#closed) throw new ServerError('shutting_down', 'the server is shutting down; retry');
    const routeKey = this.#route(request.connectionId);
    let route: unknown;
    try {
      route = await this.#o.connection.send(routeKey, ['GET', routeKey], true);
    } catch (err) {
      throw unreachable(err);
    }
    const [holder, hash, budget] = typeof route === 'string' ? splitRoute(route) : [];
    if (!holder || holder === this.nodeId || hash !== keyHash(request.connectionKey))
      throw new ServerError(
        'unknown_connection',
        `connection ${request.connectionId} is not open (it ended or the key is wrong): connect again with recover`,
      );
    const read = (pace?: Pace) => request.frames(pace);
    const frames =
      request.kind !== 'frames' ? undefined : budget && paced ? await paced(budget, read) : await read();
    if (reply.gone) return;
    const rid = `${this.nodeId}:${++this.#next}`;
    const message: RequestMessage = {
      t: 'req',
      rid,
      from: this.nodeId,
      kind: request.kind,
      id: request.connectionId,
      key: request.connectionKey,
      ...(request.transportId === undefined ? {} : { transport: request.transportId }),
      ...(frames === undefined ? {} : { frames }),
    };
    // written before anything waits for the answer, and outside the try that reports Redis out of
    // reach: a message that cannot be written is not an outage (frames too deep never get here:
    // http-transports.ts `standInIfTooDeep`)
    const text = JSON.stringify(message);
    const timer = setTimeout(() => {
      if (!this.#waiting.delete(rid)) return;
      this.#publish(holder, { t: 'cancel', rid });
      reply.json(
        503,
        errorBody(
          errorInfo(
            'store_unavailable',
            `the node holding connection ${request.connectionId} did not answer within ${timeout} ms: reconnect with recover`,
          ),
        ),
      );
    }, timeout);
    timer.unref();
    this.#waiting.set(rid, { reply, holder, timer });
    reply.onClose(() => {
      const waiting = this.#waiting.get(rid);
      if (!waiting) return;
      clearTimeout(waiting.timer);
      this.#waiting.delete(rid);
      this.#publish(holder, { t: 'cancel', rid });
    });
    let listeners: unknown;
    try {
      const channel = this.#channel(holder);
      listeners = await this.#o.connection.send(channel, ['SPUBLISH', channel, text]);
    } catch (err) {
      this.#forget(rid);
      throw unreachable(err);
    }
    if (Number(listeners) === 0) {
      this.#forget(rid);
      throw new ServerError(
        'unknown_connection',
        `the node holding connection ${request.connectionId} is gone: connect again with recover`,
      );
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [rid, waiting] of this.#waiting) {
      clearTimeout(waiting.timer);
      waiting.reply.json(
        503,
        errorBody(errorInfo('shutting_down', 'the server is shutting down; reconnect and resume')),
      );
      this.#waiting.delete(rid);
    }
    this.#sub?.destroy();
  }

  #forget(rid: string): void {
    const waiting = this.#waiting.get(rid);
    if (waiting) clearTimeout(waiting.timer);
    this.#waiting.delete(rid);
  }

  #onMessage(payload: string): void {
    let message: BusMessage;
    try {
      message = JSON.parse(payload) as BusMessage;
    } catch {
      this.#o.onError?.(new Error('a forwarded message is not JSON'));
      return;
    }
    if (message.t === 'ans') {
      const waiting = this.#waiting.get(message.rid);
      if (!waiting) return; // timed out or its client left: nobody to tell
      this.#forget(message.rid);
      if (message.status === 0) waiting.reply.destroy();
      else waiting.reply.json(message.status, Buffer.from(message.body ?? ''));
      return;
    }
    if (message.t === 'cancel') {
      this.#serving.get(message.rid)?.();
      return;
    }
    if (message.t === 'replaced') {
      if (typeof message.id === 'string' && typeof message.holder === 'string')
        this.#onReplaced(message.id, message.holder);
      return;
    }
    if (message.t === 'req' && typeof message.rid === 'string' && typeof message.from === 'string')
      this.#handleRequest(message, Buffer.byteLength(payload));
  }

  /** A request forwarded to this node: handled like a local one, its answer sent back. */
  #handleRequest(message: RequestMessage, bytes: number): void {
    const { rid, from } = message;
    let answered = false;
    const closeListeners: (() => void)[] = [];
    const finish = (answer: AnswerMessage): void => {
      if (answered) return;
      answered = true;
      this.#serving.delete(rid);
      this.#publish(from, answer);
    };
    this.#serving.set(rid, () => {
      if (answered) return;
      answered = true;
      this.#serving.delete(rid);
      for (const listener of closeListeners) listener();
    });
    const reply: Reply = {
      json: (status, body) => finish({ t: 'ans', rid, status, body: body.toString() }),
      destroy: () => finish({ t: 'ans', rid, status: 0 }),
      onClose: (listener) => closeListeners.push(listener),
      writableLength: 0,
      get gone() {
        return answered;
      },
    };
    const frames = Array.isArray(message.frames) ? message.frames : [];
    this.#handler(
      {
        kind: message.kind === 'poll' ? 'poll' : 'frames',
        connectionId: String(message.id),
        connectionKey: String(message.key),
        ...(typeof message.transport === 'string' ? { transportId: message.transport } : {}),
        frames: async (pace) => {
          await paced(pace, bytes);
          return frames;
        },
      },
      reply,
    );
  }

  #publish(node: string, message: BusMessage): void {
    if (this.#closed && message.t !== 'ans') return;
    const channel = this.#channel(node);
    this.#o.connection
      .send(channel, ['SPUBLISH', channel, JSON.stringify(message)])
      .catch((err: unknown) => this.#o.onError?.(err));
  }

  #channel(node: string): string {
    return `${this.#o.prefix}:node:{${node}}`;
  }

  #route(id: string): string {
    return `${this.#o.prefix}:route:{${id}}`;
  }
}

function keyHash(key: string): string {
  return createHash('sha256').update(key).digest('base64url');
}

function unreachable(err: unknown): ServerError {
  const detail = err instanceof Error ? err.message : String(err);
  return new ServerError(
    'store_unavailable',
    `cannot reach Redis to find the node holding this connection (${detail}); retry, or reconnect with recover`,
  );
}

/** A route's holder, key hash and budget key (everything after the second space; none if absent). */
function splitRoute(route: string): [string, string, string | undefined] {
  const first = route.indexOf(' ');
  if (first < 0) return [route, '', undefined];
  const second = route.indexOf(' ', first + 1);
  if (second < 0) return [route.slice(0, first), route.slice(first + 1), undefined];
  return [route.slice(0, first), route.slice(first + 1, second), route.slice(second + 1)];
}
