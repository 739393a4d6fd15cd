/**
 * Turns a run's AI SDK `UIMessageChunk`s into channel operations (PROTOCOL.md §13.2).
 *
 *   chunk                                  operations
 *   (start of the run)                     create ai.run {status: running, lease}      id run:<runId>
 *   text-start / reasoning-start /         create ai.part kind text|reasoning|tool-input,
 *     tool-input-start                       data ''                                   id <runId>:p<k>:0
 *   *-delta                                append (coalesced)                         id <runId>:p<k>:<n>
 *   text-end / reasoning-end,              append '' with headers state: done (+meta)
 *     tool-input-available|error (closes
 *     its tool-input part)
 *   start / finish messageMetadata         a `message-metadata` chunk part
 *   error / abort                          nothing: they decide how the run ends (`streamError`, …)
 *   every other chunk                      create ai.part kind chunk, data = the chunk
 *   (end of the run)                       update ai.run {status, finishReason?, reason?}, lease 0
 *
 * Guarantees:
 * - Operations are stored in the order the chunks came. One batch is in flight at a time; what
 *   arrives meanwhile waits and is sent as the next batch (atomically), so a slow link coalesces more.
 * - Deltas of a streamed part are merged within `coalesceMs` (default 40 ms), never across another
 *   operation, so the live order of parts is the chunk order. `coalesceMs: 0` sends every delta as its
 *   own operation (batched into frames, not merged) and makes ids fully deterministic.
 * - Ids are deterministic (`<runId>:p<k>:<n>`: the k-th part of the run, its n-th operation), so a
 *   resend after a reconnect, or a retried REST request, is stored once.
 * - An append carries at most 8 192 UTF-16 units, and a chunk above 48 KiB of JSON is sent as its JSON
 *   text grown by appends (`format: json-text`), so no operation exceeds `maxOperationSize` (64 KiB).
 * - Retryable failures (connection trouble, rate limiting) are retried with the same ids; a permanent
 *   one stops the run: the publisher tries to end it `error` and reports the failure.
 */
import type { Headers, JsonValue, OperationInput } from '@mooring/protocol';
import type { UIMessageChunk } from 'ai';
import type { OperationSink } from './operation-sink.ts';
import type { FinalRunStatus, PartKind, RunData, RunStatus } from './wire.ts';
import { asJson, EVENT_PART, EVENT_RUN } from './wire.ts';

/** Default lease on a run message, ms (PROTOCOL.md §7.1). */
export const DEFAULT_LEASE_MS = 30_000;
/** Default window within which deltas are merged, ms. */
export const DEFAULT_COALESCE_MS = 40;
const MAX_APPEND_CHARS = 8_192;
const MAX_CHUNK_JSON = 48 * 1024;
const MAX_BATCH_BYTES = 512 * 1024;
const MAX_RETRY_DELAY = 5_000;

export interface PublisherTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface RunPublisherOptions {
  sink: OperationSink;
  runId: string;
  agent: string;
  /** The input the run answers. */
  input: string;
  /** For a regeneration: the run this one is an alternative to. */
  replaces?: string;
  /** Message metadata known at the start. */
  metadata?: JsonValue;
  /** Lease on the run message, ms; 0 disables it. Default 30 000. */
  lease?: number;
  /**
   * Renew the lease by activity every `lease / 3` ms while the run lasts. Needed by publishers without a
   * connection (REST), whose leases run out `lease` ms after their last operation on the run message.
   * Default false.
   */
  renewLease?: boolean;
  /** Window within which deltas are merged, ms; 0 = every delta its own operation. Default 40. */
  coalesceMs?: number;
  timers?: PublisherTimers;
  /**
   * What an earlier attempt of this run stored, read only if the run turns out to exist already (its
   * create was a duplicate: a retried agent or function re-running the same run id). The publisher
   * then skips what is already stored — streamed text is compared, not counted, so a retry that
   * coalesces differently appends nothing twice — and replaces a part whose text diverges.
   */
  stored?: () => Promise<StoredRun | undefined> | StoredRun | undefined;
  /** A permanent publishing failure (after which the run is ended `error` if possible). */
  onError?: (error: unknown) => void;
}

/** A run as stored by an earlier attempt: its status and its parts in serial order. */
export interface StoredRun {
  status: RunStatus;
  parts: readonly { text: string; state: 'streaming' | 'done' }[];
}

