/**
 * `@mooring/protocol`: the wire vocabulary of PROTOCOL.md as types and small pure functions, with no
 * dependencies, so browsers can use it freely. Runtime schemas are in `@mooring/protocol/schemas`;
 * the AI session vocabulary (PROTOCOL.md §13) is in `@mooring/protocol/ai`.
 */
export type { MessagesFrameExtras } from './compact.ts';
export {
  COMPACT_FRAMES,
  COMPACT_MESSAGES_TYPE,
  encodeCompactMessages,
  encodeMessages,
  expandCompactMessages,
  FRAMES_PARAM,
} from './compact.ts';
export type { CloseReason, ErrorCode, ErrorInfo } from './errors.ts';
export { CLOSE_CODES, ERRORS, errorInfo, isErrorCode } from './errors.ts';
export type {
  AckFrame,
  AttachedFrame,
  AttachFrame,
  AuthFrame,
  AuthorizedFrame,
  ClientFrame,
  CloseFrame,
  ConnectedFrame,
  DetachedFrame,
  DetachFrame,
  DisconnectFrame,
  ErrorFrame,
  HeartbeatFrame,
  MessagesFrame,
  PingFrame,
  PongFrame,
  PresenceFrame,
  PresenceMember,
  PresenceRequestFrame,
  PublishFrame,
  Ref,
  ResumeFailure,
  ServerFrame,
} from './frames.ts';
export {
  CHANNEL_NAME_RE,
  CONNECT_ATTACH_PARAM,
  isChannelName,
  MAX_CONNECT_ATTACH_CHARS,
  namespaceOf,
  parseServerFrame,
  toServerFrame,
} from './frames.ts';
export type { Limits } from './limits.ts';
export { DEFAULT_LIMITS, DEFAULT_TIMINGS, PROTOCOL_VERSION } from './limits.ts';
export type {
  Action,
  Encoding,
  Headers,
  HeaderValue,
  JsonValue,
  Message,
  OperationInput,
  PublishResult,
} from './message.ts';
export { ACTIONS } from './message.ts';
export type {
  ChannelStatusResponse,
  ErrorResponse,
  HistoryResponse,
  PresenceResponse,
  PublishBody,
  PublishResponse,
  TokenRequestBody,
} from './rest.ts';
export type { SerialParts } from './serial.ts';
export {
  compareSerials,
  formatSerial,
  hasEpoch,
  isSerial,
  newEpoch,
  parseSerial,
  sameEpoch,
  serialSeq,
} from './serial.ts';
export { appendText, utf8Length } from './text.ts';
export type { TransportKind } from './transports.ts';
export { isTransportKind, TRANSPORT_KINDS } from './transports.ts';
