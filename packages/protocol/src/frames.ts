/**
 * Frames: every unit exchanged on a realtime connection, whatever the transport (PROTOCOL.md §5–7).
 * This module is types and plain functions only, so a browser client never pulls a schema library:
 * the runtime schemas of client frames live beside these types in `schemas/frames.ts` (the
 * `@mooring/protocol/schemas` entry), which the server uses to validate every inbound frame, and a
 * compile-time check there keeps each schema and its type the same.
 */
import { COMPACT_MESSAGES_TYPE, expandCompactMessages } from './compact.ts';
import type { ErrorInfo } from './errors.ts';
import type { JsonValue, Message, OperationInput, PublishResult } from './message.ts';

/** Printable ASCII without spaces, `*` or `?` (kept for capability globs), 1–256 chars. */
export const CHANNEL_NAME_RE = /^[\x21-\x29\x2b-\x3e\x40-\x7e]{1,256}$/;

export function isChannelName(value: unknown): value is string {
  return typeof value === 'string' && CHANNEL_NAME_RE.test(value);
}

/** The namespace of a channel: the part before the first `:`, or '' when there is none. */
export function namespaceOf(channel: string): string {
  const i = channel.indexOf(':');
  return i < 0 ? '' : channel.slice(0, i);
}

/** A client-chosen correlation id, echoed in the answer. */
export type Ref = string | number;

export interface AttachFrame {
  type: 'attach';
  ref?: Ref | undefined;
  channel: string;
  /** Resume after this serial (PROTOCOL.md §7.2). At most one of `from`, `rewind` and `start`. */
  from?: string | undefined;
  /** Replay the last 1–1000 messages first. */
  rewind?: number | undefined;
  /** Replay the channel from its start. */
  start?: true | undefined;
  /**
   * `false`: leave out of the live stream the operations this connection published itself
   * (PROTOCOL.md §6.2 "Echo"). Default: every operation is delivered.
   */
  echo?: false | undefined;
}

/**
 * The query parameter of a connection request (WebSocket upgrade, HTTP transports, in process) that
 * carries attach requests to handle right after `connected` (PROTOCOL.md §5.1): a JSON array of
 * `AttachFrame`s without `type`.
 */
export const CONNECT_ATTACH_PARAM = 'attach';

/**
 * How long a client lets `attach` grow (characters of JSON, before URL encoding), so that the request
 * line stays well within what servers and proxies accept (nginx: 8 KiB). Attaches that do not fit go
 * as frames once connected.
 */
export const MAX_CONNECT_ATTACH_CHARS = 2048;

export interface DetachFrame {
  type: 'detach';
  ref?: Ref | undefined;
  channel: string;
}

export interface PublishFrame {
  type: 'publish';
  ref?: Ref | undefined;
  channel: string;
  /** 1 to `maxOpsPerPublish` operations, stored in order. */
  ops: OperationInput[];
  /**
   * Store the operations only if this publisher's operation with this id is already stored in the
   * channel; otherwise store nothing and answer `out_of_order` (retryable). A client that sends a
   * publish before the previous one's ack names the previous one's last op here, so that a refused
   * publish (`store_unavailable`, `rate_limited`) is never overtaken by the next (PROTOCOL.md §7).
   */
  after?: string | undefined;
}

export interface PresenceRequestFrame {
  type: 'presence';
  ref?: Ref | undefined;
  channel: string;
  action: 'enter' | 'update' | 'leave';
  data?: JsonValue | undefined;
}

export interface AuthFrame {
  type: 'auth';
  ref?: Ref | undefined;
  token: string;
}

export interface PingFrame {
  type: 'ping';
  ref?: Ref | undefined;
}

export interface CloseFrame {
  type: 'close';
}

/** Every frame a client sends; the server validates each with `clientFrameSchema` (`@mooring/protocol/schemas`). */
export type ClientFrame =
  | AttachFrame
  | DetachFrame
  | PublishFrame
  | PresenceRequestFrame
  | AuthFrame
  | PingFrame
  | CloseFrame;

/** Why an attach from a position did not resume. */
export type ResumeFailure = 'epoch_changed' | 'position_trimmed' | 'position_ahead' | 'history_required';

export interface ConnectedFrame {
  type: 'connected';
  connectionId: string;
  /** Secret token that lets a new transport take this connection's identity over (PROTOCOL.md §6.3). */
  connectionKey: string;
  /** True when `recover` named a connection whose state the server still held. */
  resumed: boolean;
  clientId?: string;
  heartbeatInterval: number;
  maxIdleInterval: number;
  connectionStateTtl: number;
  limits: {
    maxOperationSize: number;
    maxMessageSize: number;
    maxFrameSize: number;
    /** Bytes of one HTTP request body (REST, and upstream POSTs of the HTTP transports). Absent from servers before it was announced. */
    maxHttpBody?: number;
    maxOpsPerPublish: number;
    maxChannelsPerConnection: number;
  };
  serverTime: number;
  /**
   * Present when the request carried `attach` (PROTOCOL.md §5.1): how many of those attaches the
   * server is handling, as if they were the first frames received. Their answers follow this frame.
   */
  attaching?: number;
  /**
   * `'compact'` when the request asked for compact `messages` frames (`frames=compact`, PROTOCOL.md
   * §6.5) and this server sends them. Absent: plain frames only (an older server ignores the ask).
   */
  frames?: 'compact';
  /**
   * `true`: this server takes a publish's precondition (`after`, PROTOCOL.md §7). Absent: it does
   * not — an older server refuses the field (`invalid_frame`), so a client leaves it out.
   */
  publishAfter?: true;
  error?: ErrorInfo;
}

