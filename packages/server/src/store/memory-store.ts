/**
 * The in-memory store: for tests and ephemeral channels. Everything is lost when the process ends
 * (a new process starts new logs with new epochs, so clients see continuity lost, never a gap).
 *
 * Each message keeps its data as the base value plus an array of appended chunks, joined only when
 * read, so an append costs O(size of the delta). Batches are validated by `planBatch` before anything
 * changes, so a rejected batch leaves no trace.
 */
import type { Encoding, Headers, JsonValue, Message } from '@mooring/protocol';
import { formatSerial, newEpoch } from '@mooring/protocol';
import type { BatchPlan, MessageMeta, PlanContext } from './operation-rules.ts';
import { afterSeq, emptyPage, headSerial, planBatch, rolledUp, seqBound } from './operation-rules.ts';
import { PageBudget } from './page-bytes.ts';
import type {
  AppendOptions,
  AppendResult,
  ChannelInfo,
  HistoryQuery,
  NewOperation,
  RetentionFor,
  RolledUpPage,
  Store,
} from './store.ts';
import { StoreError } from './store.ts';
import { memoryStreamStore } from './stream-memory-store.ts';
import type { StreamStore } from './stream-store.ts';

export interface MemoryStoreOptions {
  /** Retention per channel in ms, evaluated when a message is created. Default: 24 h for every channel. */
  retentionFor?: RetentionFor;
}

const DAY = 24 * 60 * 60 * 1000;

interface MemMessage extends MessageMeta {
  seq: number;
  /** Sequence number of the latest operation applied. */
  version: number;
  id: string;
  name?: string;
  /** Data as set by the create or the latest update (undefined: none). */
  base: JsonValue | undefined;
  encoding?: Encoding;
  /** Deltas appended since `base` was set. */
  chunks: string[];
  headers?: Headers;
  timestamp: number;
  changed: boolean;
  expiresAt: number;
  /**
   * The dedup identity of every stored operation on this message, forgotten with it by retention:
   * publisher scope and op id, two entries per operation (the strings the operations carried).
   */
  opIds: string[];
}

interface MemChannel {
  epoch: string;
  seq: number;
  trimmedThrough: number;
  /** By message sequence number, in creation (= serial) order. */
  messages: Map<number, MemMessage>;
  /** Publisher scope → op id → the operation's sequence number (no key string built per op). */
  ids: Map<string, Map<string, number>>;
}

