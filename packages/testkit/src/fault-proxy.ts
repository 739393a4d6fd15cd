/**
 * A TCP proxy for tests that breaks the network on command. Point a client at `proxy.url(...)` instead
 * of the server, then switch faults on and off mid-test to see how client and server cope:
 *
 *   client ──▶ 127.0.0.1:<proxy.port> ──▶ FaultProxy ──▶ target (the server under test)
 *
 * What each fault stands for in the world:
 *   reset()          a NAT or load balancer dropping state and answering with RST; a server crash
 *   blackhole()      a mobile handoff or Wi-Fi drop, an idle timeout on an ALB/NAT that forgets the flow
 *                    without telling either end: writes "succeed", nothing arrives, no close event
 *   delay()          a slow or distant link (satellite, congested mobile), with jitter
 *   bandwidth()      a thin link (2G/3G, throttled hotel Wi-Fi); back-pressure reaches the sender
 *   refuseUpgrade()  a corporate proxy or old load balancer that rejects `Upgrade: websocket` but serves
 *                    plain HTTP, so SSE and POST still work
 *   buffer()         a buffering proxy (nginx `proxy_buffering`, antivirus, some CDNs) that holds a
 *                    response until it is complete: short responses arrive, a stream's events do not
 *   refuse()         nothing listening at the address, a full accept queue, a firewall reject
 *
 * Faults compose (`refuseUpgrade().buffer()` is the classic corporate proxy) and `pass()` clears them
 * all. Each applies to existing connections and new ones, except where said otherwise on the method.
 * It listens only on 127.0.0.1 and on a port the OS picks.
 */

import { createServer, type Server, type Socket } from 'node:net';
import {
  type BufferOptions,
  emptyStats,
  type FaultHost,
  type FaultProxyStats,
  type Faults,
  NO_FAULTS,
} from './faults.ts';
import { ProxiedConnection, type Target } from './proxied-connection.ts';

const LOOPBACK = '127.0.0.1';

/** Where the proxy forwards to. `host` defaults to 127.0.0.1. */
export interface ProxyTarget {
  readonly host?: string;
  readonly port: number;
}

export interface FaultProxyOptions {
  /** Default for `buffer({ bytes })`: bytes held before release. Default 64 KiB. */
  bufferBytes?: number;
}

export class FaultProxy {
  /** The port the proxy listens on (127.0.0.1). */
  readonly port: number;
  readonly target: Target;
  private readonly server: Server;
  private readonly host: FaultHost;
  private readonly bufferBytes: number;
  private readonly live = new Set<ProxiedConnection>();
  private closing: Promise<void> | null = null;

  private constructor(server: Server, target: Target, host: FaultHost, bufferBytes: number) {
    this.server = server;
    this.target = target;
    this.host = host;
    this.bufferBytes = bufferBytes;
    const address = server.address();
    if (address === null || typeof address === 'string')
      throw new Error('FaultProxy: server has no TCP port');
    this.port = address.port;
  }

