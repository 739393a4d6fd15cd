/**
 * The connections of this node, whatever their transport: opens them (identity, recovery, the
 * `connected` frame), finds them by id (for HTTP upstream requests), runs heartbeat rounds, and on
 * close decides whether identity and presence end now (a deliberate close) or after their grace
 * periods (a loss the client may come back from).
 *
 * A recovered connection takes its id over from a transport that may not have noticed it is dead
 * yet; the old one is then dropped and its late close event changes nothing. With a shared registry
 * (Redis) the old transport may be on another node: that node is told (`nodes.tellReplaced`) and
 * drops it the same way (`replacedElsewhere`), handing presence and leases over without a leave or
 * a lost holder, since the connection lives on.
 *
 * Connection budgets (`admit`): per key (`maxConnectionsPerKey`), of which tokens together may hold
 * all but `keyConnectionReserve` (at most a tenth of the key's limit) — so the backend holding the key
 * can always connect — and per token
 * identity: `maxConnectionsPerClient` per key + clientId, `maxAnonymousConnectionsPerKey` for
 * tokens without a clientId. A connection is counted from its admission (a `Seat`), not from its
 * open: requests that are admitted together each see the others, though the claim of their
 * identity (Redis) and the WebSocket upgrade come between. A seat whose connection never opens is
 * given back (`giveUp`; after `SEAT_TIMEOUT` at the latest). A connection is counted down under the
 * names it was counted at admission, whatever its identity became since (a renewed token).
 */
import { CLOSE_CODES, type Limits } from '@mooring/protocol';
import type { Logger } from 'pino';
import { type ChannelService, mayTakeLeases } from './channel-service.ts';
import type { Admission } from './connect-attaches.ts';
import { Connection, catchUpQueueOf, type TransportSink } from './connection.ts';
import { type ConnectionCounts, type CountCheck, LocalConnectionCounts } from './connection-counts.ts';
import {
  type ConnectionRegistry,
  type Identity,
  nodeOfHolder,
  type OpenedConnection,
} from './connection-registry.ts';
import { holderKey, type IdentityBudgets, type RateBudgets } from './identity-budgets.ts';
import { forEachInSlices, type SlicedPass } from './in-slices.ts';
import type { InboundBudget } from './inbound-budget.ts';
import type { Presence } from './presence.ts';

const HEARTBEAT_SLICE = 500;
/** How long an admitted connection request may take to open before its seat is given back, ms. */
const SEAT_TIMEOUT = 30_000;

/** An admitted connection request's place in its connection budgets, until it opens or gives up. */
export interface Seat {
  readonly names: string[];
  /** Opened (the connection counts on) or given up (counted down). */
  settled: boolean;
  /** Gives the seat up if it is still unsettled then; dropped once settled. */
  timer: NodeJS.Timeout | undefined;
}

export interface ConnectionManagerOptions {
  channels: ChannelService;
  presence: Presence;
  registry: ConnectionRegistry;
  limits: Limits;
  budgets: RateBudgets;
  /** Presence data bytes per holder on this node (`presenceRules`); none: not counted. */
  presenceBytes?: IdentityBudgets;
  /**
   * Connection-request budgets per identity (`connectRules`): a token renewal (`auth` frame) draws
   * on them too (default: renewals are not counted).
   */
  renewals?: RateBudgets;
  /** Inbound bytes per token identity (`maxInboundBytesRate`), shared with REST and Durable Streams; none when 0. */
  inbound?: InboundBudget;
  logger: Logger;
  heartbeatInterval: number;
  /** Connections a heartbeat round visits per turn of the event loop (default 500). */
  heartbeatSlice?: number;
  connectionStateTtl: number;
  verifyToken: (token: string) => Promise<Identity>;
  /** Where the connection budgets are counted (default: this process's connections). */
  counts?: ConnectionCounts;
  /** Several nodes sharing the registry: this node's id, and how to tell another node of a takeover. */
  nodes?: { id: string; tellReplaced: (holder: string, connectionId: string) => void };
}

