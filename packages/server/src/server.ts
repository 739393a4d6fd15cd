/**
 * `startServer()`: one HTTP server carrying the WebSocket transport (`/v1/connect`), the REST API
 * and health endpoints, over one store. Used by the CLI, by tests (port 0) and by benchmarks.
 *
 * Shutdown (ARCHITECTURE.md §6): stop accepting, tell every connection to reconnect elsewhere
 * (`disconnect { reason: "shutting_down" }`, close 1012), flush and close the store.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  COMPACT_FRAMES,
  DEFAULT_LIMITS,
  DEFAULT_TIMINGS,
  errorInfo,
  FRAMES_PARAM,
  type Limits,
  namespaceOf,
  PROTOCOL_VERSION,
} from '@mooring/protocol';
import pino, { type Logger } from 'pino';
import { type ApiKey, Authenticator, checkApiKey, parseApiKey, SHORT_SECRET } from './auth.ts';
import { ChannelService } from './channel-service.ts';
import { type Admission, connectAttaches } from './connect-attaches.ts';
import type { Connection, TransportSink } from './connection.ts';
import type { ConnectionCounts } from './connection-counts.ts';
import { ConnectionManager } from './connection-manager.ts';
import { type ConnectionRegistry, LocalConnectionRegistry } from './connection-registry.ts';
import { DurableStreamsApi, type DurableStreamsOptions } from './durable-streams/durable-streams-api.ts';
import { StreamMetrics } from './durable-streams/stream-metrics.ts';
import { HttpTransports } from './http-transports.ts';
import { type Hub, LocalHub } from './hub.ts';
import {
  connectRules,
  holderConnectRules,
  holderKey,
  IdentityBudgets,
  inTurn,
  presenceRules,
  publishRules,
  type RateBudgets,
  type RateRules,
} from './identity-budgets.ts';
import { InboundBudget, type PacedRead } from './inbound-budget.ts';
import { LeaseManager, type LeaseManagerOptions, type Leases } from './leases.ts';
import { resolveLimits } from './limits.ts';
import { listen } from './listen.ts';
import { type LocalTransport, localTransportFactory } from './local-transport.ts';
import { Metrics } from './metrics.ts';
import { MetricsHistory } from './metrics-history.ts';
import { type Presence, type PresenceOptions, PresenceService } from './presence.ts';
import type { RequestForwarder } from './request-forwarder.ts';
import { RestApi, send } from './rest-api.ts';
import { ServerError, toErrorInfo } from './server-error.ts';
import { createStore, type StoreSpec } from './store/create-store.ts';
import type { RetentionFor, Store } from './store/store.ts';
import { type Tracer, Tracing } from './tracing.ts';
import { WebSocketTransport } from './websocket-transport.ts';

export interface NamespaceRules {
  /** How long messages are kept, in ms (`Infinity` = forever). Default 24 h. */
  retention?: number;
}

