/**
 * The HTTP fallback transports (PROTOCOL.md §12), for networks that refuse WebSocket upgrades or
 * buffer streamed responses. Thin adapters over the same connection core as WebSocket:
 *
 *   HTTP streaming   GET  /v1/connect/sse            text/event-stream, one `data:` line per frame
 *   long-polling     GET  /v1/connect/poll           → [connected]; then
 *                    GET  /v1/connections/:id/poll   waits up to `pollTimeout` for frames → [frames]
 *   upstream (both)  POST /v1/connections/:id/frames one frame or an array, in order → 202
 *
 * The downstream request authenticates like a WebSocket handshake; requests on /v1/connections/:id
 * prove they belong to the connection with its secret `connectionKey` (header
 * `x-mooring-connection-key` or `?connectionKey=`). With a `forwarder` (Redis engine) a request that
 * lands on a node not holding the connection is carried to the node that does and answered from there
 * (request-forwarder.ts): no sticky sessions. Such a node records its route before the client learns
 * the connection id (the `connected` frame waits for it), so the first POST may land anywhere.
 *
 * Budgets: a long-poll connection that never polls after `connected` ends after `firstPollTimeout`
 * (it holds a connection slot without ever reading); an upstream POST's body is read at its token
 * identity's inbound pace (`maxInboundBytesRate`, also on a node that forwards it), as one of at
 * most `BODIES_PER_IDENTITY` bodies of that identity read at once; the frames of one upstream POST are handled
 * in slices with the event loop yielded between them, and the rest of a POST is dropped once the
 * connection is closed (e.g. for flooding), so one 1 MiB body cannot hold the server.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorInfo, type Limits, type ServerFrame } from '@mooring/protocol';
import type { Admission } from './connect-attaches.ts';
import { type Connection, refOf, type TransportSink } from './connection.ts';
import type { ConnectionManager } from './connection-manager.ts';
import { errorBody, httpReply, type Reply } from './http-reply.ts';
import type { InboundBudget } from './inbound-budget.ts';
import { exceedsDepth } from './json-depth.ts';
import type { ConnectionRequest, RequestForwarder } from './request-forwarder.ts';
import { RequestAborted, readJson, send } from './rest-api.ts';
import { safeEqual } from './safe-equal.ts';
import { ServerError, toErrorInfo } from './server-error.ts';
import { whenStreamDrained } from './stream-drained.ts';

export interface HttpTransportsOptions {
  connections: ConnectionManager;
  /** Checks an opening request (version, `attach`, credentials, budgets) and claims its identity. */
  admit: (url: URL, req: IncomingMessage) => Promise<Admission>;
  limits: Limits;
  heartbeatInterval: number;
  /** How long a poll waits for frames before answering `[]`, ms. Default 25,000 (below common proxy timeouts). */
  pollTimeout?: number;
  /** How long a new long-poll connection may wait before its first poll, ms. Default 10,000. */
  firstPollTimeout?: number;
  /** Carries requests for connections held by other nodes to them (Redis engine). */
  forwarder?: RequestForwarder;
  /** The node's inbound budget: a POST forwarded from here is read at its identity's pace here too. */
  inbound?: InboundBudget;
  /** How long a forwarded upstream POST waits for the holder's answer, ms (a poll waits `pollTimeout` more). Default 5,000. */
  forwardTimeout?: number;
  /** Logs what cannot be answered to a client (a route that could not be recorded). */
  onError?: (err: unknown, message: string) => void;
}

/** Upstream frames handled before the event loop is yielded to other clients. */
const FRAMES_PER_SLICE = 64;

const STREAM_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-store, no-transform',
  'x-accel-buffering': 'no',
  'access-control-allow-origin': '*',
  // a stream's socket is never reused for another request
  connection: 'close',
};

const CONNECTION_PATH = /^\/v1\/connections\/([A-Za-z0-9_-]{1,64})\/(poll|frames)$/;

export class HttpTransports {
  readonly #o: HttpTransportsOptions;
  readonly #pollTimeout: number;
  readonly #forwardTimeout: number;
  readonly #ended = new Map<string, { key: string; sink: LongPollSink }>();
  readonly #refresh: NodeJS.Timeout | undefined;

