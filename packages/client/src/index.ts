/**
 * @mooring/client — the public surface. Everything not named here is internal.
 */

export { applyMessage, isRolledUp } from './apply-message.ts';
export type { AuthCallback, AuthCallbackParams, AuthReason, TokenDetails } from './auth.ts';
export type { BrowserEnvironment, EnvironmentEvent, StorageLike } from './browser-environment.ts';
export type {
  AttachResult,
  Channel,
  ChannelEvents,
  ChannelOptions,
  ChannelState,
  ChannelStateChange,
  ContinuityLost,
} from './channel.ts';
export type { Channels } from './channels.ts';
export type { Connection, ConnectionEvents, ConnectionStateChange, TransportChange } from './connection.ts';
export type { ConnectionState } from './connection-state-machine.ts';
export { CONNECTION_STATES } from './connection-state-machine.ts';
export type { Listener, ListenerErrorHandler } from './emitter.ts';
/** The SDK's typed event emitter, for layers built on it (such as @mooring/ai). */
export { Emitter } from './emitter.ts';
export type { ClientErrorCode, MooringErrorCode } from './errors.ts';
export { CLIENT_ERRORS, MooringError } from './errors.ts';
export type { HttpTransportDeps } from './http-upstream.ts';
export type { KeptMessages } from './kept-messages.ts';
export { keptMessages } from './kept-messages.ts';
export { LongPollTransport } from './long-poll-transport.ts';
export type { MooringOptions } from './mooring.ts';
export { Mooring } from './mooring.ts';
export type { OperationOptions, UpdateFields } from './operations.ts';
export type { Presence } from './presence.ts';
export type { PresenceAction, PresenceEvent } from './presence-members.ts';
export type { RecoveryState } from './recovery-key.ts';
export { decodeRecoveryKey, encodeRecoveryKey } from './recovery-key.ts';
export type { ChannelStatus, FetchLike, HistoryOptions, HistoryPage, PublishOptions, Rest } from './rest.ts';
export { SseTransport } from './sse-transport.ts';
export type { Timers } from './timers.ts';
export type { Timings } from './timings.ts';
export { DEFAULT_CLIENT_TIMINGS } from './timings.ts';
export type {
  Transport,
  TransportCloseInfo,
  TransportFactory,
  TransportHandlers,
  TransportKind,
} from './transport.ts';
export { TRANSPORT_KINDS } from './transport.ts';
export type { WebSocketConstructor, WebSocketLike } from './websocket-transport.ts';
export { WebSocketTransport } from './websocket-transport.ts';