export interface ServerOptions {
  /** Default '127.0.0.1'. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /**
   * Share the port with other processes that ask for it too (SO_REUSEPORT, default false): the
   * kernel spreads new connections over them, e.g. one node per core on one machine. Needs a shared
   * store (the Redis store) for the nodes to serve the same channels. Linux 3.9+, FreeBSD 12+; refused
   * elsewhere with `ListenError` `reuse_port_unsupported`.
   */
  reusePort?: boolean;
  /** A store instance, or how to make one. Default `{ kind: 'memory' }`. */
  store?: Store | StoreSpec;
  /** API keys, `<keyName>:<secret>`. At least one is required. */
  keys?: Array<string | ApiKey>;
  /** Server heartbeat period in ms (default 15,000; must be below 60,000). */
  heartbeatInterval?: number;
  /**
   * Connections a heartbeat round visits per turn of the event loop (default 500): a round over
   * many connections is spread over turns so publishes keep flowing during it.
   */
  heartbeatSlice?: number;
  /** How long a dropped connection keeps its identity, ms (default 120,000). */
  connectionStateTtl?: number;
  limits?: Partial<Limits>;
  /** Rules per namespace (the part of a channel name before the first ':'); '*' applies to all others. */
  namespaces?: Record<string, NamespaceRules>;
  /** How long a member whose connection dropped stays present, ms (default 15,000). */
  presenceGrace?: number;
  /** How long a new long-poll connection may wait before its first poll, ms (default 10,000). */
  firstPollTimeout?: number;
  /**
   * Redis engine: how long a request forwarded to the node holding its connection waits for the
   * answer, ms (default 5,000; a poll waits its poll timeout more).
   */
  forwardTimeout?: number;
  /** Serve `/metrics` without credentials (default false: any API key or token may read it). */
  publicMetrics?: boolean;
  /** How often expired messages are removed, ms (default 60,000). */
  trimInterval?: number;
  /**
   * The fan-out between subscribers (and nodes): an instance, or a factory given the store. Default:
   * a RedisHub over the store's Redis for the Redis store, a LocalHub (this process only) otherwise.
   */
  hub?: Hub | ((store: Store) => Hub | Promise<Hub>);
  /**
   * Presence sets: a factory given the store and the presence settings. Default: `RedisPresence`
   * (shared by every node) for the Redis store, the node-local `PresenceService` otherwise.
   */
  presence?: (store: Store, options: PresenceOptions) => Presence;
  /** Message leases: default `RedisLeases` for the Redis store, the node-local `LeaseManager` otherwise. */
  leases?: (store: Store, options: LeaseManagerOptions) => Leases;
  /** Connection identities: default `RedisConnectionRegistry` for the Redis store, node-local otherwise. */
  registry?: (store: Store) => ConnectionRegistry;
  /**
   * Several nodes (Redis): how often a node renews its leases and liveness and sweeps for overdue
   * leases and dead nodes, ms (default 1,000). A dead node is noticed within `nodeTtl` (default
   * 3,000) plus one sweep.
   */
  sweepInterval?: number;
  nodeTtl?: number;
  /** A pino logger, or a level for a new one. Default: 'silent'. */
  logger?: Logger | string;
  /** The Durable Streams endpoint `/v1/stream/*` (PROTOCOL.md §16): open namespace, timeouts, limits. */
  durableStreams?: DurableStreamsOptions;
  /**
   * OpenTelemetry spans for publish → store → fan-out and attach → catch-up (default false). Spans go
   * to the tracer provider registered with `@opentelemetry/api`; pass a `Tracer` to choose one.
   */
  tracing?: boolean | Tracer;
  /** How often the dashboard's charts sample the metrics, ms (default 5,000; an hour is kept). */
  metricsSampleInterval?: number;
}

export interface MooringServer {
  readonly host: string;
  readonly port: number;
  /** `http://host:port` */
  readonly url: string;
  readonly store: Store;
  readonly logger: Logger;
  /** Open realtime connections. */
  readonly connections: number;
  /**
   * For a client in this same process: `new Mooring({ url: server.url, key, transport:
   * server.localTransport })` connects without a socket (local-transport.ts). Everything else about
   * the connection is as over WebSocket.
   */
  readonly localTransport: () => LocalTransport;
  /** Graceful shutdown; resolves when the store is flushed and closed. */
  close(): Promise<void>;
}

export const DEFAULT_RETENTION = 24 * 60 * 60 * 1000;
/** How long an idle HTTP keep-alive connection stays open, ms: above common balancers' 60 s. */
const KEEP_ALIVE_TIMEOUT = 65_000;

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'content-security-policy': "frame-ancestors 'none'",
};
const SHUTTING_DOWN = errorInfo('shutting_down', 'the server is restarting; reconnect and resume');
/** How long a shutdown waits for its sockets to close before it closes the store anyway, ms. */
const CLOSE_WAIT = 5_000;

/** Durable Streams answers: whatever their content type, no script, no request, no frame. */
const STREAM_CSP = "sandbox; default-src 'none'; frame-ancestors 'none'";
/** The same, as raw header lines, for answers written straight to a socket. */
const SECURITY_HEADER_LINES = Object.entries(SECURITY_HEADERS)
  .map(([name, value]) => `${name}: ${value}\r\n`)
  .join('');

/**
 * The other durations (ms), checked with the rest before anything opens: finite and not negative
 * (a timer of `Infinity` or `NaN` fires at once), and above 0 where 0 would spin a timer or end
 * every long-poll connection at once. A TTL or a grace of 0 means none.
 */
