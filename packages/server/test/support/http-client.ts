/**
 * Minimal clients for the HTTP fallback transports (PROTOCOL.md §12), for server tests: an SSE stream
 * read through fetch, and a long-poll loop. Both keep every frame received and send upstream frames
 * by POST, one request at a time (which keeps the client's frames in order).
 */
import { type ServerFrame, toServerFrame } from '@mooring/protocol';

abstract class HttpClientBase {
  readonly frames: ServerFrame[] = [];
  comments = 0;
  connectionId = '';
  connectionKey = '';
  protected readonly baseUrl: string;
  #upstream: Promise<unknown> = Promise.resolve();
  #ref = 0;

  constructor(baseUrl: string) {
    this.baseUrl = baseUrl;
  }

  /** Compact `messages` frames received (PROTOCOL.md §6.5), each kept expanded in `frames`. */
  compactFrames = 0;

  protected onFrame(value: ServerFrame): void {
    const frame = expanded(value, this);
    if (frame.type === 'connected') {
      this.connectionId = frame.connectionId;
      this.connectionKey = frame.connectionKey;
    }
    this.frames.push(frame);
  }

  /** POSTs frames upstream; requests are chained so that they arrive in order. */
  post(frames: unknown): Promise<Response> {
    const next = this.#upstream.then(() =>
      fetch(`${this.baseUrl}/v1/connections/${this.connectionId}/frames`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-mooring-connection-key': this.connectionKey },
        body: JSON.stringify(frames),
      }),
    );
    this.#upstream = next.catch(() => {});
    return next;
  }

  async request(frame: Record<string, unknown>, timeoutMs = 10_000): Promise<ServerFrame> {
    const ref = ++this.#ref;
    const res = await this.post({ ...frame, ref });
    if (res.status !== 202) throw new Error(`upstream POST answered ${res.status}: ${await res.text()}`);
    return this.next((f) => 'ref' in f && f.ref === ref, timeoutMs);
  }

  async next(test: (f: ServerFrame) => boolean, timeoutMs = 10_000): Promise<ServerFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(test);
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out waiting for a frame; got ${JSON.stringify(this.frames).slice(0, 500)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  messages(channel: string) {
    return this.frames.flatMap((f) => (f.type === 'messages' && f.channel === channel ? f.messages : []));
  }
}

export class SseClient extends HttpClientBase {
  readonly #abort = new AbortController();
  ended: Promise<void> = Promise.resolve();
  /** True once the stream has ended (the server closed it, or `close()`). */
  hasEnded = false;

  static async connect(baseUrl: string, query = 'key=test:secret'): Promise<SseClient> {
    const client = new SseClient(baseUrl);
    const res = await fetch(`${baseUrl}/v1/connect/sse?${query}`, { signal: client.#abort.signal });
    if (res.status !== 200 || !res.body) throw new Error(`SSE refused: ${res.status} ${await res.text()}`);
    client.ended = client.#read(res.body).then(() => {
      client.hasEnded = true;
    });
    await client.next((f) => f.type === 'connected');
    return client;
  }

  /** Waits for the next `heartbeat` frame; resolves at once if the stream ends first. */
  async nextHeartbeat(): Promise<void> {
    const seen = this.frames.filter((f) => f.type === 'heartbeat').length;
    await this.next(() => this.hasEnded || this.frames.filter((f) => f.type === 'heartbeat').length > seen);
  }

  async #read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      const reader = body.getReader();
      for (;;) {
        const { value: chunk, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(chunk, { stream: true });
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (event.startsWith(':')) this.comments++;
          else if (event.startsWith('data: ')) this.onFrame(JSON.parse(event.slice(6)) as ServerFrame);
          end = buffer.indexOf('\n\n');
        }
      }
    } catch {
      // aborted or the connection broke
    }
  }

  close(): void {
    this.#abort.abort();
  }
}

export class PollClient extends HttpClientBase {
  #stopped = false;
  polls = 0;

  static async connect(baseUrl: string, query = 'key=test:secret'): Promise<PollClient> {
    const client = new PollClient(baseUrl);
    const res = await fetch(`${baseUrl}/v1/connect/poll?${query}`);
    if (res.status !== 200) throw new Error(`poll refused: ${res.status} ${await res.text()}`);
    for (const frame of (await res.json()) as ServerFrame[]) client.onFrame(frame);
    void client.#loop();
    return client;
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      try {
        const res = await fetch(`${this.baseUrl}/v1/connections/${this.connectionId}/poll`, {
          headers: { 'x-mooring-connection-key': this.connectionKey },
        });
        this.polls++;
        if (res.status !== 200) {
          this.#stopped = true;
          return;
        }
        for (const frame of (await res.json()) as ServerFrame[]) this.onFrame(frame);
      } catch {
        this.#stopped = true;
      }
    }
  }

  stop(): void {
    this.#stopped = true;
  }
}

/** A compact `messages` frame as the plain one it stands for (counted on `client`); others as they are. */
export function expanded(value: unknown, client: { compactFrames: number }): ServerFrame {
  if ((value as { type?: unknown }).type !== 'm') return value as ServerFrame;
  client.compactFrames++;
  const frame = toServerFrame(value);
  if (typeof frame === 'string') throw new Error(`bad compact frame: ${frame}`);
  return frame;
}
