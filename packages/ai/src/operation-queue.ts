/**
 * The ordered queue behind a run publisher: operations on a few messages (the run and its parts,
 * each known by a key), sent to a sink in order, up to the sink's `window` batches in flight.
 *
 *   create(key) ─┐                                 ┌─ ack: serial of each created key
 *   delta(key)  ─┼─▶ [ queue ] ──batch (≤100 ops)──▶ sink
 *   append/update┘    ▲ deltas merge into the last pending append of their key, within the window,
 *                     │ and never across another operation (the live order is the write order)
 *                     └─ an append waits for its message's serial: a batch stops before it
 *
 * Folding (`foldIntoCreates`, a new run only): deltas queued right behind their part's unsent create
 * go in the create's data (with `coalesceMs: 0`, the first delta alone: every delta stays one
 * operation); a create once sent never changes (its resend must be the same op).
 *
 * Ids: the n-th operation on key k is `<runId>:<k>:<n>` — deterministic, so a resend is stored once.
 * Retryable failures resend the same batch (same ids); a permanent one stops the queue.
 *
 * Pipelining: a token should not wait for the previous batch's ack. A sink that keeps the order of
 * its batches (a realtime channel: one connection, resent in order after a reconnect) has a
 * `window` > 1, and batches of plain deltas are sent while earlier ones are in flight; anything
 * structural (a create, an update, an append with headers) waits until nothing is in flight, and
 * holds the next batches until its ack. A batch sent beside others names the last operation sent
 * before it as its precondition (`after`, PROTOCOL.md §7): the server stores it only behind that
 * one, so a batch refused for a moment (the store down, a rate) is never overtaken by the next one —
 * which is refused `out_of_order` in turn. Acks are handled in send order. If a batch fails (retryable)
 * sending stops until every batch in flight settled; if none after it was stored, they are all
 * resent in order with the same ids (as with one batch); if a later one was stored, its deltas
 * landed before the failed ones, so each part the failed batches touched is replaced by an `update`
 * with its whole text so far, sent first — the order of deltas on the wire is then repaired, and no
 * delta is stored twice or lost. A failure is not always a refusal: a batch whose answer was lost
 * (the connection was suspended) may have been stored. The sink says which failures are refusals
 * (`refused`); a refused batch followed by a failed one that was not refused is repaired the same
 * way, since that later one may be stored ahead of it — unless it was sent with a precondition,
 * which a refusal ahead of it fails. (Failures that are all refusals stored
 * nothing; failures that are all lost answers on one ordered connection stored a prefix, which a
 * resend with the same ids completes in order.) And whatever the cause — a refusal whose answer was
 * lost with its connection never reaches the queue at all — the acks tell: an append acknowledged
 * at a serial below one sent ahead of it (a duplicate's serial is where it was stored first) was
 * stored out of order, and its part is replaced the same way, once nothing is in flight. An append
 * given up for an update is first sent again with its id and no data: a copy of it still on its way
 * on a dead transport then lands as a duplicate (or before the update, which replaces it), never
 * after it. (`operation-queue-chaos.test.ts` drives all of this through a real client at random.)
 *
 * Resuming a run stored by an earlier attempt (its create came back a duplicate): appends are
 * compared with what that attempt stored (`resume()`) — the part already there is dropped, the rest
 * appended under ids of their own (`<runId>:<k>@<stored length>.<attempt tag>:<n>`), and a part whose text diverges
 * (or whose stored text is unknown) is replaced by an `update` with this attempt's text.
 */
import type { Headers, OperationInput } from '@mooring/protocol';
import { appendText, sameEpoch, utf8Length } from '@mooring/protocol';
import { randomId } from './ids.ts';
import type { OperationSink, PublishedOperation } from './operation-sink.ts';

/**
 * An append carries at most this many UTF-16 units: at most 24 KiB of UTF-8 (3 bytes a unit at
 * most; a surrogate pair, never split, is 4 bytes for 2), so it fits `maxOperationSize` (64 KiB,
 * counted in bytes) whatever the text. Creates that carry deltas and replacing updates hold as much.
 */
export const MAX_APPEND_CHARS = 8_192;
const MAX_BATCH_BYTES = 512 * 1024;
const MAX_RETRY_DELAY = 5_000;

