/**
 * Turns a run's AI SDK `UIMessageChunk`s into channel operations (PROTOCOL.md §13.2).
 *
 *   chunk                                  operations
 *   (start of the run)                     create ai.run {status: running, lease}      id run:<runId>
 *   text-start / reasoning-start /         create ai.part kind text|reasoning|tool-input,
 *     tool-input-start                       data '' (or the first deltas, below)      id <runId>:p<k>:0
 *   *-delta                                append (coalesced)                         id <runId>:p<k>:<n>
 *   text-end / reasoning-end,              append '' with headers state: done (+meta)
 *     tool-input-available|error (closes
 *     its tool-input part)
 *   start / finish messageMetadata         a `message-metadata` chunk part
 *   error / abort                          nothing: they decide how the run ends (`streamError`, …)
 *   every other chunk                      create ai.part kind chunk, data = the chunk
 *   (end of the run)                       update ai.run {status, finishReason?, reason?}, lease 0
 *
 * Guarantees (the sending itself is `OperationQueue`'s):
 * - Operations are stored in the order the chunks came; one batch is in flight at a time, so a slow
 *   link coalesces more. Deltas merge within `coalesceMs` (default 40 ms), never across another
 *   operation: at most one batch of deltas per window, none held longer than the window. The first
 *   delta after a quiet window (a response's first token) goes at once; one written within a
 *   window of the last send waits until that window has passed. In a new run (its create
 *   acknowledged, not a duplicate), deltas written while their part's create still waits to be
 *   sent ride in that create's data, so the first tokens do not wait for the create's ack.
 *   `coalesceMs: 0` sends every delta as its own operation (the first may still ride in its part's
 *   create, alone).
 * - Ids are deterministic (`<runId>:p<k>:<n>`: the k-th part of the run, its n-th operation), so a
 *   resend after a reconnect, or a retried REST request, is stored once. A retried run (its create
 *   comes back a duplicate) resumes in place from what the earlier attempt stored (`stored`).
 * - A chunk whose JSON is above 48 KiB of UTF-8 is sent as its JSON text grown by appends
 *   (`format: json-text`), and appends are split, so no operation exceeds `maxOperationSize` (64 KiB;
 *   the server counts bytes, so a chunk of CJK text or emoji goes as appends long before 48 K characters).
 * - Retryable failures are retried with the same ids; a permanent one stops the run: the publisher
 *   tries to end it `error` and reports the failure.
 */
import type { Headers, JsonValue, OperationInput } from '@mooring/protocol';
import { utf8Length } from '@mooring/protocol';
import type { UIMessageChunk } from 'ai';
import { errorText } from './errors.ts';
import type { QueueTimers, StoredPart } from './operation-queue.ts';
import { MAX_APPEND_CHARS, OperationQueue, splitText } from './operation-queue.ts';
import type { OperationSink } from './operation-sink.ts';
import { sharedTimers } from './shared-timers.ts';
import type { FinalRunStatus, PartKind, RunData, RunStatus } from './wire.ts';
import { asJson, EVENT_PART, EVENT_RUN, runMessageId } from './wire.ts';

/** Default lease on a run message, ms (PROTOCOL.md §7.1). */
export const DEFAULT_LEASE_MS = 30_000;
/** Default window within which deltas are merged, ms. */
export const DEFAULT_COALESCE_MS = 40;
/**
 * Bytes of UTF-8 JSON above which a chunk is sent as JSON text grown by appends: one create holds it
 * with room to spare for its name and headers under `maxOperationSize` (64 KiB, counted in bytes).
 */
export const MAX_CHUNK_JSON_BYTES = 48 * 1024;

export type PublisherTimers = QueueTimers;

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
   * `serial` is the run message this publisher created (the duplicate's original): read that claim
   * of the run id and its parts, not another publisher's claim of the same id (PROTOCOL.md §13.5).
   */
  stored?: (serial: string) => Promise<StoredRun | undefined> | StoredRun | undefined;
  /** A permanent publishing failure (after which the run is ended `error` if possible). */
  onError?: (error: unknown) => void;
}

/** A run as stored by an earlier attempt: its status and its parts in serial order. */
export interface StoredRun {
  status: RunStatus;
  parts: readonly { text: string; state: 'streaming' | 'done' }[];
}

export interface EndOptions {
  reason?: string;
  finishReason?: string;
}

interface OpenPart {
  key: string;
  kind: PartKind;
  headers: Headers;
  /** providerMetadata of the start chunk and the latest seen on a delta. */
  startMeta: JsonValue | undefined;
  lastMeta: JsonValue | undefined;
}

const RUN_KEY = 'run';

export class RunPublisher {
  readonly runId: string;
  readonly #o: RunPublisherOptions;
  readonly #timers: PublisherTimers;
  readonly #lease: number;
  readonly #queue: OperationQueue;
  readonly #text = new Map<string, OpenPart>();
  readonly #reasoning = new Map<string, OpenPart>();
  readonly #toolInput = new Map<string, OpenPart>();
  #parts = 0;
  #renewTimer: unknown;
  #started = false;
  #ended = false;
  #resumed = false;
  #runData: RunData;
  #finishReason: string | undefined;
  #streamError: string | undefined;
  #streamAbort: { reason: string | undefined } | undefined;