  constructor(options: HttpTransportsOptions) {
    this.#o = options;
    this.#pollTimeout = options.pollTimeout ?? 25_000;
    this.#forwardTimeout = options.forwardTimeout ?? 5_000;
    const forwarder = options.forwarder;
    if (forwarder) {
      forwarder.serve((request, reply) => void this.#serve(request, reply));
      // the routes of the HTTP connections held here (and of ended ones still holding frames) live on
      this.#refresh = setInterval(() => {
        const held = options.connections
          .all()
          .filter((c) => c.transport.kind === 'sse' || c.transport.kind === 'longpoll')
          .map((c) => c.id);
        forwarder.refresh([...held, ...this.#ended.keys()]);
      }, options.heartbeatInterval);
      this.#refresh.unref();
    }
  }

  /** Stops refreshing routes (the forwarder itself is closed by its owner). */
  close(): void {
    clearInterval(this.#refresh);
  }

  handles(path: string): boolean {
    return path === '/v1/connect/sse' || path === '/v1/connect/poll' || path.startsWith('/v1/connections/');
  }

  /** Handles a request; never throws. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      if (req.method === 'OPTIONS') {
        res
          .writeHead(204, {
            'access-control-allow-origin': '*',
            'access-control-allow-methods': 'GET, POST, OPTIONS',
            'access-control-allow-headers': 'authorization, content-type, x-mooring-connection-key',
            'access-control-max-age': '600',
          })
          .end();
        return;
      }
      const path = url.pathname;
      if (path === '/v1/connect/sse' || path === '/v1/connect/poll') {
        if (req.method !== 'GET') throw new ServerError('method_not_allowed', 'use GET here');
        // checked before the admission, which counts the connection from then on
        const { transportId } = transportIdOf(url);
        const admission = await this.#o.admit(url, req);
        if (path === '/v1/connect/sse') this.#openStream(req, res, admission, transportId);
        else this.#openPoll(res, admission, transportId);
        return;
      }
      const match = CONNECTION_PATH.exec(path);
      if (!match) throw new ServerError('not_found', `no such endpoint: ${req.method} ${path.slice(0, 200)}`);
      const kind = match[2] === 'poll' ? 'poll' : 'frames';
      // checked here, first, for a request served here or forwarded alike: a wrong method must not
      // use up an ended connection's last frames
      if (req.method !== (kind === 'poll' ? 'GET' : 'POST'))
        throw new ServerError(
          'method_not_allowed',
          kind === 'poll' ? 'use GET to poll' : 'use POST to send frames',
        );
      const request: ConnectionRequest = {
        kind,
        connectionId: match[1]!,
        connectionKey: connectionKeyOf(req, url),
        ...transportIdOf(url),
        frames: async (pace) => {
          const body = await readJson(req, this.#o.limits.maxHttpBody, pace ? { pace } : undefined);
          const frames = Array.isArray(body) ? body : [body];
          const maxDepth = this.#o.limits.maxJsonDepth;
          for (let i = 0; i < frames.length; i++) frames[i] = standInIfTooDeep(frames[i], maxDepth);
          return frames;
        },
      };
      const reply = httpReply(res);
      const forwarder = this.#o.forwarder;
      if (!forwarder || this.#holds(request.connectionId)) {
        await this.#serve(request, reply);
        return;
      }
      const wait = kind === 'poll' ? this.#pollTimeout + this.#forwardTimeout : this.#forwardTimeout;
      const inbound = this.#o.inbound;
      await forwarder.forward(
        request,
        reply,
        wait,
        inbound ? (budget, read) => inbound.reading(budget, read) : undefined,
      );
    } catch (err) {
      if (err instanceof RequestAborted) {
        res.destroy();
        return;
      }
      const error = toErrorInfo(err);
      send(res, error.status, { error });
    }
  }

  /** True when this node holds the connection (open, or ended with frames still to collect). */
  #holds(id: string): boolean {
    return this.#o.connections.get(id) !== undefined || this.#ended.has(id);
  }

  /**
   * Handles a request on `/v1/connections/:id/…` for a connection this node holds — from its own
   * client, or forwarded by another node (the method was checked where the request arrived).
   */
  async #serve(request: ConnectionRequest, reply: Reply): Promise<void> {
    try {
      const ended =
        request.kind === 'poll' ? this.#endedPoll(request.connectionId, request.connectionKey) : undefined;
      if (ended) {
        ended.poll(reply);
        return;
      }
      const connection = this.#connectionFor(request.connectionId, request.connectionKey);
      // A request of an earlier transport (the network held it back, or another client recovered
      // the connection with the same key) is not acted on, also when the connection was recovered
      // on a WebSocket (which has no transport id): a late poll would take the new transport's
      // frames, a late detach or attach would undo what the client did since.
      const late = () =>
        request.transportId !== undefined &&
        (this.#o.connections.get(request.connectionId) !== connection ||
          request.transportId !== connection.transport.transportId);
      const refuseIfLate = () => {
        if (late())
          throw new ServerError(
            'unknown_connection',
            `this request belongs to an earlier transport of connection ${connection.id}, which has ended`,
          );
      };
      if (request.kind === 'frames') {
        refuseIfLate();
        // the client lives while its request arrives: a large body on a slow link may take longer
        // than two heartbeat rounds, and an SSE connection is dropped on that silence
        connection.upstreamRequests++;
        let frames: unknown[];
        try {
          // read at the pace of the identity's inbound budget, as a WebSocket is
          frames = await connection.readPaced((pace) => request.frames(pace));
        } finally {
          connection.upstreamRequests--;
        }
        refuseIfLate(); // the connection moved to another transport while the body arrived
        for (let i = 0; i < frames.length && !connection.closed; i++) {
          if (i > 0 && i % FRAMES_PER_SLICE === 0) await new Promise((resolve) => setImmediate(resolve));
          connection.receiveValue(frames[i]);
        }
        reply.json(202, Buffer.from(JSON.stringify({ accepted: frames.length })));
        return;
      }
      if (late()) {
        // Told as a streaming transport is told at a takeover: a client whose own new transport
        // took over ignores it; another one started from the same recovery key goes on as a new
        // connection instead of taking this one back (which would go on for ever).
        reply.json(200, REPLACED_ANSWER);
        return;
      }
      const sink = connection.transport;
      if (!(sink instanceof LongPollSink))
        throw new ServerError(
          'bad_request',
          `connection ${connection.id} uses ${sink.kind}, not long-polling`,
        );
      sink.poll(reply);
    } catch (err) {
      if (err instanceof RequestAborted) {
        reply.destroy();
        return;
      }
      const error = toErrorInfo(err);
      reply.json(error.status, errorBody(error));
    }
  }

