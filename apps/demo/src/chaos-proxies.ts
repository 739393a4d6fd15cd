/**
 * The network chaos panel's back end: every page (a tab's clientId) reaches Mooring through its own
 * FaultProxy (@mooring/testkit), so the buttons break only that page's connection — the other tabs
 * stay healthy, and anyone can watch one page recover while another keeps streaming.
 *
 *   browser tab ──▶ its FaultProxy (127.0.0.1:random) ──▶ Mooring
 *
 * Faults, as `POST /api/chaos { clientId, fault, seconds? }` names them:
 *   drop              reset every connection (TCP RST): the client reconnects and resumes at once
 *   blackhole         packets vanish for N seconds (no FIN, no RST): the client notices the silence
 *                     (no heartbeat within maxIdleInterval + grace), then reconnects
 *   refuse-websocket  the proxy answers `Upgrade: websocket` with 502: the client falls back to SSE
 *   buffer            refuse WebSocket and hold streamed responses (a buffering corporate proxy):
 *                     the client falls back to long-polling
 *   pass              clear the faults (the client upgrades back in the background)
 * Every fault but `pass` also drops the current connections, so the effect shows at once.
 *
 * Demo only: proxies listen on 127.0.0.1, so the panel works when the demo is opened on the same
 * machine; a page opened from another device goes straight to Mooring.
 */
import { FaultProxy } from '@mooring/testkit';

export const FAULTS = ['drop', 'blackhole', 'refuse-websocket', 'buffer', 'pass'] as const;
export type Fault = (typeof FAULTS)[number];

/** At most this many proxies (tabs); beyond, the oldest is closed. */
const MAX_PROXIES = 64;

export class ChaosProxies {
  readonly #target: { port: number };
  readonly #proxies = new Map<string, Promise<FaultProxy>>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #closed = false;

  constructor(target: { port: number }) {
    this.#target = target;
  }

  /** The proxy of a page (made on first use): its port. */
  async portFor(clientId: string): Promise<number> {
    return (await this.#proxy(clientId)).port;
  }

  /** Applies a fault to a page's proxy. */
  async apply(clientId: string, fault: Fault, seconds = 8): Promise<void> {
    const proxy = await this.#proxy(clientId);
    switch (fault) {
      case 'pass':
        proxy.pass();
        return;
      case 'drop':
        await proxy.reset();
        return;
      case 'blackhole': {
        proxy.blackhole();
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          proxy.pass();
        }, seconds * 1000);
        this.#timers.add(timer);
        return;
      }
      case 'refuse-websocket':
        proxy.pass().refuseUpgrade();
        await proxy.reset();
        return;
      case 'buffer':
        proxy.pass().refuseUpgrade().buffer();
        await proxy.reset();
        return;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    const all = await Promise.allSettled(this.#proxies.values());
    this.#proxies.clear();
    await Promise.all(all.map((p) => (p.status === 'fulfilled' ? p.value.close() : undefined)));
  }

  #proxy(clientId: string): Promise<FaultProxy> {
    if (this.#closed) return Promise.reject(new Error('the demo is closing'));
    let proxy = this.#proxies.get(clientId);
    if (!proxy) {
      if (this.#proxies.size >= MAX_PROXIES) {
        const [oldest, first] = this.#proxies.entries().next().value ?? [];
        if (oldest !== undefined && first) {
          this.#proxies.delete(oldest);
          void first.then((p) => p.close()).catch(() => {});
        }
      }
      proxy = FaultProxy.start({ port: this.#target.port });
      this.#proxies.set(clientId, proxy);
      proxy.catch(() => this.#proxies.delete(clientId));
    }
    return proxy;
  }
}