interface Flight {
  taken: Array<{ pending: Pending; index: number | undefined }>;
  /** The id of the last operation sent in it (none: everything in it was already stored). */
  last: string | undefined;
  /** Sent beside others: stored only if the last operation sent before it is (its precondition). */
  behind: boolean;
  /** Only plain deltas (appends without headers): may be in flight beside others. */
  plain: boolean;
  outcome?: { results: PublishedOperation[] } | { error: unknown };
}

export interface QueueTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** The clock the window is measured on, ms (default `performance.now`: monotonic). */
  now?: () => number;
}

export interface OperationQueueOptions {
  sink: OperationSink;
  /** Prefix of every operation id. */
  runId: string;
  /** Window within which deltas merge, ms; 0 = every delta its own operation. */
  coalesceMs: number;
  timers: QueueTimers;
  /** A create was acknowledged; `duplicate` when the server already held its id. */
  onCreated(key: string, serial: string, duplicate: boolean): void;
  /** A permanent failure: the queue is stopped and emptied. */
  onFailed(error: unknown): void;
}

/** What an earlier attempt stored on one part key. */
export interface StoredPart {
  text: string;
  done: boolean;
}

type Append = {
  type: 'append';
  key: string;
  data: string;
  headers: Headers | undefined;
  /** The part's text length once this append is applied (for a replacement on resume). */
  end: number;
  /** Resolved once (a resend keeps its id); null: an earlier attempt already stored it. */
  op?: OperationInput | null;
};

type Create = {
  type: 'create';
  key: string;
  op: OperationInput;
  /** Taken into a batch once: its data is fixed from then on (a resend must be the same op). */
  sent?: true;
};

/** Replaces a part whose appends were stored out of order; its text is taken when it is sent. */
type Repair = { type: 'repair'; key: string; op?: OperationInput };

/**
 * An append given up for an update, sent again with its id and no data: a copy of it still on its way
 * (on a transport that died) then lands as a duplicate, or before this, where the update replaces it.
 */
type Void = { type: 'void'; key: string; op: OperationInput };

type Pending =
  | Create
  | Append
  | Repair
  | Void
  | { type: 'update'; key: string; op: Omit<OperationInput, 'serial'> };

interface Resumed extends StoredPart {
  /** How much of `text` this attempt has re-sent so far. */
  consumed: number;
  diverged: boolean;
  /** Nothing is known of what is stored here: the first operation replaces it. */
  unknown: boolean;
}

export class OperationQueue {
  readonly #o: OperationQueueOptions;
  readonly #queue: Pending[] = [];
  readonly #serials = new Map<string, string>();
  readonly #counters = new Map<string, number>();
  /** The pending append of each key that a new delta may still be merged into. */
  readonly #mergeable = new Map<string, Append>();
  /** The text written so far to each key (to replace a diverging part on resume). */
  readonly #written = new Map<string, string>();
  readonly #waiters: Array<{ resolve(): void; upTo: number }> = [];
  #resumed: Map<string, Resumed> | undefined;
  /** This attempt's tag in namespaced ids, once it resumed an earlier one's run (`nextId`). */
  #tag = '';
  /** The highest serial an append of each key was stored at, as this queue's acks told it. */
  readonly #lastStored = new Map<string, string>();
  /** Keys with a `repair` queued and not sent yet. */
  readonly #repairing = new Set<string>();
  #paused = false;
  #enqueued = 0;
  #stored = 0;
  /** Batches sent and not yet handled, in send order. */
  readonly #flights: Flight[] = [];
  /** A batch in flight failed (retryable): nothing more is sent until every flight settled. */
  #stopped: { failed: Flight[]; storedAfter: Flight[] } | undefined;
  #timer: unknown;
  /** Deltas may ride in their part's unsent create (`foldIntoCreates`). */
  #folding = false;
  /** When the deltas waiting to be sent are due (their window's end, or at once after a quiet one). */
  #deltasDueAt: number | undefined;
  /** When the last batch carrying deltas went out (the window a new delta may merge within). */
  #deltasSentAt = Number.NEGATIVE_INFINITY;
  #attempt = 0;
  #failed: unknown;

  constructor(options: OperationQueueOptions) {
    this.#o = options;
  }

  /** The permanent failure that stopped the queue, if any. */
  get failure(): unknown {
    return this.#failed;
  }

  serial(key: string): string | undefined {
    return this.#serials.get(key);
  }

