/**
 * A minimal client speaking PROTOCOL.md over a real WebSocket, for server tests. It keeps every frame
 * it received, answers requests by `ref`, and folds delivered messages per channel by the §4.2 rule,
 * so tests can assert on exactly what a subscriber saw.
 */
import type { AckFrame, AttachedFrame, Message, OperationInput, ServerFrame } from '@mooring/protocol';
import WebSocket from 'ws';
import { expanded } from './http-client.ts';

export interface RawClientOptions {
  key?: string;
  /** A JWT instead of the API key. */
  token?: string;
  clientId?: string;
  recover?: string;
  /** The connection request's `attach` parameter (PROTOCOL.md §5.1), as sent. */
  attach?: string;
  /** The connection request's `frames` parameter (`compact`: PROTOCOL.md §6.5). */
  frames?: string;
}

export class RawClient {
  readonly ws: WebSocket;
  readonly frames: ServerFrame[] = [];
  /** Every message object delivered, per channel, in arrival order. */
  readonly received = new Map<string, Message[]>();
  /** Position per channel: the greatest version applied. */
  readonly positions = new Map<string, string>();
  closeCode: number | undefined;
  /** Compact `messages` frames received (PROTOCOL.md §6.5), each kept expanded in `frames`. */
  compactFrames = 0;
  #ref = 0;
  readonly #waiters = new Set<{ test: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }>();
  readonly #closed: Promise<number>;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data) => this.#onFrame(expanded(JSON.parse(data.toString()), this)));
    this.#closed = new Promise((resolve) =>
      ws.on('close', (code) => {
        this.closeCode = code;
        resolve(code);
      }),
    );
    ws.on('error', () => {});
  }

  static async connect(baseUrl: string, options: RawClientOptions = {}): Promise<RawClient> {
    const url = new URL('/v1/connect', baseUrl.replace(/^http/, 'ws'));
    if (options.token) url.searchParams.set('token', options.token);
    else url.searchParams.set('key', options.key ?? 'test:secret');
    if (options.clientId) url.searchParams.set('clientId', options.clientId);
    if (options.recover) url.searchParams.set('recover', options.recover);
    if (options.attach !== undefined) url.searchParams.set('attach', options.attach);
    if (options.frames !== undefined) url.searchParams.set('frames', options.frames);
    const ws = new WebSocket(url);
    const client = new RawClient(ws);
    const failed = new Promise<never>((_, reject) => {
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`handshake refused: HTTP ${res.statusCode}`)),
      );
      ws.once('error', reject);
    });
    await Promise.race([client.next((f) => f.type === 'connected'), failed]);
    return client;
  }

  /**
   * `count` clients connected `batch` at a time (a handshake each); `options(i)` for the i-th
   * (a clientId of its own, say).
   */
  static async connectMany(
    baseUrl: string,
    count: number,
    options: (i: number) => RawClientOptions = () => ({}),
    batch = 50,
  ): Promise<RawClient[]> {
    const clients: RawClient[] = [];
    for (let i = 0; i < count; i += batch) {
      const n = Math.min(batch, count - i);
      const next = Array.from({ length: n }, (_, j) => RawClient.connect(baseUrl, options(i + j)));
      clients.push(...(await Promise.all(next)));
    }
    return clients;
  }

  get connected(): Extract<ServerFrame, { type: 'connected' }> {
    return this.frames.find((f) => f.type === 'connected') as Extract<ServerFrame, { type: 'connected' }>;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Resolves with the first frame (already received or future) matching `test`. */
  next(test: (f: ServerFrame) => boolean, timeoutMs = 10_000): Promise<ServerFrame> {
    const seen = this.frames.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = { test, resolve };
      this.#waiters.add(waiter);
      setTimeout(() => {
        if (this.#waiters.delete(waiter)) reject(new Error('timed out waiting for a frame'));
      }, timeoutMs).unref();
    });
  }

  /** Sends a frame with a fresh ref and resolves with the answer carrying that ref. */
  async request(frame: Record<string, unknown>): Promise<ServerFrame> {
    const ref = ++this.#ref;
    this.send({ ...frame, ref });
    return this.next((f) => 'ref' in f && f.ref === ref);
  }

  async attach(
    channel: string,
    mode: { from?: string; rewind?: number; start?: true } = {},
  ): Promise<AttachedFrame> {
    const answer = await this.request({ type: 'attach', channel, ...mode });
    if (answer.type !== 'attached') throw new Error(`attach failed: ${JSON.stringify(answer)}`);
    return answer;
  }

  async publish(channel: string, ops: OperationInput[]): Promise<AckFrame> {
    const answer = await this.request({ type: 'publish', channel, ops });
    if (answer.type !== 'ack') throw new Error(`publish failed: ${JSON.stringify(answer)}`);
    return answer;
  }

  messages(channel: string): Message[] {
    return this.received.get(channel) ?? [];
  }

  closed(): Promise<number> {
    return this.#closed;
  }

  close(): Promise<number> {
    this.ws.close();
    return this.#closed;
  }

  /** Kills the TCP connection without a close handshake. */
  kill(): void {
    this.ws.terminate();
  }

  #onFrame(frame: ServerFrame): void {
    this.frames.push(frame);
    if (frame.type === 'messages') {
      let list = this.received.get(frame.channel);
      if (!list) {
        list = [];
        this.received.set(frame.channel, list);
      }
      for (const m of frame.messages) {
        list.push(m);
        this.positions.set(frame.channel, m.version);
      }
    }
    for (const waiter of this.#waiters) {
      if (waiter.test(frame)) {
        this.#waiters.delete(waiter);
        waiter.resolve(frame);
      }
    }
  }
}

/** Folds delivered messages into current message state by PROTOCOL.md §4.2 (serial → message). */
export function fold(messages: Message[]): Map<string, Message> {
  const state = new Map<string, Message>();
  let position = '';
  for (const m of messages) {
    if (m.version <= position) continue;
    position = m.version;
    const held = state.get(m.serial);
    if (m.action === 'create' || !held) state.set(m.serial, { ...m });
    else if (m.action === 'append') {
      held.data = String(held.data ?? '') + String(m.data ?? '');
      if (m.headers) held.headers = m.headers;
      held.version = m.version;
      held.action = 'update';
    } else if (m.action === 'update') {
      state.set(m.serial, { ...held, ...m, action: 'update' });
    } else {
      const { data: _d, headers: _h, ...rest } = held;
      state.set(m.serial, { ...rest, action: 'delete', version: m.version });
    }
  }
  return state;
}
