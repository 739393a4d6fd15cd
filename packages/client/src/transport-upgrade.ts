/**
 * The background upgrade (ARCHITECTURE.md §5 "…and a WebSocket upgrade is retried in the background"): while
 * the connection runs on a fallback transport, a better one is tried every `upgradeInterval`, and the
 * connection moves to it with no state change, nothing lost and nothing twice:
 *
 *   probe        open the better transport as a throwaway connection; does `connected` get
 *                through? (a WebSocket that upgrades but whose frames a proxy buffers fails here,
 *                and the working fallback is untouched — `transport-probe.ts`)
 *   candidate    open it with recover=<connectionKey>: the server moves the connection (same
 *                identity) to it and drops the old transport — whose end is then held, not a loss
 *   adopt        the candidate's `connected` arrived: it becomes the connection's transport; nothing
 *                is sent while the old transport drains (its last upstream POST must reach the
 *                server before any frame of the new one, or a late attach could supersede a new one)
 *   switched     the old transport is dropped and the ordinary resume path runs on the new one:
 *                channels re-attach from their positions (versions make overlaps harmless),
 *                unacknowledged publishes are resent with their ids (the server dedups)
 *
 * A candidate that fails changes nothing, unless the old transport already ended: that loss then
 * stands and the connection reconnects as usual. Any state change of the connection cancels all.
 */
import type { ConnectedFrame } from '@mooring/protocol';
import { connectUrl } from './endpoints.ts';
import type { Timers } from './timers.ts';
import { TimerSlot } from './timers.ts';
import type { Timings } from './timings.ts';
import type { Transport, TransportCloseInfo, TransportHandlers } from './transport.ts';
import type { Probe } from './transport-probe.ts';
import { probeTransport } from './transport-probe.ts';
import type { TransportChoice, TransportPlan } from './transport-selector.ts';

export interface TransportUpgradeDeps {
  plan: TransportPlan;
  timers: Timers;
  timings: Timings;
  params: () => Promise<Record<string, string>> | Record<string, string>;
  /** Whether the connection is connected (an upgrade only runs then). */
  connected(): boolean;
  /** The connection key to recover (keeps the identity). */
  key(): string | undefined;
  /** The connection's current transport. */
  current(): Transport | undefined;
  /** The handlers the connection gives its current transport; the candidate gets them once adopted. */
  handlersFor(transport: Transport): TransportHandlers;
  /** The candidate delivered `connected`: it becomes the connection's transport. */
  adopt(candidate: Transport, frame: ConnectedFrame): void;
  /** The old transport is gone: run the resume path on the new one. */
  switched(candidate: Transport, frame: ConnectedFrame): void;
  /** The candidate failed after the old transport had ended: the connection is lost. */
  lost(info: TransportCloseInfo): void;
}

export class TransportUpgrade {
  readonly #deps: TransportUpgradeDeps;
  readonly #timer: TimerSlot;
  readonly #candidateTimer: TimerSlot;
  readonly #drainTimer: TimerSlot;
  /** Changes on `cancel` and on adoption; an async step started before is stale. */
  #epoch = 0;
  #probe: Probe | undefined;
  #candidate: Transport | undefined;
  /** The old transport, from its end (held) or adoption until it drained. */
  #retiring: Transport | undefined;
  #heldLoss: TransportCloseInfo | undefined;
  #switching = false;
  /** When a candidate last failed (timers' clock): it may still reach the server after that. */
  #failedAt: number | undefined;

  constructor(deps: TransportUpgradeDeps) {
    this.#deps = deps;
    this.#timer = new TimerSlot(deps.timers);
    this.#candidateTimer = new TimerSlot(deps.timers);
    this.#drainTimer = new TimerSlot(deps.timers);
  }

  /** A candidate is opening: a takeover of the connection now is most likely its own. */
  get opening(): boolean {
    return this.#candidate !== undefined;
  }

  /**
   * A candidate failed within the last `realtimeRequestTimeout`: the request of one given up on here
   * (timed out, reset on its way back) may still have reached the server and taken the connection
   * over, so a takeover now may be its own too.
   */
  get failedLately(): boolean {
    return (
      this.#failedAt !== undefined &&
      this.#deps.timers.now() - this.#failedAt < this.#deps.timings.realtimeRequestTimeout
    );
  }

  /** Between adoption and the switch: the connection must not send (it resends after the switch). */
  get switching(): boolean {
    return this.#switching;
  }

