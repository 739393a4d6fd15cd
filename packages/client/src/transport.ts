/**
 * The transport seam: how frames get to and from the server. The connection core knows only this
 * interface; the implementations are WebSocket (`websocket-transport.ts`), HTTP streaming
 * (`sse-transport.ts`) and long-polling (`long-poll-transport.ts`), PROTOCOL.md §5 and §12. A
 * transport carries frames and reports how it ended; it does not retry, time out the opening or
 * interpret frames — the connection does (and `transport-selector.ts` picks which one to use).
 */
import type { ClientFrame, ErrorInfo, ServerFrame } from '@mooring/protocol';

export interface TransportHandlers {
  /** The underlying channel is open (for WebSocket: the upgrade succeeded). */
  onOpen(): void;
  /** A parsed server frame. */
  onFrame(frame: ServerFrame): void;
  /** Something arrived that is not a frame. The transport stays open. */
  onProtocolError(message: string): void;
  /**
   * Traffic that is not a frame but proves the connection lives (an SSE `: ping` comment, an empty
   * long-poll answer). Counts for dead-connection detection like a frame (PROTOCOL.md §12).
   */
  onActivity?(): void;
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
  /**
   * True when the request never got any HTTP answer (DNS, refused, reset before the response), so
   * the server, not the transport, is out of reach. Only HTTP transports can tell; see
   * `shouldFallBack` in `transport-selector.ts`.
   */
  unreachable?: boolean;
}

/** The built-in transports, best first. */
export const TRANSPORT_KINDS = ['websocket', 'sse', 'longpoll'] as const;
export type TransportKind = (typeof TRANSPORT_KINDS)[number];

export interface Transport {
  /** `websocket`, `sse`, `longpoll` for the built-in transports. */
  readonly kind: string;
  /** Starts opening `url`. Handlers are called asynchronously, never from inside `open`. */
  open(url: string, handlers: TransportHandlers): void;
  /** Sends one frame. Throws when the transport cannot send (the connection then reconnects). */
  send(frame: ClientFrame): void;
  /** Closes gracefully; `onClose` follows. Safe to call in any state, more than once. */
  close(code?: number, reason?: string): void;
  /** Drops the transport at once, without a closing handshake, and reports nothing more. */
  abort(): void;
  /**
   * Stops sending (frames not yet sent are dropped) and resolves once nothing sent earlier is still
   * on its way to the server. Used before switching to another transport of the same connection,
   * so that no late upstream request of this one reaches the server after the new one's frames.
   * Transports whose sends are ordered with the next connection anyway (WebSocket) omit it.
   */
  drain?(): Promise<void>;
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
  return toServerFrame(value);
}

/** Checks one parsed value (e.g. an element of a long-poll answer), or explains why it is not a frame. */
export function toServerFrame(value: unknown): ServerFrame | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return 'frame is not a JSON object';
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string' || !SERVER_FRAME_TYPES.has(type))
    return `unknown frame type ${JSON.stringify(type)}`;
  if (!CHANNEL_LESS.has(type)) {
    if (typeof (value as { channel?: unknown }).channel !== 'string')
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
  'presence',
  'authorized',
  'heartbeat',
  'pong',
  'disconnect',
] satisfies ServerFrame['type'][]);

/** Frame types that carry no `channel` (an `error` may or may not). */
const CHANNEL_LESS: ReadonlySet<string> = new Set([
  'connected',
  'authorized',
  'heartbeat',
  'pong',
  'disconnect',
  'error',
] satisfies ServerFrame['type'][]);
