/**
 * The rules every store applies to a batch of operations (PROTOCOL.md §4, ARCHITECTURE.md §3), kept here so
 * the stores only differ in how they keep state, never in what they accept.
 *
 * `planBatch` validates a whole batch against the current state of the messages it touches, taking
 * earlier operations of the same batch into account (a delete then an append in one batch fails),
 * assigns serials, resolves duplicates (an op id already stored in the same publisher scope) and builds the live messages. It reads state only through
 * a `PlanContext` and changes nothing: the store writes the plan, or nothing when it throws. That is
 * what makes batches atomic in every store.
 *
 * A message's state needed for validation is small (`MessageMeta`): the kind of its data, its size
 * in bytes, its creator and whether it is deleted. Stores keep it beside the data so validating an
 * append never reads or rewrites the data: append cost stays O(size of the delta).
 */
import type { Encoding, Headers, JsonValue, Message, PublishResult } from '@mooring/protocol';
import { formatSerial, hasEpoch, parseSerial, serialSeq } from '@mooring/protocol';
import type { AppendOptions, NewOperation } from './store.ts';
import { StoreError } from './store.ts';

/**
 * What a message's data is. `none` (a create without data) and `string` can be appended to;
 * `json` (any other JSON value) and `base64` (bytes) cannot.
 */
export type DataKind = 'none' | 'string' | 'json' | 'base64';

/** The part of a message's state that validation needs. */
export interface MessageMeta {
  kind: DataKind;
  /** Bytes of the current data (UTF-8 length of the string, or of the JSON text). */
  size: number;
  /** The creator's clientId. */
  clientId?: string;
  deleted: boolean;
  /** Operations applied to the message so far, its create included (what `maxMessageOps` bounds). */
  ops: number;
}

/** Read access to a channel's state, as of the start of the batch. */
export interface PlanContext {
  /** The channel's epoch (a fresh one when the channel has no log yet). */
  epoch: string;
  /** The last sequence number stored in the channel (0 when none). */
  seq: number;
  /**
   * The epoch the log had before it went on in `epoch` (a new Redis, a power loss) and the last
   * sequence it reached: its serials up to `through` name the same messages in `epoch`.
   */
  previous?: { epoch: string; through: number };
  /**
   * Sequence number of the stored operation with this id in this publisher's scope, if the channel
   * has one.
   */
  storedId(publisher: string, id: string): number | undefined;
  /** State of the message created at `seq`, or undefined when there is none (never or no longer). */
  message(seq: number): MessageMeta | undefined;
  /**
   * The version (sequence number of the last operation applied) of the message created at `seq`, or
   * undefined when there is none. Asked only for an op with `ifVersion`: it may cost a read.
   */
  version(seq: number): number | undefined;
}

/** One operation of a plan, ready to be stored. */
export interface PlannedOp {
  op: NewOperation;
  /** The operation's own sequence number. */
  seq: number;
  /** Sequence number of the message it applies to (its own for a create). */
  msgSeq: number;
  /** Kind of `op.data` (`none` when absent). */
  kind: DataKind;
  timestamp: number;
}

export interface BatchPlan {
  /** One per input operation, in order. */
  results: PublishResult[];
  /** Operations to store, in serial order; duplicates are absent. */
  ops: PlannedOp[];
  /** `ops` in live form (PROTOCOL.md §4.1). */
  messages: Message[];
  /** State after the batch of every message it created or changed, by message sequence number. */
  touched: Map<number, MessageMeta>;
  /** The channel's last sequence number after the batch. */
  seq: number;
}

export function kindOf(data: JsonValue | undefined, encoding: Encoding | undefined): DataKind {
  if (data === undefined) return 'none';
  if (encoding === 'base64') return 'base64';
  return typeof data === 'string' ? 'string' : 'json';
}

export function isAppendable(kind: DataKind): boolean {
  return kind === 'none' || kind === 'string';
}

