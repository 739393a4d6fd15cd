/**
 * What every transport does with channels, in one place: publishing (validate, stamp, store, then
 * fan out) and reading (resume checks, catch-up pages, history). WebSocket, HTTP streaming and REST
 * are thin adapters over this.
 */
import { randomBytes } from 'node:crypto';
import {
  type Action,
  DEFAULT_TIMINGS,
  formatSerial,
  isChannelName,
  type Limits,
  type Message,
  type OperationInput,
  type PublishResult,
  parseSerial,
  type ResumeFailure,
} from '@mooring/protocol';
import { type Access, type Operation, requireAccess } from './capabilities.ts';
import { type AttachOutlet, ChannelAttachment } from './channel-attachment.ts';
import type { Hub } from './hub.ts';
import { holderKey } from './identity-budgets.ts';
import { LeaseManager, type LeaseManagerOptions, type Leases, type Reservation } from './leases.ts';
import { markOrigin } from './message-origin.ts';
import { Metrics } from './metrics.ts';
import { operationSize } from './operation-size.ts';
import type { PublishOrder } from './publish-order.ts';
import { ReadLimiter } from './read-limiter.ts';
import { ServerError } from './server-error.ts';
import {
  type AppendOptions,
  type ChannelInfo,
  type HistoryQuery,
  keptThrough,
  type NewOperation,
  type RolledUpPage,
  type Store,
  StoreError,
} from './store/store.ts';

export interface PublishIdentity {
  /** The API key that authenticated the publisher (or signed its token); also keys per-identity budgets. */
  keyName: string;
  /** True for a token holder, false for an API key. */
  viaToken: boolean;
  clientId?: string;
  /**
   * A token without a clientId: which token (`Identity.holder`). Its leases are counted apart from
   * the key's other anonymous tokens' (`holderKey`, `maxLeasesPerClient`).
   */
  holder?: string;
  access: Access;
  /** The publishing connection, when there is one (leases are held by it). */
  connectionId?: string;
  /**
   * `publisherScope` of this identity, computed once by a caller that publishes with the same
   * identity many times (a connection): every stored op then shares one scope string.
   */
  scope?: string;
  /** The publishing connection's order: its publishes are stored in the order they were sent. */
  order?: PublishOrder;
}

export type ResumeCheck =
  | { resumed: true; epoch: string; head: string }
  | { resumed: false; reason: ResumeFailure; epoch: string; head: string; kept?: string };

/**
 * The dedup scope of the server's own operations (lease expiry): no identity maps to it
 * (`publisherScope` yields only `c:`, `k:` and `t:` scopes), so no client can claim their ids.
 */
export const SERVER_SCOPE = 's:server';

/**
 * The dedup scope (`NewOperation.publisher`) of an identity (PROTOCOL.md §7): op ids are unique per
 * scope, so one publisher cannot make another's operation a duplicate by using its id first.
 *
 * - `c:<clientId>` for any identity with a clientId, whatever its credential: a clientId is one
 *   publisher (the same rule as ownership, which is also by clientId), so an agent that reconnects,
 *   restarts or switches between WebSocket and REST keeps its retries exactly-once.
 * - `k:<keyName>` for an anonymous API-key publisher, `t:<keyName>` for an anonymous token holder:
 *   a browser token without a clientId can never claim ids of the backend holding the key.
 */
export function publisherScope(identity: { keyName: string; viaToken: boolean; clientId?: string }): string {
  if (identity.clientId !== undefined) return `c:${identity.clientId}`;
  return `${identity.viaToken ? 't' : 'k'}:${identity.keyName}`;
}

/** A process-unique prefix plus a counter: ids for operations published without one. */
const idPrefix = randomBytes(6).toString('base64url');
let idCounter = 0;

export function assertChannelName(channel: string): void {
  if (!isChannelName(channel as unknown))
    throw new ServerError(
      'invalid_channel',
      `invalid channel name ${JSON.stringify(String(channel).slice(0, 300))}: use 1-256 printable ASCII characters without spaces, '*' or '?'`,
    );
}

/** The leases a publish takes, and the holder they count against (`holderKey`). */
interface LeaseClaim {
  owner: string;
  taking: number;
  /** The places reserved for them until they are recorded (`Leases.reserve`). */
  reservation?: string;
}