  #connectionFor(id: string, key: string): Connection {
    const connection = this.#o.connections.get(id);
    if (!connection || !safeEqual(connection.key, key))
      throw new ServerError(
        'unknown_connection',
        `connection ${id} is not open here (it ended or the key is wrong): connect again with recover`,
      );
    return connection;
  }

  #openStream(
    req: IncomingMessage,
    res: ServerResponse,
    admission: Admission,
    transportId: string | undefined,
  ): void {
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true, 15_000);
    res.writeHead(200, STREAM_HEADERS);
    res.flushHeaders();
    const sink: TransportSink = {
      kind: 'sse',
      // The client answers each heartbeat with an upstream request (PROTOCOL.md §12): an SSE peer
      // gone behind a middlebox that keeps the stream open (a silently dropped flow) is seen
      // only by its silence, and its leases must run out.
      answersHeartbeats: true,
      ...(transportId === undefined ? {} : { transportId }),
      send: (frame) => {
        res.write(`data: ${frame.toString()}\n\n`);
      },
      bufferedAmount: () => res.writableLength,
      whenDrained: (drained) => whenStreamDrained(res, drained),
      close: () => res.end(),
      terminate: () => res.destroy(),
      // an SSE comment: traffic for every proxy on the way, invisible to the client's frame parser
      ping: () => {
        res.write(': ping\n\n');
      },
    };
    // the `connected` frame (and all after it) waits until the route is recorded
    res.cork();
    const connection = this.#o.connections.open(sink, admission);
    void this.#claim(connection).finally(() => res.uncork());
    res.on('close', () => {
      this.#o.connections.closed(connection, false);
      // the stream is over for good: do not leave a half-open socket behind
      req.socket.destroy();
    });
  }

  #openPoll(res: ServerResponse, admission: Admission, transportId: string | undefined): void {
    const pollGrace = this.#o.heartbeatInterval + 10_000;
    const sink = new LongPollSink(this.#pollTimeout, pollGrace, transportId);
    const connection = this.#o.connections.open(sink, admission);
    sink.onGone = (deliberate) => {
      this.#o.connections.closed(connection, deliberate);
      // A taken-over transport's frames are not kept: its next poll is late, and told so (below);
      // kept under the connection's id, they would go to the new transport's poll instead.
      if (!sink.hasQueued || connection.closeReason === 'replaced') return;
      // keep its last frames (e.g. `disconnect` with the reason) for one more poll
      this.#ended.set(connection.id, { key: connection.key, sink });
      setTimeout(() => this.#ended.delete(connection.id), pollGrace).unref();
    };
    void this.#claim(connection).finally(() => {
      if (!res.destroyed) sink.poll(httpReply(res));
    });
    // a connection that never comes back for its frames holds a slot of its key's budget for nothing
    setTimeout(() => sink.endIfNeverPolled(), this.#o.firstPollTimeout ?? 10_000).unref();
  }

  /** Records that this node holds `connection` (no-op without a forwarder); never throws. */
  async #claim(connection: Connection): Promise<void> {
    if (!this.#o.forwarder) return;
    try {
      await this.#o.forwarder.claim(connection.id, connection.key, connection.inbound?.key);
    } catch (err) {
      // the connection still works for requests that land here; others get unknown_connection
      this.#o.onError?.(err, 'could not record the route of an HTTP connection');
    }
  }

  /** An ended long-poll connection whose last frames still wait for a poll, if the key matches. */
  #endedPoll(id: string, key: string): LongPollSink | undefined {
    const ended = this.#ended.get(id);
    if (!ended || !safeEqual(ended.key, key)) return undefined;
    this.#ended.delete(id);
    return ended.sink;
  }
}

