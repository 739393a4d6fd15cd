/**
 * The connections of this node, whatever their transport: opens them (identity, recovery, the
 * `connected` frame), finds them by id (for HTTP upstream requests), runs heartbeat rounds, and on
 * close decides whether identity and presence end now (a deliberate close) or after their grace
 * periods (a loss the client may come back from).
 *
 * A recovered connection takes its id over from a transport that may not have noticed it is dead
 * yet; the old one is then dropped and its late close event changes nothing.
 */
import type { Limits } from '@mooring/protocol';
import type { Logger } from 'pino';
import type { ChannelService } from './channel-service.ts';
import { Connection, type TransportSink } from './connection.ts';
import type { ConnectionRegistry, Identity } from './connection-registry.ts';
import type { PresenceService } from './presence.ts';
import { ServerError } from './server-error.ts';

export interface ConnectionManagerOptions {
  channels: ChannelService;
  presence: PresenceService;
  registry: ConnectionRegistry;
  limits: Limits;
  logger: Logger;
  heartbeatInterval: number;
  connectionStateTtl: number;
  verifyToken: (token: string) => Promise<Identity>;
}

export class ConnectionManager {
  readonly #o: ConnectionManagerOptions;
  readonly #byId = new Map<string, Connection>();
  readonly #perKey = new Map<string, number>();

  constructor(options: ConnectionManagerOptions) {
    this.#o = options;
  }

  open(transport: TransportSink, identity: Identity, recover: string | undefined): Connection {
    const { registry, presence, limits, heartbeatInterval } = this.#o;
    const opened = registry.open(identity, recover);
    const connection = new Connection({
      id: opened.connectionId,
      key: opened.connectionKey,
      identity,
      transport,
      channels: this.#o.channels,
      presence,
      limits,
      logger: this.#o.logger,
      verifyToken: this.#o.verifyToken,
    });
    const previous = this.#byId.get(opened.connectionId);
    this.#byId.set(opened.connectionId, connection);
    this.#perKey.set(identity.keyName, (this.#perKey.get(identity.keyName) ?? 0) + 1);
    this.#o.channels.metrics.connections.inc({ transport: transport.kind });
    this.#o.channels.metrics.connectionsOpened.inc({
      transport: transport.kind,
      resumed: String(opened.resumed),
    });
    if (previous && previous !== connection) {
      previous.closeReason = 'replaced';
      this.#recordClose(previous, false);
      previous.transport.terminate();
      previous.dispose();
      this.#countDown(previous);
    }
    if (opened.resumed) {
      presence.connectionResumed(opened.connectionId);
      this.#o.channels.leases.holderBack(opened.connectionId);
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
    });
    this.#o.logger.debug(
      { connectionId: opened.connectionId, resumed: opened.resumed, transport: transport.kind },
      'connected',
    );
    return connection;
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
      this.#o.registry.release(connection.id);
      this.#o.presence.connectionLost(connection.id);
    }
    this.#o.logger.debug({ connectionId: connection.id, deliberate }, 'disconnected');
  }

  /** Refuses a new connection beyond `maxConnectionsPerKey` for its key (too_many_connections). */
  admit(identity: Identity): void {
    const open = this.#perKey.get(identity.keyName) ?? 0;
    if (open >= this.#o.limits.maxConnectionsPerKey)
      throw new ServerError(
        'too_many_connections',
        `key ${identity.keyName} already has ${open} connections (limit ${this.#o.limits.maxConnectionsPerKey}); retry later`,
      );
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

  #recordClose(connection: Connection, deliberate: boolean): void {
    const { metrics } = this.#o.channels;
    const transport = connection.transport.kind;
    metrics.connections.dec({ transport });
    const reason = connection.closeReason ?? (deliberate || connection.closedByClient ? 'closed' : 'lost');
    metrics.connectionsClosed.inc({ transport, reason });
  }

  #countDown(connection: Connection): void {
    const key = connection.identity.keyName;
    const open = (this.#perKey.get(key) ?? 1) - 1;
    if (open > 0) this.#perKey.set(key, open);
    else this.#perKey.delete(key);
  }

  heartbeat(): void {
    for (const connection of this.#byId.values()) connection.heartbeat();
    this.#o.registry.sweep();
  }
}
