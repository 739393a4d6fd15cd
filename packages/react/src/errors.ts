/**
 * Errors of @mooring/react, with a stable `code` to switch on. Everything else surfaces as the
 * `MooringError` / `MooringAiError` of the layer it came from.
 */

export type ReactErrorCode = 'no_provider' | 'no_client';

export class MooringReactError extends Error {
  readonly code: ReactErrorCode;

  constructor(code: ReactErrorCode, message: string) {
    super(message);
    this.name = 'MooringReactError';
    this.code = code;
  }
}
