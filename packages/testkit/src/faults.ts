/**
 * The set of faults a `FaultProxy` applies, and its counters. Faults compose: `refuseUpgrade()` and
 * `buffer()` together are the classic corporate proxy; `delay()` and `bandwidth()` together are a bad
 * mobile link. `pass()` clears them all. Kept apart from the proxy so that the per-connection parts read
 * the live settings without importing the proxy.
 */

export interface Faults {
  /** Connections are silently dead: nothing forwarded, no FIN, no RST. */
  readonly blackhole: boolean;
  /** New connections are reset as soon as they are accepted. */
  readonly refuse: boolean;
  /** Added latency per chunk, in milliseconds: `ms` plus a uniform random `[0, jitterMs)`. */
  readonly delay: { readonly ms: number; readonly jitterMs: number } | null;
  /** Throughput cap per direction per connection, in bytes per second. */
  readonly bandwidth: number | null;
  /** New connections whose first request asks for a WebSocket upgrade get this answer instead. */
  readonly refuseUpgrade: { readonly status: number; readonly body: string } | null;
  /** Server-to-client bytes are held; see `BufferOptions`. */
  readonly buffer: { readonly bytes: number; readonly responses: boolean } | null;
}

export const NO_FAULTS: Faults = {
  blackhole: false,
  refuse: false,
  delay: null,
  bandwidth: null,
  refuseUpgrade: null,
  buffer: null,
};

export interface BufferOptions {
  /** Release everything held once at least this many bytes are held. Default 64 KiB. */
  bytes?: number;
  /**
   * Also release each HTTP response as soon as it is complete (Content-Length reached or final chunk
   * seen), as nginx-style buffering proxies do, so short responses on keep-alive connections still
   * arrive. `false` releases only by byte count or when the server ends the connection. Default true.
   */
  responses?: boolean;
}

export interface FaultProxyStats {
  /** Connections accepted since start, including refused and blackholed ones. */
  accepted: number;
  /** Connections turned away by `refuse()` or answered by `refuseUpgrade()`. */
  refused: number;
  /** Connections destroyed by `reset()`. */
  reset: number;
  /** Bytes read from clients. */
  bytesFromClient: number;
  /** Bytes written to the target. */
  bytesToServer: number;
  /** Bytes read from the target. */
  bytesFromServer: number;
  /** Bytes written to clients (includes `refuseUpgrade()` answers). */
  bytesToClient: number;
  /** Bytes read and discarded because their connection was blackholed. */
  bytesDropped: number;
}

export function emptyStats(): FaultProxyStats {
  return {
    accepted: 0,
    refused: 0,
    reset: 0,
    bytesFromClient: 0,
    bytesToServer: 0,
    bytesFromServer: 0,
    bytesToClient: 0,
    bytesDropped: 0,
  };
}

/** What a connection needs from its proxy: the live fault settings and the counters to bump. */
export interface FaultHost {
  faults: Faults;
  readonly counters: FaultProxyStats;
}
