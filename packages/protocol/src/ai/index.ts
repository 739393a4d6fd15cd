/**
 * `@mooring/protocol/ai`: the AI session vocabulary of PROTOCOL.md §13 (event names, run statuses,
 * part kinds and headers, controls) and the zod-free readers that check an inbound message against it.
 */
export type {
  ControlData,
  ControlRecord,
  ControlType,
  FinalRunStatus,
  InputData,
  InputRecord,
  PartKind,
  PartRecord,
  ReadResult,
  RunData,
  RunRecord,
  RunStatus,
  SessionRecord,
  TextPartMeta,
  WireChunk,
  WireUIMessage,
} from './session-events.ts';
export {
  asJson,
  controlHeaders,
  EVENT_CONTROL,
  EVENT_INPUT,
  EVENT_PART,
  EVENT_RUN,
  handoverAllowed,
  isFinal,
  isObject,
  PART_KINDS,
  RUN_STATUSES,
  readMeta,
  readSessionMessage,
  runMessageId,
} from './session-events.ts';