  /** Connected on `kind`: tries the better transport after `upgradeInterval`, if there is one. */
  schedule(kind: string): void {
    if (!this.#deps.connected()) return;
    const target = this.#deps.plan.upgradeFrom(kind);
    if (target === undefined) return;
    this.#timer.set(this.#deps.timings.upgradeInterval, () => {
      void this.#run(target);
    });
  }

  /**
   * The current transport ended. While a candidate opens this is most likely the server moving the
   * connection to it: returns true and holds the loss until the candidate decides.
   */
  hold(transport: Transport, info: TransportCloseInfo): boolean {
    if (this.#candidate === undefined) return false;
    this.#heldLoss = info;
    this.#retiring = transport; // kept to drain: an upstream POST of it may still be on its way
    return true;
  }

  /** Abandons everything in progress (the connection changed state). */
  cancel(): void {
    this.#epoch += 1;
    this.#timer.clear();
    this.#candidateTimer.clear();
    this.#drainTimer.clear();
    this.#switching = false;
    this.#heldLoss = undefined;
    this.#probe?.cancel();
    this.#probe = undefined;
    const candidate = this.#candidate;
    const retiring = this.#retiring;
    this.#candidate = undefined;
    this.#retiring = undefined;
    candidate?.abort();
    retiring?.abort();
  }

  async #run(target: TransportChoice): Promise<void> {
    const epoch = this.#epoch;
    const stale = () => this.#epoch !== epoch || !this.#deps.connected();
    const timeout = Math.min(target.fallbackTimeout, this.#deps.timings.realtimeRequestTimeout);
    let params: Record<string, string>;
    try {
      params = await this.#deps.params();
    } catch {
      if (!stale()) this.#again();
      return;
    }
    if (stale()) return;
    const probe = probeTransport(
      target.create(),
      connectUrl(target.endpoint, params, undefined),
      this.#deps.timers,
      timeout,
    );
    this.#probe = probe;
    const works = await probe.result;
    if (this.#probe === probe) this.#probe = undefined;
    if (stale()) return;
    if (!works) {
      this.#again();
      return;
    }
    const candidate = target.create();
    this.#candidate = candidate;
    this.#candidateTimer.set(timeout, () => this.#failed());
    const forward = this.#deps.handlersFor(candidate);
    candidate.open(connectUrl(target.endpoint, params, this.#deps.key()), {
      ...forward,
      onFrame: (frame) => {
        if (candidate === this.#candidate) {
          if (frame.type === 'connected') this.#adopt(candidate, frame);
        } else forward.onFrame(frame);
      },
      onClose: (info) => {
        if (candidate === this.#candidate) this.#failed();
        else forward.onClose(info);
      },
    });
  }

  #again(): void {
    const kind = this.#deps.current()?.kind;
    if (kind !== undefined) this.schedule(kind);
  }

  #failed(): void {
    const candidate = this.#candidate;
    if (candidate === undefined) return;
    this.#candidate = undefined;
    this.#candidateTimer.clear();
    candidate.abort();
    this.#failedAt = this.#deps.timers.now();
    const loss = this.#heldLoss;
    this.#heldLoss = undefined;
    if (loss === undefined) {
      this.#again();
      return;
    }
    this.#retiring?.abort();
    this.#retiring = undefined;
    this.#deps.lost(loss);
  }

  #adopt(candidate: Transport, frame: ConnectedFrame): void {
    if (!this.#deps.connected()) return;
    this.#candidate = undefined;
    this.#candidateTimer.clear();
    this.#heldLoss = undefined;
    const old = this.#deps.current() ?? this.#retiring;
    this.#retiring = old;
    this.#switching = true;
    this.#epoch += 1;
    const epoch = this.#epoch;
    this.#deps.adopt(candidate, frame);
    const finish = (): void => {
      if (this.#epoch !== epoch || !this.#switching) return;
      this.#switching = false;
      this.#drainTimer.clear();
      this.#retiring = undefined;
      old?.abort();
      this.#deps.switched(candidate, frame);
    };
    if (old?.drain) {
      // Bounded: an old transport whose last POST never returns must not hold the switch forever.
      this.#drainTimer.set(this.#deps.timings.realtimeRequestTimeout, finish);
      old.drain().then(finish, finish);
    } else {
      finish();
    }
  }
}
