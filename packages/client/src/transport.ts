/**
 * The transport seam: how frames get to and from the server. The connection core knows only this
 * interface; WebSocket is the first implementation, HTTP streaming and long-polling (PROTOCOL.md §12)
 * plug in here later. A transport carries frames and reports how it ended; it does not retry, time
 * out or interpret frames — the connection does.
 */
import type { ClientFrame, ErrorInfo, ServerFrame } from '@mooring/protocol';

export interface TransportHandlers {
  /** The underlying channel is open (for WebSocket: the upgrade succeeded). */
  onOpen(): void;
  /** A parsed server frame. */
  onFrame(frame: ServerFrame): void;
  /** Something arrived that is not a frame. The transport stays open. */
  onProtocolError(message: string): void;
  /** The transport ended, for whatever reason. Called once; nothing is reported after it. */
  onClose(info: TransportCloseInfo): void;
}

export interface TransportCloseInfo {
  /** WebSocket close code (1006 when the socket died without a close frame). */
  code: number;
  reason: string;
  /** HTTP status when the server refused to open the transport (e.g. 401 on the handshake). */
  httpStatus?: number;
  /** The server's error body on a refused handshake, when it could be read. */
  error?: ErrorInfo;
  /** A local error (DNS, connection refused, TLS…), as text. */
  localError?: string;
}

export interface Transport {
  readonly kind: string;
  /** Starts opening `url`. Handlers are called asynchronously, never from inside `open`. */
  open(url: string, handlers: TransportHandlers): void;
  /** Sends one frame. Throws when the transport cannot send (the connection then reconnects). */
  send(frame: ClientFrame): void;
  /** Closes gracefully; `onClose` follows. Safe to call in any state, more than once. */
  close(code?: number, reason?: string): void;
  /** Drops the transport at once, without a closing handshake, and reports nothing more. */
  abort(): void;
}

/** Makes a new, unopened transport for each connection attempt. */
export type TransportFactory = () => Transport;

/** Parses one text frame from the server, or explains why it is not one. */
export function parseServerFrame(text: string): ServerFrame | string {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return 'frame is not JSON';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'frame is not a JSON object';
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !SERVER_FRAME_TYPES.has(type))
    return `unknown frame type ${JSON.stringify(type)}`;
  if (type !== 'connected' && type !== 'heartbeat' && type !== 'pong' && type !== 'disconnect') {
    if (type !== 'error' && typeof (value as { channel?: unknown }).channel !== 'string')
      return `${type} frame without a channel`;
  }
  if (type === 'messages' && !Array.isArray((value as { messages?: unknown }).messages))
    return 'messages frame without a messages array';
  if (type === 'ack' && !Array.isArray((value as { results?: unknown }).results))
    return 'ack frame without a results array';
  return value as ServerFrame;
}

const SERVER_FRAME_TYPES: ReadonlySet<string> = new Set([
  'connected',
  'attached',
  'messages',
  'detached',
  'ack',
  'error',
  'heartbeat',
  'pong',
  'disconnect',
] satisfies ServerFrame['type'][]);
