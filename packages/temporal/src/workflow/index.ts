/**
 * @mooring/temporal/workflow — what workflow code imports (safe in the workflow sandbox: it depends on
 * `@temporalio/workflow` only). The update/signal definitions are shared with the bridge.
 */

export type {
  ApprovalPayload,
  CancelPayload,
  ControlKind,
  ControlPayload,
  HandoverPayload,
  InputPayload,
  RegeneratePayload,
  SteerPayload,
  ToolOutputPayload,
} from './definitions.ts';
export {
  approvalSignal,
  approvalUpdate,
  CONTROL_NAMES,
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
export type { MooringWorkflowSession } from './mooring-session.ts';
export { runIdFor, useMooringSession } from './mooring-session.ts';
export type { ApprovalAnswer, ControlEffect, ToolOutput } from './session-state.ts';
export { SessionState } from './session-state.ts';
export type { SubAgentArgs, SubAgentPlanOptions, SubAgentResult, SubAgentTask } from './sub-agents.ts';
export { answerWithSubAgents, planSubAgents } from './sub-agents.ts';