/** Byte size of data of the given kind. JSON values are measured as their JSON text. */
export function byteSize(data: JsonValue | undefined, kind: DataKind): number {
  if (data === undefined || kind === 'none') return 0;
  return Buffer.byteLength(kind === 'json' ? JSON.stringify(data) : (data as string));
}

/** Validates, numbers and deduplicates a batch; throws StoreError (with the op index) on the first bad op. */
export function planBatch(ctx: PlanContext, ops: readonly NewOperation[], options: AppendOptions): BatchPlan {
  const timestamp = options.now ?? Date.now();
  // sized up front (a batch is mostly one op; an array grown by push starts at 16), trimmed at the end
  const results = new Array<PublishResult>(ops.length);
  const planned = new Array<PlannedOp>(ops.length);
  const messages = new Array<Message>(ops.length);
  let count = 0;
  const touched = new Map<number, MessageMeta>();
  // ids seen earlier in this batch; a batch of one (the common publish) has none to look up
  const batchIds = ops.length > 1 ? new Map<string, number>() : undefined;
  let seq = ctx.seq;
  let after = options.after;

  for (let index = 0; index < ops.length; index++) {
    const op = ops[index]!;
    const publisher = op.publisher ?? ''; // '' for untyped (JS) callers
    // the in-batch key only when there is a batch to look in: a publish of one op builds no string
    const key = batchIds === undefined ? undefined : dedupKey(publisher, op.id);
    const earlier = (key === undefined ? undefined : batchIds?.get(key)) ?? ctx.storedId(publisher, op.id);
    if (earlier !== undefined) {
      results[index] = { serial: formatSerial(ctx.epoch, earlier), duplicate: true };
      continue;
    }
    if (after !== undefined) {
      // checked once, before the first operation to store (a batch of duplicates was stored already)
      if (ctx.storedId(publisher, after) === undefined) throw outOfOrder(after);
      after = undefined;
    }
    const opSeq = seq + 1;
    const kind = kindOf(op.data, op.encoding);
    let msgSeq = opSeq;
    if (op.action === 'create') {
      const meta: MessageMeta = { kind, size: byteSize(op.data, kind), deleted: false, ops: 1 };
      if (op.clientId !== undefined) meta.clientId = op.clientId;
      touched.set(opSeq, meta);
    } else {
      msgSeq = targetSeq(ctx, op, index);
      const current = touched.get(msgSeq) ?? ctx.message(msgSeq);
      const next = nextMeta(current, op, kind, index, options);
      if (op.ifVersion !== undefined) {
        const version = versionInBatch(planned, count, msgSeq) ?? ctx.version(msgSeq);
        if (version !== op.ifVersion)
          throw new StoreError(
            'version_changed',
            `message ${op.serial} is at version ${version}, not ${op.ifVersion}: it changed since it was read`,
            index,
          );
      }
      touched.set(msgSeq, next);
    }
    seq = opSeq;
    if (key !== undefined) batchIds?.set(key, opSeq);
    const serial = formatSerial(ctx.epoch, opSeq);
    results[index] = { serial };
    planned[count] = { op, seq: opSeq, msgSeq, kind, timestamp };
    const target = op.action === 'create' ? serial : inEpoch(op.serial!, ctx.epoch);
    messages[count++] = liveMessage(op, target, serial, timestamp);
  }
  planned.length = count;
  messages.length = count;
  return { results, ops: planned, messages, touched, seq };
}

/**
 * One string for the dedup identity (publisher scope, op id) of an operation: the scope's length
 * first, so no pair of (publisher, id) can spell another's key whatever characters they hold.
 */
export function dedupKey(publisher: string, id: string): string {
  return `${publisher.length}:${publisher}${id}`;
}

/** The last op of this batch (so far) applied to a message, if any: its version within the batch. */
function versionInBatch(planned: PlannedOp[], count: number, msgSeq: number): number | undefined {
  for (let i = count - 1; i >= 0; i--) if (planned[i]!.msgSeq === msgSeq) return planned[i]!.seq;
  return undefined;
}