export interface AttachedFrame {
  type: 'attached';
  ref?: Ref;
  channel: string;
  /** True only for an attach `from` a position whose continuity the server could prove. */
  resumed: boolean;
  /** Why an attach `from` a position did not resume. */
  reason?: ResumeFailure;
  /**
   * With `epoch_changed`, when the log went on in a new epoch from the position's (a new Redis, a
   * power loss): the position's messages up to here are still in the log, under serials of the new
   * epoch with the same sequences, and the catch-up sent is what changed after this serial.
   */
  kept?: string;
  epoch: string;
  /** The channel's position once the catch-up was sent; '' for a channel with no operations yet. */
  position: string;
}

export interface MessagesFrame {
  type: 'messages';
  channel: string;
  messages: Message[];
  /**
   * The version the first message follows: on an `echo: false` attachment, when the server left the
   * connection's own operations out right before it (PROTOCOL.md §6.2 "Echo"); with `rolledUp`, the
   * position the frame brings the client on from.
   */
  after?: string;
  /**
   * The messages are rolled up (a node read back what its bus missed, PROTOCOL.md §6.2): together
   * they hold every change after `after`, so their versions may skip. A client at `after` applies
   * them without asking each to follow the one before.
   */
  rolledUp?: true;
  /**
   * With `rolledUp`: the read-back goes on in the channel's next `messages` frame (rolled up too).
   * It comes in last-change order, so until its frame without `more` the messages applied need not
   * be a prefix of the log (PROTOCOL.md §4.3).
   */
  more?: true;
}

export interface DetachedFrame {
  type: 'detached';
  ref?: Ref;
  channel: string;
  error?: ErrorInfo;
}

export interface AckFrame {
  type: 'ack';
  ref?: Ref;
  channel: string;
  results: PublishResult[];
}

export interface ErrorFrame {
  type: 'error';
  ref?: Ref;
  channel?: string;
  error: ErrorInfo;
}

/** A member of a channel's presence set, keyed by `clientId` + `connectionId`. */
export interface PresenceMember {
  clientId: string;
  connectionId: string;
  data?: JsonValue;
  /** When the member entered or last updated, ms since 1970. */
  timestamp: number;
}

/**
 * Presence, server → client: `sync` is the whole set (sent right after `attached`), then one event
 * per change. An answer to a client's presence request is an `ack` with empty `results`.
 */
export type PresenceFrame =
  | { type: 'presence'; channel: string; action: 'sync'; members: PresenceMember[] }
  | { type: 'presence'; channel: string; action: 'enter' | 'update' | 'leave'; member: PresenceMember };

/** The answer to an `auth` frame: the connection now runs on the new token. */
export interface AuthorizedFrame {
  type: 'authorized';
  ref?: Ref;
  /** When the new token expires, ms since 1970. */
  expiresAt: number;
}

export interface HeartbeatFrame {
  type: 'heartbeat';
  serverTime: number;
}

export interface PongFrame {
  type: 'pong';
  ref?: Ref;
  serverTime: number;
}

/** Sent before the server closes a connection on its own initiative. */
export interface DisconnectFrame {
  type: 'disconnect';
  reason: string;
  /** False when reconnecting with the same credentials cannot succeed. */
  reconnect: boolean;
  error?: ErrorInfo;
}

export type ServerFrame =
  | ConnectedFrame
  | AttachedFrame
  | MessagesFrame
  | DetachedFrame
  | AckFrame
  | ErrorFrame
  | PresenceFrame
  | AuthorizedFrame
  | HeartbeatFrame
  | PongFrame
  | DisconnectFrame;

// ---------------------------------------------------------------------------------------------
// Reading server frames: a structural check, hand-written so a browser needs no schema library.
// It checks what a client dispatches on (the type, the channel, the arrays it iterates); the
// server is trusted for the rest of each frame's shape.

/** Parses one text frame from the server, or explains why it is not one. */
export function parseServerFrame(text: string): ServerFrame | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'frame is not JSON';
  }
  return toServerFrame(value);
}

/** Checks one parsed value (e.g. an element of a long-poll answer), or explains why it is not a frame. */
export function toServerFrame(value: unknown): ServerFrame | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'frame is not a JSON object';
  const type = (value as { type?: unknown }).type;
  // a compact `messages` frame (a client asked for them, §6.5): expanded here, so nothing past the
  // transport sees the difference
  if (type === COMPACT_MESSAGES_TYPE) return expandCompactMessages(value as Record<string, unknown>);
  if (typeof type !== 'string' || !SERVER_FRAME_TYPES.has(type))
    return `unknown frame type ${JSON.stringify(type)}`;
  if (!CHANNEL_LESS.has(type)) {
    if (typeof (value as { channel?: unknown }).channel !== 'string')
      return `${type} frame without a channel`;
  }
  if (type === 'messages' && !Array.isArray((value as { messages?: unknown }).messages))
    return 'messages frame without a messages array';
  if (type === 'ack' && !Array.isArray((value as { results?: unknown }).results))
    return 'ack frame without a results array';
  return value as ServerFrame;
}

const SERVER_FRAME_TYPES: ReadonlySet<string> = new Set([
  'connected',
  'attached',
  'messages',
  'detached',
  'ack',
  'error',
  'presence',
  'authorized',
  'heartbeat',
  'pong',
  'disconnect',
] satisfies ServerFrame['type'][]);

/** Frame types that carry no `channel` (an `error` may or may not). */
const CHANNEL_LESS: ReadonlySet<string> = new Set([
  'connected',
  'authorized',
  'heartbeat',
  'pong',
  'disconnect',
  'error',
] satisfies ServerFrame['type'][]);
