/**
 * The seam between a `Channel` and the client that owns it, in both directions: what a channel may
 * ask of the client (`ChannelHost`), and the handlers through which the client drives a channel
 * (`ChannelInternals`). The handlers are handed over once at construction, so they are not part of a
 * channel's public surface.
 */
import type {
  AttachedFrame,
  AttachFrame,
  Message,
  OperationInput,
  PresenceFrame,
  PublishResult,
  Ref,
} from '@mooring/protocol';
import type { Connection } from './connection.ts';
import type { ListenerErrorHandler } from './emitter.ts';
import type { MooringError, MooringErrorCode } from './errors.ts';
import type { Rest } from './rest.ts';
import type { Timers } from './timers.ts';

export interface ChannelHost {
  readonly connection: Connection;
  readonly rest: Rest;
  /** Queues (or sends) a publish; rejects at once when the connection state does not allow it. */
  /** `after`: the publish's precondition (PROTOCOL.md §7). */
  publish(channel: string, ops: OperationInput[], after?: string): Promise<PublishResult[]>;
  /** A fresh operation id. */
  nextId(): string;
  /** Connects when the connection has never been started. */
  ensureConnecting(): void;
  /** The error an operation gets in the current connection state, or undefined when it may proceed. */
  refusal(): MooringError | undefined;
  error(code: MooringErrorCode, message: string): MooringError;
  readonly timers: Timers;
  /** The delay before retry number `attempt` (1, 2, …): the connection's backoff, with jitter. */
  retryIn(attempt: number): number;
  /** Where an exception thrown by an application listener goes (`MooringOptions.onListenerError`). */
  readonly onListenerError: ListenerErrorHandler | undefined;
}

export interface ChannelInternals {
  /**
   * The attach to send with the next connection request (PROTOCOL.md §5.1), when the channel wants
   * to be attached; it becomes the channel's attach if the server confirms it (`preattached`).
   */
  preattach(): AttachFrame | undefined;
  /** A new connection is up: re-attach if the channel wants to be attached. */
  onConnected(): void;
  /** The connection went suspended, closed or failed. */
  onConnectionLost(state: 'suspended' | 'closed' | 'failed', error: MooringError): void;
  onAttached(frame: AttachedFrame): void;
  /**
   * `after`: the version the first message follows (own operations left out, `echo: false`; or the
   * position a `rolledUp` frame brings on from). `more`: a read-back page that is not its last.
   */
  onMessages(messages: Message[], after: string | undefined, rolledUp?: boolean, more?: boolean): void;
  onDetached(ref: Ref | undefined, error: MooringError | undefined): void;
  /** The ref of the channel's detach while it waits for the answer. */
  pendingDetach(): Ref | undefined;
  /** A presence snapshot or event (PROTOCOL.md §6.4). */
  onPresence(frame: PresenceFrame): void;
  /** An `ack` that is not a publish's (presence requests); false when `ref` is not the channel's. */
  onAck(ref: Ref | undefined): boolean;
  /** An error frame for this channel; returns false when `ref` is not one of the channel's requests. */
  onError(ref: Ref | undefined, error: MooringError): boolean;
  /** Sets the position saved in a recovery key. */
  restore(position: string): void;
  /** The position to save in a recovery key, or undefined when there is nothing to resume. */
  recoveryPosition(): string | undefined;
}
