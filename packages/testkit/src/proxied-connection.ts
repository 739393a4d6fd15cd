/**
 * One accepted client connection and its upstream connection to the target, joined by two `Lane`s.
 *
 *             accept
 *               │  blackhole on ──────────────────────────────▶ dead
 *               │  refuseUpgrade on ──▶ sniffing ─ upgrade ───▶ refused (answer, then close)
 *               │                          │ other / fault lifted
 *               ▼                          ▼
 *             open (upstream connected, lanes forward) ─ blackhole() ─▶ dead
 *               │ reset() / close()
 *               ▼
 *             closed
 *
 * `dead` is final: nothing is forwarded, FIN and RST are not passed on, sockets stay open until the
 * proxy closes. That is what a silently dropped flow looks like to both ends, and it is why lifting the
 * blackhole does not revive connections that were inside it. In `open`, an error on one side resets the
 * other, as an RST would cross a real network.
 */

import { STATUS_CODES } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { FaultHost } from './faults.ts';
import { Lane } from './lane.ts';
import { sniffUpgrade } from './sniff-upgrade.ts';

export interface Target {
  readonly host: string;
  readonly port: number;
}

type Phase = 'sniffing' | 'open' | 'dead' | 'refused' | 'closed';

export class ProxiedConnection {
  /** Resolves once both sockets of this connection are closed. */
  readonly gone: Promise<void>;
  private phase: Phase;
  private readonly client: Socket;
  private readonly target: Target;
  private readonly host: FaultHost;
  private upstream: Socket | null = null;
  private up: Lane | null = null;
  private down: Lane | null = null;
  private sniffed: Buffer[] = [];
  private clientClosed = false;
  private upstreamClosed = false;
  private resolveGone: () => void = () => {};

  constructor(client: Socket, target: Target, host: FaultHost) {
    this.client = client;
    this.target = target;
    this.host = host;
    this.gone = new Promise((resolve) => {
      this.resolveGone = resolve;
    });
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    client.on('end', () => this.onClientEnd());
    client.on('error', () => this.onError('client'));
    client.on('close', () => {
      this.clientClosed = true;
      this.checkGone();
    });
    const faults = host.faults;
    if (faults.blackhole) {
      this.phase = 'dead';
    } else if (faults.refuseUpgrade !== null) {
      this.phase = 'sniffing';
    } else {
      this.phase = 'open';
      this.connectUpstream(null);
    }
  }

  /** Faults changed: finish sniffing if `refuseUpgrade` was lifted, let lanes re-pace. */
  refresh(): void {
    if (this.phase === 'sniffing' && this.host.faults.refuseUpgrade === null) this.sniff();
    this.up?.refresh();
    this.down?.refresh();
  }

  /** Become a silently dead flow, for good. */
  blackhole(): void {
    if (this.phase === 'closed' || this.phase === 'refused' || this.phase === 'dead') return;
    this.phase = 'dead';
    this.host.counters.bytesDropped += this.sniffed.reduce((n, b) => n + b.length, 0);
    this.sniffed = [];
    this.up?.stop(true);
    this.down?.stop(true);
  }

  /** Destroy both sockets with RST. */
  reset(): Promise<void> {
    if (this.phase !== 'closed') {
      this.host.counters.reset += 1;
      this.teardown();
      for (const socket of [this.client, this.upstream]) {
        if (socket === null || socket.destroyed) continue;
        // resetAndDestroy() on a socket still connecting waits for the connection before it resets
        // (and closes): a socket that never gets there would keep `gone` pending for ever. There is
        // no connection to reset yet, so drop it at once.
        if (socket.connecting) socket.destroy();
        else socket.resetAndDestroy();
      }
      this.settleSoon();
    }
    return this.gone;
  }

  /**
   * Both sockets are destroyed: their `close` events follow. Should one never come, `gone` resolves
   * anyway after a second, so that a reset or a proxy close can never hang a test.
   */
  private settleSoon(): void {
    setTimeout(() => {
      if (this.client.destroyed && (this.upstream === null || this.upstream.destroyed)) {
        this.clientClosed = true;
        this.upstreamClosed = true;
        this.checkGone();
      }
    }, 1000).unref();
  }

  /** Destroy both sockets (the proxy is closing). */
  destroy(): Promise<void> {
    this.teardown();
    this.client.destroy();
    this.upstream?.destroy();
    this.settleSoon();
    return this.gone;
  }

  private teardown(): void {
    this.phase = 'closed';
    this.up?.stop(false);
    this.down?.stop(false);
  }

  private onClientData(chunk: Buffer): void {
    const counters = this.host.counters;
    counters.bytesFromClient += chunk.length;
    switch (this.phase) {
      case 'open':
        this.up?.push(chunk);
        return;
      case 'sniffing':
        this.sniffed.push(chunk);
        this.sniff();
        return;
      case 'dead':
        counters.bytesDropped += chunk.length;
        return;
      default:
        return;
    }
  }

  private onClientEnd(): void {
    switch (this.phase) {
      case 'open':
        this.up?.end();
        return;
      case 'sniffing':
        // The client finished before sending a whole head: it is not an upgrade; forward what came.
        this.phase = 'open';
        this.connectUpstream(this.takeSniffed());
        this.up?.end();
        return;
      case 'refused':
        this.client.destroy();
        return;
      default:
        return;
    }
  }

  private onError(side: 'client' | 'upstream'): void {
    if (this.phase === 'dead' || this.phase === 'closed') return;
    this.teardown();
    const other = side === 'client' ? this.upstream : this.client;
    if (other !== null && !other.destroyed) other.resetAndDestroy();
  }

  private sniff(): void {
    const refusal = this.host.faults.refuseUpgrade;
    const bytes = Buffer.concat(this.sniffed);
    const result = refusal === null ? 'other' : sniffUpgrade(bytes);
    if (result === 'incomplete') return;
    this.sniffed = [];
    if (result === 'other' || refusal === null) {
      this.phase = 'open';
      this.connectUpstream(bytes);
      return;
    }
    this.phase = 'refused';
    this.host.counters.refused += 1;
    const body = Buffer.from(refusal.body);
    const head =
      `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status] ?? 'Refused'}\r\n` +
      'Content-Type: text/plain; charset=utf-8\r\n' +
      `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
    const response = Buffer.concat([Buffer.from(head, 'latin1'), body]);
    this.host.counters.bytesToClient += response.length;
    this.client.end(response);
  }

  private takeSniffed(): Buffer {
    const bytes = Buffer.concat(this.sniffed);
    this.sniffed = [];
    return bytes;
  }

  private connectUpstream(initial: Buffer | null): void {
    const upstream = connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    upstream.setNoDelay(true);
    this.upstream = upstream;
    const up = new Lane('up', this.client, upstream, this.host);
    const down = new Lane('down', upstream, this.client, this.host);
    this.up = up;
    this.down = down;
    upstream.on('data', (chunk: Buffer) => {
      this.host.counters.bytesFromServer += chunk.length;
      down.push(chunk);
    });
    upstream.on('end', () => down.end());
    upstream.on('error', () => this.onError('upstream'));
    upstream.on('close', () => {
      this.upstreamClosed = true;
      this.checkGone();
    });
    if (initial !== null && initial.length > 0) up.push(initial);
  }

  private checkGone(): void {
    if (!this.clientClosed) return;
    if (this.upstream !== null && !this.upstreamClosed) return;
    this.teardown();
    this.resolveGone();
  }
}
