/**
 * A round-robin TCP load balancer for tests: the "ordinary load balancer with no stickiness" in front
 * of several server nodes. Each new client connection goes to the next target in turn; a target that
 * refuses the connection (nothing listening: a killed node) is skipped and the next one tried, so a
 * client never notices a dead node except by losing the connections it held there. Bytes are passed
 * through untouched in both directions; when either side closes or fails, the other is closed too.
 *
 *   client ──▶ 127.0.0.1:<balancer.port> ──▶ Balancer ──▶ target 1, 2, 3, 1, 2, ...
 *
 * `remove()` and `add()` change the rotation for new connections (open ones are untouched), which also
 * lets a test steer clients onto one node. It listens only on 127.0.0.1 and on a port the OS picks.
 */

import { connect, createServer, type Server, type Socket } from 'node:net';

const LOOPBACK = '127.0.0.1';

/** A node behind the balancer. `host` defaults to 127.0.0.1. */
export interface BalancerTarget {
  readonly host?: string;
  readonly port: number;
}

/** Per-target counters since start (keyed by `host:port`). */
export interface BalancerTargetStats {
  /** Connections forwarded to this target. */
  forwarded: number;
  /** Connection attempts the target refused (or that failed before connecting). */
  refused: number;
  /** Forwarded connections still open. */
  open: number;
}

export class Balancer {
  /** The port the balancer listens on (127.0.0.1). */
  readonly port: number;
  private readonly server: Server;
  private targets: Required<BalancerTarget>[];
  private nextIndex = 0;
  private readonly live = new Map<Socket, { upstream: Socket | null; key: string | null }>();
  private readonly counters = new Map<string, BalancerTargetStats>();
  private closing: Promise<void> | null = null;

  private constructor(server: Server, targets: Required<BalancerTarget>[]) {
    this.server = server;
    this.targets = targets;
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('Balancer: server has no TCP port');
    this.port = address.port;
  }

  /** Listen on 127.0.0.1 with an OS-chosen port and spread connections over `targets` in turn. */
  static async start(targets: readonly BalancerTarget[]): Promise<Balancer> {
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, LOOPBACK, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const balancer = new Balancer(server, targets.map(resolveTarget));
    server.on('connection', (socket) => balancer.accept(socket));
    return balancer;
  }

  /** `http://127.0.0.1:<port><path>` (or `ws://`). */
  url(path = '/', protocol: 'http' | 'ws' = 'http'): string {
    return `${protocol}://${LOOPBACK}:${this.port}${path.startsWith('/') ? path : `/${path}`}`;
  }

  /** The targets in rotation, in order. */
  get rotation(): readonly Required<BalancerTarget>[] {
    return [...this.targets];
  }

  /** Client connections currently open through the balancer. */
  get connections(): number {
    return this.live.size;
  }

  /** Counters for one target, or zeros if it never received a connection. */
  stats(target: BalancerTarget): BalancerTargetStats {
    return { ...(this.counters.get(keyOf(resolveTarget(target))) ?? zeroStats()) };
  }

  /** Put a target into the rotation (no-op if present). New connections may go to it. */
  add(target: BalancerTarget): this {
    const resolved = resolveTarget(target);
    if (!this.targets.some((t) => keyOf(t) === keyOf(resolved))) this.targets.push(resolved);
    return this;
  }

  /** Take a target out of the rotation. Its open connections continue; new ones go elsewhere. */
  remove(target: BalancerTarget): this {
    const key = keyOf(resolveTarget(target));
    this.targets = this.targets.filter((t) => keyOf(t) !== key);
    return this;
  }

  /** Stop listening and destroy every connection. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      for (const [client, entry] of this.live) {
        entry.upstream?.destroy();
        client.destroy();
      }
      this.live.clear();
      await closed;
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private accept(client: Socket): void {
    client.on('error', () => {});
    if (this.closing !== null) {
      client.destroy();
      return;
    }
    const entry: { upstream: Socket | null; key: string | null } = { upstream: null, key: null };
    this.live.set(client, entry);
    client.once('close', () => {
      this.live.delete(client);
      entry.upstream?.destroy();
    });
    this.tryNext(client, entry, this.targets.length);
  }

  /** Connect to the next target in turn; on refusal try the following one, `left` times at most. */
  private tryNext(
    client: Socket,
    entry: { upstream: Socket | null; key: string | null },
    left: number,
  ): void {
    if (client.destroyed) return;
    if (left <= 0 || this.targets.length === 0 || this.closing !== null) {
      client.destroy();
      return;
    }
    const target = this.targets[this.nextIndex % this.targets.length] as Required<BalancerTarget>;
    this.nextIndex = (this.nextIndex + 1) % Math.max(1, this.targets.length);
    const key = keyOf(target);
    const stats = this.statsFor(key);
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      if (client.destroyed) {
        upstream.destroy();
        return;
      }
      stats.forwarded += 1;
      stats.open += 1;
      entry.upstream = upstream;
      entry.key = key;
      upstream.once('close', () => {
        stats.open -= 1;
        client.destroy();
      });
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.on('error', () => {
      if (connected) {
        client.destroy();
        return;
      }
      stats.refused += 1;
      upstream.destroy();
      this.tryNext(client, entry, left - 1);
    });
  }

  private statsFor(key: string): BalancerTargetStats {
    let stats = this.counters.get(key);
    if (stats === undefined) {
      stats = zeroStats();
      this.counters.set(key, stats);
    }
    return stats;
  }
}

function resolveTarget(target: BalancerTarget): Required<BalancerTarget> {
  if (!Number.isInteger(target.port) || target.port <= 0 || target.port > 65535) {
    throw new RangeError(`Balancer: target port must be 1-65535, got ${target.port}`);
  }
  return { host: target.host ?? LOOPBACK, port: target.port };
}

function keyOf(target: Required<BalancerTarget>): string {
  return `${target.host}:${target.port}`;
}

function zeroStats(): BalancerTargetStats {
  return { forwarded: 0, refused: 0, open: 0 };
}
