/**
 * Frames: every unit exchanged on a realtime connection, whatever the transport (PROTOCOL.md §5–7).
 * Client frames have runtime schemas (the server validates every inbound frame before acting on it);
 * server frames are typed here and validated by clients where it matters.
 */
import { z } from 'zod';
import type { ErrorInfo } from './errors.ts';
import { DEFAULT_LIMITS } from './limits.ts';
import type { JsonValue, Message, PublishResult } from './message.ts';
import { isSerial } from './serial.ts';

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

const ref = z.union([z.string().max(64), z.number().int()]).optional();
export const channelSchema = z.string().regex(CHANNEL_NAME_RE, 'invalid channel name');
export const serialSchema = z.string().refine(isSerial, 'invalid serial');

export const jsonValueSchema: z.ZodType<import('./message.ts').JsonValue> = z.lazy(() =>
  z.union([
    z.string(),
    z.number(),
    z.boolean(),
    z.null(),
    z.array(jsonValueSchema),
    z.record(z.string(), jsonValueSchema),
  ]),
);

export const headersSchema = z
  .record(z.string().min(1).max(128), z.union([z.string(), z.number(), z.boolean()]))
  .refine((h) => Object.keys(h).length <= DEFAULT_LIMITS.maxHeaders, 'too many headers');

export const operationInputSchema = z
  .object({
    action: z.enum(['create', 'append', 'update', 'delete']).optional(),
    id: z.string().min(1).max(DEFAULT_LIMITS.maxIdLength).optional(),
    serial: serialSchema.optional(),
    name: z.string().max(DEFAULT_LIMITS.maxIdLength).optional(),
    data: jsonValueSchema.optional(),
    encoding: z.literal('base64').optional(),
    headers: headersSchema.optional(),
    lease: z.number().int().min(0).max(86_400_000).optional(),
  })
  .strict()
  .superRefine((op, ctx) => {
    const action = op.action ?? 'create';
    if (action === 'create' && op.serial !== undefined)
      ctx.addIssue({ code: 'custom', message: 'a create must not name a serial' });
    if (action !== 'create' && op.serial === undefined)
      ctx.addIssue({ code: 'custom', message: `an ${action} needs the serial of its message` });
    if (action === 'append' && op.data !== undefined && typeof op.data !== 'string')
      ctx.addIssue({ code: 'custom', message: 'append data must be a string delta' });
    if (action === 'append' && op.encoding !== undefined)
      ctx.addIssue({ code: 'custom', message: 'append data cannot be encoded' });
    if (op.lease !== undefined && op.lease > 0 && op.lease < 100)
      ctx.addIssue({ code: 'custom', message: 'a lease is 0 (release) or at least 100 ms' });
    if (op.lease !== undefined && action === 'delete')
      ctx.addIssue({ code: 'custom', message: 'a delete cannot carry a lease (it releases any)' });
    if (op.encoding === 'base64' && typeof op.data !== 'string')
      ctx.addIssue({ code: 'custom', message: 'base64 data must be a string' });
  });

export const attachFrameSchema = z
  .object({
    type: z.literal('attach'),
    ref,
    channel: channelSchema,
    from: serialSchema.optional(),
    rewind: z.number().int().min(1).max(1000).optional(),
    start: z.literal(true).optional(),
  })
  .strict()
  .refine((f) => [f.from, f.rewind, f.start].filter((x) => x !== undefined).length <= 1, {
    message: 'use at most one of from, rewind and start',
  });

export const detachFrameSchema = z
  .object({ type: z.literal('detach'), ref, channel: channelSchema })
  .strict();

export const publishFrameSchema = z
  .object({
    type: z.literal('publish'),
    ref,
    channel: channelSchema,
    ops: z.array(operationInputSchema).min(1).max(DEFAULT_LIMITS.maxOpsPerPublish),
  })
  .strict();

export const presenceFrameSchema = z
  .object({
    type: z.literal('presence'),
    ref,
    channel: channelSchema,
    action: z.enum(['enter', 'update', 'leave']),
    data: jsonValueSchema.optional(),
  })
  .strict();

export const authFrameSchema = z
  .object({ type: z.literal('auth'), ref, token: z.string().min(1).max(8192) })
  .strict();

export const pingFrameSchema = z.object({ type: z.literal('ping'), ref }).strict();
export const closeFrameSchema = z.object({ type: z.literal('close') }).strict();

export const clientFrameSchema = z.discriminatedUnion('type', [
  attachFrameSchema,
  detachFrameSchema,
  publishFrameSchema,
  presenceFrameSchema,
  authFrameSchema,
  pingFrameSchema,
  closeFrameSchema,
]);

export type AttachFrame = z.infer<typeof attachFrameSchema>;
export type DetachFrame = z.infer<typeof detachFrameSchema>;
export type PublishFrame = z.infer<typeof publishFrameSchema>;
export type PresenceRequestFrame = z.infer<typeof presenceFrameSchema>;
export type PingFrame = z.infer<typeof pingFrameSchema>;
export type AuthFrame = z.infer<typeof authFrameSchema>;
export type CloseFrame = z.infer<typeof closeFrameSchema>;
export type ClientFrame = z.infer<typeof clientFrameSchema>;
export type Ref = string | number;

/** Why an attach from a position did not resume. */
export type ResumeFailure = 'epoch_changed' | 'position_trimmed' | 'position_ahead';

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
  epoch: string;
  /** The channel's position once the catch-up was sent; '' for a channel with no operations yet. */
  position: string;
}

export interface MessagesFrame {
  type: 'messages';
  channel: string;
  messages: Message[];
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
