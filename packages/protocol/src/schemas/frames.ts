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

/**
 * A value JSON could carry: strings, finite numbers, booleans, null, arrays and plain objects of
 * them. Checked by one iterative walk, not a schema per node: a frame of up to `maxFrameSize` holds
 * hundreds of thousands of nodes (`[{},{},…]`), and a union schema per node took 250–300 ms of the
 * event loop for one such frame. Callers bound the depth first (`exceedsDepth`), so a cycle (only
 * an in-process caller can make one) is refused there.
 */
export function isJsonValue(value: unknown): value is JsonValue {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    switch (typeof v) {
      case 'string':
      case 'boolean':
        continue;
      case 'number':
        if (!Number.isFinite(v)) return false;
        continue;
      case 'object': {
        if (v === null) continue;
        if (Array.isArray(v)) {
          for (let i = 0; i < v.length; i++) stack.push(v[i]);
          continue;
        }
        if (!isPlainObject(v)) return false;
        for (const key of Object.keys(v)) stack.push(v[key]);
        continue;
      }
      default:
        return false;
    }
  }
  return true;
}

export const jsonValueSchema = z.custom<JsonValue>(isJsonValue, 'not a JSON value');

/** An object JSON could have made: not an array, nor an instance of a class (a `Date`, a `Map`). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * What is wrong with `headers`, if anything: an object of at most `maxHeaders` names of 1–128
 * characters, each to a string, a number or a boolean. By hand, stopping at the first fault (and
 * at the name past the count): a schema per entry checked every one of 60,000 headers of a 700 KB
 * frame and built an issue for each, 700 ms of the event loop.
 */
function headersFault(headers: unknown): string | undefined {
  if (!isPlainObject(headers)) return 'headers are an object of names to strings, numbers or booleans';
  let count = 0;
  for (const name in headers) {
    if (++count > DEFAULT_LIMITS.maxHeaders) return 'too many headers';
    if (name.length < 1 || name.length > 128) return 'a header name is 1 to 128 characters';
    const value = headers[name];
    if (
      typeof value !== 'string' &&
      typeof value !== 'boolean' &&
      !(typeof value === 'number' && Number.isFinite(value))
    )
      return `header ${JSON.stringify(name)}: a header value is a string, a number or a boolean`;
  }
  return undefined;
}

export const headersSchema = z.custom<Headers>().superRefine((headers, ctx) => {
  const fault = headersFault(headers);
  if (fault !== undefined) ctx.addIssue({ code: 'custom', message: fault });
});

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
    after: z.string().min(1).max(DEFAULT_LIMITS.maxIdLength).optional(),
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