  /** Listen on 127.0.0.1 with an OS-chosen port and forward every connection to `target`. */
  static async start(target: ProxyTarget, options: FaultProxyOptions = {}): Promise<FaultProxy> {
    const bufferBytes = options.bufferBytes ?? 64 * 1024;
    assertPositive('bufferBytes', bufferBytes);
    const host = { faults: NO_FAULTS, counters: emptyStats() };
    const resolved: Target = { host: target.host ?? LOOPBACK, port: target.port };
    const server = createServer({ allowHalfOpen: true, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, LOOPBACK, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const proxy = new FaultProxy(server, resolved, host, bufferBytes);
    server.on('connection', (socket) => proxy.accept(socket));
    return proxy;
  }

  /** `http://127.0.0.1:<port><path>` (or `ws://`). */
  url(path = '/', protocol: 'http' | 'ws' = 'http'): string {
    return `${protocol}://${LOOPBACK}:${this.port}${path.startsWith('/') ? path : `/${path}`}`;
  }

  /** Client connections currently held open, including blackholed ones. */
  get connections(): number {
    return this.live.size;
  }

  /** The faults in force. */
  get faults(): Faults {
    return this.host.faults;
  }

  /** A snapshot of the counters since start. */
  get stats(): FaultProxyStats {
    return { ...this.host.counters };
  }

  /**
   * Clear every fault: forward normally. Held and queued bytes continue (released in order). Does not
   * revive connections that were blackholed: those stay dead until closed.
   */
  pass(): this {
    return this.set(NO_FAULTS);
  }

  /**
   * Destroy every current connection with TCP RST on both sides: both ends see ECONNRESET. Faults are
   * unchanged, so new connections behave as before. Resolves when the proxy's sockets are closed.
   */
  async reset(): Promise<void> {
    await Promise.all([...this.live].map((connection) => connection.reset()));
  }

  /**
   * Stop forwarding in both directions on every connection, sending no FIN or RST: bytes are read and
   * dropped, and a side that closes is not passed on. New connections are accepted and never reach the
   * target. Connections blackholed here stay dead after `pass()`; only new ones work again.
   */
  blackhole(): this {
    this.set({ ...this.host.faults, blackhole: true });
    for (const connection of this.live) connection.blackhole();
    return this;
  }

  /** Delay each chunk by `ms` plus up to `jitterMs` (uniform), keeping order within each direction. */
  delay(ms: number, jitterMs = 0): this {
    assertNonNegative('ms', ms);
    assertNonNegative('jitterMs', jitterMs);
    return this.set({ ...this.host.faults, delay: { ms, jitterMs } });
  }

  /** Cap throughput at `bytesPerSecond` per direction per connection. */
  bandwidth(bytesPerSecond: number): this {
    assertPositive('bytesPerSecond', bytesPerSecond);
    return this.set({ ...this.host.faults, bandwidth: bytesPerSecond });
  }

  /**
   * For new connections: read the first request head; if it carries `Upgrade: websocket`, answer
   * `HTTP/1.1 <status>` with `body` and close, without contacting the target. Any other first request
   * is forwarded untouched and the connection passes from then on (keep-alive included). Connections
   * already open when this is called are not inspected.
   */
  refuseUpgrade(status = 502, body = 'WebSocket upgrade refused by proxy\n'): this {
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      throw new RangeError(`FaultProxy.refuseUpgrade: status must be 200-599, got ${status}`);
    }
    return this.set({ ...this.host.faults, refuseUpgrade: { status, body } });
  }

  /**
   * Hold server→client bytes until the server ends the connection, `bytes` are held, or (by default)
   * an HTTP response is complete; then release them. Client→server bytes flow. So an SSE stream stalls
   * while a short response arrives whole. Applies to bytes arriving from now on.
   */
  buffer(options: BufferOptions = {}): this {
    const bytes = options.bytes ?? this.bufferBytes;
    assertPositive('bytes', bytes);
    return this.set({ ...this.host.faults, buffer: { bytes, responses: options.responses ?? true } });
  }

  /** Reset new connections as soon as they are accepted (clients see ECONNRESET). Open ones continue. */
  refuse(): this {
    return this.set({ ...this.host.faults, refuse: true });
  }

  /** Stop listening and destroy every connection. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
      await Promise.all([...this.live].map((connection) => connection.destroy()));
      await closed;
    })();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private set(faults: Faults): this {
    this.host.faults = faults;
    for (const connection of this.live) connection.refresh();
    return this;
  }

  private accept(socket: Socket): void {
    const counters = this.host.counters;
    counters.accepted += 1;
    socket.on('error', () => {});
    if (this.closing !== null) {
      socket.destroy();
      return;
    }
    if (this.host.faults.refuse) {
      counters.refused += 1;
      socket.resetAndDestroy();
      return;
    }
    const connection = new ProxiedConnection(socket, this.target, this.host);
    this.live.add(connection);
    void connection.gone.then(() => this.live.delete(connection));
  }
}

function assertNonNegative(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`FaultProxy: ${name} must be a finite number >= 0, got ${value}`);
  }
}

function assertPositive(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`FaultProxy: ${name} must be a finite number > 0, got ${value}`);
  }
}
