/** Default limits (ARCHITECTURE.md §9, PROTOCOL.md §10). Each is configurable on the server. */
export const DEFAULT_LIMITS = {
  /** Bytes of one operation: name + data + headers as JSON. */
  maxOperationSize: 64 * 1024,
  /** Bytes of a message's data once rolled up (a long streamed response). */
  maxMessageSize: 4 * 1024 * 1024,
  /**
   * Operations one message may take: its create, appends and updates (a delete is always allowed).
   * Every operation's id is kept for deduplication while the message is retained, and a store's
   * read and trim of a message cost one step per operation, so a message of a million empty appends
   * must be refused, not stored. 100,000 is an hour of a part streamed with the AI layer's 40 ms
   * window, or 100,000 tokens sent one by one.
   */
  maxMessageOps: 100_000,
  /** Bytes of one inbound WebSocket frame. */
  maxFrameSize: 1024 * 1024,
  /** Bytes of one HTTP request body. */
  maxHttpBody: 1024 * 1024,
  /** Operations in one publish. */
  maxOpsPerPublish: 100,
  /** Channels one connection may have attached. */
  maxChannelsPerConnection: 500,
  /** Large reads (history pages, catch-up pages) the server runs at once; others wait in line. */
  maxConcurrentReads: 4,
  /** Reads that may wait for a slot; a history request beyond them gets `rate_limited` (retryable). */
  maxQueuedReads: 64,
  /** Header entries per operation. */
  maxHeaders: 64,
  /** Length of a channel name. */
  maxChannelNameLength: 256,
  /** Length of an id or an event name. */
  maxIdLength: 256,
  /** Realtime connections open at once with one API key (tokens count for the key that signed them). */
  maxConnectionsPerKey: 10_000,
  /**
   * Token connections of one key + clientId (all its devices and tabs) open at once; also of each
   * token without a clientId (a holder of its own), within `maxAnonymousConnectionsPerKey`.
   */
  maxConnectionsPerClient: 100,
  /** Connections of anonymous tokens (no clientId) of one key, together. */
  maxAnonymousConnectionsPerKey: 2_500,
  /**
   * Connections of each key kept for the key itself (its backends): tokens together get the rest.
   * At most a tenth of `maxConnectionsPerKey` is reserved, whatever this says.
   */
  keyConnectionReserve: 100,
  /**
   * Operations one token holder (key + clientId: all its connections and REST together; a token
   * without a clientId is a holder of its own) may publish per second (a burst of as many is allowed).
   */
  maxPublishRate: 1_000,
  /** The same for API-key identities (trusted backends and agents); 0 = no limit. */
  maxKeyPublishRate: 0,
  /**
   * Bytes one token holder may publish per second (operations' name + data + headers, as their
   * size is counted; Durable Streams bodies), with a burst of as many. A publish larger than the
   * burst passes when the budget is full, and the identity waits for it to refill.
   */
  maxPublishBytesRate: 1024 * 1024,
  /** The same for API-key identities; 0 = no limit. */
  maxKeyPublishBytesRate: 0,
  /**
   * Bytes one token holder (key + clientId, or one token without a clientId) may send one node per second (WebSocket frames, and the bodies of
   * upstream POSTs, REST publishes and Durable Streams writes), counted before they are parsed, after a burst of twice this or of two `maxFrameSize`
   * frames, whichever is larger. Past it the node stops reading the connection (or the POST) until
   * the budget refills (nothing is refused: TCP slows the sender). API keys are not counted. 0 = no
   * limit.
   */
  maxInboundBytesRate: 4 * 1024 * 1024,
  /**
   * Connection requests (new or recovering, any transport) and token renewals (`auth` frames) of one
   * token clientId (or one token without a clientId, before the key's anonymous rate below) per
   * second, after a burst of twice `maxConnectionsPerClient`: every dropped
   * connection stays recoverable for a while, so connecting and dropping without end would hold
   * memory without bound, and every renewal costs a signature check.
   */
  maxConnectRate: 10,
  /** The same for a key's anonymous tokens together, after a burst of twice `maxAnonymousConnectionsPerKey`. */
  maxAnonymousConnectRate: 250,
  /** Message leases held at once by one holder (key + clientId, or one token without a clientId). */
  maxLeasesPerClient: 1_000,
  /**
   * Other frames (ping, attach, detach, presence, auth) one connection may send per second, after a
   * burst of `maxFrameBurst`; a connection that keeps sending past it is disconnected.
   */
  maxFrameRate: 100,
  /** Burst of other frames one connection may send at once (e.g. re-attaching every channel). */
  maxFrameBurst: 1_000,
  /** Channels one connection may be present in. */
  maxPresenceChannelsPerConnection: 100,
  /** Bytes of presence data (as JSON) one connection holds over all its channels. */
  maxPresenceBytesPerConnection: 256 * 1024,
  /**
   * Presence frames (enter/update/leave) one connection may send per second, after a burst of
   * `maxPresenceChannelsPerConnection` (entering each once), or of this rate if larger.
   */
  maxPresenceRate: 10,
  /** Nesting depth of JSON in one frame or body. */
  maxJsonDepth: 64,
  /** Members in one channel's presence set. */
  maxPresenceMembers: 1000,
  /**
   * Members of one clientId (its tabs and devices) in one channel's presence set, those held in
   * their grace after a drop included (a new one replaces the oldest of those); 0 = no limit.
   */
  maxPresenceMembersPerClient: 10,
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
  /** How long a new long-poll connection may wait before its first poll, ms; then it ends. */
  firstPollTimeout: 10_000,
} as const;

export const PROTOCOL_VERSION = 1;