/** A poll of a transport whose connection another transport took over: its last frame. */
const REPLACED_ANSWER = Buffer.from(
  JSON.stringify([{ type: 'disconnect', reason: 'replaced', reconnect: true } satisfies ServerFrame]),
);

/**
 * An upstream frame nested deeper than `maxDepth` is replaced, as soon as its POST is read, by a
 * small one just past the limit carrying its `ref`: the holding node answers it `invalid_frame`
 * (`Connection.receiveValue`) as it would the frame itself. A POST forwarded to another node
 * (request-forwarder.ts) is written as JSON, and `JSON.stringify` of the frame itself ran out of
 * stack: the POST was answered 503 "cannot reach Redis" (review-http #5).
 */
function standInIfTooDeep(frame: unknown, maxDepth: number): unknown {
  if (!exceedsDepth(frame, maxDepth)) return frame;
  let nested: unknown = [];
  for (let level = 1; level < maxDepth; level++) nested = [nested];
  const ref = refOf(frame);
  return ref === undefined ? { nested } : { ref, nested };
}

/** `transport=`: the id a client gives each HTTP transport it opens (1–64 URL-safe characters). */
function transportIdOf(url: URL): { transportId?: string } {
  const given = url.searchParams.get('transport');
  if (given === null) return {};
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(given))
    throw new ServerError('bad_request', 'transport must be 1–64 characters of A–Z, a–z, 0–9, _ and -');
  return { transportId: given };
}

function connectionKeyOf(req: IncomingMessage, url: URL): string {
  const given = req.headers['x-mooring-connection-key'] ?? url.searchParams.get('connectionKey') ?? '';
  return typeof given === 'string' ? given : '';
}

/** How long the opening answer of a long-poll connection waits for its attaches at most, ms. */
const FIRST_ANSWER_HOLD = 1_000;

/**
 * Catch-up bytes a long-polling connection queues before the catch-up waits for a poll to take
 * them: about what one poll's answer carries while catching up (a 10 MB catch-up takes about ten
 * polls; at 256 KiB it took 1.5 times as long on loopback, each poll a round trip).
 */
export const POLL_CATCHUP_BYTES = 1024 * 1024;

/**
 * Downstream of a long-polling connection: frames queue here until a poll takes them. One poll is
 * pending at a time (a new one answers the old with `[]`). A connection whose client stops polling
 * for `pollGrace` ms is gone, like a WebSocket that stopped answering pings.
 */
export class LongPollSink implements TransportSink {
  readonly kind = 'longpoll';
  readonly answersHeartbeats = false;
  readonly catchUpQueue = POLL_CATCHUP_BYTES;
  onGone: (deliberate: boolean) => void = () => {};
  #queue: Buffer[] = [];
  #queuedBytes = 0;
  #pending: Reply | undefined;
  #pendingTimer: NodeJS.Timeout | undefined;
  #lastPoll = Date.now();
  #polls = 0;
  #flushScheduled = false;
  #ended = false;
  /** What `whenDrained` was given: called once a poll takes the queue, or the connection ends. */
  #drained: (() => void) | undefined;
  /** While the opening answer waits for the connection request's attaches (`holdFirstAnswer`). */
  #hold: { bytes: number; release: () => void } | undefined;
  readonly #pollTimeout: number;
  readonly #pollGrace: number;

  readonly transportId: string | undefined;