export class ConnectionManager {
  readonly #o: ConnectionManagerOptions;
  readonly #byId = new Map<string, Connection>();
  /** Open connections per budget name (see `budgetNames`). */
  readonly #counts: ConnectionCounts;
  /** The budget names each connection was counted under at open. */
  readonly #countedAs = new WeakMap<Connection, string[]>();
  /** Each connection's holder mark in a shared registry (`OpenedConnection.holder`). */
  readonly #holders = new WeakMap<Connection, string>();
  /**
   * Holder marks another node took over before their open here (its takeover notice came first),
   * with when the notice came; kept for at most `SEAT_TIMEOUT`.
   */
  readonly #preempted = new Map<string, number>();
  /** The heartbeat round still running (over more than one slice). */
  #round: SlicedPass | undefined;

  constructor(options: ConnectionManagerOptions) {
    this.#o = options;
    this.#counts = options.counts ?? new LocalConnectionCounts();
  }

  /**
   * Resolves the connection's identity before its transport exists: takes over `recover`'s when it
   * is still held and matches (on a shared registry, whichever node issued it), else a new one.
   */
  claim(identity: Identity, recover: string | undefined): OpenedConnection | Promise<OpenedConnection> {
    return this.#o.registry.open(identity, recover);
  }

  /**
   * Opens the admitted connection on `transport` and sends `connected`; then handles the attaches of
   * the connection request (PROTOCOL.md §5.1) as its first frames.
   */
  open(transport: TransportSink, { identity, opened, attaches, seat, compact }: Admission): Connection {
    const { registry, presence, limits, heartbeatInterval } = this.#o;
    registry.hold(opened.connectionId);
    const connection = new Connection({
      id: opened.connectionId,
      key: opened.connectionKey,
      identity,
      transport,
      channels: this.#o.channels,
      presence,
      limits,
      budgets: this.#o.budgets,
      ...(this.#o.presenceBytes ? { presenceBytes: this.#o.presenceBytes } : {}),
      ...(this.#o.renewals ? { renewals: this.#o.renewals } : {}),
      logger: this.#o.logger,
      verifyToken: this.#o.verifyToken,
      compact,
      ...(this.#o.inbound ? { inbound: this.#o.inbound } : {}),
    });
    const previous = this.#byId.get(opened.connectionId);
    this.#byId.set(opened.connectionId, connection);
    if (opened.holder !== undefined) this.#holders.set(connection, opened.holder);
    if (!seat.settled) {
      seat.settled = true; // counted since its admission
      clearTimeout(seat.timer);
      seat.timer = undefined;
      this.#countedAs.set(connection, seat.names);
    } else {
      // its place was given back (it took longer than SEAT_TIMEOUT to open): open now, it counts
      this.#countedAs.set(connection, seat.names);
      this.#counts.add(seat.names);
    }
    this.#o.channels.metrics.connections.inc({ transport: transport.kind });
    this.#o.channels.metrics.connectionsOpened.inc({
      transport: transport.kind,
      resumed: String(opened.resumed),
    });
    if (previous && previous !== connection) this.#replaced(previous);
    if (opened.resumed) {
      // its members stay only where the credentials it came back with allow presence
      presence.connectionResumed(opened.connectionId, (channel) =>
        identity.access.allows(channel, 'presence'),
      );
      // its leases hold again only where that identity may still take them; the others run out
      this.#o.channels.leases.holderBack(opened.connectionId, (channel) =>
        mayTakeLeases(identity.access, channel, identity.clientId),
      );
      const elsewhere = this.#replacedElsewhere(opened);
      if (elsewhere !== undefined) this.#o.nodes?.tellReplaced(elsewhere, opened.connectionId);
    }
    connection.send({
      type: 'connected',
      connectionId: opened.connectionId,
      connectionKey: opened.connectionKey,
      resumed: opened.resumed,
      ...(identity.clientId === undefined ? {} : { clientId: identity.clientId }),
      heartbeatInterval,
      maxIdleInterval: heartbeatInterval,
      connectionStateTtl: this.#o.connectionStateTtl,
      limits: {
        maxOperationSize: limits.maxOperationSize,
        maxMessageSize: limits.maxMessageSize,
        maxFrameSize: limits.maxFrameSize,
        maxHttpBody: limits.maxHttpBody,
        maxOpsPerPublish: limits.maxOpsPerPublish,
        maxChannelsPerConnection: limits.maxChannelsPerConnection,
      },
      serverTime: Date.now(),
      publishAfter: true,
      ...(attaches === undefined ? {} : { attaching: attaches.length }),
      ...(compact ? { frames: 'compact' as const } : {}),
    });
    if (attaches && attaches.length > 0) {
      const answered = attaches.map((frame) => connection.receiveValue(frame));
      // the catch-up waits once the transport's catch-up queue is full: released by then
      transport.holdFirstAnswer?.(Promise.all(answered), catchUpQueueOf(transport, limits.maxSendBuffer));
    }
    this.#o.logger.debug(
      { connectionId: opened.connectionId, resumed: opened.resumed, transport: transport.kind },
      'connected',
    );
    // taken over elsewhere before it opened here: dropped now, as it would have been a moment later
    if (opened.holder !== undefined && this.#preempted.delete(opened.holder))
      this.replacedElsewhere(opened.connectionId, opened.holder);
    return connection;
  }

