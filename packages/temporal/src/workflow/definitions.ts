/**
 * The messages a session sends into a workflow (through `ControlBridge`), as Temporal update and
 * signal definitions with typed payloads. Shared by the bridge (client side) and the workflow, so
 * both name the same handlers; this module imports only `@temporalio/workflow`'s `define*`, which
 * are safe outside the workflow sandbox.
 *
 * Every payload carries `controlId`: the session message's identity (its publisher's clientId and
 * operation id). The bridge sends it as the update id (Temporal keeps one update per id) and the
 * workflow's handlers ignore an id they have already applied, so each control takes effect once even
 * if it is delivered twice (a bridge that crashed between delivering and saving its position; signals,
 * which carry no idempotency key).
 */
import { defineSignal, defineUpdate } from '@temporalio/workflow';
import type { UIMessage } from 'ai';

interface Delivered {
  /** Unique per control in the session: `<clientId>/<operation id>` (see the module comment). */
  controlId: string;
  /** The session channel it came from. */
  channel: string;
  /** The control message's serial in the session. */
  serial: string;
}

/** A user message (`ai.input`): the workflow answers it. */
export interface InputPayload extends Delivered {
  inputId: string;
  message: UIMessage;
  parent?: string;
  forkOf?: string;
  clientId?: string;
}

/** `cancel`: the run (or every run, without `runId`) stops. */
export interface CancelPayload extends Delivered {
  runId?: string;
}

/** `steer`: new user input into a running run (barge-in). */
export interface SteerPayload extends Delivered {
  runId: string;
  message: UIMessage;
}

/** `tool-approval`: the answer to a `tool-approval-request`. */
export interface ApprovalPayload extends Delivered {
  runId?: string;
  approvalId: string;
  approved: boolean;
  reason?: string;
}

/** `tool-output`: what a client-side tool of a run returned (or why it failed: `errorText`). */
export interface ToolOutputPayload extends Delivered {
  runId: string;
  toolCallId: string;
  output?: unknown;
  errorText?: string;
}

/** `handover`: while a human holds the session, the agent answers no input. */
export interface HandoverPayload extends Delivered {
  to: 'human' | 'ai';
  operator?: string;
}

/** `regenerate`: a new answer to an input (a run with `replaces`). */
export interface RegeneratePayload extends Delivered {
  inputId: string;
  runId?: string;
}

export type ControlPayload =
  | ({ kind: 'input' } & InputPayload)
  | ({ kind: 'cancel' } & CancelPayload)
  | ({ kind: 'steer' } & SteerPayload)
  | ({ kind: 'approval' } & ApprovalPayload)
  | ({ kind: 'tool-output' } & ToolOutputPayload)
  | ({ kind: 'handover' } & HandoverPayload)
  | ({ kind: 'regenerate' } & RegeneratePayload);

export type ControlKind = ControlPayload['kind'];

/** Update names (and signal names: the same, for workflows that take controls as signals). */
export const CONTROL_NAMES = {
  input: 'mooring.input',
  cancel: 'mooring.cancel',
  steer: 'mooring.steer',
  approval: 'mooring.approval',
  'tool-output': 'mooring.toolOutput',
  handover: 'mooring.handover',
  regenerate: 'mooring.regenerate',
} as const satisfies Record<ControlKind, string>;

export const inputUpdate = defineUpdate<void, [InputPayload]>(CONTROL_NAMES.input);
export const cancelUpdate = defineUpdate<void, [CancelPayload]>(CONTROL_NAMES.cancel);
export const steerUpdate = defineUpdate<void, [SteerPayload]>(CONTROL_NAMES.steer);
export const approvalUpdate = defineUpdate<void, [ApprovalPayload]>(CONTROL_NAMES.approval);
export const toolOutputUpdate = defineUpdate<void, [ToolOutputPayload]>(CONTROL_NAMES['tool-output']);
export const handoverUpdate = defineUpdate<void, [HandoverPayload]>(CONTROL_NAMES.handover);
export const regenerateUpdate = defineUpdate<void, [RegeneratePayload]>(CONTROL_NAMES.regenerate);

export const inputSignal = defineSignal<[InputPayload]>(CONTROL_NAMES.input);
export const cancelSignal = defineSignal<[CancelPayload]>(CONTROL_NAMES.cancel);
export const steerSignal = defineSignal<[SteerPayload]>(CONTROL_NAMES.steer);
export const approvalSignal = defineSignal<[ApprovalPayload]>(CONTROL_NAMES.approval);
export const toolOutputSignal = defineSignal<[ToolOutputPayload]>(CONTROL_NAMES['tool-output']);
export const handoverSignal = defineSignal<[HandoverPayload]>(CONTROL_NAMES.handover);
export const regenerateSignal = defineSignal<[RegeneratePayload]>(CONTROL_NAMES.regenerate);