const DURATIONS: ReadonlyArray<[keyof ServerOptions, 'at least' | 'above']> = [
  ['connectionStateTtl', 'at least'],
  ['presenceGrace', 'at least'],
  ['firstPollTimeout', 'above'],
  ['forwardTimeout', 'above'],
  ['trimInterval', 'above'],
  ['sweepInterval', 'above'],
  ['nodeTtl', 'above'],
  ['metricsSampleInterval', 'above'],
];

function checkDurations(options: ServerOptions): void {
  for (const [name, bound] of DURATIONS) {
    const value: unknown = options[name];
    if (value === undefined) continue;
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      value < 0 ||
      (bound === 'above' && value === 0)
    )
      throw new Error(`${name} must be a number of ms ${bound} 0, got ${String(value)}`);
  }
}

export async function startServer(options: ServerOptions = {}): Promise<MooringServer> {
  const logger =
    typeof options.logger === 'object' ? options.logger : pino({ level: options.logger ?? 'silent' });
  const limits = resolveLimits(options.limits);
  const heartbeatInterval = options.heartbeatInterval ?? DEFAULT_TIMINGS.heartbeatInterval;
  if (!(heartbeatInterval > 0 && heartbeatInterval < 60_000))
    throw new Error('heartbeatInterval must be between 0 and 60,000 ms (idle-timeout proxies close at 60 s)');
  const connectionStateTtl = options.connectionStateTtl ?? DEFAULT_TIMINGS.connectionStateTtl;
  const keys = (options.keys ?? []).map((k) => (typeof k === 'string' ? parseApiKey(k) : k));
  if (keys.length === 0) throw new Error('at least one API key is required (keys: ["<name>:<secret>"])');
  for (const key of keys) checkApiKey(key);
  for (const key of keys)
    if (key.secret.length < SHORT_SECRET)
      logger.warn(
        { key: key.name, characters: key.secret.length },
        `API key ${key.name} has a short secret: a token signed with it can be forged once the secret is guessed offline from any token; use ${SHORT_SECRET} or more random characters`,
      );
  const heartbeatSlice = options.heartbeatSlice;
  if (heartbeatSlice !== undefined && !(Number.isInteger(heartbeatSlice) && heartbeatSlice >= 1))
    throw new Error('heartbeatSlice must be a whole number of connections, at least 1');
  checkDurations(options);

  const retentionFor = retentionRules(options.namespaces ?? {}, logger);
  const store = isStore(options.store)
    ? options.store
    : await createStore(options.store ?? { kind: 'memory' }, retentionFor, logger);
  const metrics = new Metrics();
  const { hub, forwarder } = await openBus(options.hub, store, heartbeatInterval, logger, () =>
    metrics.fanOutPasses.inc({ what: 'messages' }),
  );
  if (options.tracing) metrics.tracing = new Tracing(options.tracing === true ? undefined : options.tracing);
  const history = new MetricsHistory(metrics, options.metricsSampleInterval);
  history.start();
  const engine = await nodeEngine(store, options, connectionStateTtl, heartbeatInterval, logger, forwarder);
  const channels = new ChannelService(
    store,
    hub,
    limits,
    metrics,
    (err) => logger.error({ err }, 'lease expiry failed'),
    options.leases ? (o) => options.leases!(store, o) : engine.leases,
  );
  channels.readBackWithoutHistory = connectionStateTtl;
  channels.onLeaseExpired = (expired) =>
    logger.info(expired, 'lease expired: its publisher is gone, the run is marked abandoned');
  const restored = channels.leases.restore();
  if (restored > 0) logger.info({ leases: restored }, 'leases re-armed after restart');
  const auth = new Authenticator(keys);
  const registry = options.registry ? options.registry(store) : engine.registry();
  const presenceOptions: PresenceOptions = {
    grace: options.presenceGrace ?? DEFAULT_TIMINGS.presenceGrace,
    maxMembers: limits.maxPresenceMembers,
    maxMembersPerClient: limits.maxPresenceMembersPerClient,
    maxChannelsPerConnection: limits.maxPresenceChannelsPerConnection,
    maxBytesPerConnection: limits.maxPresenceBytesPerConnection,
    recoverWithin: connectionStateTtl,
    // what a clientId's live connections may hold (0: no connection limit, so the default count)
    maxDroppedBytesPerClient:
      (limits.maxConnectionsPerClient || DEFAULT_LIMITS.maxConnectionsPerClient) *
      limits.maxPresenceBytesPerConnection,
    fanOut: {
      onPass: () => metrics.fanOutPasses.inc({ what: 'presence' }),
      onMerged: () => metrics.presenceMerged.inc(),
    },
  };
  const presence = options.presence
    ? options.presence(store, presenceOptions)
    : engine.presence(presenceOptions);
  const budgets = engine.budgets(publishRules(limits));
  const presenceBytes = new IdentityBudgets(presenceRules(limits));
  // a token without a clientId first spends its own rate, then the key's anonymous tokens' together
  const connectBudgets = inTurn(
    engine.budgets(holderConnectRules(limits)),
    engine.budgets(connectRules(limits)),
  );
  const counts = engine.counts();
  // a token holder's bytes, counted before they are parsed: its connections, its REST publishes
  // and its Durable Streams writes draw on one bucket on this node (`maxInboundBytesRate`); a token
  // without a clientId is a holder of its own (`holderKey`)
  const { maxInboundBytesRate: inboundRate, maxFrameSize } = limits;
  const inbound =
    inboundRate > 0
      ? new InboundBudget(inboundRate, Math.max(2 * inboundRate, 2 * maxFrameSize), {
          onThrottle: () => metrics.inboundThrottled.inc(),
          onWait: () => metrics.inboundBodiesWaited.inc(),
        })
      : undefined;
  if (inbound) metrics.inboundIdentities = () => inbound.size;
  const paced: PacedRead = (identity, read) =>
    inbound && identity.viaToken ? inbound.reading(holderKey(identity), read) : read();
  const connections = new ConnectionManager({
    ...(heartbeatSlice === undefined ? {} : { heartbeatSlice }),
    ...(counts ? { counts } : {}),
    ...(inbound ? { inbound } : {}),
    channels,
    presence,
    registry,
    limits,
    budgets,
    presenceBytes,
    renewals: connectBudgets,
    logger,
    heartbeatInterval,
    connectionStateTtl,
    verifyToken: (token) => auth.verifyToken(token),
    ...(forwarder
      ? { nodes: { id: forwarder.nodeId, tellReplaced: (holder, id) => forwarder.tellReplaced(holder, id) } }
      : {}),
  });
  forwarder?.onReplaced((id, holder) => connections.replacedElsewhere(id, holder));
  let closing = false;

  const rest = new RestApi({
    channels,
    presence,
    auth,
    limits,
    budgets,
    paced,
    logger,
    publicMetrics: options.publicMetrics ?? false,
    ready: () => store.ping(),
    history,
  });
  /**
   * What every realtime connection request passes before its connection exists, on any transport:
   * the protocol version, its `attach` (PROTOCOL.md §5.1), the credentials, the connection budgets,
   * and its identity claimed (or recovered with `recover`).
   */
  const admit = (url: URL, req: Pick<IncomingMessage, 'headers'>): Promise<Admission> =>
    admitRequest(url, req).catch((err: unknown) => {
      // a refused handshake is an error answered to a client too (too_many_connections, unauthorized…)
      metrics.errors.inc({ code: toErrorInfo(err).code });
      throw err;
    });
  const admitRequest = async (url: URL, req: Pick<IncomingMessage, 'headers'>): Promise<Admission> => {
    const version = url.searchParams.get('v');
    if (version !== null && version !== String(PROTOCOL_VERSION))
      throw new ServerError(
        'bad_request',
        `protocol version ${version} is not supported; use v=${PROTOCOL_VERSION}`,
      );
    const attaches = connectAttaches(url, limits.maxJsonDepth);
    // another value (a format of a later version) is not refused: the client reads plain frames
    const compact = url.searchParams.get(FRAMES_PARAM) === COMPACT_FRAMES;
    const identity = await auth.authenticate(req, url);
    // the identity's connection-request rate, before anything is counted or claimed
    const rated = connectBudgets.take(identity, 1, 0);
    if (rated) await rated;
    const recover = url.searchParams.get('recover') ?? undefined;
    if (recover === undefined) {
      // a new identity: its seat and its claim (each a round trip on Redis) go together, and the
      // one that succeeded is undone when the other fails
      const [seat, opened] = await Promise.allSettled([
        connections.admit(identity),
        connections.claim(identity, undefined),
      ]);
      if (seat.status === 'fulfilled' && opened.status === 'fulfilled')
        return { identity, opened: opened.value, attaches, seat: seat.value, compact };
      if (seat.status === 'fulfilled') connections.giveUp(seat.value);
      if (opened.status === 'fulfilled') registry.unclaim(opened.value);
      throw seat.status === 'rejected' ? seat.reason : (opened as PromiseRejectedResult).reason;
    }
    // A recovery is claimed first: one that takes the connection over from a transport still
    // holding it takes that transport's place in the budgets. Refused, it gives the claim back.
    const opened = await connections.claim(identity, recover);
    try {
      const seat = await connections.admit(identity, connections.takesOver(opened));
      return { identity, opened, attaches, seat, compact };
    } catch (err) {
      registry.unclaim(opened);
      throw err;
    }
  };
  /** An admission whose connection will not open after all (its socket closed first). */
  const abandon = ({ seat, opened }: Admission): void => {
    if (seat.settled) return;
    connections.giveUp(seat);
    registry.unclaim(opened);
  };
  /** The same over WebSocket (the upgrade request) and in process: not closing, the right path, then `admit`. */
  const admitConnection = async (
    url: URL,
    req: Pick<IncomingMessage, 'headers'>,
    endpoint: string,
  ): Promise<Admission> => {
    if (closing) throw new ServerError('shutting_down', 'the server is shutting down; retry on another node');
    if (url.pathname !== '/v1/connect')
      throw new ServerError('not_found', `no ${endpoint} endpoint at ${url.pathname}`);
    return admit(url, req);
  };
  const realtime = {
    maxFrameSize: limits.maxFrameSize,
    accept: (transport: TransportSink, admission: Admission) => {
      const connection = connections.open(transport, admission);
      // admitted before the shutdown began, opened after it told every connection: told now, or it
      // would be served on (its heartbeats stopped) and hold the shutdown until its client hung up
      if (closing) connection.disconnect('shutting_down', 1012, true, SHUTTING_DOWN);
      return connection;
    },
    // 1000/1005: the client closed on purpose. Anything else (1001 page navigation, 1006 network)
    // may come back: identity and presence keep their grace periods.
    onClose: (connection: Connection, code: number) =>
      connections.closed(connection, code === 1000 || code === 1005),
  };
  const websocket = new WebSocketTransport({
    ...realtime,
    onDeferred: (n: number) => metrics.framesDeferred.inc(n),
  });
  // an agent in this process connects without a socket (`transport: server.localTransport`)
  const localTransport = localTransportFactory({
    ...realtime,
    authorize: (url) => admitConnection(url, { headers: {} }, 'realtime'),
  });
  const httpTransports = new HttpTransports({
    connections,
    admit,
    limits,
    heartbeatInterval,
    firstPollTimeout: options.firstPollTimeout ?? DEFAULT_TIMINGS.firstPollTimeout,
    ...(forwarder ? { forwarder } : {}),
    ...(inbound ? { inbound } : {}),
    ...(options.forwardTimeout === undefined ? {} : { forwardTimeout: options.forwardTimeout }),
    onError: (err, message) => logger.warn({ err }, message),
  });

  let durableStreams: DurableStreamsApi | undefined;
  const streamMetrics = new StreamMetrics(
    metrics.registry,
    store.streams,
    () => durableStreams?.waiters.size ?? 0,
  );
  durableStreams = new DurableStreamsApi(options.durableStreams ?? {}, {
    streams: store.streams,
    auth,
    logger,
    onRequest: (method, status) => streamMetrics.requests.inc({ method, status: String(status) }),
    onBytes: (direction, bytes) => streamMetrics.bytes.inc({ direction }, bytes),
    budgets: {
      write: (identity, count, bytes) => budgets.take(identity, count, bytes),
      live: (identity) => connections.holdLiveRead(identity),
      paced,
    },
  });
  if (options.durableStreams?.open)
    logger.warn(
      { open: options.durableStreams.open },
      'Durable Streams matching this glob are served WITHOUT credentials (durableStreams.open)',
    );

  let inFlight = 0;
  const http: Server = createServer((req, res) => {
    inFlight++;
    res.once('close', () => inFlight--);
    // on every answer: no MIME sniffing, never inside a frame (the dashboard sets its own CSP)
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    const url = requestUrl(req);
    if (closing) {
      send(res, 503, {
        error: errorInfo('shutting_down', 'the server is shutting down; retry on another node'),
      });
      return;
    }
    if (httpTransports.handles(url.pathname)) void httpTransports.handle(req, res, url);
    else if (durableStreams.handles(url.pathname)) {
      // a stream is served with the content type its creator chose: opened in a browser, it must not
      // run as a page of this origin (beside the dashboard, whose key sits in its session storage)
      res.setHeader('content-security-policy', STREAM_CSP);
      void durableStreams.handle(req, res, url);
    } else void rest.handle(req, res, url);
  });
  // Idle keep-alive connections stay open longer than the balancer in front keeps its own (nginx's
  // upstream `keepalive_timeout` and AWS ALB: 60 s). Node's default, 5 s, closes them first: a
  // balancer or client that sends its next request on one just as it closes gets a reset instead
  // of an answer, and a POST (publish, append, a poll's upstream) is not retried — a 502.
  http.keepAliveTimeout = KEEP_ALIVE_TIMEOUT;
  http.headersTimeout = KEEP_ALIVE_TIMEOUT + 1_000;
  http.on('upgrade', async (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    try {
      const admission = await admitConnection(requestUrl(req), req, 'WebSocket');
      // a socket closed before its upgrade completes never opens its connection (the listener keeps
      // only the seat, which is small once settled: it lives as long as the socket)
      if (socket.destroyed) {
        abandon(admission);
        return;
      }
      socket.once('close', () => abandon(admission));
      websocket.upgrade(req, socket, head, admission);
    } catch (err) {
      refuseUpgrade(socket, err);
    }
  });
  // malformed HTTP (bad request line, header flood): answer with a typed error, never crash
  http.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const overflow = err.code === 'HPE_HEADER_OVERFLOW';
    const error = overflow
      ? errorInfo('bad_request', 'request headers are too large')
      : errorInfo('bad_request', 'malformed HTTP request');
    const body = JSON.stringify({ error });
    const status = overflow ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(
      `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${SECURITY_HEADER_LINES}connection: close\r\n\r\n${body}`,
    );
  });

  const heartbeat = setInterval(() => connections.heartbeat(), heartbeatInterval);
  heartbeat.unref();
  const trim = setInterval(() => {
    store.trim().catch((err: unknown) => logger.error({ err }, 'retention trim failed'));
    store.streams
      ?.sweep(Date.now())
      .catch((err: unknown) => logger.error({ err }, 'stream expiry sweep failed'));
  }, options.trimInterval ?? 60_000);
  trim.unref();

  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= (async () => {
      closing = true;
      durableStreams.waiters.close();
      clearInterval(heartbeat);
      connections.stopHeartbeats();
      clearInterval(trim);
      httpTransports.close();
      history.stop();
      const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
      for (const connection of connections.all())
        connection.disconnect('shutting_down', 1012, true, SHUTTING_DOWN);
      // wait (3 s at most) for requests in flight to be answered, then drop every socket: idle
      // keep-alive sockets and sockets that never sent a request alike
      const deadline = Date.now() + 3_000;
      while (inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      http.closeAllConnections();
      // a socket the HTTP server no longer tracks (an upgraded one) that outlives its close's own
      // 2 s deadline does not hold the shutdown for ever: the store is flushed and closed anyway
      let wait: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        stopped.then(() => false),
        new Promise<boolean>((resolve) => {
          wait = setTimeout(() => resolve(true), CLOSE_WAIT);
        }),
      ]);
      clearTimeout(wait);
      if (late)
        logger.warn({ waited: CLOSE_WAIT }, 'sockets still open at shutdown: closing the store anyway');
      await connections.closeCounts();
      await presence.close();
      await channels.leases.close();
      registry.close?.();
      await closeHub(hub);
      await forwarder?.close();
      await store.close();
      logger.info('stopped');
    })();
    return closed;
  };

  const reusePort = options.reusePort ?? false;
  let address: AddressInfo;
  try {
    await listen(http, { port: options.port ?? 8080, host: options.host ?? '127.0.0.1', reusePort });
    address = http.address() as AddressInfo;
    logger.info({ port: address.port, host: address.address, store: store.kind, reusePort }, 'listening');
    if (reusePort && store.kind !== 'redis')
      logger.warn(
        { store: store.kind },
        'reusePort without the Redis store: each node on this port keeps its own channels, and a client sees only those of the node the kernel gave it',
      );
  } catch (err) {
    // the port is given back whatever failed (a logger of the caller's that throws included)
    await close();
    throw err;
  }
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;

  return {
    host: address.address,
    port: address.port,
    url: `http://${host}:${address.port}`,
    store,
    logger,
    get connections() {
      return connections.size;
    },
    localTransport,
    close,
  };
}

