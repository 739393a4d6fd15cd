/**
 * `@mooring/protocol/schemas`: runtime (zod) schemas of everything a client sends, for servers and
 * tools that validate input. Browsers never need this entry; the types are in `@mooring/protocol`.
 */
export {
  attachFrameSchema,
  authFrameSchema,
  channelSchema,
  clientFrameSchema,
  closeFrameSchema,
  detachFrameSchema,
  headersSchema,
  isPlainObject,
  jsonValueSchema,
  operationInputSchema,
  pingFrameSchema,
  presenceFrameSchema,
  publishFrameSchema,
  serialSchema,
} from './frames.ts';
export {
  publishBodySchema,
  publishBodySchemaFor,
  publishListSchema,
  publishWrappedSchema,
  tokenRequestSchema,
} from './rest.ts';