/** Resume state of one part that an earlier attempt stored. */
interface Resumed {
  text: string;
  done: boolean;
  /** How much of `text` the new attempt has re-sent so far. */
  consumed: number;
  diverged: boolean;
  /** Nothing is known of what the earlier attempt stored here: the first operation replaces it. */
  unknown?: boolean;
}

export interface EndOptions {
  reason?: string;
  finishReason?: string;
}

type Key = string;

type Pending =
  | { type: 'create'; key: Key; op: OperationInput }
  | {
      type: 'append';
      key: Key;
      data: string;
      headers: Headers | undefined;
      /** The part's text length once this append is applied (for a replacement on resume). */
      end: number;
      op?: OperationInput | null;
    }
  | { type: 'update'; key: Key; op: Omit<OperationInput, 'serial'> };

interface OpenPart {
  key: Key;
  kind: PartKind;
  headers: Headers;
  /** providerMetadata of the start chunk and the latest seen on a delta. */
  startMeta: JsonValue | undefined;
  lastMeta: JsonValue | undefined;
}

interface Waiter {
  resolve(): void;
  /** Resolves when everything queued up to this point is stored. */
  upTo: number;
}

const RUN_KEY = 'run';

export class RunPublisher {
  readonly runId: string;
  readonly #o: RunPublisherOptions;
  readonly #timers: PublisherTimers;
  readonly #coalesceMs: number;
  readonly #lease: number;
  readonly #queue: Pending[] = [];
  readonly #serials = new Map<Key, string>();
  readonly #counters = new Map<Key, number>();
  /** The pending append of each part that a new delta may still be merged into. */
  readonly #mergeable = new Map<Key, Extract<Pending, { type: 'append' }>>();
  readonly #text = new Map<string, OpenPart>();
  readonly #reasoning = new Map<string, OpenPart>();
  readonly #toolInput = new Map<string, OpenPart>();
  readonly #waiters: Waiter[] = [];
  /** The text written so far to each streamed part (to replace a diverging part on resume). */
  readonly #written = new Map<Key, string>();
  #resumed: Map<Key, Resumed> | undefined;
  #resuming = false;
  #parts = 0;
  #enqueued = 0;
  #stored = 0;
  #inFlight = false;
  #timer: unknown;
  #renewTimer: unknown;
  #firstDeltaAt: number | undefined;
  #attempt = 0;
  #started = false;
  #ended = false;
  #failed: unknown;
  #runData: RunData;
  #finishReason: string | undefined;
  #streamError: string | undefined;
  #streamAbort: { reason: string | undefined } | undefined;