/**
 * The parts that open connections of their own (Redis: the bus's subscriber, the forwarder's). One
 * that fails closes what opened before it and the store, so a failed start leaves no connection
 * holding the process.
 */
async function openBus(
  option: ServerOptions['hub'],
  store: Store,
  heartbeatInterval: number,
  logger: Logger,
  onPass: () => void,
): Promise<{ hub: Hub; forwarder: RequestForwarder | undefined }> {
  let hub: Hub | undefined;
  try {
    hub = await makeHub(option, store, logger, onPass);
    return { hub, forwarder: await makeForwarder(store, heartbeatInterval, logger) };
  } catch (err) {
    await Promise.allSettled([hub && closeHub(hub), store.close()]);
    throw err;
  }
}

/** Closes a hub that holds something open (the Redis bus); the local hub has nothing to close. */
async function closeHub(hub: Hub): Promise<void> {
  if ('close' in hub && typeof hub.close === 'function') await hub.close();
}

async function makeHub(
  option: ServerOptions['hub'],
  store: Store,
  logger: Logger,
  onPass: () => void,
): Promise<Hub> {
  if (typeof option === 'function') return option(store);
  if (option) return option;
  if (store.kind !== 'redis') return new LocalHub({ onPass });
  const [{ RedisHub }, { RedisStore }] = await Promise.all([
    import('./redis-hub.ts'),
    import('./store/redis-store.ts'),
  ]);
  if (!(store instanceof RedisStore)) return new LocalHub({ onPass });
  return RedisHub.open({ store, onPass, onError: (err) => logger.warn({ err }, 'Redis bus problem') });
}

