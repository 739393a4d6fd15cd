/**
 * The network faults of the soak, on the FaultProxy instances in front of the server (one per agent
 * process, a few shared by the users). Every `everyMs` one idle proxy, chosen by the seeded random
 * source, gets one fault:
 *
 *   reset       RST to both ends of every connection through it (instant)
 *   blackhole   bytes dropped, no FIN/RST, for 1–4 s: the connections are dead for good and only
 *               heartbeats find out; new connections meanwhile go nowhere
 *   delay       100–600 ms (+ jitter) on every chunk, for 2–8 s
 *   bandwidth   2–32 KiB/s per direction per connection, for 2–8 s
 *   refuseUpgrade  WebSocket upgrades refused (502) and every connection reset, for 2–8 s: clients
 *               fall back to SSE / long-polling, then upgrade back to WebSocket in the background
 *
 * A proxy carries one timed fault at a time (`pass()` clears all of a proxy's faults); a reset can
 * land on top of it.
 */
import type { FaultProxy } from '@mooring/testkit';

export const FAULT_KINDS = ['reset', 'blackhole', 'delay', 'bandwidth', 'refuseUpgrade'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export class Chaos {
  readonly counts: Record<FaultKind, number> = {
    reset: 0,
    blackhole: 0,
    delay: 0,
    bandwidth: 0,
    refuseUpgrade: 0,
  };
  readonly #proxies: FaultProxy[];
  readonly #random: () => number;
  readonly #busy = new Map<FaultProxy, ReturnType<typeof setTimeout>>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(proxies: FaultProxy[], random: () => number) {
    this.#proxies = proxies;
    this.#random = random;
  }

  get total(): number {
    return FAULT_KINDS.reduce((sum, k) => sum + this.counts[k], 0);
  }

  start(everyMs: number): void {
    this.#timer = setInterval(() => this.#inject(), everyMs);
  }

  /** Stops injecting and clears every fault still in force. */
  stop(): void {
    clearInterval(this.#timer);
    for (const [proxy, timer] of this.#busy) {
      clearTimeout(timer);
      proxy.pass();
    }
    this.#busy.clear();
  }

  #between(min: number, max: number): number {
    return min + this.#random() * (max - min);
  }

  #inject(): void {
    const r = this.#random();
    const kind: FaultKind =
      r < 0.35
        ? 'reset'
        : r < 0.5
          ? 'blackhole'
          : r < 0.7
            ? 'delay'
            : r < 0.85
              ? 'bandwidth'
              : 'refuseUpgrade';
    // A reset may hit a proxy that is delaying or throttling: acks still in flight are lost with the
    // connection while their operations are stored, so the resend must be deduplicated.
    const candidates = kind === 'reset' ? this.#proxies : this.#proxies.filter((p) => !this.#busy.has(p));
    const proxy = candidates[Math.floor(this.#random() * candidates.length)];
    if (!proxy) return;
    this.counts[kind]++;
    if (kind === 'reset') {
      void proxy.reset();
      return;
    }
    if (kind === 'refuseUpgrade') {
      // Reconnects find WebSocket refused and fall back to HTTP streaming; after `pass()` the
      // clients' background upgrade moves their connections back to WebSocket.
      proxy.refuseUpgrade(502);
      void proxy.reset();
    } else if (kind === 'blackhole') proxy.blackhole();
    else if (kind === 'delay') proxy.delay(this.#between(100, 600), this.#between(0, 100));
    else proxy.bandwidth(Math.round(this.#between(2, 32) * 1024));
    const ms = kind === 'blackhole' ? this.#between(1000, 4000) : this.#between(2000, 8000);
    this.#busy.set(
      proxy,
      setTimeout(() => {
        this.#busy.delete(proxy);
        proxy.pass();
      }, ms),
    );
  }
}