export class MemoryStore implements Store {
  readonly kind = 'memory';
  readonly #channels = new Map<string, MemChannel>();
  readonly #retentionFor: RetentionFor;
  readonly streams: StreamStore = memoryStreamStore();
  #closed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.#retentionFor = options.retentionFor ?? (() => DAY);
  }

  async append(channel: string, ops: NewOperation[], options: AppendOptions): Promise<AppendResult> {
    this.#check();
    const existing = this.#channels.get(channel);
    if (ops.length === 0) return { epoch: existing?.epoch ?? '', results: [], messages: [] };
    const now = options.now ?? Date.now();
    const ch: MemChannel = existing ?? {
      epoch: newEpoch(now),
      seq: 0,
      trimmedThrough: 0,
      messages: new Map(),
      ids: new Map(),
    };
    const ctx: PlanContext = {
      epoch: ch.epoch,
      seq: ch.seq,
      storedId: (publisher, id) => ch.ids.get(publisher)?.get(id),
      message: (seq) => ch.messages.get(seq),
      version: (seq) => ch.messages.get(seq)?.version,
    };
    const plan = planBatch(ctx, ops, { ...options, now });
    if (!existing) this.#channels.set(channel, ch);
    this.#apply(channel, ch, plan);
    return { epoch: ch.epoch, results: plan.results, messages: plan.messages };
  }

  #apply(channel: string, ch: MemChannel, plan: BatchPlan): void {
    for (const { op, seq, msgSeq, kind, timestamp } of plan.ops) {
      const publisher = op.publisher ?? '';
      let ids = ch.ids.get(publisher);
      if (ids === undefined) {
        ids = new Map();
        ch.ids.set(publisher, ids);
      }
      ids.set(op.id, seq);
      if (op.action === 'create') {
        const retention = this.#retentionFor(channel);
        const m: MemMessage = {
          seq,
          version: seq,
          id: op.id,
          base: op.data,
          chunks: [],
          timestamp,
          changed: false,
          expiresAt: timestamp + retention,
          opIds: [publisher, op.id],
          kind,
          size: 0,
          deleted: false,
          ops: 1,
        };
        if (op.name !== undefined) m.name = op.name;
        if (op.encoding !== undefined) m.encoding = op.encoding;
        if (op.headers !== undefined) m.headers = op.headers;
        if (op.clientId !== undefined) m.clientId = op.clientId;
        ch.messages.set(seq, m);
        continue;
      }
      const m = ch.messages.get(msgSeq)!;
      m.version = seq;
      m.changed = true;
      m.opIds.push(publisher, op.id);
      if (op.action === 'delete') {
        m.deleted = true;
        m.base = undefined;
        m.chunks = [];
        delete m.encoding;
        delete m.headers;
        continue;
      }
      if (op.action === 'append') {
        if (typeof op.data === 'string' && op.data !== '') m.chunks.push(op.data);
        else if (m.base === undefined) m.base = '';
      } else if (op.data !== undefined) {
        m.base = op.data;
        m.chunks = [];
        if (op.encoding !== undefined) m.encoding = op.encoding;
        else delete m.encoding;
      }
      if (op.headers !== undefined) m.headers = op.headers;
    }
    for (const [seq, meta] of plan.touched) {
      const m = ch.messages.get(seq)!;
      m.kind = meta.kind;
      m.size = meta.size;
      m.deleted = meta.deleted;
      m.ops = meta.ops;
    }
    ch.seq = plan.seq;
  }

  async info(channel: string): Promise<ChannelInfo | undefined> {
    this.#check();
    const ch = this.#channels.get(channel);
    if (!ch) return undefined;
    return {
      channel,
      epoch: ch.epoch,
      head: headSerial(ch.epoch, ch.seq),
      trimmedThrough: ch.trimmedThrough,
      messageCount: ch.messages.size,
    };
  }

  async readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage> {
    this.#check();
    const ch = this.#channels.get(channel);
    if (!ch) return emptyPage();
    const from = afterSeq(after, ch.epoch);
    const matching = [...ch.messages.values()].filter((m) => m.version > from);
    matching.sort((a, b) => a.version - b.version);
    return this.#page(ch, matching, limit, maxBytes);
  }

  async history(channel: string, query: HistoryQuery): Promise<RolledUpPage> {
    this.#check();
    const ch = this.#channels.get(channel);
    if (!ch) return emptyPage();
    const lo = query.from === undefined ? 0 : seqBound(query.from, ch.epoch, 'from');
    const hi = query.until === undefined ? ch.seq : seqBound(query.until, ch.epoch, 'until');
    const matching = [...ch.messages.values()].filter((m) => m.seq >= lo && m.seq <= hi);
    if (query.direction === 'backwards') matching.reverse();
    return this.#page(ch, matching, query.limit, query.maxBytes);
  }

  /** Rolls up only what the page takes: a page of big messages never joins more than it returns. */
  #page(ch: MemChannel, matching: MemMessage[], limit: number, maxBytes?: number): RolledUpPage {
    const budget = new PageBudget(limit, maxBytes);
    const messages: Message[] = [];
    for (const m of matching) {
      if (budget.full) break;
      const message = toMessage(ch.epoch, m);
      if (!budget.take(message)) break;
      messages.push(message);
    }
    return {
      epoch: ch.epoch,
      head: headSerial(ch.epoch, ch.seq),
      messages,
      more: matching.length > messages.length,
    };
  }

  async trim(now: number = Date.now()): Promise<number> {
    this.#check();
    let removed = 0;
    for (const ch of this.#channels.values()) {
      // A channel's messages are in creation order, and expire in it (its retention is fixed and
      // the clock goes forward; a step back delays a message to its predecessor's expiry at most):
      // the first one not due ends the channel's walk, so a tick costs the due messages and one
      // per channel, not every retained message (1,000,000 of them: 35 ms of event loop a tick).
      for (const [seq, m] of ch.messages) {
        if (m.expiresAt > now) break;
        ch.messages.delete(seq);
        for (let i = 0; i < m.opIds.length; i += 2) {
          const ids = ch.ids.get(m.opIds[i]!);
          ids?.delete(m.opIds[i + 1]!);
          if (ids?.size === 0) ch.ids.delete(m.opIds[i]!);
        }
        ch.trimmedThrough = Math.max(ch.trimmedThrough, m.version);
        removed++;
      }
    }
    return removed;
  }

  async ping(): Promise<void> {
    this.#check();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
  }

  #check(): void {
    if (this.#closed) throw new StoreError('store_unavailable', 'the memory store is closed');
  }
}

function toMessage(epoch: string, m: MemMessage): Message {
  return rolledUp({
    serial: formatSerial(epoch, m.seq),
    version: formatSerial(epoch, m.version),
    changed: m.changed,
    deleted: m.deleted,
    id: m.id,
    name: m.name,
    data: m.chunks.length > 0 ? String(m.base ?? '') + m.chunks.join('') : m.base,
    encoding: m.encoding,
    headers: m.headers,
    clientId: m.clientId,
    timestamp: m.timestamp,
  });
}
