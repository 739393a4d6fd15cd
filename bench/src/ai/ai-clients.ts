/**
 * The user side of each system compared in the AI streaming scenario, as a browser tab would do it,
 * on node:http / the Mooring SDK so the bytes that cross each connection can be counted:
 *
 * - floor and `resumable-stream`: `GET /chat` on the app, an SSE response of AI SDK UI message
 *   chunks; `resumable-stream` resumes with `GET /resume?skip=<characters already read>`.
 * - Durable Streams: `POST /chat` on the app (it answers the stream's path), then
 *   `GET <ds><path>?offset=-1&live=sse`; resumes from the last `streamNextOffset` it saw.
 * - Socket.IO (a team's own setup): a `socket.io-client` socket per tab, WebSocket only; `chat`
 *   starts the generation and joins its room, each `t` event is a piece of text. A gap is a dropped
 *   connection that Socket.IO's connection state recovery resumes; a reload emits `join` and gets the
 *   text so far from the app's memory.
 * - Mooring: a `Mooring` client and a `UserSession` per tab; it sends the input and reads the run
 *   through `session.stream(runId)` (what `useChat` gets from `MooringChatTransport`); resumes with
 *   its recovery key, reloads from the start of the session.
 *
 * Every client feeds a TokenTracker with the length of the response text it has so far.
 */
import { Agent, type AgentOptions, request } from 'node:http';
import type { Socket } from 'node:net';
import { UserSession } from '@mooring/ai';
import { Mooring } from '@mooring/client';
import { type Socket as IoSocket, io } from 'socket.io-client';
import { WebSocket } from 'ws';
import type { Generation } from './model-client.ts';
import type { TokenTracker } from './token-tracker.ts';

export interface AiClient {
  close(): void;
}

/**
 * A system's user side. `open` sets a tab up (connections, attach) and `begin` asks the question
 * (the generation starts); `resume` continues from what a closed `client` had; `reload` opens a
 * fresh tab on a response under way.
 */
export interface UserSide {
  open(tracker: TokenTracker): Promise<AiClient>;
  begin(client: AiClient, g: Generation): Promise<void>;
  resume?(tracker: TokenTracker, client: AiClient): Promise<AiClient>;
  reload?(tracker: TokenTracker): Promise<AiClient>;
}

interface SseEvent {
  event: string;
  data: string;
}

/** An HTTP request whose response is read as SSE; `consumed` = characters of complete events read. */
class SseRequest implements AiClient {
  consumed = 0;
  #closed = false;
  #socket: Socket | undefined;

  constructor(
    url: string,
    method: 'GET' | 'POST',
    tracker: TokenTracker,
    onEvent: (e: SseEvent) => void,
    onEnd: () => void = () => {},
  ) {
    const req = request(url, { method, agent: false });
    req.on('socket', (socket) => {
      this.#socket = socket;
      tracker.meter.track(socket);
    });
    req.on('error', () => {});
    req.on('response', (res) => {
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (text: string) => {
        buffer += text;
        let at = buffer.indexOf('\n\n');
        while (at >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          this.consumed += block.length + 2;
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            // `field:value`, one optional space after the colon (the SSE spec)
            const colon = line.indexOf(':');
            if (colon <= 0) continue;
            const value = line.charCodeAt(colon + 1) === 32 ? line.slice(colon + 2) : line.slice(colon + 1);
            const field = line.slice(0, colon);
            if (field === 'event') event = value;
            else if (field === 'data') data = data === '' ? value : `${data}\n${value}`;
          }
          onEvent({ event, data });
          at = buffer.indexOf('\n\n');
        }
      });
      res.on('end', onEnd);
      res.on('error', () => {});
    });
    req.end();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket?.destroy();
  }
}

/** Reads AI SDK UI message chunks (SSE `data:` JSON) and counts the text. */
function uiChunkReader(tracker: TokenTracker, start = 0): (e: SseEvent) => void {
  let length = start;
  return ({ data }) => {
    if (!data.startsWith('{')) return; // [DONE]
    const chunk = JSON.parse(data) as { type: string; delta?: string };
    if (chunk.type === 'text-delta' && chunk.delta !== undefined) {
      length += chunk.delta.length;
      tracker.onLength(length);
    }
  };
}

const query = (g: Generation): string => `r=${g.response}&n=${g.tokens}&rate=${g.rate}`;

/** A tab of the HTTP systems: nothing is open before the question; `current` is the request reading. */
class HttpTab implements AiClient {
  readonly tracker: TokenTracker;
  current: SseRequest | undefined;
  constructor(tracker: TokenTracker) {
    this.tracker = tracker;
  }
  close(): void {
    this.current?.close();
  }
}

