/**
 * The AI session wire format (PROTOCOL.md §13), as `@mooring/ai` uses it: the vocabulary and readers
 * live in `@mooring/protocol/ai`; this module names the AI SDK's own `UIMessage` and `UIMessageChunk`
 * in them, so the rest of the package works with the SDK's types.
 */
import type { Message } from '@mooring/protocol';
import type * as wire from '@mooring/protocol/ai';
import { readSessionMessage as readWire } from '@mooring/protocol/ai';
import type { UIMessage, UIMessageChunk } from 'ai';

export type {
  ControlType,
  FinalRunStatus,
  PartKind,
  RunData,
  RunRecord,
  RunStatus,
  TextPartMeta,
} from '@mooring/protocol/ai';
export {
  asJson,
  controlHeaders,
  EVENT_CONTROL,
  EVENT_INPUT,
  EVENT_PART,
  EVENT_RUN,
  isFinal,
  isObject,
  PART_KINDS,
  RUN_STATUSES,
  readMeta,
  runMessageId,
} from '@mooring/protocol/ai';

export type InputData = wire.InputData<UIMessage>;
export type ControlData = wire.ControlData<UIMessage>;
export type InputRecord = wire.InputRecord<UIMessage>;
export type PartRecord = wire.PartRecord<UIMessageChunk>;
export type ControlRecord = wire.ControlRecord<UIMessage>;
export type SessionRecord = wire.SessionRecord<UIMessage, UIMessageChunk>;
export type ReadResult = wire.ReadResult<UIMessage, UIMessageChunk>;

/**
 * Reads a (folded) message as a session record. `undefined` for messages that are not AI session
 * events (other names, tombstones); `{ ok: false, reason }` for a malformed one.
 */
export function readSessionMessage(message: Message): ReadResult {
  return readWire<UIMessage, UIMessageChunk>(message);
}
