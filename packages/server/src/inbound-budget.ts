/**
 * The bytes a token identity may send this node per second — WebSocket frames and the bodies of
 * upstream POSTs (HTTP transports) — before any of them is parsed (PROTOCOL.md §10,
 * `maxInboundBytesRate`). Parsing and checking a frame costs the event loop
 * in proportion to its size (tens of ms for a frame of `maxFrameSize` whose JSON is a few hundred
 * thousand small values), and every other budget is taken after that work: without this one, a
 * token holder sending large frames as fast as its link allows held the event loop from everyone.
 *
 * Over budget, nothing is refused: the connection's socket (or the POST's body) stops being read
 * until the identity's bucket has refilled, so TCP slows the sender down and no frame is lost. A
 * POST forwarded from another node (Redis) was read there; it waits here, on the node holding the
 * connection, for as long as its bytes ask before its frames are handled. One bucket per identity
 * (key + clientId, or a key's anonymous tokens together), shared by its connections on this node;
 * the event loop is per node, so the budget is too. API keys (trusted backends) are not counted.
 */
/** How long (ms) to stop reading after `bytes` more arrived; 0 to read on. */
export type Pace = (bytes: number) => number;

interface Bucket {
  level: number;
  at: number;
  /** Connections of the identity open on this node: the bucket is dropped with the last. */
  users: number;
}

export class InboundBudget {
  readonly #buckets = new Map<string, Bucket>();
  readonly #rate: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #onThrottle: () => void;

  /**
   * `rate` bytes per second after a burst of `burst` bytes; `onThrottle` hears each frame that
   * leaves an identity over its budget (a metric); `now` in ms (a clock for tests).
   */
  constructor(
    rate: number,
    burst: number,
    onThrottle: () => void = () => {},
    now: () => number = () => performance.now(),
  ) {
    this.#rate = rate;
    this.#burst = burst;
    this.#onThrottle = onThrottle;
    this.#now = now;
  }

  /** A connection of `key` opened. */
  hold(key: string): void {
    const bucket = this.#buckets.get(key);
    if (bucket) bucket.users++;
    else this.#buckets.set(key, { level: this.#burst, at: this.#now(), users: 1 });
  }

  /** A connection of `key` closed. */
  release(key: string): void {
    const bucket = this.#buckets.get(key);
    if (bucket && --bucket.users === 0) this.#buckets.delete(key);
  }

  /**
   * Takes `bytes` just received; returns how long (ms) the connection must stop reading for the
   * bucket to be back at zero, or 0 while the identity is within its budget.
   */
  take(key: string, bytes: number): number {
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) return 0;
    const now = this.#now();
    bucket.level = Math.min(this.#burst, bucket.level + ((now - bucket.at) * this.#rate) / 1000);
    bucket.at = now;
    bucket.level -= bytes;
    if (bucket.level >= 0) return 0;
    this.#onThrottle();
    return Math.ceil((-bucket.level * 1000) / this.#rate);
  }

  /** Identities with a bucket (for tests). */
  get size(): number {
    return this.#buckets.size;
  }
}
