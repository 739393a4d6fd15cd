/**
 * A controllable transport for connection tests: records what the client sends and lets the test
 * play the server (frames, closes, refused handshakes) without sockets.
 */
import type { ClientFrame, ConnectedFrame, ServerFrame } from '@mooring/protocol';
import { DEFAULT_LIMITS } from '@mooring/protocol';
import type { Transport, TransportCloseInfo, TransportHandlers } from '../../src/transport.ts';

export class FakeTransport implements Transport {
  readonly kind: string;
  url: string | undefined;
  readonly sent: ClientFrame[] = [];
  /** The JSON text given with each sent frame (a publish, written once), in `sent`'s order. */
  readonly texts: (string | undefined)[] = [];
  closedBy: { code: number | undefined; reason: string | undefined } | undefined;
  aborted = false;
  failSends = false;
  #handlers: TransportHandlers | undefined;

  constructor(kind = 'fake') {
    this.kind = kind;
  }

  open(url: string, handlers: TransportHandlers): void {
    this.url = url;
    this.#handlers = handlers;
  }

  send(frame: ClientFrame, json?: string): void {
    if (this.failSends) throw new Error('socket is dead');
    this.sent.push(frame);
    this.texts.push(json);
  }

  close(code?: number, reason?: string): void {
    this.closedBy = { code, reason };
  }

  abort(): void {
    this.aborted = true;
  }

  get query(): URLSearchParams {
    return new URL(this.url ?? 'ws://unopened/').searchParams;
  }

  frame(frame: ServerFrame): void {
    this.#handlers?.onOpen();
    this.#handlers?.onFrame(frame);
  }

  /** Traffic that is not a frame (an SSE comment, an empty long-poll answer). */
  activity(): void {
    this.#handlers?.onActivity?.();
  }

  protocolError(message: string): void {
    this.#handlers?.onProtocolError(message);
  }

  connected(overrides: Partial<ConnectedFrame> = {}): void {
    this.frame(connectedFrame(overrides));
  }

  end(info: TransportCloseInfo): void {
    this.#handlers?.onClose(info);
  }
}

let counter = 0;
export function connectedFrame(overrides: Partial<ConnectedFrame> = {}): ConnectedFrame {
  counter += 1;
  return {
    type: 'connected',
    connectionId: `c_${counter}`,
    connectionKey: `c_${counter}.key`,
    resumed: false,
    heartbeatInterval: 15_000,
    maxIdleInterval: 15_000,
    connectionStateTtl: 120_000,
    serverTime: 0,
    limits: {
      maxOperationSize: DEFAULT_LIMITS.maxOperationSize,
      maxMessageSize: DEFAULT_LIMITS.maxMessageSize,
      maxFrameSize: DEFAULT_LIMITS.maxFrameSize,
      maxOpsPerPublish: DEFAULT_LIMITS.maxOpsPerPublish,
      maxChannelsPerConnection: DEFAULT_LIMITS.maxChannelsPerConnection,
    },
    ...overrides,
  };
}

/** A transport factory that keeps every transport it made. */
export function fakeTransports(): {
  factory: () => FakeTransport;
  made: FakeTransport[];
  last(): FakeTransport;
} {
  const made: FakeTransport[] = [];
  return {
    made,
    factory: () => {
      const t = new FakeTransport();
      made.push(t);
      return t;
    },
    last: () => {
      const t = made.at(-1);
      if (!t) throw new Error('no transport was made');
      return t;
    },
  };
}

/** Lets promise callbacks (the async open of a transport) run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
