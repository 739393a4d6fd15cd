/**
 * The storage interface every store implements (memory, SQLite, later Redis). ARCHITECTURE.md §10.
 *
 * It is asynchronous and assumes nothing about being the only process: serials are assigned by the
 * store inside the same atomic step that stores the operation, so a shared store (Redis) can serve
 * several server nodes. Guarantees every implementation must keep, checked by the conformance suite
 * in test/store-conformance.ts:
 *
 * - `append` is atomic per call: every operation of the batch is stored, or none is and the promise
 *   rejects with a `StoreError`. It resolves only once the batch is durable in this store
 *   (SQLite: committed; Redis: written) — "ack means stored".
 * - Serials are strictly increasing per channel, in the order of the operations in the batch and of
 *   the calls as the store took them. Live `messages` are returned in that order.
 * - An operation whose (publisher, id) the channel has already stored is not stored again: its result
 *   carries the original serial and `duplicate: true` (also after a restart, for as long as the op is
 *   retained; forgotten when retention removes its message).
 * - Appending costs O(size of the delta), never O(size of the message).
 * - Rolled-up reads give each message once with its full current data and `version` = its latest op.
 */
import type {
  Action,
  Encoding,
  ErrorCode,
  Headers,
  JsonValue,
  Message,
  PublishResult,
} from '@mooring/protocol';
import type { StreamStore } from './stream-store.ts';

/** An operation validated and stamped by the server, ready for the log. */
export interface NewOperation {
  action: Action;
  /** Always set: the server generates one when the publisher did not. */
  id: string;
  /**
   * The dedup scope of `id`: an opaque string naming the publisher identity, stamped by the server
   * (never taken from the payload). Idempotency is keyed on (channel, publisher, id), so no
   * publisher can make another's operation a "duplicate" by claiming its id first. The server's
   * scopes are `c:<clientId>`, `k:<key>`, `t:<key>` and `s:server` (channel-service.ts); '' is a
   * legacy scope (SQLite ids stored before scopes existed, without a clientId) nobody publishes into.
   */
  publisher: string;
  /** Target message serial for append / update / delete. */
  serial?: string;
  name?: string;
  data?: JsonValue;
  encoding?: Encoding;
  headers?: Headers;
  clientId?: string;
  /** When set, an append/update/delete is refused with `not_owner` unless the target message was created by this clientId. */
  requireOwner?: string;
  /**
   * When set, an append/update/delete is refused with `version_changed` unless the target message's
   * version (the sequence number of the last operation applied to it) is this one: a write that must
   * not land on a message changed since it was read (the server's lease expiry, channel-service.ts).
   */
  ifVersion?: number;
}

export interface AppendOptions {
  /** Refuse (message_too_large) an append that would grow a message's data past this many bytes. */
  maxMessageSize: number;
  /**
   * Refuse (message_too_large) an append or update that would be a message's operation number
   * `maxMessageOps + 1` (its create counts one; a delete is always allowed). Default: no limit.
   */
  maxMessageOps?: number;
  /** Clock for timestamps; default Date.now. */
  now?: number;
  /**
   * The publish's precondition (PROTOCOL.md §7): an op id of the batch's publisher that must be
   * stored in the channel, else nothing is stored (`out_of_order`). Not checked for a batch whose
   * operations are all duplicates: it was stored, so its precondition held then.
   */
  after?: string | undefined;
}

export interface AppendResult {
  epoch: string;
  /** One per input operation, in order. */
  results: PublishResult[];
  /** The newly stored operations in live form (PROTOCOL.md §4), in serial order; duplicates are absent. */
  messages: Message[];
}

