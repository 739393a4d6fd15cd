/**
 * Errors of the AI session layer, with stable codes users can switch on (ARCHITECTURE.md §9). Errors from the
 * connection or the server come through unchanged as `MooringError`s of `@mooring/client`.
 */

export const AI_ERRORS = {
  /** A node (input or run) the call names is not in the conversation tree (yet). */
  unknown_node: { retryable: false },
  /** The call needs an input to answer, and the session has none on its view. */
  no_input: { retryable: false },
  /** A message on the channel does not follow PROTOCOL.md §13; it was left out of the tree. */
  malformed_message: { retryable: false },
  /**
   * Continuity was lost and the history cannot be read (no `history` capability, PROTOCOL.md §6.2
   * "Reading back without history"): the tree keeps what it had and goes on live; what was
   * published in between is missing from it.
   */
  history_gap: { retryable: false },
} as const;

export type AiErrorCode = keyof typeof AI_ERRORS;

export class MooringAiError extends Error {
  readonly code: AiErrorCode;
  readonly retryable: boolean;

  constructor(code: AiErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MooringAiError';
    this.code = code;
    this.retryable = AI_ERRORS[code].retryable;
  }
}

/** The message of an error, or the value as text. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