/** The floor: the AI SDK's SSE response, straight through. Nothing to resume. */
export function floorUsers(appPort: number): UserSide {
  return {
    open: async (tracker) => new HttpTab(tracker),
    async begin(client, g) {
      const tab = client as HttpTab;
      tab.current = new SseRequest(
        `http://127.0.0.1:${appPort}/chat?${query(g)}`,
        'GET',
        tab.tracker,
        uiChunkReader(tab.tracker),
      );
    },
  };
}

/** `resumable-stream`: the same SSE, resumable by character count. */
export function resumableUsers(appPort: number): UserSide {
  /** Characters of the SSE text read by the requests before the current one (what a resume skips). */
  const base = new WeakMap<HttpTab, number>();
  const read = (tab: HttpTab, path: string, skip: number): void => {
    // A resumed stream continues at an event boundary: count the text on from what was read before.
    const tracker = tab.tracker;
    const reader = uiChunkReader(tracker, skip === 0 ? 0 : (tracker.ends[tracker.tokensReceived - 1] ?? 0));
    base.set(tab, skip);
    tab.current = new SseRequest(`http://127.0.0.1:${appPort}${path}`, 'GET', tracker, reader);
  };
  return {
    open: async (tracker) => new HttpTab(tracker),
    async begin(client, g) {
      read(client as HttpTab, `/chat?${query(g)}`, 0);
    },
    async resume(_tracker, client) {
      const tab = client as HttpTab;
      const skip = (base.get(tab) ?? 0) + (tab.current?.consumed ?? 0);
      read(tab, `/resume?r=${tab.tracker.response}&skip=${skip}`, skip);
      return tab;
    },
    async reload(tracker) {
      const tab = new HttpTab(tracker);
      read(tab, `/resume?r=${tracker.response}`, 0);
      return tab;
    },
  };
}

class DurableClient implements AiClient {
  offset = '-1';
  path = '';
  request: SseRequest | undefined;
  close(): void {
    this.request?.close();
  }
}

/** Durable Streams: one stream per generation, read over SSE from an offset. */
export function durableUsers(appPort: number, dsPort: number): UserSide {
  const read = (tracker: TokenTracker, client: DurableClient, length: number): DurableClient => {
    let text = length;
    client.request = new SseRequest(
      `http://127.0.0.1:${dsPort}${client.path}?offset=${client.offset}&live=sse`,
      'GET',
      tracker,
      ({ event, data }) => {
        if (event === 'control' && data !== '') {
          client.offset = (JSON.parse(data) as { streamNextOffset: string }).streamNextOffset;
        } else if (event === 'data' && data !== '') {
          for (const chunk of JSON.parse(data) as { type: string; delta?: string }[]) {
            if (chunk.type === 'text-delta' && chunk.delta !== undefined) text += chunk.delta.length;
          }
          tracker.onLength(text);
        }
      },
    );
    return client;
  };
  const trackers = new WeakMap<DurableClient, TokenTracker>();
  return {
    async open(tracker) {
      const client = new DurableClient();
      trackers.set(client, tracker);
      return client;
    },
    async begin(client, g) {
      const c = client as DurableClient;
      const answer = await fetch(`http://127.0.0.1:${appPort}/chat?${query(g)}`, { method: 'POST' });
      c.path = ((await answer.json()) as { path: string }).path;
      read(trackers.get(c)!, c, 0);
    },
    async resume(tracker, client) {
      return read(tracker, client as DurableClient, tracker.ends[tracker.tokensReceived - 1] ?? 0);
    },
    async reload(tracker) {
      const c = new DurableClient();
      c.path = `/ai/${tracker.response}`;
      return read(tracker, c, 0);
    },
  };
}

/** An HTTP agent whose sockets are counted by the tracker's meter (what `socket.io-client` opens). */
class CountingAgent extends Agent {
  readonly #tracker: TokenTracker;
  constructor(tracker: TokenTracker, options?: AgentOptions) {
    super(options);
    this.#tracker = tracker;
  }
  override createConnection(
    ...args: Parameters<Agent['createConnection']>
  ): ReturnType<Agent['createConnection']> {
    const socket = super.createConnection(...args);
    if (socket) this.#tracker.meter.track(socket as Socket);
    return socket;
  }
}

class SocketIoTab implements AiClient {
  /** Characters of the answer this tab holds. */
  length = 0;
  readonly socket: IoSocket;
  constructor(socket: IoSocket) {
    this.socket = socket;
  }
  /** The connection drops (not a disconnect the server would forget): recoverable for 2 minutes. */
  close(): void {
    this.socket.io.engine?.close();
  }
}