/**
 * Refuses a publish of no operation, or of more than `max` (`limits.maxOpsPerPublish`). REST calls it
 * on the list's length before validating any operation: validation costs per operation, and a body
 * of `[{},{},…]` holds hundreds of thousands of them.
 */
export function checkOpCount(count: number, max: number): void {
  if (count === 0) throw new ServerError('bad_request', 'a publish needs at least one operation');
  if (count > max)
    throw new ServerError('bad_request', `${count} operations in one publish; at most ${max} are allowed`);
}

export class ChannelService {
  readonly store: Store;
  readonly hub: Hub;
  readonly limits: Limits;
  /** What every append of a publish passes to the store (one object, not one per publish). */
  readonly #appendOptions: AppendOptions;
  readonly leases: Leases;
  /** Told of each run this node marked `abandoned` (the server logs it). */
  onLeaseExpired: (expired: { channel: string; serial: string; version: string }) => void = () => {};
  /**
   * Bounds the large reads running at once: history pages (a slot is held while the page streams)
   * and, in a pool of their own, catch-up and rewind pages (a slot only for the store read) — so
   * readers that hold history slots can never hold up attaches.
   */
  readonly reads: ReadLimiter;
  readonly catchUpReads: ReadLimiter;

  readonly metrics: Metrics;

  constructor(
    store: Store,
    hub: Hub,
    limits: Limits,
    metrics: Metrics = new Metrics(),
    onError: (err: unknown) => void = () => {},
    /** Where leases live: default this process (`LeaseManager`); `RedisLeases` to share them. */
    makeLeases: (options: LeaseManagerOptions) => Leases = (options) => new LeaseManager(options),
  ) {
    this.metrics = metrics;
    this.store = store;
    this.hub = hub;
    this.limits = limits;
    this.#appendOptions = { maxMessageSize: limits.maxMessageSize, maxMessageOps: limits.maxMessageOps };
    this.reads = new ReadLimiter(limits.maxConcurrentReads, limits.maxQueuedReads);
    this.catchUpReads = new ReadLimiter(limits.maxConcurrentReads, limits.maxQueuedReads, 'contended');
    this.leases = makeLeases({
      expire: (channel, serial, due) => this.expireLease(channel, serial, due),
      onError,
      records: store.leases,
    });
    metrics.leaseCount = () => this.leases.size;
  }