/**
 * A message's serial in `epoch`: itself (a serial of this epoch is already in canonical form), or,
 * for a message named by its serial of an earlier epoch the log went on from (kept with its
 * sequence: a new Redis, a power loss), the same sequence in `epoch`. Allocates nothing in the
 * common case.
 */
export function inEpoch(serial: string, epoch: string): string {
  if (hasEpoch(serial, epoch)) return serial;
  const seq = serialSeq(serial);
  return seq < 0 ? serial : formatSerial(epoch, seq);
}

function targetSeq(ctx: PlanContext, op: NewOperation, index: number): number {
  if (op.serial === undefined) {
    throw new StoreError('invalid_serial', `an ${op.action} needs the serial of its message`, index);
  }
  const seq = serialSeq(op.serial);
  if (seq < 0) throw new StoreError('invalid_serial', `'${op.serial}' is not a serial`, index);
  const previous = ctx.previous;
  const known =
    hasEpoch(op.serial, ctx.epoch) ||
    (previous !== undefined && seq <= previous.through && hasEpoch(op.serial, previous.epoch));
  if (seq < 1 || !known) throw notFound(op.serial, index);
  return seq;
}

/** The refusal of a batch whose precondition (`AppendOptions.after`) is not met: nothing stored. */
export function outOfOrder(after: string): StoreError {
  return new StoreError(
    'out_of_order',
    `operation '${after}' of this publisher, which this publish must follow, is not stored: nothing was stored; ` +
      'publish that one first (or again), then this one',
  );
}

function notFound(serial: string, index: number): StoreError {
  return new StoreError(
    'message_not_found',
    `no message ${serial} in this channel (it never existed, was removed by retention, or belongs to an older log)`,
    index,
  );
}

/** The state of a message after applying a non-create op to it; throws when the op is not allowed. */
function nextMeta(
  meta: MessageMeta | undefined,
  op: NewOperation,
  kind: DataKind,
  index: number,
  { maxMessageSize, maxMessageOps = Number.POSITIVE_INFINITY }: AppendOptions,
): MessageMeta {
  const serial = op.serial!;
  if (!meta) throw notFound(serial, index);
  if (meta.deleted) {
    throw new StoreError(
      'message_deleted',
      `message ${serial} was deleted; nothing can be applied to it`,
      index,
    );
  }
  if (op.requireOwner !== undefined && meta.clientId !== op.requireOwner) {
    throw new StoreError('not_owner', `message ${serial} was created by another client`, index);
  }
  // Only the meta fields: a store may hand in a larger object holding the whole message.
  const next: MessageMeta = { kind: meta.kind, size: meta.size, deleted: meta.deleted, ops: meta.ops + 1 };
  if (meta.clientId !== undefined) next.clientId = meta.clientId;
  if (op.action === 'delete') {
    next.kind = 'none';
    next.size = 0;
    next.deleted = true;
    return next;
  }
  if (op.action === 'append') {
    if (!isAppendable(meta.kind)) {
      throw new StoreError(
        'not_appendable',
        `message ${serial} holds ${meta.kind === 'base64' ? 'bytes' : 'a JSON value'}, not a string: use update to replace it`,
        index,
      );
    }
    if (kind === 'json' || kind === 'base64') {
      throw new StoreError('bad_request', 'append data must be a plain string delta', index);
    }
    next.kind = 'string';
    next.size = meta.size + byteSize(op.data, kind);
  } else if (op.data !== undefined) {
    next.kind = kind;
    next.size = byteSize(op.data, kind);
  }
  if (next.ops > maxMessageOps) throw tooManyOps(serial, maxMessageOps, index);
  if (next.size > maxMessageSize) {
    throw new StoreError(
      'message_too_large',
      `message ${serial} would hold ${next.size} bytes, over the limit of ${maxMessageSize}: start a new message`,
      index,
    );
  }
  return next;
}