/** On the Redis engine, requests for HTTP connections held by other nodes are forwarded to them. */
async function makeForwarder(
  store: Store,
  heartbeatInterval: number,
  logger: Logger,
): Promise<RequestForwarder | undefined> {
  if (store.kind !== 'redis') return undefined;
  const [{ RequestForwarder }, { RedisStore }] = await Promise.all([
    import('./request-forwarder.ts'),
    import('./store/redis-store.ts'),
  ]);
  if (!(store instanceof RedisStore)) return undefined;
  return RequestForwarder.open({
    connection: store.connection,
    prefix: store.prefix,
    // a route outlives an ended long-poll connection's last poll (heartbeat + 10 s) after its last refresh
    routeTtl: 3 * heartbeatInterval + 10_000,
    onError: (err) => logger.warn({ err }, 'request forwarding problem'),
  });
}

interface NodeEngine {
  /** Where connection budgets are counted: this process, or (Redis) every node's in Redis. */
  counts: () => ConnectionCounts | undefined;
  /** Where rate budgets are counted: this process, or (Redis) across every node in Redis. */
  budgets: (rules: RateRules) => RateBudgets;
  leases: (options: LeaseManagerOptions) => Leases;
  registry: () => ConnectionRegistry;
  presence: (options: PresenceOptions) => Presence;
}

