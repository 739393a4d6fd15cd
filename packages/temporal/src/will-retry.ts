/**
 * Whether Temporal will run another attempt of an activity after this one fails with `error`: the
 * streaming helper leaves the run `running` (its lease spanning the backoff) only then, and ends it
 * `error` when this attempt was the last, so users never watch a run that nothing will finish.
 *
 * Mirrors the server's decision from what the activity can see: `nonRetryable` application failures,
 * `retryPolicy.nonRetryableErrorTypes`, and `maximumAttempts` (0 or absent: unlimited). Timeouts
 * (schedule-to-close) are the server's to decide; when they end the retries the run's lease does the
 * rest (`abandoned`).
 */
import type { Info } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/activity';

export function willRetry(info: Pick<Info, 'attempt' | 'retryPolicy'>, error: unknown): boolean {
  if (error instanceof CancelledFailure) return false;
  if (error instanceof ApplicationFailure && error.nonRetryable) return false;
  const policy = info.retryPolicy;
  const type =
    error instanceof ApplicationFailure ? error.type : error instanceof Error ? error.name : undefined;
  if (type != null && policy?.nonRetryableErrorTypes?.includes(type)) return false;
  const max = policy?.maximumAttempts ?? 0;
  return max <= 0 || info.attempt < max;
}