/** A team's own Socket.IO setup (app-server.ts `socketio`). */
export function socketIoUsers(appPort: number): UserSide {
  const connect = (tracker: TokenTracker, tab: SocketIoTab | undefined): Promise<SocketIoTab> => {
    const socket =
      tab?.socket ??
      io(`http://127.0.0.1:${appPort}`, {
        transports: ['websocket'],
        reconnection: false,
        agent: new CountingAgent(tracker) as never,
      });
    const t = tab ?? new SocketIoTab(socket);
    if (tab === undefined) {
      socket.on('t', (delta: string) => {
        t.length += delta.length;
        tracker.onLength(t.length);
      });
    }
    return new Promise((resolve, reject) => {
      socket.once('connect_error', reject);
      socket.once('connect', () => {
        socket.off('connect_error', reject);
        resolve(t);
      });
      if (tab !== undefined) socket.connect();
    });
  };
  /** The text so far, then the room's pieces: a tab with no connection state to recover. */
  const join = async (tracker: TokenTracker, tab: SocketIoTab): Promise<SocketIoTab> => {
    const text = (await tab.socket.emitWithAck('join', tracker.response)) as string;
    tab.length = text.length;
    tracker.onLength(tab.length);
    return tab;
  };
  return {
    open: (tracker) => connect(tracker, undefined),
    async begin(client, g) {
      await (client as SocketIoTab).socket.emitWithAck('chat', g);
    },
    async resume(tracker, client) {
      const tab = await connect(tracker, client as SocketIoTab);
      // Recovered: the missed pieces are on their way. Not (the session expired): read it all again.
      if (tab.socket.recovered) return tab;
      process.stderr.write(`  socketio: response ${tracker.response} not recovered: the text so far again\n`);
      return join(tracker, tab);
    },
    reload: async (tracker) => join(tracker, await connect(tracker, undefined)),
  };
}

/** `ws` whose sockets are counted by the tracker's meter (HTTP upgrade included). */
function countingWebSocket(tracker: TokenTracker) {
  return class CountingWebSocket extends WebSocket {
    constructor(url: string) {
      super(url, { perMessageDeflate: false });
      this.on('upgrade', (res) => tracker.meter.track(res.socket));
    }
  };
}

class MooringTab implements AiClient {
  /** The recovery key taken when the tab closed (a reload with `recoverOnReload` does the same). */
  key: string | undefined;
  readonly client: Mooring;
  readonly session: UserSession;
  constructor(client: Mooring, session: UserSession) {
    this.client = client;
    this.session = session;
  }
  close(): void {
    if (this.key !== undefined) return;
    this.key = this.client.recoveryKey();
    this.session.close();
    this.client.close();
  }
}

/** Mooring: a client + UserSession per tab, reading the run as the AI SDK would. */
export function mooringUsers(url: string, key: string, frames: 'compact' | 'plain' = 'compact'): UserSide {
  const open = async (tracker: TokenTracker, recover: string | undefined): Promise<MooringTab> => {
    const client = new Mooring({
      url,
      key,
      clientId: `user-${tracker.response}`,
      environment: null,
      transports: ['websocket'],
      compactFrames: frames === 'compact',
      WebSocket: countingWebSocket(tracker) as never,
      ...(recover === undefined ? {} : { recover }),
    });
    const session = new UserSession({
      channel: client.channels.get(`ai:${tracker.response}`, { start: true }),
    });
    const followed = new Set<string>();
    const follow = (runId: string): void => {
      if (followed.has(runId)) return;
      followed.add(runId);
      const reader = session.stream(runId, { mode: 'replay' }).getReader();
      let length = 0;
      void (async () => {
        for (;;) {
          const r = await reader.read().catch(() => ({ done: true as const, value: undefined }));
          if (r.done) return;
          if (r.value.type === 'text-delta') {
            length += r.value.delta.length;
            tracker.onLength(length);
          }
        }
      })();
    };
    session.on('run', (node) => follow(node.id));
    await session.ready();
    for (const run of session.tree.runs) follow(run.id);
    return new MooringTab(client, session);
  };
  return {
    open: (tracker) => open(tracker, undefined),
    async begin(client) {
      await (client as MooringTab).session.send('go');
    },
    async resume(tracker, client) {
      const tab = client as MooringTab;
      tab.close();
      return open(tracker, tab.key);
    },
    reload: (tracker) => open(tracker, undefined),
  };
}