/**
 * Where presence, leases and connection identities live: in this process, or (Redis store) in Redis,
 * shared by every node. The Redis modules are loaded only for the Redis store.
 */
async function nodeEngine(
  store: Store,
  options: ServerOptions,
  connectionStateTtl: number,
  heartbeatInterval: number,
  logger: Logger,
  forwarder: RequestForwarder | undefined,
): Promise<NodeEngine> {
  const local: NodeEngine = {
    counts: () => undefined,
    budgets: (rules) => new IdentityBudgets(rules),
    leases: (o) => new LeaseManager(o),
    registry: () => new LocalConnectionRegistry(connectionStateTtl),
    presence: (o) => new PresenceService(o),
  };
  if (store.kind !== 'redis') return local;
  const [
    { RedisStore },
    { RedisLeases },
    { RedisConnectionRegistry },
    { RedisPresence },
    { RedisConnectionCounts },
    { RedisIdentityBudgets },
  ] = await Promise.all([
    import('./store/redis-store.ts'),
    import('./redis-leases.ts'),
    import('./redis-registry.ts'),
    import('./redis-presence.ts'),
    import('./redis-connection-counts.ts'),
    import('./redis-identity-budgets.ts'),
  ]);
  if (!(store instanceof RedisStore) || !forwarder) return local;
  const { connection, prefix } = store;
  const sweepInterval = options.sweepInterval ?? 1_000;
  const onError = (what: string) => (err: unknown) => logger.warn({ err }, `Redis ${what} problem`);
  return {
    counts: () =>
      new RedisConnectionCounts({
        connection,
        prefix,
        nodeId: forwarder.nodeId,
        nodeTtl: options.nodeTtl ?? 3_000,
        sweepInterval,
        onError: onError('connection budgets'),
      }),
    budgets: (rules) =>
      new RedisIdentityBudgets({
        connection,
        prefix,
        rules,
        onError: (err) =>
          logger.warn(
            { err, budgets: rules.name },
            'Redis rate budgets problem: each node counts alone until Redis answers',
          ),
      }),
    leases: (o) =>
      new RedisLeases({
        ...o,
        connection,
        prefix,
        sweepInterval,
        holderTtl: connectionStateTtl,
      }),
    registry: () =>
      new RedisConnectionRegistry({
        connection,
        prefix,
        ttl: connectionStateTtl,
        refreshEvery: heartbeatInterval,
        nodeId: forwarder.nodeId,
        onError: onError('connection registry'),
      }),
    presence: (o) =>
      new RedisPresence({
        ...o,
        connection,
        prefix,
        sweepInterval,
        nodeTtl: options.nodeTtl ?? 3_000,
        onError: onError('presence'),
        onNewRedis: (previous, current) =>
          logger.warn(
            { previous, current },
            'Redis is not the instance it was (restarted, restored or failed over: its run_id changed). It may hold less than it acknowledged: each channel goes on in a new epoch at its next write (clients are told continuityLost, with kept), and this node writes its presence, connection budgets and recovery keys again',
          ),
      }),
  };
}

