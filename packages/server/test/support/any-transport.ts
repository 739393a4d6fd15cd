/**
 * One way to open a connection on any transport (WebSocket, SSE, long-poll) or to act over REST, for
 * tests that must prove the same rule on every path a client can take.
 */
import type { OperationInput, PublishResult, ServerFrame } from '@mooring/protocol';
import { type Fixture, rest, TEST_KEY } from './fixture.ts';
import { PollClient, SseClient } from './http-client.ts';
import { RawClient } from './raw-client.ts';

export type Transport = 'websocket' | 'sse' | 'longpoll';
export const TRANSPORTS: Transport[] = ['websocket', 'sse', 'longpoll'];

/** A token, or an API key (default the test key) with an optional clientId. */
export type Credentials = ({ token: string } | { key?: string; clientId?: string }) & {
  /** The connection request's `attach` parameter (PROTOCOL.md §5.1), as sent. */
  attach?: string;
  /** The connection request's `frames` parameter (`compact`: PROTOCOL.md §6.5). */
  frames?: string;
};

export interface FrameClient {
  readonly frames: ServerFrame[];
  /** Compact `messages` frames received so far (PROTOCOL.md §6.5), kept expanded in `frames`. */
  readonly compactFrames: number;
  request(frame: Record<string, unknown>): Promise<ServerFrame>;
  next(test: (f: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>;
  close(): void;
}

function query(credentials: Credentials): string {
  const q = new URLSearchParams();
  if ('token' in credentials) q.set('token', credentials.token);
  else {
    q.set('key', credentials.key ?? TEST_KEY);
    if (credentials.clientId !== undefined) q.set('clientId', credentials.clientId);
  }
  if (credentials.attach !== undefined) q.set('attach', credentials.attach);
  if (credentials.frames !== undefined) q.set('frames', credentials.frames);
  return q.toString();
}

export async function connectOn(
  fx: Fixture,
  transport: Transport,
  credentials: Credentials,
): Promise<FrameClient> {
  if (transport === 'websocket') {
    const c = await RawClient.connect(fx.server.url, credentials);
    return {
      frames: c.frames,
      get compactFrames() {
        return c.compactFrames;
      },
      request: (f) => c.request(f),
      next: (t, ms) => c.next(t, ms),
      close: () => c.kill(),
    };
  }
  if (transport === 'sse') {
    const c = await SseClient.connect(fx.server.url, query(credentials));
    return {
      frames: c.frames,
      get compactFrames() {
        return c.compactFrames;
      },
      request: (f) => c.request(f),
      next: (t, ms) => c.next(t, ms),
      close: () => c.close(),
    };
  }
  const c = await PollClient.connect(fx.server.url, query(credentials));
  return {
    frames: c.frames,
    get compactFrames() {
      return c.compactFrames;
    },
    request: (f) => c.request(f),
    next: (t, ms) => c.next(t, ms),
    close: () => c.stop(),
  };
}

/** The error code of an answer frame, or 'ok'. */
export function outcome(frame: ServerFrame): string {
  return frame.type === 'error' ? frame.error.code : 'ok';
}

/** Publishes over a connection; the results, or throws with the error code. */
export async function publishOn(
  c: FrameClient,
  channel: string,
  ops: OperationInput[],
): Promise<PublishResult[]> {
  const answer = await c.request({ type: 'publish', channel, ops });
  if (answer.type !== 'ack') throw new Error(`publish refused: ${outcome(answer)}`);
  return answer.results;
}

/** Publishes over REST with the credentials; the results, or throws with the error code. */
export async function publishRest(
  fx: Fixture,
  credentials: Credentials,
  channel: string,
  ops: OperationInput[],
): Promise<PublishResult[]> {
  const res = await rest(
    fx.server,
    `/v1/channels/${encodeURIComponent(channel)}/messages?${restQuery(credentials)}`,
    {
      key: null,
      headers: restHeaders(credentials),
      body: ops,
    },
  );
  if (res.status !== 200) throw new Error(`publish refused: ${(res.body.error as { code: string }).code}`);
  return res.body.results as PublishResult[];
}

/** The REST `Authorization` header for the credentials. */
export function restHeaders(credentials: Credentials): Record<string, string> {
  return {
    authorization: `Bearer ${'token' in credentials ? credentials.token : (credentials.key ?? TEST_KEY)}`,
  };
}

function restQuery(credentials: Credentials): string {
  return 'token' in credentials || credentials.clientId === undefined
    ? ''
    : `clientId=${encodeURIComponent(credentials.clientId)}`;
}

/** A publisher on one path: a connection on a transport, or REST. */
export interface Publisher {
  publish(channel: string, ops: OperationInput[]): Promise<PublishResult[]>;
  close(): void;
}

export async function publisherOn(
  fx: Fixture,
  path: Transport | 'rest',
  credentials: Credentials,
): Promise<Publisher> {
  if (path === 'rest')
    return { publish: (ch, ops) => publishRest(fx, credentials, ch, ops), close: () => {} };
  const c = await connectOn(fx, path, credentials);
  return { publish: (ch, ops) => publishOn(c, ch, ops), close: () => c.close() };
}
