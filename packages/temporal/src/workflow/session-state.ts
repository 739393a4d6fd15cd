/**
 * What a workflow knows of its session's controls: a pure fold of the payloads the bridge delivers,
 * with no Temporal API in it, so its rules are unit-tested as plain functions and replay the same way
 * in the workflow sandbox.
 *
 * - Each control applies once: a `controlId` already applied is ignored (`apply` returns false).
 * - Inputs queue in arrival order; while a human holds the session (handover) none is handed out.
 * - A `cancel` names a run, or every run running when it arrived (`cancelAll`).
 * - Approvals are kept by approval id until a run asks for them, client-side tool outputs by tool
 *   call id; steers by run id.
 */
import type { UIMessage } from 'ai';
import type { ControlPayload, InputPayload, RegeneratePayload } from './definitions.ts';

export interface ApprovalAnswer {
  approved: boolean;
  reason: string | undefined;
}

/** What a client-side tool returned: its `output`, or the `errorText` of its failure. */
export interface ToolOutput {
  runId: string;
  output: unknown;
  errorText: string | undefined;
}

/** What the workflow must do about a control it just applied (besides reading the state). */
export type ControlEffect =
  | { kind: 'none' }
  | { kind: 'cancel'; runId: string | undefined }
  | { kind: 'duplicate' };

export class SessionState {
  readonly #applied = new Set<string>();
  /** Inputs (and regenerations) waiting for an answer, oldest first. */
  readonly pending: (InputPayload | ({ regenerate: true } & RegeneratePayload))[] = [];
  readonly #steers = new Map<string, UIMessage[]>();
  readonly #approvals = new Map<string, ApprovalAnswer>();
  readonly #toolOutputs = new Map<string, ToolOutput>();
  readonly #cancelled = new Set<string>();
  holder: 'ai' | 'human' = 'ai';
  operator: string | undefined;

  apply(payload: ControlPayload): ControlEffect {
    if (this.#applied.has(payload.controlId)) return { kind: 'duplicate' };
    this.#applied.add(payload.controlId);
    switch (payload.kind) {
      case 'input': {
        const { kind: _kind, ...input } = payload;
        this.pending.push(input);
        return { kind: 'none' };
      }
      case 'regenerate': {
        const { kind: _kind, ...regenerate } = payload;
        this.pending.push({ ...regenerate, regenerate: true });
        return { kind: 'none' };
      }
      case 'cancel':
        if (payload.runId !== undefined) this.#cancelled.add(payload.runId);
        return { kind: 'cancel', runId: payload.runId };
      case 'steer': {
        const list = this.#steers.get(payload.runId) ?? [];
        list.push(payload.message);
        this.#steers.set(payload.runId, list);
        return { kind: 'none' };
      }
      case 'approval':
        this.#approvals.set(payload.approvalId, { approved: payload.approved, reason: payload.reason });
        return { kind: 'none' };
      case 'tool-output':
        this.#toolOutputs.set(payload.toolCallId, {
          runId: payload.runId,
          output: payload.output,
          errorText: payload.errorText,
        });
        return { kind: 'none' };
      case 'handover':
        this.holder = payload.to;
        this.operator = payload.to === 'human' ? payload.operator : undefined;
        return { kind: 'none' };
    }
  }

  /** The next input to answer, if the agent may answer now (no human holds the session). */
  takeInput(): InputPayload | ({ regenerate: true } & RegeneratePayload) | undefined {
    return this.holder === 'ai' ? this.pending.shift() : undefined;
  }

  /** True when the agent may answer and something waits. */
  get ready(): boolean {
    return this.holder === 'ai' && this.pending.length > 0;
  }

  /** A cancel named this run (cancels of every run are effects, applied to the runs then running). */
  isCancelled(runId: string): boolean {
    return this.#cancelled.has(runId);
  }

  approval(approvalId: string): ApprovalAnswer | undefined {
    return this.#approvals.get(approvalId);
  }

  /** What the client-side tool call `toolCallId` returned, once a device answered it. */
  toolOutput(toolCallId: string): ToolOutput | undefined {
    return this.#toolOutputs.get(toolCallId);
  }

  /** Steering messages for a run, taken (each is returned once). */
  takeSteers(runId: string): UIMessage[] {
    const list = this.#steers.get(runId) ?? [];
    this.#steers.delete(runId);
    return list;
  }

  /** How many distinct controls were applied. */
  get applied(): number {
    return this.#applied.size;
  }
}
