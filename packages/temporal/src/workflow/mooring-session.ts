/**
 * The workflow side of a session: `useMooringSession()` registers the handlers the bridge calls (as
 * updates, and the same names as signals) and gives the workflow what it needs to act on them.
 *
 *   export async function chatAgent({ channel }: { channel: string }) {
 *     const session = useMooringSession();
 *     for (;;) {
 *       const input = await session.nextInput();          // waits while a human holds the session
 *       const runId = runIdFor(workflowInfo().workflowId, input.controlId);
 *       await session.run(runId, () => answer({ channel, input: input.inputId, runId }));
 *     }
 *   }
 *
 * Cancel: a `cancel` cancels the `CancellationScope` of the run it names (or of every run in
 * progress); Temporal delivers that to the run's activity (or child workflow), whose streaming helper
 * ends the run `cancelled`. The workflow itself is not cancelled: it serves the session's next input.
 * `session.run` resolves `undefined` for a cancelled run instead of throwing.
 *
 * Workflow code only (it calls `setHandler`, `condition` and `CancellationScope`).
 */
import type { SignalDefinition, UpdateDefinition } from '@temporalio/common';
import { CancellationScope, condition, isCancellation, setHandler } from '@temporalio/workflow';
import type { UIMessage } from 'ai';
import type { ControlPayload, InputPayload, RegeneratePayload } from './definitions.ts';
import {
  approvalSignal,
  approvalUpdate,
  cancelSignal,
  cancelUpdate,
  handoverSignal,
  handoverUpdate,
  inputSignal,
  inputUpdate,
  regenerateSignal,
  regenerateUpdate,
  steerSignal,
  steerUpdate,
  toolOutputSignal,
  toolOutputUpdate,
} from './definitions.ts';
import type { ApprovalAnswer, ToolOutput } from './session-state.ts';
import { SessionState } from './session-state.ts';

export interface MooringWorkflowSession {
  readonly state: SessionState;
  /** The next input (or regeneration) to answer; waits while none is pending or a human holds the session. */
  nextInput(): Promise<InputPayload | ({ regenerate: true } & RegeneratePayload)>;
  /** Runs `fn` (an activity or child workflow answering `runId`) in a scope a `cancel` of the run cancels. */
  run<T>(runId: string, fn: () => Promise<T>): Promise<T | undefined>;
  /** Resolves once a user answers the approval request `approvalId`. */
  waitForApproval(approvalId: string): Promise<ApprovalAnswer>;
  /** Resolves once the device that ran the client-side tool call `toolCallId` sent its output. */
  waitForToolOutput(toolCallId: string): Promise<ToolOutput>;
  /** Steering messages for the run that arrived since the last call. */
  takeSteers(runId: string): UIMessage[];
}

export function useMooringSession(): MooringWorkflowSession {
  const state = new SessionState();
  const scopes = new Map<string, CancellationScope>();
  const apply = (payload: ControlPayload) => {
    const effect = state.apply(payload);
    if (effect.kind !== 'cancel') return;
    if (effect.runId === undefined) for (const scope of scopes.values()) scope.cancel();
    else scopes.get(effect.runId)?.cancel();
  };
  const both = <P extends Omit<ControlPayload, 'kind'>>(
    kind: ControlPayload['kind'],
    update: UpdateDefinition<void, [P]>,
    signal: SignalDefinition<[P]>,
  ) => {
    const handler = (payload: P) => apply({ ...payload, kind } as ControlPayload);
    setHandler(update, handler);
    setHandler(signal, handler);
  };
  both('input', inputUpdate, inputSignal);
  both('cancel', cancelUpdate, cancelSignal);
  both('steer', steerUpdate, steerSignal);
  both('approval', approvalUpdate, approvalSignal);
  both('tool-output', toolOutputUpdate, toolOutputSignal);
  both('handover', handoverUpdate, handoverSignal);
  both('regenerate', regenerateUpdate, regenerateSignal);

  return {
    state,
    async nextInput() {
      for (;;) {
        await condition(() => state.ready);
        const next = state.takeInput();
        if (next) return next;
      }
    },
    async run(runId, fn) {
      if (state.isCancelled(runId)) return undefined;
      const scope = new CancellationScope();
      scopes.set(runId, scope);
      try {
        return await scope.run(fn);
      } catch (err) {
        if (isCancellation(err) && !CancellationScope.current().consideredCancelled) return undefined;
        throw err;
      } finally {
        scopes.delete(runId);
      }
    },
    async waitForApproval(approvalId) {
      await condition(() => state.approval(approvalId) !== undefined);
      return state.approval(approvalId) as ApprovalAnswer;
    },
    async waitForToolOutput(toolCallId) {
      await condition(() => state.toolOutput(toolCallId) !== undefined);
      return state.toolOutput(toolCallId) as ToolOutput;
    },
    takeSteers: (runId) => state.takeSteers(runId),
  };
}

/**
 * A run id a workflow computes for one answer (deterministic: replays compute the same). `key` is the
 * `controlId` of what `nextInput()` returned: unique per input and per regeneration of it (an
 * `inputId` is the same for both, so a regeneration keyed by it would get the answered run's id).
 */
export function runIdFor(workflowId: string, key: string, agent?: string): string {
  return agent === undefined ? `wf:${workflowId}:${key}` : `wf:${workflowId}:${key}:${agent}`;
}
