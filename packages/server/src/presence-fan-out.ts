/**
 * Presence changes handed to the connections attached to a channel on this node, for both presences
 * (PresenceService on one node, RedisPresence for the changes it hears on the bus).
 *
 * A change is one write per subscriber. On a channel of a few subscribers it is written to each at
 * once. On a crowded one, a member changing 10 times a second (within `maxPresenceRate`) would make
 * the node write every change to every subscriber: with 2,000 subscribers, ten such members held a
 * node for seconds at a time (bench/README, *Presence on a crowded channel*). So a channel of more
 * than `FAN_OUT_SHARE` subscribers is handed its changes in passes, like the hub's deliveries:
 *
 * - a pass writes its changes to the subscribers a share at a time, one share per turn of the event
 *   loop, a share being at most `FAN_OUT_SHARE` frames (and at least one subscriber): the node's
 *   other connections are read and answered between the shares;
 * - changes that come during a pass wait for it to end, and the next pass carries them; of one
 *   member's changes only the last waits (PROTOCOL.md §6.4: a member's presence is a state, and
 *   `enter` of a member present is an `update`, `update` of one absent an `enter`, so the set a
 *   subscriber holds comes out the same). A member changing faster than the channel can be written
 *   to costs one write per subscriber per pass, not per change.
 *
 * A subscriber that attaches during a pass may miss it: it subscribed before its `sync` was read, and
 * the sync holds the change (connection.ts). One that leaves is skipped.
 */
import { FAN_OUT_SHARE } from './hub.ts';
import { forEachOfInSlices } from './in-slices.ts';
import { KeyedListeners } from './keyed-listeners.ts';

export type PresenceFrameListener = (frame: Buffer) => void;

export interface PresenceFanOutOptions {
  /** Changes are handed out in a pass (the channel has more than `FAN_OUT_SHARE` subscribers here). */
  onPass?: () => void;
  /** A change waiting for a pass was replaced by a later one of the same member: never written. */
  onMerged?: () => void;
}

export class PresenceFanOut {
  readonly #listeners = new KeyedListeners<Buffer>();
  readonly #o: PresenceFanOutOptions;
  /** Channels with a pass under way: the changes waiting for it to end, the last per member. */
  readonly #passes = new Map<string, Map<string, Buffer>>();

  constructor(options: PresenceFanOutOptions = {}) {
    this.#o = options;
  }

  add(channel: string, listener: PresenceFrameListener): () => void {
    return this.#listeners.add(channel, listener);
  }

  count(channel: string): number {
    return this.#listeners.count(channel);
  }

  /** Hands `frame`, a change of `member` (its connectionId) on `channel`, to the channel's subscribers. */
  emit(channel: string, member: string, frame: Buffer): void {
    const waiting = this.#passes.get(channel);
    if (waiting) {
      if (waiting.delete(member)) this.#o.onMerged?.(); // the latest change goes last
      waiting.set(member, frame);
      return;
    }
    this.#hand(channel, [frame]);
  }

  #hand(channel: string, frames: Buffer[]): void {
    const subscribers = this.#listeners.count(channel);
    if (subscribers === 0) return;
    if (subscribers <= FAN_OUT_SHARE) {
      for (const frame of frames) this.#listeners.emit(channel, frame);
      return;
    }
    const waiting = new Map<string, Buffer>();
    this.#passes.set(channel, waiting);
    this.#o.onPass?.();
    forEachOfInSlices(
      this.#listeners.listeners(channel),
      Math.max(1, Math.floor(FAN_OUT_SHARE / frames.length)),
      (listener) => {
        for (const frame of frames) listener(frame);
      },
      () => {
        if (waiting.size === 0) {
          this.#passes.delete(channel);
          return;
        }
        // the next pass in the next turn; until then what comes still joins it
        setImmediate(() => {
          this.#passes.delete(channel);
          this.#hand(channel, [...waiting.values()]);
        });
      },
    );
  }
}

/** The connectionId of the member in a presence event frame as the presences write it (`memberJson`). */
export function presenceMemberId(frame: string): string {
  const at = frame.indexOf('"connectionId":');
  if (at < 0) return frame;
  const start = at + '"connectionId":'.length;
  const end = frame.indexOf(',"', start);
  return frame.slice(start, end < 0 ? undefined : end);
}
