/**
 * @mooring/temporal — the public surface for activities and the bridge (Node). Workflow code imports
 * `@mooring/temporal/workflow`.
 */

export type {
  BridgeWorkflowClient,
  BridgeWorkflowHandle,
  ControlBridgeEvents,
  ControlBridgeOptions,
  DeliveredControl,
} from './control-bridge.ts';
export { ControlBridge } from './control-bridge.ts';
export type { RunIdParts } from './derive-run-id.ts';
export { deriveRunId } from './derive-run-id.ts';
export type { PositionStore } from './position-store.ts';
export { filePositions, memoryPositions } from './position-store.ts';
export type {
  ChunkSource,
  StreamedRun,
  StreamHeartbeat,
  StreamToSessionOptions,
} from './stream-to-session.ts';
export { DEFAULT_ACTIVITY_LEASE_MS, streamToSession } from './stream-to-session.ts';
export { willRetry } from './will-retry.ts';
