/**
 * `client.channels`: one `Channel` object per name for the life of the client, and the routing of
 * channel frames from the connection to them.
 */
import type { AttachFrame, Ref, ServerFrame } from '@mooring/protocol';
import { isChannelName } from '@mooring/protocol';
import type { ChannelOptions } from './channel.ts';
import { Channel } from './channel.ts';
import type { ChannelHost, ChannelInternals } from './channel-host.ts';
import { MooringError } from './errors.ts';

/** How the client drives the channels; handed over at construction, not part of the public surface. */
export interface ChannelRouter {
  /** The attaches to send with the next connection request (PROTOCOL.md §5.1). */
  preattach(): AttachFrame[];
  onConnected(): void;
  onConnectionLost(state: 'suspended' | 'closed' | 'failed', error: MooringError): void;
  /** Routes `attached`, `messages`, `detached`, `presence`, `ack` and `error` frames; false when nothing took it. */
  onFrame(frame: ServerFrame): boolean;
  /** Channel name → position, for a recovery key. */
  positions(): Record<string, string>;
}

export class Channels {
  readonly #host: ChannelHost;
  readonly #channels = new Map<string, { channel: Channel; internals: ChannelInternals }>();
  readonly #recovered: Map<string, string>;
  /**
   * Released channels waiting for the answer to their detach, by its ref, in the order released:
   * out of `#channels` (a later `get` makes a fresh one), they still hear that answer, or the new or
   * lost connection that ends the wait, so the promise `release` returned settles. Until then the
   * server may still be sending the old attachment's frames, and frames carry only the channel's
   * name: those of a name being released go to the released channel (which drops them, as it is
   * not wanted), never to a fresh one. The server answers a connection's frames in order, so all
   * that the old attachment sends comes before its `detached`, and a fresh channel's attach, sent
   * after the detach, is answered after it (PROTOCOL.md §6.1).
   */
  readonly #releasing = new Map<Ref, { name: string; internals: ChannelInternals }>();

  constructor(
    host: ChannelHost,
    recovered: Record<string, string>,
    register: (router: ChannelRouter) => void,
  ) {
    this.#host = host;
    this.#recovered = new Map(Object.entries(recovered));
    register({
      preattach: () => {
        const frames: AttachFrame[] = [];
        for (const { internals } of this.#channels.values()) {
          const frame = internals.preattach();
          if (frame) frames.push(frame);
        }
        return frames;
      },
      onConnected: () => {
        // a new connection holds no attachment: a released channel's detach is complete, and the
        // frames that follow are the fresh channels' own
        const releasing = [...this.#releasing];
        this.#releasing.clear();
        for (const [ref, { internals }] of releasing) internals.onDetached(ref, undefined);
        for (const { internals } of this.#channels.values()) internals.onConnected();
      },
      onConnectionLost: (state, error) => {
        // the lost connection sends nothing more, and the next one holds no attachment
        const releasing = [...this.#releasing.values()];
        this.#releasing.clear();
        for (const { internals } of releasing) internals.onConnectionLost(state, error);
        for (const { internals } of this.#channels.values()) internals.onConnectionLost(state, error);
      },
      onFrame: (frame) => this.#route(frame),
      positions: () => {
        const out: Record<string, string> = Object.fromEntries(this.#recovered);
        for (const [name, { internals }] of this.#channels) {
          const position = internals.recoveryPosition();
          if (position !== undefined) out[name] = position;
        }
        return out;
      },
    });
  }

  /**
   * The channel called `name`, created on first use. `options` choose how its first attach starts
   * (rewind, start, from); a position from a recovery key takes precedence over them.
   */
  get(name: string, options: ChannelOptions = {}): Channel {
    if (!isChannelName(name)) {
      throw new MooringError(
        'invalid_channel',
        `invalid channel name ${JSON.stringify(name)}: use 1–256 printable ASCII characters without spaces, * or ?`,
      );
    }
    const existing = this.#channels.get(name);
    if (existing) {
      existing.channel.configure(options);
      return existing.channel;
    }
    let internals: ChannelInternals | undefined;
    const channel = new Channel(name, this.#host, options, (i) => {
      internals = i;
    });
    if (!internals) throw new Error('unreachable: a channel registers its internals when constructed');
    const recovered = this.#recovered.get(name);
    if (recovered !== undefined) {
      internals.restore(recovered);
      this.#recovered.delete(name);
    }
    this.#channels.set(name, { channel, internals });
    return channel;
  }

  has(name: string): boolean {
    return this.#channels.has(name);
  }

  /** Detaches the channel and forgets it; a later `get` makes a fresh one. */
  release(name: string): Promise<void> {
    const entry = this.#channels.get(name);
    if (!entry) return Promise.resolve();
    this.#channels.delete(name);
    entry.channel.unsubscribe();
    const detached = entry.channel.detach();
    const ref = entry.internals.pendingDetach();
    // no ref: nothing was sent, as the connection is not up, and the next one holds no attachment
    if (ref !== undefined) this.#releasing.set(ref, { name, internals: entry.internals });
    return detached;
  }

  /** Every channel made so far. */
  all(): Channel[] {
    return [...this.#channels.values()].map((e) => e.channel);
  }

  #route(frame: ServerFrame): boolean {
    switch (frame.type) {
      case 'attached':
        this.#target(frame.channel)?.onAttached(frame);
        return true;
      case 'messages':
        this.#target(frame.channel)?.onMessages(
          frame.messages,
          frame.after,
          frame.rolledUp === true,
          frame.more === true,
        );
        return true;
      case 'presence':
        this.#target(frame.channel)?.onPresence(frame);
        return true;
      case 'ack':
        return this.#channels.get(frame.channel)?.internals.onAck(frame.ref) ?? false;
      case 'detached': {
        const error = frame.error ? MooringError.fromInfo(frame.error) : undefined;
        const released = this.#answered(frame.ref);
        if (released) released.onDetached(frame.ref, error);
        else this.#target(frame.channel)?.onDetached(frame.ref, error);
        return true;
      }
      case 'error': {
        const error = MooringError.fromInfo(frame.error);
        // a released channel's detach refused (e.g. `not_attached`): detached anyway
        const released = this.#answered(frame.ref);
        if (released) return released.onError(frame.ref, error);
        if (frame.channel !== undefined) {
          const draining = this.#draining(frame.channel);
          if (draining?.onError(frame.ref, error)) return true;
          return this.#channels.get(frame.channel)?.internals.onError(frame.ref, error) ?? false;
        }
        for (const { internals } of this.#channels.values()) {
          if (frame.ref !== undefined && internals.onError(frame.ref, error)) return true;
        }
        return false;
      }
      default:
        return false;
    }
  }

  /** Who a frame of channel `name` belongs to: the first released one still draining, else the channel. */
  #target(name: string): ChannelInternals | undefined {
    return this.#draining(name) ?? this.#channels.get(name)?.internals;
  }

  /** The earliest released channel called `name` whose detach is not answered yet. */
  #draining(name: string): ChannelInternals | undefined {
    for (const entry of this.#releasing.values()) if (entry.name === name) return entry.internals;
    return undefined;
  }

  /** The released channel whose detach `ref` answers, no longer draining from now on. */
  #answered(ref: Ref | undefined): ChannelInternals | undefined {
    if (ref === undefined) return undefined;
    const entry = this.#releasing.get(ref);
    this.#releasing.delete(ref);
    return entry?.internals;
  }
}
