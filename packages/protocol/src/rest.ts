/**
 * REST bodies (PROTOCOL.md §11): what a request to `/v1/...` carries and what the answer holds.
 * Types only; the runtime schemas of request bodies are in `schemas/rest.ts` (the
 * `@mooring/protocol/schemas` entry), checked there against these types at compile time.
 */

import type { ErrorInfo } from './errors.ts';
import type { PresenceMember } from './frames.ts';
import type { Message, OperationInput, PublishResult } from './message.ts';

/**
 * `POST /v1/channels/:channel/messages`: one operation, an array of them, or `{ ops }` — which may
 * name a precondition, `after` (as the `publish` frame's, PROTOCOL.md §7).
 */
export type PublishBody =
  | OperationInput
  | OperationInput[]
  | { ops: OperationInput[]; after?: string | undefined };

/** The answer to a publish: one result per operation, in order. */
export interface PublishResponse {
  channel: string;
  results: PublishResult[];
}

/** `POST /v1/tokens` (API key only). */
export interface TokenRequestBody {
  /** The identity the token's holder publishes as; 1–256 chars. */
  clientId?: string | undefined;
  /** Channel glob → operations. Default: everything the signing key may do. */
  capability?: Record<string, string[]> | undefined;
  /** Lifetime in ms. */
  ttl?: number | undefined;
}

/** `GET /v1/channels/:channel/messages`: one page of rolled-up messages. */
export interface HistoryResponse {
  channel: string;
  epoch: string;
  /** The channel's head when the page was read. */
  position: string;
  items: Message[];
  /** The path of the following page, absent at the end. */
  next?: string;
}

/** `GET /v1/channels/:channel`. */
export interface ChannelStatusResponse {
  channel: string;
  epoch: string;
  position: string;
  messages: number;
}

/** `GET /v1/channels/:channel/presence`. */
export interface PresenceResponse {
  channel: string;
  members: PresenceMember[];
}

/** Every error answer, with the matching HTTP status. */
export interface ErrorResponse {
  error: ErrorInfo;
}
