/**
 * The run id of a streaming activity: derived from where the activity runs in its workflow, so every
 * attempt of one activity — a retry after a throw, after a worker crash, after a heartbeat timeout —
 * publishes the same run and resumes it in place (PROTOCOL.md §13.2, "retried run").
 *
 * The workflow execution's run id is part of it: activity ids are sequence numbers that restart at
 * `1` after continue-as-new, and the first activity of the continued execution must not find (and
 * return) the completed run of the first one. A workflow reset is a new execution too, so it answers
 * afresh. The parts are hashed: workflow ids may be long, and run ids go into operation ids
 * (≤ 256 characters) and the assistant message id.
 */
import { createHash } from 'node:crypto';

export interface RunIdParts {
  workflowId: string;
  /** The workflow execution's run id. */
  workflowRunId: string;
  activityId: string;
  /** Several runs from one activity (one per model step, say): a different step each. */
  step?: string | number;
}

export function deriveRunId(parts: RunIdParts): string {
  const key = JSON.stringify([parts.workflowId, parts.workflowRunId, parts.activityId, parts.step ?? null]);
  return `run_t${createHash('sha256').update(key).digest('base64url').slice(0, 27)}`;
}
