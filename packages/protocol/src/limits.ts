/** Default limits (ARCHITECTURE.md §9, PROTOCOL.md §10). Each is configurable on the server. */
export const DEFAULT_LIMITS = {
  /** Bytes of one operation: name + data + headers as JSON. */
  maxOperationSize: 64 * 1024,
  /** Bytes of a message's data once rolled up (a long streamed response). */
  maxMessageSize: 4 * 1024 * 1024,
  /** Bytes of one inbound WebSocket frame. */
  maxFrameSize: 1024 * 1024,
  /** Bytes of one HTTP request body. */
  maxHttpBody: 1024 * 1024,
  /** Operations in one publish. */
  maxOpsPerPublish: 100,
  /** Channels one connection may have attached. */
  maxChannelsPerConnection: 500,
  /** Header entries per operation. */
  maxHeaders: 64,
  /** Length of a channel name. */
  maxChannelNameLength: 256,
  /** Length of an id or an event name. */
  maxIdLength: 256,
  /** Realtime connections open at once with one API key (tokens count for the key that signed them). */
  maxConnectionsPerKey: 10_000,
  /** Operations one token-authenticated connection (a browser) may publish per second (a burst of as many is allowed). */
  maxPublishRate: 1_000,
  /** The same for API-key connections (trusted backends and agents); 0 = no limit. */
  maxKeyPublishRate: 0,
  /** Nesting depth of JSON in one frame or body. */
  maxJsonDepth: 64,
  /** Members in one channel's presence set. */
  maxPresenceMembers: 1000,
  /** Bytes queued for one connection before it is disconnected as a slow consumer. */
  maxSendBuffer: 8 * 1024 * 1024,
} as const;

export type Limits = { -readonly [K in keyof typeof DEFAULT_LIMITS]: number };

export const DEFAULT_TIMINGS = {
  /** Server heartbeat period, ms. Always below 60 s so idle-timeout proxies never fire. */
  heartbeatInterval: 15_000,
  /** How long a dropped connection keeps its identity on the server, ms. */
  connectionStateTtl: 120_000,
  /** How long a member whose connection dropped stays present, ms (a quick reconnect does not flap). */
  presenceGrace: 15_000,
} as const;

export const PROTOCOL_VERSION = 1;