  /**
   * The next operation id on a key. Ids in a `namespace` (replacements, resumed appends, renewals)
   * carry, in a resumed run, a tag of this attempt: another attempt counts its own from 0 too, and
   * its ids — a crashed attempt's, or one that resumed from the same stored length, or from a text
   * it could not read (`@0`) — would make this one's operations duplicates, dropped (text lost, or
   * the earlier attempt's kept beside this one's). Creates keep their plain ids: those are what
   * must meet the earlier attempt's, so that its run and parts are found.
   */
  nextId(key: string, namespace = ''): string {
    const counter = namespace === '' ? key : `${key}${namespace}${this.#tag}`;
    const n = this.#counters.get(counter) ?? 0;
    this.#counters.set(counter, n + 1);
    return `${this.#o.runId}:${counter}:${n}`;
  }

  create(key: string, op: OperationInput): void {
    this.#push({ type: 'create', key, op: { ...op } });
  }

  /**
   * From now on a delta written while its part's create still waits to be sent rides in the
   * create's `data` (and so do the plain deltas already queued right behind such a create): a
   * response's first token goes out with its part instead of waiting for the create's ack. Only
   * for a run known to be new (its create acknowledged, not a duplicate): a resumed run compares
   * its appends with what an earlier attempt stored, and a create's data is not compared.
   * With `coalesceMs: 0` a create carries one delta at most, so every delta stays its own operation
   * (the first one simply skips the wait for the create's ack).
   */
  foldIntoCreates(): void {
    if (this.#folding) return;
    this.#folding = true;
    for (let i = 0; i < this.#queue.length; i++) {
      const create = this.#queue[i]!;
      if (create.type !== 'create') continue;
      for (let j = i + 1; j < this.#queue.length; j++) {
        const next = this.#queue[j]!;
        if (next.type !== 'append' || next.headers !== undefined || next.op !== undefined) break;
        if (!this.#foldsInto(create, next.key, next.data)) break;
        create.op.data += next.data;
        next.op = null; // carried by the create: counted as stored with it, never sent
        if (this.#mergeable.get(next.key) === next) this.#mergeable.delete(next.key);
      }
    }
  }

  /** A structural append (e.g. the one marking a part done); deltas before it can no longer grow. */
  append(key: string, data: string, headers: Headers | undefined): void {
    if (data !== '') this.#written.set(key, (this.#written.get(key) ?? '') + data);
    this.#push({ type: 'append', key, data, headers, end: this.#written.get(key)?.length ?? 0 });
  }

  /** An update of the message `key`; `first`: before everything still queued. */
  update(key: string, op: Omit<OperationInput, 'serial'>, first = false): void {
    if (!first) {
      this.#push({ type: 'update', key, op });
      return;
    }
    if (this.#failed !== undefined) return;
    this.#queue.unshift({ type: 'update', key, op });
    this.#enqueued++;
  }

  /** A streamed delta: merged into the key's pending append within the window. */
  delta(key: string, delta: string): void {
    if (delta === '' || this.#failed !== undefined) return;
    const written = appendText(this.#written.get(key) ?? '', delta);
    this.#written.set(key, written);
    const last = this.#queue.at(-1);
    if (this.#folding && last?.type === 'create' && this.#foldsInto(last, key, delta)) {
      last.op.data += delta; // rides in its part's create (see foldIntoCreates)
      return;
    }
    const pending = this.#o.coalesceMs > 0 ? this.#mergeable.get(key) : undefined;
    if (pending && pending.data.length + delta.length <= MAX_APPEND_CHARS) {
      pending.data += delta;
      pending.end = written.length;
      return;
    }
    let end = written.length - delta.length;
    for (const piece of splitText(delta, MAX_APPEND_CHARS)) {
      end += piece.length;
      const append: Append = { type: 'append', key, data: piece, headers: undefined, end };
      this.#queue.push(append);
      this.#enqueued++;
      if (this.#o.coalesceMs > 0) this.#mergeable.set(key, append);
    }
    if (this.#deltasDueAt === undefined) {
      // At most one batch of deltas per window, and no delta held longer than the window: the
      // first delta after a quiet window goes at once (a response's first token, the first after a
      // tool call); one right behind a send waits until a window has passed since that send.
      const now = this.#now();
      const quiet = now - this.#deltasSentAt >= this.#o.coalesceMs;
      // never later than a window from now, whatever a clock that went back says
      this.#deltasDueAt = quiet ? now : Math.min(this.#deltasSentAt, now) + this.#o.coalesceMs;
    }
    this.#sendSoon(this.#o.coalesceMs === 0 || this.#deltasDue());
  }

  /** Holds sending (while reading what an earlier attempt stored). */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Compares what follows with what an earlier attempt stored (`undefined`: unknown) and resumes
   * sending. `parts` are keyed like this queue's keys.
   */
  resume(parts: Map<string, StoredPart> | undefined): void {
    this.#tag = `.${randomId('').slice(0, 8)}`;
    this.#resumed = new Map();
    for (const [key, part] of parts ?? [])
      this.#resumed.set(key, { ...part, consumed: 0, diverged: false, unknown: false });
    this.#paused = false;
    this.#sendSoon(true);
  }

  /** Resolves once everything queued so far is stored (or the queue failed). */
  flush(): Promise<void> {
    if (this.#stored >= this.#enqueued || this.#failed !== undefined) return Promise.resolve();
    this.#sendSoon(true);
    return new Promise((resolve) => this.#waiters.push({ resolve, upTo: this.#enqueued }));
  }

  // -------------------------------------------------------------------------------------------

  /** Whether `text`, a delta on `key`, may ride in this unsent create (one delta only when not coalescing). */
  #foldsInto(create: Create, key: string, text: string): create is Create & { op: { data: string } } {
    return (
      create.key === key &&
      !create.sent &&
      typeof create.op.data === 'string' &&
      (this.#o.coalesceMs > 0 || create.op.data === '') &&
      create.op.data.length + text.length <= MAX_APPEND_CHARS
    );
  }

  #push(pending: Pending): void {
    if (this.#failed !== undefined) return;
    this.#mergeable.clear();
    this.#queue.push(pending);
    this.#enqueued++;
    this.#sendSoon(true);
  }

  /** Batches the sink may hold in flight at once. */
  get #window(): number {
    return this.#resumed === undefined ? Math.max(1, this.#o.sink.window ?? 1) : 1;
  }

  /** Whether another batch may go out now (a plain one, when something is in flight). */
  #canSend(): boolean {
    if (this.#stopped || this.#flights.length >= this.#window) return false;
    for (const flight of this.#flights) if (!flight.plain) return false;
    return true;
  }

  /** No deltas wait, or those waiting are due now. */
  #deltasDue(): boolean {
    return this.#deltasDueAt === undefined || this.#deltasDueAt <= this.#now();
  }

  #now(): number {
    return this.#o.timers.now === undefined ? performance.now() : this.#o.timers.now();
  }

  #sendSoon(now: boolean): void {
    if (!this.#canSend() || this.#queue.length === 0) return;
    if (now) {
      if (this.#timer !== undefined) {
        this.#o.timers.clearTimeout(this.#timer);
        this.#timer = undefined;
      }
      queueMicrotask(this.#sendNow);
      return;
    }
    if (this.#timer !== undefined) return;
    const at = this.#now();
    const wait = Math.max(0, (this.#deltasDueAt ?? at) - at);
    this.#timer = this.#o.timers.setTimeout(() => {
      this.#timer = undefined;
      this.#send();
    }, wait);
  }

  /** `#send` as a callback, made once (it runs after every delta of an uncoalesced run). */
  readonly #sendNow = (): void => this.#send();

  #send(): void {
    if (!this.#canSend() || this.#paused || this.#queue.length === 0 || this.#failed !== undefined) return;
    const alongside = this.#flights.length > 0; // only plain deltas may join batches in flight
    // sized for what is queued (mostly one delta; an array grown by push starts at 16), trimmed below
    const size = Math.min(this.#queue.length, 16);
    const batch = new Array<OperationInput>(size);
    const taken = new Array<Flight['taken'][number]>(size);
    let ops = 0;
    let count = 0;
    let plain = true;
    let deltasTaken = false;
    let bytes = 0;
    for (const pending of this.#queue) {
      if (ops >= this.#o.sink.maxOpsPerPublish) break;
      const isPlain = pending.type === 'append' && pending.headers === undefined;
      if (alongside && !isPlain) break;
      const op = this.#resolve(pending);
      if (op === undefined) break; // its message's create is not acknowledged yet
      if (isPlain) deltasTaken = true;
      if (op === null) {
        taken[count++] = { pending, index: undefined }; // stored by an earlier attempt, or carried by its create
        continue;
      }
      const opBytes = frameBytes(op);
      if (ops > 0 && bytes + opBytes > MAX_BATCH_BYTES) break;
      bytes += opBytes;
      if (!isPlain || op.action !== 'append') plain = false;
      if (pending.type === 'create') pending.sent = true;
      taken[count++] = { pending, index: ops };
      batch[ops++] = op;
    }
    if (count === 0) return;
    batch.length = ops;
    taken.length = count;
    if (count === 1) this.#queue.shift();
    else this.#queue.splice(0, count);
    this.#deltasDueAt = undefined;
    if (deltasTaken) this.#deltasSentAt = this.#now();
    // Sent beside batches in flight, it is stored only behind the last of them (the publish's
    // precondition): one refused (the store down a moment, a rate) is never overtaken by it.
    const after = alongside ? this.#lastInFlight() : undefined;
    const flight: Flight = {
      taken,
      plain,
      last: ops > 0 ? batch[ops - 1]!.id : undefined,
      behind: after !== undefined,
    };
    this.#flights.push(flight);
    const published =
      ops === 0
        ? Promise.resolve([])
        : after === undefined
          ? this.#o.sink.publish(batch)
          : this.#o.sink.publish(batch, after);
    published.then(
      (results) => {
        flight.outcome = { results };
        this.#settle();
      },
      (error: unknown) => {
        flight.outcome = { error };
        this.#settle();
      },
    );
    // a plain batch leaves room for the next one at once (pipelining)
    if (plain) this.#sendSoon(hasStructural(this.#queue) || this.#deltasDue());
  }

  /** The id of the last operation sent in the batches in flight, if any. */
  #lastInFlight(): string | undefined {
    for (let i = this.#flights.length - 1; i >= 0; i--) {
      const last = this.#flights[i]!.last;
      if (last !== undefined) return last;
    }
    return undefined;
  }

  /** Handles settled flights in send order. */
  #settle(): void {
    if (this.#failed !== undefined) return;
    for (let flight = this.#flights[0]; flight?.outcome; flight = this.#flights[0]) {
      this.#flights.shift();
      const outcome = flight.outcome;
      if ('error' in outcome) {
        if (!isRetryable(outcome.error)) {
          this.#fail(outcome.error);
          return;
        }
        this.#stopped ??= { failed: [], storedAfter: [] };
        this.#stopped.failed.push(flight);
        continue;
      }
      // (a create goes alone, so it is never in a batch stored behind a failure)
      for (const { pending, index } of flight.taken) {
        const result = index === undefined ? undefined : outcome.results[index];
        if (!result) continue;
        if (pending.type === 'append') this.#checkOrder(pending.key, result.serial);
        else if (pending.type === 'create') {
          this.#serials.set(pending.key, result.serial);
          this.#o.onCreated(pending.key, result.serial, result.duplicate === true);
        }
      }
      if (this.#stopped) {
        this.#stopped.storedAfter.push(flight); // stored after a batch that was not
        continue;
      }
      this.#attempt = 0;
      this.#stored += flight.taken.length;
    }
    this.#wake();
    if (this.#stopped) {
      if (this.#flights.length > 0) return; // wait for every batch in flight
      this.#recover(this.#stopped);
      this.#stopped = undefined;
      const delay = Math.min(MAX_RETRY_DELAY, 100 * 2 ** this.#attempt++);
      this.#o.timers.setTimeout(() => this.#send(), delay);
      return;
    }
    this.#sendSoon(hasStructural(this.#queue) || this.#deltasDue());
  }

  /**
   * After a retryable failure: resend the failed batches in order — or, when a later batch was
   * (or may have been) stored meanwhile (its deltas are ahead of the failed ones), replace each
   * part the failed batches touched by an update with its whole text up to the last delta sent.
   */
  #recover({ failed, storedAfter }: { failed: Flight[]; storedAfter: Flight[] }): void {
    const pendings = failed.flatMap((f) => f.taken.map((t) => t.pending));
    if (storedAfter.length === 0 && !this.#refusedAhead(failed)) {
      this.#queue.unshift(...pendings);
      return;
    }
    // Only plain deltas can be in flight behind another batch, so every failed batch but maybe
    // the first is plain deltas; the first was alone in flight if structural, so nothing was
    // stored or failed after it. Here, then, every failed pending is a delta.
    this.#stored += storedAfter.reduce((n, f) => n + f.taken.length, 0) + pendings.length;
    const ends = new Map<string, number>();
    for (const pending of [...pendings, ...storedAfter.flatMap((f) => f.taken.map((t) => t.pending))]) {
      if (pending.type !== 'append') continue;
      ends.set(pending.key, Math.max(ends.get(pending.key) ?? 0, pending.end));
    }
    // The failed appends' ids are not given up: a copy of one may still be on its way and would be
    // stored after the update. Each is sent again, empty, ahead of the updates (`Void`).
    const front: Pending[] = [];
    for (const pending of pendings) {
      if (pending.type !== 'append' || !pending.op) continue;
      front.push({ type: 'void', key: pending.key, op: { ...pending.op, data: '' } });
      this.#enqueued++;
    }
    for (const pending of pendings) {
      if (pending.type !== 'append') continue;
      const end = ends.get(pending.key);
      if (end === undefined) continue;
      ends.delete(pending.key);
      const serial = this.#serials.get(pending.key) ?? '';
      const text = (this.#written.get(pending.key) ?? '').slice(0, end);
      const { update, rest } = this.#replacement(pending.key, serial, text, '~', undefined);
      front.push({ type: 'update', key: pending.key, op: update }, ...rest);
      this.#enqueued++;
    }
    this.#queue.unshift(...front);
  }

  /**
   * The operations that replace part `key`'s text by `text`: one update when it fits an operation,
   * else an update with its first piece followed by appends of the rest (an operation holds at most
   * MAX_APPEND_CHARS), `headers` on the last. The appends come resolved and counted as enqueued.
   */
  #replacement(
    key: string,
    serial: string,
    text: string,
    namespace: string,
    headers: Headers | undefined,
  ): { update: OperationInput; rest: Append[] } {
    const [first = '', ...pieces] = splitText(text, MAX_APPEND_CHARS);
    const update: OperationInput = { action: 'update', id: this.nextId(key, namespace), serial, data: first };
    const rest: Append[] = [];
    let end = first.length;
    for (const data of pieces) {
      end += data.length;
      const op: OperationInput = { action: 'append', id: this.nextId(key, namespace), serial, data };
      rest.push({ type: 'append', key, data, headers: undefined, end, op });
    }
    const last = rest.at(-1);
    if (headers !== undefined) {
      if (last) last.headers = headers;
      (last?.op ?? update).headers = headers;
    }
    this.#enqueued += rest.length;
    return { update, rest };
  }

  /**
   * An append of `key` was stored at `serial` (a duplicate: where it was stored before). Below an
   * append sent ahead of it, the two are stored out of order — e.g. a refusal whose answer was lost
   * with its connection, the refused append resent and stored behind a later one. Whatever the
   * cause, the part is replaced by its text (a `repair` at the front, sent once nothing is in flight).
   */
  #checkOrder(key: string, serial: string): void {
    const last = this.#lastStored.get(key);
    if (last === undefined || !sameEpoch(last, serial) || serial > last) {
      this.#lastStored.set(key, serial);
      return;
    }
    if (serial === last || this.#repairing.has(key)) return;
    this.#repairing.add(key);
    this.#queue.unshift({ type: 'repair', key });
    this.#enqueued++;
  }

  /** A repair's operations, once it is sent: the part's text up to its first append still queued behind it. */
  #resolveRepair(repair: Repair, serial: string): OperationInput {
    if (repair.op !== undefined) return repair.op;
    this.#repairing.delete(repair.key);
    const at = this.#queue.indexOf(repair);
    const written = this.#written.get(repair.key) ?? '';
    let end = written.length;
    for (let i = at + 1; i < this.#queue.length; i++) {
      const next = this.#queue[i]!;
      if (next.type !== 'append' || next.key !== repair.key) continue;
      end = next.end - next.data.length;
      break;
    }
    repair.op = this.#replaceAt(repair, serial, written.slice(0, end), '~', undefined);
    return repair.op;
  }

  /** The update replacing `entry`'s part by `text`; the appends of the rest go right after `entry`. */
  #replaceAt(
    entry: Pending,
    serial: string,
    text: string,
    namespace: string,
    headers: Headers | undefined,
  ): OperationInput {
    const { update, rest } = this.#replacement(entry.key, serial, text, namespace, headers);
    if (rest.length > 0) this.#queue.splice(this.#queue.indexOf(entry) + 1, 0, ...rest);
    return update;
  }

  /**
   * A failed batch that stored nothing (refused) ahead of a failed one that may have been stored.
   * One sent behind it with a precondition (`behind`) cannot have been: it is stored only after
   * the batch before it, and that one only after its own predecessor, back to the refused one.
   */
  #refusedAhead(failed: Flight[]): boolean {
    let refusal = false;
    for (const flight of failed) {
      const error = flight.outcome && 'error' in flight.outcome ? flight.outcome.error : undefined;
      if (this.#o.sink.refused?.(error) === true) refusal = true;
      else if (refusal && !flight.behind) return true;
    }
    return false;
  }

  /** The operation for a pending entry: undefined while its target's serial is unknown. */
  #resolve(pending: Pending): OperationInput | null | undefined {
    if (pending.type === 'create' || pending.type === 'void') return pending.op;
    const serial = this.#serials.get(pending.key);
    if (serial === undefined) return undefined;
    if (pending.type === 'update') return { ...pending.op, serial };
    if (pending.type === 'repair') return this.#resolveRepair(pending, serial);
    if (pending.op !== undefined) return pending.op;
    if (this.#mergeable.get(pending.key) === pending) this.#mergeable.delete(pending.key); // frozen now
    let resumed = this.#resumed?.get(pending.key);
    if (this.#resumed && !resumed) {
      resumed = { text: '', done: false, consumed: 0, diverged: false, unknown: true };
      this.#resumed.set(pending.key, resumed);
    }
    pending.op = resumed
      ? this.#resumeAppend(pending, serial, resumed)
      : this.#op(pending, serial, pending.data);
    return pending.op;
  }

  #op(pending: Append, serial: string, data: string, namespace = '') {
    const op: OperationInput = { action: 'append', id: this.nextId(pending.key, namespace), serial, data };
    if (pending.headers !== undefined) op.headers = pending.headers;
    return op;
  }

  #resumeAppend(pending: Append, serial: string, r: Resumed): OperationInput | null {
    const namespace = `@${r.text.length}`;
    const replace = () => {
      r.diverged = true;
      r.unknown = false;
      const text = (this.#written.get(pending.key) ?? '').slice(0, pending.end);
      return this.#replaceAt(pending, serial, text, namespace, pending.headers);
    };
    if (r.unknown) return replace();
    let data = pending.data;
    if (!r.diverged && r.consumed < r.text.length) {
      const overlap = Math.min(data.length, r.text.length - r.consumed);
      if (data.slice(0, overlap) !== r.text.slice(r.consumed, r.consumed + overlap)) return replace();
      r.consumed += overlap;
      data = data.slice(overlap);
    }
    if (data === '' && (pending.headers === undefined || r.done)) return null;
    return this.#op(pending, serial, data, namespace);
  }

  #fail(error: unknown): void {
    this.#failed = error;
    this.#queue.length = 0;
    this.#mergeable.clear();
    this.#repairing.clear();
    this.#stored = this.#enqueued;
    this.#wake();
    this.#o.onFailed(error);
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
}

/** True when something other than a plain append waits: it goes out without waiting for a window. */
function hasStructural(queue: readonly Pending[]): boolean {
  for (const pending of queue) if (pending.type !== 'append') return true;
  return false;
}

function isRetryable(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { retryable?: unknown }).retryable === true;
}

/**
 * What an operation adds to a publish frame, counted so that a batch of `MAX_BATCH_BYTES` (half of
 * `maxFrameSize` / `maxHttpBody`, 1 MiB) fits one: other data (a chunk part: up to 48 KiB) and headers
 * count as their JSON's UTF-8 bytes; string data as 3 bytes per UTF-16 unit (cheap for a delta: no
 * pass over it), which its JSON escapes (6 bytes for a control character or a lone surrogate) at most
 * double; so do the 256 bytes for the rest of the operation (its id, at most 256 characters, its
 * serial), which leaves room for the frame's own fields.
 */
function frameBytes(op: OperationInput): number {
  let bytes = 256;
  if (typeof op.data === 'string') bytes += op.data.length * 3;
  else if (op.data !== undefined) bytes += utf8Length(JSON.stringify(op.data));
  if (op.headers !== undefined) bytes += utf8Length(JSON.stringify(op.headers));
  return bytes;
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
