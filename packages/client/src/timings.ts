/**
 * Connection timings (ARCHITECTURE.md §5) and the retry backoff. All values in milliseconds.
 */

export interface Timings {
  /** Upper bound of the backoff between retries while `disconnected`. Default 15 000. */
  disconnectedRetryTimeout: number;
  /** Base of the exponential backoff: the n-th failed retry waits up to `base × 2^(n-1)`. Default 1 000. */
  initialRetryDelay: number;
  /**
   * How long retries may fail before the connection is `suspended`. Default: the value the server
   * announces in its `connected` frame, 120 000 before the first connection.
   */
  connectionStateTtl: number;
  /** Interval between retries while `suspended`. Default 30 000. */
  suspendedRetryTimeout: number;
  /** How long an opening connection, an attach, a graceful close or a REST request may take. Default 10 000. */
  realtimeRequestTimeout: number;
  /** Grace added to the server's `maxIdleInterval` before a silent connection counts as dead. Default 10 000. */
  idleGrace: number;
  /** How long a liveness probe (a `ping` after the network changed) waits for any frame. Default 5 000. */
  probeTimeout: number;
  /**
   * How long a WebSocket may take to deliver the server's `connected` frame before the client falls
   * back to HTTP streaming (when allowed). Default 4 000.
   */
  webSocketOpenTimeout: number;
  /**
   * How long an HTTP stream may take to deliver `connected` before the client falls back to
   * long-polling (a buffering proxy holds the stream). Default 4 000.
   */
  sseOpenTimeout: number;
  /** While connected on a fallback transport, how often a WebSocket is tried in the background. Default 60 000. */
  upgradeInterval: number;
}

export const DEFAULT_CLIENT_TIMINGS: Timings = {
  disconnectedRetryTimeout: 15_000,
  initialRetryDelay: 1_000,
  connectionStateTtl: 120_000,
  suspendedRetryTimeout: 30_000,
  realtimeRequestTimeout: 10_000,
  idleGrace: 10_000,
  probeTimeout: 5_000,
  webSocketOpenTimeout: 4_000,
  sseOpenTimeout: 4_000,
  upgradeInterval: 60_000,
};

/**
 * Delay before retry number `attempt` (1 = after the first failed retry): exponential backoff with
 * full jitter, `random() × min(cap, base × 2^(attempt-1))`. Full jitter spreads a crowd of clients
 * that lost the same server over the whole window instead of having them return in waves.
 * `attempt` 0 (a live connection was just lost) retries at once; see `firstRetryDelay`.
 */
export function retryDelay(attempt: number, timings: Timings, random: () => number): number {
  if (attempt <= 0) return 0;
  const ceiling = Math.min(timings.disconnectedRetryTimeout, timings.initialRetryDelay * 2 ** (attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * Delay before the first retry after a live connection was lost. A drop nobody announced (the
 * network: Wi-Fi, a NAT timeout, a phone changing networks) is most often this client's alone, and
 * its user waits: it retries at once. When the server ended the connection (`serverEnded`: a
 * `disconnect` frame, close 1001 or 1012 — a shutdown, a deploy, a drain) it ended every client's in
 * the same instant, and an immediate retry would bring them all back in the same millisecond: the
 * first retry waits `random() × min(disconnectedRetryTimeout, initialRetryDelay)` instead, as retry 1
 * does. (A load balancer that resets its connections without a word looks like the network: those
 * clients come back together, and the ones that fail spread from their next retry.)
 */
export function firstRetryDelay(serverEnded: boolean, timings: Timings, random: () => number): number {
  return serverEnded ? retryDelay(1, timings, random) : retryDelay(0, timings, random);
}
