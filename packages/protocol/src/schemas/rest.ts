/**
 * Runtime schemas of REST request bodies (PROTOCOL.md §11), each beside a compile-time proof that its
 * output is the wire type of `../rest.ts`. The server validates every body with them.
 */
import { z } from 'zod';
import { DEFAULT_LIMITS } from '../limits.ts';
import type { PublishBody, TokenRequestBody } from '../rest.ts';
import { operationInputSchema } from './frames.ts';
import type { Equals, Same } from './type-equals.ts';

/** `POST /v1/channels/:channel/messages` with a list of operations: `[op, …]`. */
export const publishListSchema = z.array(operationInputSchema);
/** …or wrapped: `{ "ops": [op, …] }`, with the precondition `after` (an op id) if any. */
export const publishWrappedSchema = z
  .object({ ops: publishListSchema, after: z.string().min(1).max(DEFAULT_LIMITS.maxIdLength).optional() })
  .strict();

/**
 * `POST /v1/channels/:channel/messages`: one operation, a list, or a wrapped list. A server tells
 * the three apart by the body's shape (`publishBodySchemaFor`) before validating, so a refusal names
 * the field at fault (`name: …`, `1.serial: …`, `ops.0.id: …`), not the union as a whole.
 */
export const publishBodySchema = z.union([operationInputSchema, publishListSchema, publishWrappedSchema]);

/** The one schema of `publishBodySchema` a body of this shape must meet. */
export function publishBodySchemaFor(
  body: unknown,
): typeof operationInputSchema | typeof publishListSchema | typeof publishWrappedSchema {
  if (Array.isArray(body)) return publishListSchema;
  if (typeof body === 'object' && body !== null && 'ops' in body) return publishWrappedSchema;
  return operationInputSchema;
}

/** `POST /v1/tokens`. */
export const tokenRequestSchema = z
  .object({
    clientId: z.string().min(1).max(256).optional(),
    capability: z.record(z.string(), z.array(z.string())).optional(),
    ttl: z.number().int().optional(),
  })
  .strict();

export type _PublishBody = Same<Equals<z.infer<typeof publishBodySchema>, PublishBody>>;
export type _TokenRequest = Same<Equals<z.infer<typeof tokenRequestSchema>, TokenRequestBody>>;
