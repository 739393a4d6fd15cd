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

/** The built-in transports, best first: listed once, in `@mooring/protocol`. */
export { TRANSPORT_KINDS, type TransportKind } from '@mooring/protocol';

export interface Transport {
  /** `websocket`, `sse`, `longpoll` for the built-in transports. */
  readonly kind: string;
  /** Starts opening `url`. Handlers are called asynchronously, never from inside `open`. */
  open(url: string, handlers: TransportHandlers): void;
  /**
   * Sends one frame. Throws when the transport cannot send (the connection then reconnects).
   * `json`, when given, is the frame already written as JSON (a publish, measured before it was
   * sent): a transport that sends text sends it as is instead of writing the frame again.
   */
  send(frame: ClientFrame, json?: string): void;
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

/** The client's check of each server frame is the protocol's (zod-free) reader. */
export { parseServerFrame, toServerFrame } from '@mooring/protocol';