/** The refusal of an operation past a message's `maxMessageOps` (every store words it the same). */
export function tooManyOps(serial: string, maxMessageOps: number, index: number): StoreError {
  return new StoreError(
    'message_too_large',
    `message ${serial} has taken its limit of ${maxMessageOps} operations: start a new message`,
    index,
  );
}

/** An operation in live form (PROTOCOL.md §4.1); absent fields are omitted. */
export function liveMessage(op: NewOperation, serial: string, version: string, timestamp: number): Message {
  const m: Message = { serial, version, action: op.action, id: op.id, timestamp };
  if (op.action === 'create' && op.name !== undefined) m.name = op.name;
  if (op.action !== 'delete') {
    if (op.data !== undefined) m.data = op.data;
    if (op.encoding !== undefined && op.action !== 'append') m.encoding = op.encoding;
    if (op.headers !== undefined) m.headers = op.headers;
  }
  if (op.clientId !== undefined) m.clientId = op.clientId;
  return m;
}

/** What a store knows of a message, from which `rolledUp` builds its rolled-up form. */
export interface MessageState {
  serial: string;
  version: string;
  /** True once any append or update was applied. */
  changed: boolean;
  deleted: boolean;
  id: string;
  name?: string | undefined;
  data?: JsonValue | undefined;
  encoding?: Encoding | undefined;
  headers?: Headers | undefined;
  clientId?: string | undefined;
  timestamp: number;
}

/**
 * A message rolled up (PROTOCOL.md §4.1): its full current state. A tombstone keeps only serial,
 * version, id, clientId and timestamp.
 */
export function rolledUp(s: MessageState): Message {
  const action = s.deleted ? 'delete' : s.changed ? 'update' : 'create';
  const m: Message = { serial: s.serial, version: s.version, action, id: s.id, timestamp: s.timestamp };
  if (!s.deleted) {
    if (s.name !== undefined) m.name = s.name;
    if (s.data !== undefined) m.data = s.data;
    if (s.encoding !== undefined) m.encoding = s.encoding;
    if (s.headers !== undefined) m.headers = s.headers;
  }
  if (s.clientId !== undefined) m.clientId = s.clientId;
  return m;
}

/**
 * Turns an inclusive serial bound into a sequence number of the channel's log. Serials of an older
 * epoch sort before every serial of this one and newer ones after (epochs are time-prefixed), so a
 * bound from another epoch means "before the start" or "after the end" — except one of `previous`,
 * the epoch the log went on from, whose serials up to `previous.through` name the same messages in
 * this one. Throws on a malformed serial.
 */
export function seqBound(
  serial: string,
  epoch: string,
  side: 'from' | 'until',
  previous?: { epoch: string; through: number },
): number {
  const parts = parseSerial(serial);
  if (!parts) throw new StoreError('invalid_serial', `'${serial}' is not a serial`);
  if (parts.epoch === epoch) return parts.seq;
  // the epoch the log went on from names the same messages up to `through`; its later serials sort
  // before every message after those
  if (previous !== undefined && parts.epoch === previous.epoch)
    return Math.min(parts.seq, side === 'from' ? previous.through + 1 : previous.through);
  const before = parts.epoch < epoch;
  if (side === 'from') return before ? 0 : Number.POSITIVE_INFINITY;
  return before ? -1 : Number.POSITIVE_INFINITY;
}

/**
 * The sequence number after which `readSince` reads: 0 for undefined or a serial of another epoch
 * (from the start: the caller checks continuity first). Throws on a malformed serial.
 */
export function afterSeq(after: string | undefined, epoch: string): number {
  if (after === undefined) return 0;
  const parts = parseSerial(after);
  if (!parts) throw new StoreError('invalid_serial', `'${after}' is not a serial`);
  return parts.epoch === epoch ? parts.seq : 0;
}

/** `formatSerial` or '' for an empty log. */
export function headSerial(epoch: string, seq: number): string {
  return seq > 0 ? formatSerial(epoch, seq) : '';
}

export function emptyPage(): { epoch: string; head: string; messages: Message[]; more: boolean } {
  return { epoch: '', head: '', messages: [], more: false };
}