export interface ChannelInfo {
  channel: string;
  epoch: string;
  /** Serial of the latest operation, or '' when none was ever stored. */
  head: string;
  /** Sequence number up to which operations may have been removed by retention (0 = none). */
  trimmedThrough: number;
  /** Messages currently retained (not counting deleted tombstones? — counting them: tombstones are messages). */
  messageCount: number;
  /**
   * The epoch the log had before it went on in a new one — its first publish on a new Redis (a
   * restart, a restore, a failover; publish.lua), or a SQLite file opened after a power loss — and
   * the sequence it had reached there. Serials of that epoch up to `through` name the same messages
   * in this one (updates and appends naming them are taken). The memory store never has one.
   */
  previous?: { epoch: string; through: number };
  /**
   * Redis only: the epochs before `previous` (one per earlier new Redis, newest first, at most 8),
   * each with the last sequence every later epoch kept of it: its serials up to `through` name the
   * same messages in this epoch too.
   */
  older?: { epoch: string; through: number }[];
}

/**
 * The last sequence of the earlier epoch `epoch` whose messages this log still holds under the same
 * sequences (see `ChannelInfo.previous`, `older`); undefined when `epoch` is none of its earlier ones.
 */
export function keptThrough(info: ChannelInfo, epoch: string): number | undefined {
  if (info.previous?.epoch === epoch) return info.previous.through;
  return info.older?.find((e) => e.epoch === epoch)?.through;
}

export interface RolledUpPage {
  epoch: string;
  /** The channel's head serial at the time of the read ('' for an empty channel). */
  head: string;
  messages: Message[];
  /** True when more messages match beyond `limit`. */
  more: boolean;
}

export interface HistoryQuery {
  /** `backwards` (newest first, the default) or `forwards`. */
  direction: 'forwards' | 'backwards';
  /** Inclusive lower bound on the message serial. */
  from?: string;
  /** Inclusive upper bound on the message serial. */
  until?: string;
  limit: number;
  /**
   * Stop the page once the messages' data reaches about this many bytes (always ≥ 1 message); 0 or
   * less: no byte bound.
   */
  maxBytes?: number;
}

export interface Store {
  readonly kind: string;
  /** Stores a batch atomically; see the module header. Rejects with StoreError. */
  append(channel: string, ops: NewOperation[], options: AppendOptions): Promise<AppendResult>;
  /** The channel's log state, or undefined when the channel has no log. */
  info(channel: string): Promise<ChannelInfo | undefined>;
  /**
   * Messages (rolled up) that have any operation after `after` (exclusive; undefined = from the
   * start; a serial of another epoch: from the start, except one of `ChannelInfo.previous`, taken at
   * its sequence up to `through`), ordered by `version` ascending, at most `limit`. Used for
   * catch-up. With `maxBytes`,
   * the page also stops once the messages' data reaches about that many bytes — but always holds at
   * least one message, so any message can be read (0 or less: no byte bound).
   */
  readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
  ): Promise<RolledUpPage>;
  /** Rolled-up messages ordered by serial, for history and rewind. */
  history(channel: string, query: HistoryQuery): Promise<RolledUpPage>;
  /**
   * Removes messages whose retention has passed (measured from each message's creation).
   * Returns how many messages were removed.
   */
  trim(now?: number): Promise<number>;
  /**
   * Durable lease records (PROTOCOL.md §7.1), for stores that outlive the server process: leases
   * survive a server restart and are re-armed on start. Optional: a memory store loses its logs
   * anyway.
   */
  readonly leases?: LeaseRecords;
  /** Durable Streams (PROTOCOL.md §14), kept apart from the channel logs; absent: not supported. */
  readonly streams?: StreamStore;
  /** Resolves when the store can serve requests; rejects otherwise (for /ready). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface LeaseRecord {
  channel: string;
  serial: string;
  ms: number;
  clientId?: string;
  /**
   * The holder it counts against (`holderKey`, `maxLeasesPerClient`), and that a lease taken without a
   * clientId follows (`touch`). Absent in records written before records named it.
   */
  owner?: string;
}

export interface LeaseRecords {
  save(record: LeaseRecord): void;
  remove(channel: string, serial: string): void;
  all(): LeaseRecord[];
}

/** How long messages of a channel are kept, in ms; `Infinity` keeps them forever. */
export type RetentionFor = (channel: string) => number;

export class StoreError extends Error {
  readonly code: ErrorCode;
  /** Index of the operation in the batch that caused it, when one did. */
  readonly index: number | undefined;
  constructor(code: ErrorCode, message: string, index?: number) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
    this.index = index;
  }
}