  /**
   * Validates, stores (atomically) and fans out; resolves once the store committed. `after`: the
   * publish's precondition (PROTOCOL.md §7), an op id of this publisher that must be stored already.
   */
  async publish(
    channel: string,
    inputs: OperationInput[],
    identity: PublishIdentity,
    after?: string,
  ): Promise<PublishResult[]> {
    assertChannelName(channel);
    checkOpCount(inputs.length, this.limits.maxOpsPerPublish);
    // sized up front: a publish is mostly one operation, and an array grown by push starts at 16
    const ops = new Array<NewOperation>(inputs.length);
    const scope = identity.scope ?? publisherScope(identity);
    for (let i = 0; i < inputs.length; i++)
      ops[i] = this.#toNewOperation(channel, inputs[i]!, i, identity, scope);
    let claim = this.#leaseClaim(channel, inputs, identity);
    const ending = this.leases.ending ? this.#endingSerials(channel, inputs, ops) : undefined;
    // a publish waiting for Redis keeps its place: later ones of the connection wait with it
    const turn = identity.order?.enter(claim instanceof Promise || ending !== undefined);
    let result: Awaited<ReturnType<Store['append']>>;
    let leaseWrites: Promise<void>[] | undefined;
    try {
      if (claim instanceof Promise) claim = await claim; // only a publish taking leases on Redis
      if (ending)
        await Promise.all(ending.map(([serial, owner]) => this.#markEnding(channel, serial, owner)));
      if (turn?.before) await turn.before;
      const started = performance.now();
      const { health, tracing } = this.metrics;
      const span = tracing?.start('mooring.publish', {
        'mooring.channel': channel,
        'mooring.ops': ops.length,
      });
      const storing = tracing?.start('mooring.store.append', { 'mooring.store': this.store.kind }, span);
      const inflight = health.publishing(channel, identity);
      try {
        const options = after === undefined ? this.#appendOptions : { ...this.#appendOptions, after };
        const appending = this.store.append(channel, ops, options);
        turn?.leave(); // the store keeps the order of its appends
        result = await appending;
      } catch (err) {
        tracing?.fail(storing, err);
        tracing?.fail(span, err);
        throw err;
      } finally {
        health.published(channel, inflight);
      }
      storing?.end();
      this.metrics.hot.storeAppendSeconds.observe((performance.now() - started) / 1000);
      const fanout = tracing?.start('mooring.fanout', { 'mooring.messages': result.messages.length }, span);
      if (identity.connectionId !== undefined) markOrigin(result.messages, identity.connectionId);
      this.hub.publish(channel, result.messages);
      fanout?.end();
      span?.end();
      this.metrics.hot.publishSeconds.observe((performance.now() - started) / 1000);
      for (const m of result.messages) this.metrics.hot.operation(m.action);
      leaseWrites = this.#recordLeases(channel, inputs, result.results, identity, claim);
    } finally {
      turn?.leave();
      // the leases are counted where they were recorded now (or were never taken)
      if (claim && !(claim instanceof Promise) && claim.taking > 0) this.#unreserve(claim);
    }
    // acknowledged once its leases are recorded, and its ended ones removed, where every node sees
    // them (see Leases.hold, Leases.release)
    if (leaseWrites) await Promise.all(leaseWrites);
    return result.results;
  }

  /**
   * Takes, renews and releases the leases of a stored publish; returns the writes to wait for
   * before its acknowledgement (a lease recorded elsewhere: Redis).
   */
  #recordLeases(
    channel: string,
    inputs: OperationInput[],
    results: PublishResult[],
    identity: PublishIdentity,
    claim: LeaseClaim | undefined,
  ): Promise<void>[] | undefined {
    let owner = claim?.owner;
    let writes: Promise<void>[] | undefined;
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!;
      const outcome = results[i];
      if (!outcome) continue;
      const serial = input.serial ?? outcome.serial;
      if ((input.action === 'delete' || input.lease === 0) && outcome.duplicate) {
        // A resent end (same publisher, same id) still releases: the first attempt may have been
        // stored just before a crash that lost its release. But only the end that id stored: an id
        // names an op of its publisher whatever the frame now says, so a duplicate naming another
        // message would let anyone end any run with one of their own ids.
        writes ??= [];
        writes.push(this.#endResent(channel, serial, outcome.serial));
      } else if (input.action === 'delete' || input.lease === 0) {
        const released = this.leases.release(channel, serial);
        if (released) {
          writes ??= [];
          writes.push(released);
        }
        // a lease taken on the message under its serial of another epoch (before a new Redis, a
        // power loss) ends too: else it runs out later and marks the ended run abandoned
        if (input.serial !== undefined) {
          writes ??= [];
          writes.push(this.#releaseAliases(channel, serial));
        }
      } else if (outcome.duplicate) {
        // A resent op that takes a lease (its answer was lost): the first attempt may have been
        // stored by a node killed before it recorded the lease. Taken again if the message is
        // unchanged since that op (so no end came after it) and no lease is known here.
        if (input.lease !== undefined && input.lease > 0 && !this.leases.has(channel, serial)) {
          writes ??= [];
          writes.push(this.#leaseResent(channel, serial, outcome.serial, input.lease, identity, owner!));
        }
      } else if (input.lease !== undefined) {
        // an input with a lease made #leaseClaim compute the owner
        const recorded = this.leases.hold(
          channel,
          serial,
          identity.connectionId,
          input.lease,
          identity.clientId,
          owner!,
          claim?.reservation,
        );
        if (recorded) {
          writes ??= [];
          writes.push(recorded);
        }
      } else if (input.serial !== undefined) {
        // a lease taken without a clientId follows only its own holder (`holderKey`: one anonymous
        // token); one taken with a clientId, that clientId (no key computed on a run's every write)
        if (identity.clientId === undefined) owner ??= holderKey(identity);
        this.leases.touch(channel, serial, identity.connectionId, identity.clientId, owner);
      }
    }
    return writes;
  }

  /** The lease of a resent op (see `publish`), if its message's version is still that op. */
  async #leaseResent(
    channel: string,
    serial: string,
    op: string,
    ms: number,
    identity: PublishIdentity,
    owner: string,
  ): Promise<void> {
    const message = await this.#messageAt(channel, serial);
    if (message?.version !== op || message.action === 'delete') return;
    await this.leases.hold(channel, serial, identity.connectionId, ms, identity.clientId, owner);
  }

  /**
   * The release of a resent end (see `#recordLeases`): only if the op its id stored (`op`) is what
   * the message `serial` is now, that end itself (an end is its run's last write).
   */
  async #endResent(channel: string, serial: string, op: string): Promise<void> {
    const message = await this.#messageAt(channel, serial);
    if (message?.version !== op) return;
    await Promise.all([this.leases.release(channel, serial), this.#releaseAliases(channel, serial)]);
  }

  /**
   * The runs this publish ends, to be marked first (see Leases.ending): one write each. With each,
   * the clientId its message must have been created by when the publisher may end only its own.
   */
  #endingSerials(
    channel: string,
    inputs: OperationInput[],
    ops: NewOperation[],
  ): Array<[serial: string, owner: string | undefined]> | undefined {
    let serials: Array<[string, string | undefined]> | undefined;
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!;
      if (input.serial === undefined) continue;
      // `lease: 0` says the message is leased, wherever the lease was taken (this node may not know
      // it yet: a takeover still on its way); a delete ends a run only if this node knows its lease
      if (input.lease !== 0 && (input.action !== 'delete' || !this.leases.has(channel, input.serial)))
        continue;
      serials ??= [];
      serials.push([input.serial, ops[i]!.requireOwner]);
    }
    return serials; // undefined (nothing to wait for) on nearly every publish
  }

  /**
   * Marks the run `serial` ending — unless its end will be refused `not_owner`: a mark holds the
   * run's expiry back (Leases.ending), so one written for an end the store refuses would let a
   * holder of `*-own`, sending such ends again and again, keep anyone's dead run from ever being
   * marked abandoned. One read, for the ends of a holder that may end only its own messages; a
   * message not found under that serial (one of another epoch the store still takes) is marked.
   */
  async #markEnding(channel: string, serial: string, owner: string | undefined): Promise<void> {
    if (owner !== undefined) {
      const message = await this.#messageAt(channel, serial);
      if (message !== undefined && message.clientId !== owner) return;
    }
    await this.leases.ending!(channel, serial);
  }

