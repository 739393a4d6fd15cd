/**
 * @mooring/ai — the public surface. Everything not named here is internal.
 */

export type { AgentInput, AgentRunEvents, ToolApproval, ToolOutput } from './agent-run.ts';
export { AgentRun, CancelledError } from './agent-run.ts';
export type { AgentSessionEvents, AgentSessionOptions } from './agent-session.ts';
export { AgentSession } from './agent-session.ts';
export type {
  ConversationTreeOptions,
  Handover,
  InputNode,
  RunNode,
  TreeChange,
  TreeNode,
} from './conversation-tree.ts';
export { ConversationTree } from './conversation-tree.ts';
export type { AiErrorCode } from './errors.ts';
export { AI_ERRORS, MooringAiError } from './errors.ts';
export { loadSession } from './load-session.ts';
export type { MooringChat, MooringChatOptions } from './mooring-chat.ts';
export { mooringChat } from './mooring-chat.ts';
export type { MooringChatTransportEvents, MooringChatTransportOptions } from './mooring-chat-transport.ts';
export { MooringChatTransport } from './mooring-chat-transport.ts';
export type { OperationSink, PublishedOperation } from './operation-sink.ts';
export { channelSink, restSink } from './operation-sink.ts';
export type { PublishedRun, PublishUIMessageStreamOptions } from './publish-ui-message-stream.ts';
export { publishUIMessageStream } from './publish-ui-message-stream.ts';
export type { ChunkReader } from './read-chunks.ts';
export { readChunks } from './read-chunks.ts';
export { RunChunkEmitter } from './run-chunk-emitter.ts';
export type { RunStreamOptions, RunStreamSource } from './run-chunk-stream.ts';
export { runChunkStream } from './run-chunk-stream.ts';
export { buildRunMessage, historyOf, replayRun } from './run-message.ts';
export type { EndOptions, PublisherTimers, RunPublisherOptions } from './run-publisher.ts';
export { DEFAULT_COALESCE_MS, DEFAULT_LEASE_MS, RunPublisher } from './run-publisher.ts';
export type { SessionFeedEvents } from './session-feed.ts';
export { SessionFeed } from './session-feed.ts';
export type { SyncableChat } from './sync-chat.ts';
export { syncChat } from './sync-chat.ts';
export type {
  OutgoingMessage,
  UserSessionEvents,
  UserSessionOptions,
  ViewInput,
  ViewNode,
  ViewRun,
} from './user-session.ts';
export { UserSession } from './user-session.ts';
export type {
  ControlData,
  ControlType,
  FinalRunStatus,
  InputData,
  PartKind,
  RunData,
  RunStatus,
  TextPartMeta,
} from './wire.ts';
export { EVENT_CONTROL, EVENT_INPUT, EVENT_PART, EVENT_RUN, PART_KINDS, RUN_STATUSES } from './wire.ts';
