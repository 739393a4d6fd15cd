/**
 * Runtime schemas of REST request bodies (PROTOCOL.md §11), each beside a compile-time proof that its
 * output is the wire type of `../rest.ts`. The server validates every body with them.
 */
import { z } from 'zod';
import type { PublishBody, TokenRequestBody } from '../rest.ts';
import { operationInputSchema } from './frames.ts';
import type { Equals, Same } from './type-equals.ts';

/** `POST /v1/channels/:channel/messages`. */
export const publishBodySchema = z.union([
  operationInputSchema,
  z.array(operationInputSchema),
  z.object({ ops: z.array(operationInputSchema) }).strict(),
]);

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
