/**
 * Runtime schemas of everything a client sends on a realtime connection (PROTOCOL.md §6–7): the
 * server validates every inbound frame with `clientFrameSchema` before acting on it. Each schema sits
 * here beside a compile-time proof that its output is exactly the wire type of `../frames.ts` and
 * `../message.ts`, which the (zod-free) client uses.
 */
import { z } from 'zod';
import type {
  AttachFrame,
  AuthFrame,
  ClientFrame,
  CloseFrame,
  DetachFrame,
  PingFrame,
  PresenceRequestFrame,
  PublishFrame,
} from '../frames.ts';
import { CHANNEL_NAME_RE } from '../frames.ts';
import { DEFAULT_LIMITS } from '../limits.ts';
import { ACTIONS, type Headers, type JsonValue, type OperationInput } from '../message.ts';
import { isSerial } from '../serial.ts';
import type { Equals, Same } from './type-equals.ts';

const ref = z.union([z.string().max(64), z.number().int()]).optional();
export const channelSchema = z.string().regex(CHANNEL_NAME_RE, 'invalid channel name');
export const serialSchema = z.string().refine(isSerial, 'invalid serial');

export const jsonValueSchema: z.ZodType<JsonValue> = z.lazy(() =>
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
    action: z.enum(ACTIONS).optional(),
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
    echo: z.literal(false).optional(),
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

// Each schema's output is exactly its wire type (a compile error here means they drifted apart).
export type _Headers = Same<Equals<z.infer<typeof headersSchema>, Headers>>;
export type _OperationInput = Same<Equals<z.infer<typeof operationInputSchema>, OperationInput>>;
export type _Attach = Same<Equals<z.infer<typeof attachFrameSchema>, AttachFrame>>;
export type _Detach = Same<Equals<z.infer<typeof detachFrameSchema>, DetachFrame>>;
export type _Publish = Same<Equals<z.infer<typeof publishFrameSchema>, PublishFrame>>;
export type _Presence = Same<Equals<z.infer<typeof presenceFrameSchema>, PresenceRequestFrame>>;
export type _Auth = Same<Equals<z.infer<typeof authFrameSchema>, AuthFrame>>;
export type _Ping = Same<Equals<z.infer<typeof pingFrameSchema>, PingFrame>>;
export type _Close = Same<Equals<z.infer<typeof closeFrameSchema>, CloseFrame>>;
export type _ClientFrame = Same<Equals<z.infer<typeof clientFrameSchema>, ClientFrame>>;
