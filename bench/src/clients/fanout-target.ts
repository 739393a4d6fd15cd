/**
 * What the fan-out load generator needs from each server under test: a way to connect a subscriber
 * (resolving once it is subscribed, so the measurement never races the subscription) and a
 * publisher. Implementations speak each server's own wire protocol.
 */

export interface SubscriberHandlers {
  /** Every received text that may carry payloads (the load generator scans it). */
  onText(text: string): void;
  /** The connection closed or failed after it was subscribed. */
  onClose(reason: string): void;
}

export interface Closable {
  close(): void;
}

export interface PublisherStats {
  /** Publishes the server acknowledged (only for servers that acknowledge). */
  acked: number;
  /** Publishes the server refused. */
  errors: number;
}

export interface Publisher extends Closable {
  publish(payload: string): void;
  stats(): PublisherStats;
}

export interface FanoutTarget {
  readonly name: string;
  subscribe(port: number, handlers: SubscriberHandlers): Promise<Closable>;
  publisher(port: number): Promise<Publisher>;
}

/** Rejects after `ms` unless `promise` settles first; always clears its timer. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