  constructor(options: RunPublisherOptions) {
    this.#o = options;
    this.runId = options.runId;
    this.#timers = options.timers ?? {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
    };
    this.#coalesceMs = options.coalesceMs ?? DEFAULT_COALESCE_MS;
    this.#lease = options.lease ?? DEFAULT_LEASE_MS;
    this.#runData = {
      runId: options.runId,
      agent: options.agent,
      input: options.input,
      parent: options.input,
    };
    if (options.replaces !== undefined) this.#runData.replaces = options.replaces;
    if (options.metadata !== undefined) this.#runData.metadata = options.metadata;
  }

  /** True once `end()` was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** The permanent failure that stopped the publisher, if any. */
  get failure(): unknown {
    return this.#failed;
  }

  /** The `finishReason` of the last `finish` chunk written. */
  get finishReason(): string | undefined {
    return this.#finishReason;
  }

  /** The `errorText` of the first `error` chunk written (error chunks end a run; they are not parts). */
  get streamError(): string | undefined {
    return this.#streamError;
  }

  /** Set when an `abort` chunk was written (abort chunks end a run `cancelled`; they are not parts). */
  get streamAbort(): { reason: string | undefined } | undefined {
    return this.#streamAbort;
  }

  /** Creates the run message (`status: running`, with its lease). Resolves once stored. */
  start(): Promise<void> {
    if (!this.#started) {
      this.#started = true;
      const op: OperationInput = {
        action: 'create',
        id: `run:${this.runId}`,
        name: EVENT_RUN,
        data: asJson(this.#runData),
        headers: this.#runHeaders('running'),
      };
      if (this.#lease > 0) op.lease = this.#lease;
      this.#push({ type: 'create', key: RUN_KEY, op });
      if (this.#lease > 0 && this.#o.renewLease) this.#scheduleRenewal();
    }
    return this.flush();
  }

  /** Translates one chunk into operations (queued; see the module comment). */
  write(chunk: UIMessageChunk): void {
    if (this.#ended || this.#failed !== undefined) return;
    if (!this.#started) void this.start();
    switch (chunk.type) {
      case 'start':
        if (chunk.messageMetadata != null)
          this.#discrete({ type: 'message-metadata', messageMetadata: chunk.messageMetadata });
        return;
      case 'error':
        this.#streamError ??= chunk.errorText;
        return;
      case 'abort':
        this.#streamAbort ??= { reason: chunk.reason };
        return;
      case 'finish':
        if (chunk.finishReason !== undefined) this.#finishReason = chunk.finishReason;
        if (chunk.messageMetadata != null)
          this.#discrete({ type: 'message-metadata', messageMetadata: chunk.messageMetadata });
        return;
      case 'text-start':
      case 'reasoning-start': {
        const kind = chunk.type === 'text-start' ? 'text' : 'reasoning';
        const open = this.#open(kind, { partId: chunk.id }, chunk.providerMetadata);
        (kind === 'text' ? this.#text : this.#reasoning).set(chunk.id, open);
        return;
      }
      case 'text-delta':
      case 'reasoning-delta': {
        const kind = chunk.type === 'text-delta' ? 'text' : 'reasoning';
        const map = kind === 'text' ? this.#text : this.#reasoning;
        let open = map.get(chunk.id);
        if (!open) {
          open = this.#open(kind, { partId: chunk.id }, undefined); // a delta without its start: be lenient
          map.set(chunk.id, open);
        }
        if (chunk.providerMetadata !== undefined) open.lastMeta = asJson(chunk.providerMetadata);
        this.#delta(open.key, chunk.delta);
        return;
      }
      case 'text-end':
      case 'reasoning-end': {
        const map = chunk.type === 'text-end' ? this.#text : this.#reasoning;
        const open = map.get(chunk.id);
        if (!open) return;
        map.delete(chunk.id);
        const meta: Record<string, JsonValue> = {};
        if (open.startMeta !== undefined) meta.start = open.startMeta;
        const end = chunk.providerMetadata !== undefined ? asJson(chunk.providerMetadata) : open.lastMeta;
        if (end !== undefined) meta.end = end;
        if (chunk.type === 'text-end' && chunk.citations !== undefined)
          meta.citations = asJson(chunk.citations);
        this.#close(open, meta);
        return;
      }
      case 'tool-input-start': {
        const { type: _type, toolCallId, toolName, ...rest } = chunk;
        const headers: Headers = { toolCallId, toolName };
        if (Object.keys(rest).length > 0) headers.meta = JSON.stringify(rest);
        this.#toolInput.set(toolCallId, this.#open('tool-input', headers, undefined));
        return;
      }
      case 'tool-input-delta': {
        const open = this.#toolInput.get(chunk.toolCallId);
        if (open) this.#delta(open.key, chunk.inputTextDelta);
        return;
      }
      case 'tool-input-available':
      case 'tool-input-error': {
        const open = this.#toolInput.get(chunk.toolCallId);
        if (open) {
          this.#toolInput.delete(chunk.toolCallId);
          this.#close(open, undefined);
        }
        this.#discrete(chunk);
        return;
      }
      default:
        this.#discrete(chunk);
    }
  }

  /**
   * Ends the run: the final update of the run message (status, reason, finishReason; lease released),
   * after everything written before. Idempotent. Resolves once stored (or once publishing failed).
   */
  end(status: FinalRunStatus, options: EndOptions = {}): Promise<void> {
    if (this.#ended) return this.flush();
    if (!this.#started) void this.start();
    this.#ended = true;
    this.#stopRenewal();
    const data: RunData = { ...this.#runData };
    const finishReason = options.finishReason ?? this.#finishReason;
    if (finishReason !== undefined) data.finishReason = finishReason;
    if (options.reason !== undefined) data.reason = options.reason;
    const op: Omit<OperationInput, 'serial'> = {
      action: 'update',
      id: `run:${this.runId}:end`,
      data: asJson(data),
      headers: this.#runHeaders(status),
    };
    if (this.#lease > 0) op.lease = 0;
    if (this.#failed === undefined) this.#push({ type: 'update', key: RUN_KEY, op });
    return this.flush();
  }

  /** Resolves once everything queued so far is stored (or publishing failed for good). */
  flush(): Promise<void> {
    if (this.#stored >= this.#enqueued || this.#failed !== undefined) return Promise.resolve();
    this.#sendSoon(true);
    return new Promise((resolve) => this.#waiters.push({ resolve, upTo: this.#enqueued }));
  }

  // -------------------------------------------------------------------------------------------

  #runHeaders(status: string): Headers {
    return { run: this.runId, agent: this.#o.agent, status };
  }

  #nextId(key: Key, prefix = ''): string {
    const counter = `${key}${prefix}`;
    const n = this.#counters.get(counter) ?? 0;
    this.#counters.set(counter, n + 1);
    return `${this.runId}:${counter}:${n}`;
  }

  #open(kind: PartKind, extra: Headers, providerMetadata: unknown): OpenPart {
    const key = `p${this.#parts++}`;
    const headers: Headers = { run: this.runId, kind, ...extra };
    const startMeta = providerMetadata !== undefined ? asJson(providerMetadata) : undefined;
    if (startMeta !== undefined) headers.meta = JSON.stringify({ start: startMeta });
    this.#push({
      type: 'create',
      key,
      op: {
        action: 'create',
        id: this.#nextId(key),
        name: EVENT_PART,
        data: '',
        headers: { ...headers, state: 'streaming' },
      },
    });
    return { key, kind, headers, startMeta, lastMeta: undefined };
  }

  #close(open: OpenPart, meta: Record<string, JsonValue> | undefined): void {
    const headers: Headers = { ...open.headers, state: 'done' };
    if (meta !== undefined) {
      if (Object.keys(meta).length > 0) headers.meta = JSON.stringify(meta);
      else delete headers.meta;
    }
    this.#push({
      type: 'append',
      key: open.key,
      data: '',
      headers,
      end: this.#written.get(open.key)?.length ?? 0,
    });
  }

  #discrete(chunk: UIMessageChunk): void {
    const key = `p${this.#parts++}`;
    const headers: Headers = { run: this.runId, kind: 'chunk', type: chunk.type };
    if ('toolCallId' in chunk && typeof chunk.toolCallId === 'string') headers.toolCallId = chunk.toolCallId;
    const json = JSON.stringify(chunk);
    if (json.length <= MAX_CHUNK_JSON) {
      this.#push({
        type: 'create',
        key,
        op: {
          action: 'create',
          id: this.#nextId(key),
          name: EVENT_PART,
          data: asJson(JSON.parse(json)),
          headers,
        },
      });
      return;
    }
    // Too big for one operation: its JSON text, grown by appends, then marked done.
    const streamed: Headers = { ...headers, format: 'json-text' };
    this.#push({
      type: 'create',
      key,
      op: {
        action: 'create',
        id: this.#nextId(key),
        name: EVENT_PART,
        data: '',
        headers: { ...streamed, state: 'streaming' },
      },
    });
    let end = 0;
    for (const piece of splitText(json, MAX_APPEND_CHARS)) {
      end += piece.length;
      this.#push({ type: 'append', key, data: piece, headers: undefined, end });
    }
    this.#written.set(key, json);
    this.#push({ type: 'append', key, data: '', headers: { ...streamed, state: 'done' }, end });
  }

  #delta(key: Key, delta: string): void {
    if (delta === '') return;
    const written = (this.#written.get(key) ?? '') + delta;
    this.#written.set(key, written);
    const pending = this.#coalesceMs > 0 ? this.#mergeable.get(key) : undefined;
    if (pending && pending.data.length + delta.length <= MAX_APPEND_CHARS) {
      pending.data += delta;
      pending.end = written.length;
      return;
    }
    let end = written.length - delta.length;
    for (const piece of splitText(delta, MAX_APPEND_CHARS)) {
      end += piece.length;
      const append: Extract<Pending, { type: 'append' }> = {
        type: 'append',
        key,
        data: piece,
        headers: undefined,
        end,
      };
      this.#queue.push(append);
      this.#enqueued++;
      if (this.#coalesceMs > 0) this.#mergeable.set(key, append);
    }
    this.#firstDeltaAt ??= Date.now();
    this.#sendSoon(this.#coalesceMs === 0);
  }

  /** Queues a structural operation: deltas queued before it can no longer grow. */
  #push(pending: Pending): void {
    if (this.#failed !== undefined) return;
    this.#mergeable.clear();
    this.#queue.push(pending);
    this.#enqueued++;
    this.#sendSoon(true);
  }

  #sendSoon(now: boolean): void {
    if (this.#inFlight || this.#queue.length === 0) return;
    if (now) {
      if (this.#timer !== undefined) {
        this.#timers.clearTimeout(this.#timer);
        this.#timer = undefined;
      }
      queueMicrotask(() => this.#send());
      return;
    }
    if (this.#timer !== undefined) return;
    const wait = Math.max(0, (this.#firstDeltaAt ?? Date.now()) + this.#coalesceMs - Date.now());
    this.#timer = this.#timers.setTimeout(() => {
      this.#timer = undefined;
      this.#send();
    }, wait);
  }

  #send(): void {
    if (this.#inFlight || this.#resuming || this.#queue.length === 0 || this.#failed !== undefined) return;
    const batch: OperationInput[] = [];
    const taken: Array<{ pending: Pending; index: number | undefined }> = [];
    let bytes = 0;
    for (const pending of this.#queue) {
      if (batch.length >= this.#o.sink.maxOpsPerPublish) break;
      const op = this.#resolve(pending);
      if (op === undefined) break; // its message's create is not acknowledged yet
      if (op === null) {
        taken.push({ pending, index: undefined }); // already stored by an earlier attempt
        continue;
      }
      const size = typeof op.data === 'string' ? op.data.length * 3 + 200 : 1024;
      if (batch.length > 0 && bytes + size > MAX_BATCH_BYTES) break;
      bytes += size;
      taken.push({ pending, index: batch.length });
      batch.push(op);
    }
    if (taken.length === 0) return;
    this.#queue.splice(0, taken.length);
    this.#firstDeltaAt = undefined;
    this.#inFlight = true;
    const published = batch.length > 0 ? this.#o.sink.publish(batch) : Promise.resolve([]);
    published.then(
      (results) => {
        for (const { pending, index } of taken) {
          const result = index === undefined ? undefined : results[index];
          if (pending.type !== 'create' || !result) continue;
          this.#serials.set(pending.key, result.serial);
          if (pending.key === RUN_KEY && result.duplicate) this.#resume();
        }
        this.#attempt = 0;
        this.#inFlight = false;
        this.#stored += taken.length;
        this.#wake();
        this.#sendSoon(this.#queue.some((p) => p.type !== 'append') || this.#firstDeltaAt === undefined);
      },
      (error: unknown) => {
        this.#inFlight = false;
        if (isRetryable(error)) {
          this.#queue.unshift(...taken.map((t) => t.pending));
          const delay = Math.min(MAX_RETRY_DELAY, 100 * 2 ** this.#attempt++);
          this.#timers.setTimeout(() => this.#send(), delay);
          return;
        }
        this.#fail(error);
      },
    );
  }

  /**
   * The operation for a pending entry: undefined while its target's serial is unknown, null when an
   * earlier attempt of the run already stored it.
   */
  #resolve(pending: Pending): OperationInput | null | undefined {
    if (pending.type === 'create') return pending.op;
    const serial = this.#serials.get(pending.key);
    if (serial === undefined) return undefined;
    if (pending.type === 'update') return { ...pending.op, serial };
    if (pending.op !== undefined) return pending.op; // resolved before: a retry keeps the same id
    if (this.#mergeable.get(pending.key) === pending) this.#mergeable.delete(pending.key); // frozen from now on
    let resumed = this.#resumed?.get(pending.key);
    if (this.#resumed && !resumed) {
      resumed = { text: '', done: false, consumed: 0, diverged: false, unknown: true };
      this.#resumed.set(pending.key, resumed);
    }
    pending.op = resumed
      ? this.#resumeAppend(pending, serial, resumed)
      : this.#append(pending, serial, pending.data);
    return pending.op;
  }

  #append(
    pending: Extract<Pending, { type: 'append' }>,
    serial: string,
    data: string,
    prefix = '',
  ): OperationInput {
    const op: OperationInput = { action: 'append', id: this.#nextId(pending.key, prefix), serial, data };
    if (pending.headers !== undefined) op.headers = pending.headers;
    return op;
  }

  /**
   * An append to a part an earlier attempt stored: drop what it already holds, append the rest (ids
   * in their own namespace, `p<k>@<stored length>`), or — when the text diverges — replace the part's
   * text with this attempt's.
   */
  #resumeAppend(
    pending: Extract<Pending, { type: 'append' }>,
    serial: string,
    r: Resumed,
  ): OperationInput | null {
    const prefix = `@${r.text.length}`;
    let data = pending.data;
    if (r.unknown) {
      // What is stored there is unknown: this attempt's text replaces it (DESIGN §12).
      r.unknown = false;
      r.diverged = true;
      const op: OperationInput = {
        action: 'update',
        id: this.#nextId(pending.key, prefix),
        serial,
        data: (this.#written.get(pending.key) ?? '').slice(0, pending.end),
      };
      if (pending.headers !== undefined) op.headers = pending.headers;
      return op;
    }
    if (!r.diverged && r.consumed < r.text.length) {
      const overlap = Math.min(data.length, r.text.length - r.consumed);
      if (data.slice(0, overlap) === r.text.slice(r.consumed, r.consumed + overlap)) {
        r.consumed += overlap;
        data = data.slice(overlap);
      } else {
        r.diverged = true;
        const op: OperationInput = {
          action: 'update',
          id: this.#nextId(pending.key, prefix),
          serial,
          data: (this.#written.get(pending.key) ?? '').slice(0, pending.end),
        };
        if (pending.headers !== undefined) op.headers = pending.headers;
        return op;
      }
    } else if (
      !r.diverged &&
      r.consumed === r.text.length &&
      r.done &&
      pending.headers === undefined &&
      data !== ''
    ) {
      // The earlier attempt had finished this part; this one says more: a divergence too.
      r.diverged = true;
    }
    if (data === '' && (pending.headers === undefined || r.done)) return null;
    return this.#append(pending, serial, data, prefix);
  }

  /** The run's create was a duplicate: read what the earlier attempt stored before appending more. */
  #resume(): void {
    const read = this.#o.stored;
    if (this.#resumed || this.#resuming) return;
    this.#resuming = true;
    void (async () => {
      try {
        const stored = read ? await read() : undefined;
        const resumed = new Map<Key, Resumed>();
        for (const [k, part] of (stored?.parts ?? []).entries()) {
          resumed.set(`p${k}`, {
            text: part.text,
            done: part.state === 'done',
            consumed: 0,
            diverged: false,
          });
        }
        this.#resumed = resumed;
        if (stored && stored.status !== 'running' && !this.#ended) {
          // An earlier attempt was abandoned (or ended): this one runs again.
          const op: Omit<OperationInput, 'serial'> = {
            action: 'update',
            id: `run:${this.runId}:resumed:${crypto.randomUUID()}`,
            headers: this.#runHeaders('running'),
          };
          if (this.#lease > 0) op.lease = this.#lease;
          this.#queue.unshift({ type: 'update', key: RUN_KEY, op });
          this.#enqueued++;
        }
      } catch (err) {
        this.#o.onError?.(err);
      } finally {
        this.#resumed ??= new Map(); // unknown: each part's first operation replaces its text
        this.#resuming = false;
        this.#sendSoon(true);
      }
    })();
  }

  #fail(error: unknown): void {
    this.#failed = error;
    this.#queue.length = 0;
    this.#mergeable.clear();
    this.#stopRenewal();
    this.#stored = this.#enqueued;
    this.#wake();
    this.#o.onError?.(error);
    // Best effort: tell every client the run is over rather than leave it streaming until its lease.
    const serial = this.#serials.get(RUN_KEY);
    if (serial === undefined) return;
    const data: RunData = { ...this.#runData, reason: `publishing failed: ${errorText(error)}` };
    const op: OperationInput = {
      action: 'update',
      id: `run:${this.runId}:end`,
      serial,
      data: asJson(data),
      headers: this.#runHeaders('error'),
    };
    if (this.#lease > 0) op.lease = 0;
    this.#o.sink.publish([op]).catch(() => {});
  }

  #wake(): void {
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const waiter = this.#waiters[i]!;
      if (this.#stored >= waiter.upTo) {
        this.#waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }

  #scheduleRenewal(): void {
    const every = Math.max(100, Math.floor(this.#lease / 3));
    this.#renewTimer = this.#timers.setTimeout(() => {
      this.#renewTimer = undefined;
      if (this.#ended || this.#failed !== undefined) return;
      this.#push({
        type: 'update',
        key: RUN_KEY,
        op: {
          action: 'update',
          id: this.#nextId(RUN_KEY),
          headers: this.#runHeaders('running'),
          lease: this.#lease,
        },
      });
      this.#scheduleRenewal();
    }, every);
  }

  #stopRenewal(): void {
    if (this.#renewTimer !== undefined) this.#timers.clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
  }
}

function isRetryable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { retryable?: unknown }).retryable === true;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Splits text into pieces of at most `max` UTF-16 units without cutting a surrogate pair. */
export function splitText(text: string, max: number): string[] {
  if (text.length <= max) return [text];
  const pieces: string[] = [];
  let i = 0;
  while (i < text.length) {
    let end = Math.min(text.length, i + max);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    pieces.push(text.slice(i, end));
    i = end;
  }
  return pieces;
}