  constructor(options: RunPublisherOptions) {
    this.#o = options;
    this.runId = options.runId;
    // the runs' windows ending in the same millisecond flush in one callback: one write for all
    this.#timers = options.timers ?? sharedTimers;
    this.#lease = options.lease ?? DEFAULT_LEASE_MS;
    this.#queue = new OperationQueue({
      sink: options.sink,
      runId: options.runId,
      coalesceMs: options.coalesceMs ?? DEFAULT_COALESCE_MS,
      timers: this.#timers,
      onCreated: (key, serial, duplicate) => {
        if (key === RUN_KEY && duplicate) this.#resume(serial);
        else if (key === RUN_KEY) this.#queue.foldIntoCreates(); // a new run: nothing to compare with
      },
      onFailed: (error) => this.#fail(error),
    });
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
    return this.#queue.failure;
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
        id: runMessageId(this.runId),
        name: EVENT_RUN,
        data: asJson(this.#runData),
        headers: this.#runHeaders('running'),
      };
      if (this.#lease > 0) op.lease = this.#lease;
      this.#queue.create(RUN_KEY, op);
      if (this.#lease > 0 && this.#o.renewLease) this.#scheduleRenewal();
    }
    return this.flush();
  }

  /** Translates one chunk into operations (queued; see the module comment). */
  write(chunk: UIMessageChunk): void {
    if (this.#ended || this.#queue.failure !== undefined) return;
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
        this.#queue.delta(open.key, chunk.delta);
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
        if (open) this.#queue.delta(open.key, chunk.inputTextDelta);
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
    this.#queue.update(RUN_KEY, op);
    return this.flush();
  }

  /** Resolves once everything queued so far is stored (or publishing failed for good). */
  flush(): Promise<void> {
    return this.#queue.flush();
  }

  // -------------------------------------------------------------------------------------------

  #runHeaders(status: string): Headers {
    return { run: this.runId, agent: this.#o.agent, status };
  }

  #open(kind: PartKind, extra: Headers, providerMetadata: unknown): OpenPart {
    const key = `p${this.#parts++}`;
    const headers: Headers = { run: this.runId, kind, ...extra };
    const startMeta = providerMetadata !== undefined ? asJson(providerMetadata) : undefined;
    if (startMeta !== undefined) headers.meta = JSON.stringify({ start: startMeta });
    this.#queue.create(key, {
      action: 'create',
      id: this.#queue.nextId(key),
      name: EVENT_PART,
      data: '',
      headers: { ...headers, state: 'streaming' },
    });
    return { key, kind, headers, startMeta, lastMeta: undefined };
  }

  #close(open: OpenPart, meta: Record<string, JsonValue> | undefined): void {
    const headers: Headers = { ...open.headers, state: 'done' };
    if (meta !== undefined) {
      if (Object.keys(meta).length > 0) headers.meta = JSON.stringify(meta);
      else delete headers.meta;
    }
    this.#queue.append(open.key, '', headers);
  }

  #discrete(chunk: UIMessageChunk): void {
    const key = `p${this.#parts++}`;
    const headers: Headers = { run: this.runId, kind: 'chunk', type: chunk.type };
    if ('toolCallId' in chunk && typeof chunk.toolCallId === 'string') headers.toolCallId = chunk.toolCallId;
    const json = JSON.stringify(chunk);
    if (utf8Length(json) <= MAX_CHUNK_JSON_BYTES) {
      const data = asJson(JSON.parse(json));
      this.#queue.create(key, {
        action: 'create',
        id: this.#queue.nextId(key),
        name: EVENT_PART,
        data,
        headers,
      });
      return;
    }
    // Too big for one operation: its JSON text, grown by appends, then marked done.
    const streamed: Headers = { ...headers, format: 'json-text' };
    this.#queue.create(key, {
      action: 'create',
      id: this.#queue.nextId(key),
      name: EVENT_PART,
      data: '',
      headers: { ...streamed, state: 'streaming' },
    });
    for (const piece of splitText(json, MAX_APPEND_CHARS)) this.#queue.append(key, piece, undefined);
    this.#queue.append(key, '', { ...streamed, state: 'done' });
  }

  /** The run's create was a duplicate: read what the earlier attempt stored, then carry on from it. */
  #resume(serial: string): void {
    if (this.#resumed) return;
    this.#resumed = true;
    this.#queue.pause();
    const read = this.#o.stored;
    void (async () => {
      let parts: Map<string, StoredPart> | undefined;
      try {
        const stored = read ? await read(serial) : undefined;
        if (stored) {
          parts = new Map();
          for (const [k, part] of stored.parts.entries())
            parts.set(`p${k}`, { text: part.text, done: part.state === 'done' });
          if (stored.status !== 'running' && !this.#ended) {
            // An earlier attempt was abandoned (or ended): this one runs again.
            const op: Omit<OperationInput, 'serial'> = {
              action: 'update',
              id: `run:${this.runId}:resumed:${crypto.randomUUID()}`,
              headers: this.#runHeaders('running'),
            };
            if (this.#lease > 0) op.lease = this.#lease;
            this.#queue.update(RUN_KEY, op, true);
          }
        }
      } catch (err) {
        this.#o.onError?.(err);
      } finally {
        this.#queue.resume(parts); // unknown parts: each is replaced by this attempt's text
      }
    })();
  }

  /** A permanent failure: report it, and tell every client the run is over (best effort). */
  #fail(error: unknown): void {
    this.#stopRenewal();
    this.#o.onError?.(error);
    const serial = this.#queue.serial(RUN_KEY);
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

  #scheduleRenewal(): void {
    const every = Math.max(100, Math.floor(this.#lease / 3));
    this.#renewTimer = this.#timers.setTimeout(() => {
      this.#renewTimer = undefined;
      if (this.#ended || this.#queue.failure !== undefined) return;
      this.#queue.update(RUN_KEY, {
        action: 'update',
        id: this.#queue.nextId(RUN_KEY, '+'),
        headers: this.#runHeaders('running'),
        lease: this.#lease,
      });
      this.#scheduleRenewal();
    }, every);
  }

  #stopRenewal(): void {
    if (this.#renewTimer !== undefined) this.#timers.clearTimeout(this.#renewTimer);
    this.#renewTimer = undefined;
  }
}