  /** Forgets takeover notices older than an admission's seat: their opens will not come any more. */
  #forgetPreempted(): void {
    const before = Date.now() - SEAT_TIMEOUT;
    for (const [holder, at] of this.#preempted) {
      if (at >= before) break;
      this.#preempted.delete(holder);
    }
  }

  /**
   * The transport of `connection` is gone. `deliberate`: the client closed on purpose (close frame,
   * WebSocket 1000/1005), so identity and presence end now; otherwise they last their grace periods.
   */
  closed(connection: Connection, deliberate: boolean): void {
    connection.dispose();
    if (this.#byId.get(connection.id) !== connection) return; // taken over by a recovered connection
    this.#byId.delete(connection.id);
    this.#countDown(connection);
    this.#recordClose(connection, deliberate);
    this.#o.channels.leases.holderLost(connection.id);
    if (deliberate || connection.closedByClient) {
      this.#o.registry.discard(connection.id);
      this.#o.presence.connectionClosed(connection.id);
    } else {
      this.#o.registry.release(connection.id, this.#holders.get(connection));
      this.#o.presence.connectionLost(connection.id);
    }
    this.#o.logger.debug({ connectionId: connection.id, deliberate }, 'disconnected');
  }

  /**
   * Connection `id` was recovered on another node, taking over the open whose holder mark is
   * `holder`: if that open still holds it here, its transport is dropped as at a local takeover.
   * Nothing ends: presence and leases are forgotten here without a leave or a lost holder (the
   * other node took them over), and the identity stays in the registry.
   */
  replacedElsewhere(id: string, holder: string): void {
    const connection = this.#byId.get(id);
    if (!connection) {
      // dropped here before this notice came (a transport that closed as the client recovered
      // elsewhere): what its drop started here — its presence grace, its count among its clientId's
      // dropped connections, its leases' lost holder — ends; the other node holds it now
      this.#o.presence.connectionMoved?.(id);
      this.#o.channels.leases.holderMoved?.(id);
    }
    if (!connection || this.#holders.get(connection) !== holder) {
      // gone, recovered here since, or not open yet: a recovery claimed here whose upgrade is still
      // on its way when a later recovery elsewhere took its mark over. Kept for `open`.
      this.#preempted.set(holder, Date.now());
      this.#forgetPreempted();
      return;
    }
    this.#byId.delete(id);
    this.#replaced(connection);
    this.#o.presence.connectionMoved?.(id);
    this.#o.channels.leases.holderMoved?.(id);
    this.#o.logger.debug({ connectionId: id }, 'recovered on another node: transport dropped');
  }

  /**
   * Refuses a new connection beyond any of its connection budgets (too_many_connections); else
   * counts it at once and returns its seat, which `open` takes (or `giveUp` gives back). A promise
   * where the budgets are counted across nodes.
   *
   * `takesOver`: a recovery of a connection whose transport still holds it (here or on another
   * node), which that transport's drop will count down: it takes that place, so it may go one over
   * each budget meanwhile. A client at its limit whose network changed silently reconnects at once,
   * instead of being refused until the server notices the old socket is dead.
   */
  admit(identity: Identity, takesOver = false): Seat | Promise<Seat> {
    const checks = this.#checks(identity);
    if (takesOver) for (const check of checks) check.limit += 1;
    const taken = this.#counts.take(checks);
    const seat = (): Seat => {
      const held: Seat = { names: checks.map((c) => c.name), settled: false, timer: undefined };
      held.timer = setTimeout(() => this.giveUp(held), SEAT_TIMEOUT).unref();
      return held;
    };
    return taken instanceof Promise ? taken.then(seat) : seat();
  }

  /**
   * A live Durable Streams read (long-poll, SSE) of `identity`: it holds a socket and a waiter for
   * as long as a connection would, so it counts in the same budgets (too_many_connections) until
   * the returned release is called (once; later calls do nothing).
   */
  holdLiveRead(identity: Identity): (() => void) | Promise<() => void> {
    const checks = this.#checks(identity);
    const taken = this.#counts.take(checks);
    const release = (): (() => void) => {
      let held = true;
      return () => {
        if (held) this.#counts.give(checks.map((c) => c.name));
        held = false;
      };
    };
    return taken instanceof Promise ? taken.then(release) : release();
  }

  /** A seat whose connection will not open (its claim failed, its socket closed first): counted down. */
  giveUp(seat: Seat | undefined): void {
    if (!seat || seat.settled) return;
    seat.settled = true;
    clearTimeout(seat.timer);
    seat.timer = undefined;
    this.#counts.give(seat.names);
  }

  /** Stops counting (the server is closing): a shared count gives this node's share back. */
  async closeCounts(): Promise<void> {
    await this.#counts.close?.();
  }

  /** The connection budgets `identity` must fit, in the order they are checked. */
  #checks(identity: Identity): CountCheck[] {
    const { limits } = this.#o;
    const [key, tokens, client, holder] = budgetNames(identity);
    const checks: CountCheck[] = [
      { name: key!, limit: limits.maxConnectionsPerKey, what: `key ${identity.keyName}` },
    ];
    if (identity.viaToken) {
      // the reserve is at most a tenth of the key's limit: a small limit is not all reserve
      const reserve = Math.min(limits.keyConnectionReserve, Math.floor(limits.maxConnectionsPerKey / 10));
      checks.push({
        name: tokens!,
        limit: limits.maxConnectionsPerKey - reserve,
        what: `the tokens of key ${identity.keyName} (the rest is reserved for the key itself)`,
      });
      checks.push(
        identity.clientId === undefined
          ? {
              name: client!,
              limit: limits.maxAnonymousConnectionsPerKey,
              what: `the anonymous tokens of key ${identity.keyName}`,
            }
          : {
              name: client!,
              limit: limits.maxConnectionsPerClient,
              what: `clientId ${identity.clientId} of key ${identity.keyName}`,
            },
      );
      // a token without a clientId is a holder of its own: one visitor's token cannot take every
      // anonymous connection of the key from the others
      if (holder !== undefined)
        checks.push({
          name: holder,
          limit: limits.maxConnectionsPerClient,
          what: `this token (without a clientId) of key ${identity.keyName}`,
        });
    }
    return checks;
  }

  /**
   * Whether a recovery just claimed (`claim`) takes the connection over from a transport that still
   * holds it: one of this node's, or (shared registry) an open of another node not released yet.
   */
  takesOver(opened: OpenedConnection): boolean {
    if (!opened.resumed) return false;
    return this.#byId.has(opened.connectionId) || this.#replacedElsewhere(opened) !== undefined;
  }

  /** The holder mark a takeover replaced, when it is another node's open (which must drop it). */
  #replacedElsewhere(opened: OpenedConnection): string | undefined {
    const { nodes } = this.#o;
    const mark = opened.replaced;
    return nodes && mark !== undefined && nodeOfHolder(mark) !== nodes.id ? mark : undefined;
  }

  get(id: string): Connection | undefined {
    return this.#byId.get(id);
  }

  get size(): number {
    return this.#byId.size;
  }

  all(): Connection[] {
    return [...this.#byId.values()];
  }

  /**
   * Drops the transport of a connection a recovery took over. It is told first (`disconnect`
   * `replaced`, on a transport that streams): a client whose own new transport took over ignores
   * it, and another client started from the same recovery key continues as a new connection
   * instead of taking this one back. A long-poll transport tells a poll waiting now; a later poll
   * of it is told by its route (http-transports.ts).
   */
  #replaced(connection: Connection): void {
    connection.disconnect('replaced', CLOSE_CODES.going_away.code, true);
    this.#recordClose(connection, false);
    this.#countDown(connection);
  }

  #recordClose(connection: Connection, deliberate: boolean): void {
    const { metrics } = this.#o.channels;
    const transport = connection.transport.kind;
    metrics.connections.dec({ transport });
    const reason = connection.closeReason ?? (deliberate || connection.closedByClient ? 'closed' : 'lost');
    metrics.connectionsClosed.inc({ transport, reason });
    metrics.health.connectionEnded(connection.id, connection.identity.clientId, reason);
  }

  #countDown(connection: Connection): void {
    const names = this.#countedAs.get(connection) ?? [];
    this.#countedAs.delete(connection); // counted down once, however often the transport reports it
    if (names.length > 0) this.#counts.give(names);
  }

  /**
   * One heartbeat round over the connections open now, in slices (`in-slices.ts`) so that a node
   * with many connections keeps reading and delivering between them; then the registry sweep. A
   * round still running when the next is due (a node too busy to finish one per interval) lets
   * that one go: every connection then sees rounds further apart, never two at once.
   */
  heartbeat(): void {
    if (this.#round !== undefined) return;
    // undefined when the round fitted in one slice (it has finished, sweep included)
    this.#round = forEachInSlices(
      [...this.#byId.values()],
      this.#o.heartbeatSlice ?? HEARTBEAT_SLICE,
      (connection) => connection.heartbeat(),
      () => {
        this.#round = undefined;
        this.#o.registry.sweep(this.#byId.keys());
      },
    );
  }

  /** Stops a heartbeat round between its slices (the server is closing). */
  stopHeartbeats(): void {
    this.#round?.cancel();
    this.#round = undefined;
  }
}

/**
 * The budgets a connection counts against: its key; for tokens also all tokens of that key, and its
 * key + clientId (or the key's anonymous tokens, and its own token: `holderKey`).
 */
function budgetNames(identity: Identity): string[] {
  const key = identity.keyName;
  if (!identity.viaToken) return [`key\u0000${key}`];
  if (identity.clientId !== undefined)
    return [`key\u0000${key}`, `tokens\u0000${key}`, `client\u0000${key}\u0000${identity.clientId}`];
  const names = [`key\u0000${key}`, `tokens\u0000${key}`, `anonymous\u0000${key}`];
  if (identity.holder !== undefined) names.push(holderKey(identity));
  return names;
}