  /**
   * The holder new leases count against (`holderKey`: key + clientId, or one token without a
   * clientId, so one anonymous visitor cannot use up the leases of every other), after checking
   * that it may take them: each lease is a timer and a row, so one holder holds at most
   * `maxLeasesPerClient` (`too_many_leases`). The leases a publish takes are reserved at once, until
   * they are recorded (`#unreserve`): publishes of one holder in flight together (pipelined on a
   * connection, or on several Redis nodes) are counted together. A promise where leases are counted
   * across nodes (Redis).
   */
  #leaseClaim(
    channel: string,
    inputs: OperationInput[],
    identity: PublishIdentity,
  ): LeaseClaim | undefined | Promise<LeaseClaim> {
    let leased = false;
    let taking = 0;
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!;
      if (input.lease === undefined) continue;
      leased = true;
      if (
        input.lease > 0 &&
        input.action !== 'delete' &&
        (input.serial === undefined || !this.leases.has(channel, input.serial))
      )
        taking++;
    }
    if (!leased) return undefined; // no lease to take or hold: most publishes (a run's tokens)
    const claim: LeaseClaim = { owner: holderKey(identity), taking };
    if (taking === 0) return claim;
    const max = this.limits.maxLeasesPerClient;
    const refuse = (held: number): ServerError =>
      new ServerError(
        'too_many_leases',
        `${identity.clientId !== undefined ? `clientId ${identity.clientId}` : identity.viaToken && identity.holder !== undefined ? 'this token (without a clientId)' : 'this identity'} already holds ${held} message leases (limit ${max}); end some runs (lease: 0) first`,
      );
    // checked and reserved in one step (on Redis, in Redis): publishes in flight together count
    // together, and the first to arrive get the leases
    const settle = (reserved: Reservation): LeaseClaim => {
      if ('held' in reserved) throw refuse(reserved.held);
      claim.reservation = reserved.id;
      return claim;
    };
    const reserved = this.leases.reserve(claim.owner, taking, max);
    return reserved instanceof Promise ? reserved.then(settle) : settle(reserved);
  }

  #unreserve(claim: LeaseClaim): void {
    if (claim.reservation !== undefined) this.leases.unreserve(claim.reservation);
  }

  /**
   * A lease ran out: the final update that marks the message abandoned, other headers kept. Written
   * on condition of the version read (`ifVersion`): a run that ends (or writes at all) between the
   * read and the write changes the version, and the expiry then stores nothing and resolves false —
   * the lease's owner decides again (released: nothing to do; else retried). True: the message is
   * abandoned now, or there is nothing to abandon (gone, deleted, already marked).
   */
  async expireLease(channel: string, serial: string, due?: () => Promise<boolean>): Promise<boolean> {
    const { leaseExpiries } = this.metrics;
    let message = await this.#messageAt(channel, serial);
    if (!message) {
      // A lease taken before the log went on in a new epoch (a new Redis) names its message by its
      // old serial: the same sequence in the new epoch, when the message was kept.
      const current = await this.#currentSerial(channel, serial);
      if (current !== undefined) {
        serial = current;
        message = await this.#messageAt(channel, serial);
      }
    }
    // Deleted, or already marked (an expiry stored before a crash, re-armed on restart): nothing to apply.
    if (!message || message.action === 'delete' || message.headers?.status === 'abandoned') {
      leaseExpiries.inc({ outcome: 'gone' });
      return true;
    }
    if (due && !(await due())) {
      leaseExpiries.inc({ outcome: 'changed' }); // its run is being ended: the lease's owner decides later
      return false;
    }
    const headers = { ...message.headers, status: 'abandoned' };
    let result: Awaited<ReturnType<Store['append']>>;
    try {
      result = await this.store.append(
        channel,
        [
          {
            action: 'update',
            serial,
            // The id names the version that expired: a message resumed after an expiry (a new lease)
            // can expire again, while two sweepers expiring the same version still store it once.
            id: `lease-expired:${serial}:${message.version}`,
            publisher: SERVER_SCOPE,
            headers,
            ifVersion: parseSerial(message.version)!.seq,
          },
        ],
        this.#appendOptions,
      );
    } catch (err) {
      if (err instanceof StoreError && err.code === 'version_changed') {
        leaseExpiries.inc({ outcome: 'changed' });
        return false;
      }
      // deleted (or removed by retention) since the read: its run is over, nothing to mark
      if (err instanceof StoreError && (err.code === 'message_deleted' || err.code === 'message_not_found')) {
        leaseExpiries.inc({ outcome: 'gone' });
        return true;
      }
      throw err;
    }
    this.hub.publish(channel, result.messages);
    if (!result.results[0]?.duplicate) {
      leaseExpiries.inc({ outcome: 'abandoned' });
      this.onLeaseExpired({ channel, serial, version: message.version });
    }
    return true;
  }

  /**
   * Releases the leases on the message `serial` names under its serials of the other epochs the log
   * remembers (ChannelInfo.previous, older: the same sequence names the same message in each, as far
   * as it was kept). Nothing to do, after one info read, on a channel that never went on in a new epoch.
   */
  async #releaseAliases(channel: string, serial: string): Promise<void> {
    const parsed = parseSerial(serial);
    if (!parsed) return;
    const info = await this.store.info(channel);
    if (!info?.previous) return;
    const names = (epoch: string): boolean =>
      epoch === info.epoch || (keptThrough(info, epoch) ?? -1) >= parsed.seq;
    if (!names(parsed.epoch)) return;
    const epochs = [info.epoch, info.previous.epoch, ...(info.older ?? []).map((e) => e.epoch)];
    const released: Promise<void>[] = [];
    for (const epoch of epochs) {
      if (epoch === parsed.epoch || !names(epoch)) continue;
      const done = this.leases.release(channel, formatSerial(epoch, parsed.seq));
      if (done) released.push(done);
    }
    await Promise.all(released);
  }

  /** `serial` of an epoch before the channel's current one, in the current one; undefined if none. */
  async #currentSerial(channel: string, serial: string): Promise<string | undefined> {
    const parsed = parseSerial(serial);
    const info = await this.store.info(channel);
    if (!parsed || !info) return undefined;
    const through = keptThrough(info, parsed.epoch);
    if (through === undefined || parsed.seq > through) return undefined;
    return formatSerial(info.epoch, parsed.seq);
  }

  /** The message `serial` as it is now (rolled up), or undefined when the channel has none. */
  async #messageAt(channel: string, serial: string): Promise<Message | undefined> {
    const page = await this.store.history(channel, {
      direction: 'forwards',
      from: serial,
      until: serial,
      limit: 1,
    });
    const message = page.messages[0];
    return message?.serial === serial ? message : undefined;
  }

  /**
   * How far back (ms) a holder without `history` may read through a resume or `start` (PROTOCOL
   * §6.2): as long as a dropped connection keeps its state (`connectionStateTtl`; the server sets it).
   */
  readBackWithoutHistory: number = DEFAULT_TIMINGS.connectionStateTtl;

  /**
   * Whether reading on from `after` (a position in the log's epoch; undefined: its start) would
   * hand over a message created more than `readBackWithoutHistory` ago: one a holder without
   * `history` cannot have missed through a dropped connection, only asked for with a position it
   * made up. Messages are created in serial order, so the first one after the position is the
   * oldest of them: one read.
   */
  async readsTooFarBack(channel: string, after: string | undefined): Promise<boolean> {
    const query: HistoryQuery = { direction: 'forwards', limit: 1 };
    if (after !== undefined) {
      const parsed = parseSerial(after);
      if (!parsed) return false;
      query.from = formatSerial(parsed.epoch, parsed.seq + 1);
    }
    const first = (await this.store.history(channel, query)).messages[0];
    return first !== undefined && first.timestamp < Date.now() - this.readBackWithoutHistory;
  }

  /** Whether a client holding `position` can resume: same epoch, nothing after it trimmed, not ahead. */
  async checkResume(channel: string, position: string): Promise<ResumeCheck> {
    const info = await this.store.info(channel);
    const parsed = parseSerial(position);
    if (!parsed) throw new ServerError('invalid_serial', `not a serial: ${JSON.stringify(position)}`);
    if (!info) return { resumed: false, reason: 'epoch_changed', epoch: '', head: '' };
    if (parsed.epoch !== info.epoch) {
      const check: ResumeCheck = {
        resumed: false,
        reason: 'epoch_changed',
        epoch: info.epoch,
        head: info.head,
      };
      // The log went on in a new epoch (a new Redis, a power loss) from the one the position is in:
      // up to the sequence that epoch reached, the client's messages are still there (`kept`).
      const through = keptThrough(info, parsed.epoch);
      if (through !== undefined) {
        const seq = Math.min(parsed.seq, through);
        if (seq >= info.trimmedThrough) check.kept = formatSerial(info.epoch, seq);
      }
      return check;
    }
    const headSeq = parseSerial(info.head)?.seq ?? 0;
    if (parsed.seq > headSeq)
      return { resumed: false, reason: 'position_ahead', epoch: info.epoch, head: info.head };
    if (parsed.seq < info.trimmedThrough)
      return { resumed: false, reason: 'position_trimmed', epoch: info.epoch, head: info.head };
    return { resumed: true, epoch: info.epoch, head: info.head };
  }

  /**
   * Attaches `channel` for one connection: subscribes to live deliveries now; the caller then runs
   * the catch-up and the hand-over to live (see channel-attachment.ts). Every transport attaches here.
   * `leaveOut`: the attaching connection's id when it asked for `echo: false`.
   */
  attach(channel: string, outlet: AttachOutlet, leaveOut?: string): ChannelAttachment {
    return new ChannelAttachment(this, channel, outlet, leaveOut);
  }

  info(channel: string): Promise<ChannelInfo | undefined> {
    return this.store.info(channel);
  }

  /**
   * A catch-up page: waits for a read slot (never refused: the attach is already under way).
   * `reader`: who reads (a holder key, `holderKey`), whose reads yield to others' past half of the
   * slots.
   */
  readSince(
    channel: string,
    after: string | undefined,
    limit: number,
    maxBytes?: number,
    reader?: string,
  ): Promise<RolledUpPage> {
    return this.catchUpReads.run(
      () => this.#timedRead(this.store.readSince(channel, after, limit, maxBytes)),
      'always',
      reader,
    );
  }

  async #timedRead<T>(read: Promise<T>): Promise<T> {
    const started = performance.now();
    const result = await read;
    this.metrics.hot.storeReadSeconds.observe((performance.now() - started) / 1000);
    return result;
  }

  history(channel: string, query: HistoryQuery): Promise<RolledUpPage> {
    assertChannelName(channel);
    return this.#timedRead(this.store.history(channel, query));
  }

  /**
   * The last `n` messages rolled up — fewer when they hold more than `maxBytes` of data (always at
   * least one) — returned in version order, and the head at the time of the read.
   */
  async rewind(channel: string, n: number, maxBytes?: number, reader?: string): Promise<RolledUpPage> {
    const query: HistoryQuery = { direction: 'backwards', limit: n };
    if (maxBytes !== undefined) query.maxBytes = maxBytes;
    const page = await this.catchUpReads.run(
      () => this.#timedRead(this.store.history(channel, query)),
      'always',
      reader,
    );
    const messages = [...page.messages].sort(byVersion);
    return { ...page, messages };
  }

  /**
   * Checks the capability for one operation (ARCHITECTURE.md §7). Returns the clientId the target message must
   * have been created by when only the `*-own` operation is allowed (undefined: any message).
   */
  #authorize(channel: string, action: Action, identity: PublishIdentity): string | undefined {
    const { access } = identity;
    if (action === 'create') {
      requireAccess(access, channel, 'publish');
      return undefined;
    }
    const any: Operation = action === 'delete' ? 'delete-any' : 'update-any';
    if (access.allows(channel, any)) return undefined;
    const own: Operation =
      action === 'append' ? 'append-own' : action === 'update' ? 'update-own' : 'delete-own';
    requireAccess(access, channel, own);
    // An anonymous identity owns nothing (not even messages created anonymously): refused here,
    // rather than matched against a stand-in value some creator could have.
    if (identity.clientId === undefined)
      throw new ServerError(
        'not_owner',
        `an identity without a clientId owns no messages: ${action} needs ${action === 'delete' ? 'delete-any' : 'update-any'}`,
      );
    return identity.clientId;
  }

  #toNewOperation(
    channel: string,
    input: OperationInput,
    index: number,
    identity: PublishIdentity,
    scope: string,
  ): NewOperation {
    const size = operationSize(input);
    if (size > this.limits.maxOperationSize)
      throw new ServerError(
        'operation_too_large',
        `op ${index}: ${size} bytes; one operation may be at most ${this.limits.maxOperationSize} bytes (name + data + headers as JSON). Split large content into appends`,
      );
    const op: NewOperation = {
      action: input.action ?? 'create',
      id: input.id ?? `${idPrefix}:${++idCounter}`,
      publisher: scope,
    };
    const owner = this.#authorize(channel, op.action, identity);
    if (owner !== undefined) op.requireOwner = owner;
    if (input.serial !== undefined) op.serial = input.serial;
    if (input.name !== undefined) op.name = input.name;
    if (input.data !== undefined) op.data = input.data;
    if (input.encoding !== undefined) op.encoding = input.encoding;
    if (input.headers !== undefined) op.headers = input.headers;
    if (identity.clientId !== undefined) op.clientId = identity.clientId;
    return op;
  }
}

/**
 * Whether an identity may take a lease on `channel` at all: one of the operations that carry
 * `lease > 0` passes `#authorize` there — a create (`publish`), or an append or update (`update-any`,
 * or with a clientId `append-own` / `update-own`: an identity without one owns nothing). A connection
 * renewed or recovered with a token that may not lets its leases on the channel go
 * (`Leases.holderLetGo`): a holder whose rights to write there were taken away no longer keeps its
 * runs "streaming" for as long as its connection lives.
 */
export function mayTakeLeases(access: Access, channel: string, clientId: string | undefined): boolean {
  if (access.allows(channel, 'publish') || access.allows(channel, 'update-any')) return true;
  return (
    clientId !== undefined && (access.allows(channel, 'append-own') || access.allows(channel, 'update-own'))
  );
}

export function byVersion(a: Message, b: Message): number {
  return a.version < b.version ? -1 : a.version > b.version ? 1 : 0;
}