  constructor(pollTimeout: number, pollGrace: number, transportId?: string) {
    this.transportId = transportId;
    this.#pollTimeout = pollTimeout;
    this.#pollGrace = pollGrace;
  }

  poll(res: Reply): void {
    if (this.#ended) {
      // the frames queued when the connection ended (e.g. `disconnect`) go to the next poll, once
      if (this.#queue.length > 0) {
        this.#pending = res;
        this.#flush();
        return;
      }
      res.json(404, errorBody(errorInfo('unknown_connection', 'this connection has ended: connect again')));
      return;
    }
    this.#answer([]);
    this.#pending = res;
    this.#lastPoll = Date.now();
    this.#polls++;
    res.onClose(() => {
      if (this.#pending === res) this.#clearPending();
    });
    if (this.#queue.length > 0) this.#flush();
    else this.#pendingTimer = setTimeout(() => this.#answer([]), this.#pollTimeout);
  }

  /**
   * The opening answer (`[connected]`) waits for the connection request's attaches to be answered,
   * so that their catch-up comes with it: one round trip instead of two. It goes anyway once
   * `maxBytes` are queued (a large catch-up waits for room, which only a poll makes) or after
   * FIRST_ANSWER_HOLD ms.
   */
  holdFirstAnswer(answered: Promise<unknown>, maxBytes: number): void {
    const timer = setTimeout(() => hold.release(), FIRST_ANSWER_HOLD);
    timer.unref();
    const hold = {
      bytes: maxBytes,
      release: () => {
        if (this.#hold !== hold) return;
        this.#hold = undefined;
        clearTimeout(timer);
        this.#flush();
      },
    };
    this.#hold = hold;
    answered.then(hold.release, hold.release);
  }

  send(frame: Buffer): void {
    if (this.#ended) return;
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
    if (this.#hold && this.#queuedBytes >= this.#hold.bytes) this.#hold.release();
    if (this.#pending && !this.#flushScheduled) {
      // gather every frame sent in this tick into one answer
      this.#flushScheduled = true;
      queueMicrotask(() => {
        this.#flushScheduled = false;
        this.#flush();
      });
    }
  }

  bufferedAmount(): number {
    return this.#queuedBytes + (this.#pending?.writableLength ?? 0);
  }

  /** The queue shrinks only when a poll takes it (or the connection ends). */
  whenDrained(drained: () => void): void {
    if (this.#ended) queueMicrotask(drained);
    else this.#drained = drained;
  }

  get hasQueued(): boolean {
    return this.#queue.length > 0;
  }

  /** Ends the connection: a pending poll is answered now with what is queued (maybe `[]`). */
  close(code: number): void {
    if (this.#ended) return;
    this.#answer(this.#takeQueue());
    this.#end(code === 1000);
  }

  terminate(): void {
    if (this.#ended) return;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#pending?.destroy();
    this.#end(false);
  }

  /** The first poll after `connected` never came: the client is not there (or not reading). */
  endIfNeverPolled(): void {
    if (!this.#ended && this.#polls <= 1 && !this.#pending) this.terminate();
  }

  /** Heartbeat round: a client that stopped polling is gone. */
  ping(): void {
    if (!this.#ended && !this.#pending && Date.now() - this.#lastPoll > this.#pollGrace) this.terminate();
  }

  #flush(): void {
    if (!this.#pending || this.#queue.length === 0 || this.#hold) return;
    this.#answer(this.#takeQueue());
  }

  /** Takes the queued frames when a poll is there to carry them; otherwise leaves them queued. */
  #takeQueue(): Buffer[] {
    if (!this.#pending) return [];
    const frames = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#callDrained();
    return frames;
  }

  #callDrained(): void {
    const drained = this.#drained;
    this.#drained = undefined;
    drained?.();
  }

  #answer(frames: Buffer[]): void {
    const res = this.#pending;
    if (!res) return;
    this.#clearPending();
    const parts: Buffer[] = [Buffer.from('[')];
    frames.forEach((frame, i) => {
      if (i > 0) parts.push(Buffer.from(','));
      parts.push(frame);
    });
    parts.push(Buffer.from(']'));
    res.json(200, Buffer.concat(parts));
  }

  #clearPending(): void {
    if (this.#pendingTimer) clearTimeout(this.#pendingTimer);
    this.#pendingTimer = undefined;
    if (this.#pending) this.#lastPoll = Date.now();
    this.#pending = undefined;
  }

  #end(deliberate: boolean): void {
    this.#ended = true;
    this.#clearPending();
    this.onGone(deliberate);
    this.#callDrained();
  }
}