function isStore(value: Store | StoreSpec | undefined): value is Store {
  return typeof value === 'object' && value !== null && 'append' in value;
}

function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://localhost');
  } catch {
    return new URL('http://localhost/');
  }
}

function refuseUpgrade(socket: Duplex, err: unknown): void {
  const error = toErrorInfo(err);
  const body = JSON.stringify({ error });
  socket.end(
    `HTTP/1.1 ${error.status} ${error.code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${SECURITY_HEADER_LINES}connection: close\r\n\r\n${body}`,
  );
}

function retentionRules(namespaces: Record<string, NamespaceRules>, logger: Logger): RetentionFor {
  for (const [name, rules] of Object.entries(namespaces)) {
    const retention: unknown = rules?.retention;
    if (retention !== undefined && !(typeof retention === 'number' && retention >= 0))
      throw new Error(
        `namespaces.${name}.retention must be a number of ms, 0 or more ("forever": Infinity), got ${String(retention)}`,
      );
    // a namespace that keeps nothing (ephemeral channels) is a choice; said, in case it was not one
    if (retention === 0)
      logger.warn(
        { namespace: name },
        `namespace ${name} keeps nothing (retention 0): its messages are deleted at every trim`,
      );
  }
  const fallback = namespaces['*']?.retention ?? DEFAULT_RETENTION;
  return (channel) => namespaces[namespaceOf(channel)]?.retention ?? fallback;
}
