/**
 * The bridge from sessions to workflows: a Mooring subscriber that follows session channels and turns
 * what users do there into Temporal calls on the session's workflow.
 *
 *   session channel                      bridge                       workflow (useMooringSession)
 *   ai.input            ───────────────▶ executeUpdate(mooring.input,  { updateId: controlId })
 *   ai.control cancel   ───────────────▶ executeUpdate(mooring.cancel) → cancels the run's scope
 *                                        (or handle.cancel(): `cancel: 'workflow'`)
 *   ai.control steer / tool-approval / tool-output / handover / regenerate
 *                                    ──▶ mooring.steer / .approval / .toolOutput / …
 *   (select is a view choice: not forwarded)
 *
 * Guarantees:
 * - Per session, controls are delivered one at a time in the session's order; the position (the
 *   message's version) is saved after each live delivery, so a restarted bridge resumes after the last
 *   one it delivered and delivers everything that arrived while it was away. A catch-up (and a
 *   read-back in `rolledUp` frames) comes in last-change order, so its position is saved only once it
 *   was read whole (at `attached`, or with the next live operation): saved in the middle, a restart
 *   from there would take a control created before that point and changed after it, never delivered,
 *   for one read before. A bridge stopped in the middle of one delivers its controls again on its
 *   restart (each applies once, below). A control counts once, by
 *   its creation: one sent while the bridge was away and changed since (it comes back rolled up, as
 *   an `update`, in the order of its last change) is delivered; a later change to a control already
 *   delivered is not a new control, also under its serial of a new epoch (a Redis restart: `kept`),
 *   nor is one to a control sent before a `startAt: 'now'` follow.
 *   Live, a `rolledUp` frame (a node of a several-node server read back what its bus lost) comes in
 *   that order too, and is read the same way (`isRolledUp` tells its messages apart).
 * - Each control takes effect once: its id (`<publisher clientId>/<operation id>`) is the update id,
 *   which Temporal keeps one update per, and is in the payload for the workflow's own check (needed
 *   for signals, which carry no idempotency key). A crash between delivering and saving re-delivers
 *   that one control, which both checks absorb.
 * - A transient failure (Temporal unreachable) is retried with backoff, holding later controls back;
 *   a permanent one (no such workflow, an update the workflow rejected) is reported (`error`) and
 *   skipped, so one bad control cannot stall the session.
 */
import type { Channel, ContinuityLost, Mooring } from '@mooring/client';
import { Emitter, isRolledUp } from '@mooring/client';
import type { Message } from '@mooring/protocol';
import { compareSerials, sameEpoch } from '@mooring/protocol';
import type { ControlRecord, InputRecord } from '@mooring/protocol/ai';
import { EVENT_CONTROL, EVENT_INPUT, handoverAllowed, readSessionMessage } from '@mooring/protocol/ai';
import type { SignalDefinition, UpdateDefinition } from '@temporalio/client';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { PositionStore } from './position-store.ts';
import { memoryPositions } from './position-store.ts';
import type { ControlKind, ControlPayload } from './workflow/definitions.ts';
import {
  approvalSignal,
  approvalUpdate,
  cancelSignal,
  cancelUpdate,
  handoverSignal,
  handoverUpdate,
  inputSignal,
  inputUpdate,
  regenerateSignal,
  regenerateUpdate,
  steerSignal,
  steerUpdate,
  toolOutputSignal,
  toolOutputUpdate,
} from './workflow/definitions.ts';

/** The part of a Temporal `WorkflowHandle` the bridge uses (`client.workflow.getHandle(id)` fits). */
export interface BridgeWorkflowHandle {
  signal<Args extends unknown[]>(def: SignalDefinition<Args>, ...args: Args): Promise<void>;
  executeUpdate<Ret, Args extends [unknown, ...unknown[]]>(
    def: UpdateDefinition<Ret, Args>,
    options: { args: Args; updateId?: string },
  ): Promise<Ret>;
  cancel(): Promise<unknown>;
}

/** The part of Temporal's `WorkflowClient` the bridge uses: pass `client.workflow`. */
export interface BridgeWorkflowClient {
  getHandle(workflowId: string): BridgeWorkflowHandle;
}

export interface ControlBridgeOptions {
  /** The bridge's own Mooring client (realtime; it subscribes to the sessions). */
  mooring: Mooring;
  /** `client.workflow` of a Temporal `Client`. */
  workflows: BridgeWorkflowClient;
  /** The workflow serving a session. Default: the channel name itself. */
  workflowId?: (channel: string) => string;
  /** Where positions are kept. Default: in memory (not restart-safe). */
  positions?: PositionStore;
  /** Updates (default: an update id per control) or signals (the workflow dedupes by `controlId`). */
  delivery?: 'update' | 'signal';
  /**
   * `cancel` controls: `run` (default) delivers them like the others — the workflow cancels the named
   * run's scope and serves on; `workflow` cancels the whole workflow (one workflow per run).
   */
  cancel?: 'run' | 'workflow';
  /** A session with no saved position: from its first message (default) or from now. */
  startAt?: 'start' | 'now';
  /** Which kinds to forward. Default: all. */
  kinds?: readonly ControlKind[];
  /**
   * The clientIds allowed to hand a session over (PROTOCOL.md §13.5): a `handover` by anyone else is
   * not forwarded, as the session's readers given the same list ignore it. Default: every clientId.
   */
  operators?: readonly string[];
  /** Backoff for transient failures, ms. Default 200 → 10 000, doubling. */
  retry?: { initial?: number; max?: number };
}

export interface DeliveredControl {
  channel: string;
  workflowId: string;
  kind: ControlKind;
  controlId: string;
  serial: string;
}

export type ControlBridgeEvents = {
  delivered: DeliveredControl;
  /** A permanent failure (the control was skipped) or a transient one (it is retried). */
  error: { channel: string; controlId: string | undefined; error: unknown; retrying: boolean };
};

const UPDATES = {
  input: inputUpdate,
  cancel: cancelUpdate,
  steer: steerUpdate,
  approval: approvalUpdate,
  'tool-output': toolOutputUpdate,
  handover: handoverUpdate,
  regenerate: regenerateUpdate,
} as const;
const SIGNALS = {
  input: inputSignal,
  cancel: cancelSignal,
  steer: steerSignal,
  approval: approvalSignal,
  'tool-output': toolOutputSignal,
  handover: handoverSignal,
  regenerate: regenerateSignal,
} as const;

interface Followed {
  channel: Channel;
  /**
   * Messages in arrival order, each with whether it is one the bridge had not read (`#isNew`) and the
   * position to save once it is handled (none for a catch-up's: see the guarantees above); a marker
   * without a message saves the position a catch-up ended at.
   */
  queue: { message: Message | undefined; fresh: boolean; position: string | undefined }[];
  draining: Promise<void> | undefined;
  listener: (message: Message) => void;
  offs: Array<() => void>;
  /**
   * The newest message (by serial, its creation) the bridge has read, from the saved position on.
   * Live, a message at or before it was read already: a later operation on it is not a new control.
   */
  after: string | undefined;
  /**
   * The catch-up being read (until `attached`; across a reconnect that interrupts it), or the
   * rolled-up frames that arrived live since the last live operation (and a catch-up after them).
   */
  catchUp: CatchUp | undefined;
}

/**
 * A catch-up comes in the order of each message's last change, not of its creation: a message
 * created before another one read, and changed after it, comes after it, still unread. So do the
 * rolled-up frames a node sends live when it read back what its bus lost (PROTOCOL.md §4.3), which
 * are read as a catch-up too.
 */
interface CatchUp {
  /** `after` when the catch-up began: every message created up to it had been read. */
  base: string | undefined;
  /** The messages after `base` read in this catch-up. */
  read: Set<string>;
  /**
   * Messages of another epoch than `base` (the log went on in a new one: a Redis restart), held
   * until `continuityLost` tells up to where (`kept`) the new epoch's serials are the messages read
   * before.
   */
  held: Message[] | undefined;
}

export class ControlBridge extends Emitter<ControlBridgeEvents> {
  readonly #o: ControlBridgeOptions;
  readonly #positions: PositionStore;
  readonly #followed = new Map<string, Followed>();
  /** Follows still loading their saved position: a second `follow` of the same session waits for it. */
  readonly #starting = new Map<string, Promise<void>>();
  #closed = false;

  constructor(options: ControlBridgeOptions) {
    super();
    this.#o = options;
    this.#positions = options.positions ?? memoryPositions();
  }

  /**
   * Follows a session: resolves once attached (from its saved position, or per `startAt`). Following
   * one already followed, or being followed, is the same follow: each control is delivered once.
   */
  follow(channelName: string): Promise<void> {
    if (this.#closed || this.#followed.has(channelName)) return Promise.resolve();
    const starting = this.#starting.get(channelName);
    if (starting) return starting;
    const start = this.#follow(channelName).finally(() => this.#starting.delete(channelName));
    this.#starting.set(channelName, start);
    return start;
  }

  async #follow(channelName: string): Promise<void> {
    const saved = await this.#positions.load(channelName);
    const channel = this.#o.mooring.channels.get(
      channelName,
      saved ? { from: saved } : this.#o.startAt === 'now' ? {} : { start: true },
    );
    const followed: Followed = {
      channel,
      queue: [],
      draining: undefined,
      after: saved,
      catchUp: undefined,
      offs: [],
      listener: (message) => this.#read(channelName, followed, message),
    };
    followed.offs = [
      channel.on('continuityLost', (lost) => this.#onContinuityLost(channelName, followed, lost)),
      channel.on('attached', () => {
        // nothing read yet (`startAt: 'now'`, or an empty catch-up): the messages up to the position
        // were sent before the bridge followed, and a later change to one is no new control either
        if (followed.after === undefined && channel.position !== '') followed.after = channel.position;
        const catchUp = followed.catchUp;
        followed.catchUp = undefined;
        if (catchUp?.held) for (const m of catchUp.held) this.#enqueue(channelName, followed, m, catchUp);
        // the catch-up read whole: every message created up to here has been read
        const position = channel.position;
        if (position !== '')
          this.#push(channelName, followed, { message: undefined, fresh: false, position });
      }),
    ];
    this.#followed.set(channelName, followed);
    await channel.subscribe(followed.listener);
  }

  /**
   * A message as the channel delivers it: judged new or not now, in arrival order, then queued. A
   * rolled-up one that arrives live (a `rolledUp` frame: a node read back what its bus lost) comes in
   * last-change order like a catch-up, and is judged like one: the catch-up goes on over such frames
   * until a live operation, which follows its position, shows every message created before it read.
   */
  #read(channelName: string, followed: Followed, message: Message): void {
    if (followed.channel.state === 'attached' && !isRolledUp(message)) {
      followed.catchUp = undefined;
      this.#enqueue(channelName, followed, message, undefined);
      return;
    }
    followed.catchUp ??= { base: followed.after, read: new Set(), held: undefined };
    const catchUp = followed.catchUp;
    if (catchUp.held || (catchUp.base !== undefined && !sameEpoch(message.version, catchUp.base))) {
      catchUp.held ??= [];
      catchUp.held.push(message);
      return;
    }
    this.#enqueue(channelName, followed, message, catchUp);
  }

  /**
   * The log went on in a new epoch: the messages up to `kept` are those read before (renamed), so
   * they are no new controls; what the catch-up held back is judged from there.
   */
  #onContinuityLost(channelName: string, followed: Followed, lost: ContinuityLost): void {
    const kept = lost.kept;
    if (kept === undefined) return;
    if (followed.after === undefined || compareSerials(followed.after, kept) < 0) followed.after = kept;
    const catchUp = followed.catchUp;
    if (!catchUp) return;
    catchUp.base = kept;
    const held = catchUp.held ?? [];
    catchUp.held = undefined;
    for (const message of held) this.#enqueue(channelName, followed, message, catchUp);
  }

  #enqueue(channelName: string, followed: Followed, message: Message, catchUp: CatchUp | undefined): void {
    const fresh = this.#isNew(followed, message, catchUp);
    this.#push(channelName, followed, {
      message,
      fresh,
      position: catchUp ? undefined : (message.version ?? message.serial),
    });
  }

  #push(channelName: string, followed: Followed, item: Followed['queue'][number]): void {
    followed.queue.push(item);
    this.#kick(channelName, followed);
  }

  /**
   * Drains the queue unless a drain is under way. `draining` is cleared in a reaction, never by the
   * drain itself: a drain with nothing to await (no control, nothing to save) ends before its promise
   * is stored, and would leave a finished one there — every later message queued behind it for good.
   */
  #kick(channelName: string, followed: Followed): void {
    if (followed.draining !== undefined || followed.queue.length === 0 || this.#closed) return;
    followed.draining = this.#drain(channelName, followed).then(() => {
      followed.draining = undefined;
      this.#kick(channelName, followed);
    });
  }

  /** Stops following a session (its position stays saved). */
  async unfollow(channelName: string): Promise<void> {
    const followed = this.#followed.get(channelName);
    if (!followed) return;
    this.#followed.delete(channelName);
    followed.channel.unsubscribe(followed.listener);
    for (const off of followed.offs.splice(0)) off();
    await followed.draining;
    this.#o.mooring.channels.release(channelName);
  }

  /** Resolves once every message received so far is handled (delivered or skipped). */
  async idle(): Promise<void> {
    for (;;) {
      const pending = [...this.#followed.values()].map((f) => f.draining).filter((d) => d !== undefined);
      if (pending.length === 0) return;
      await Promise.all(pending);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#followed.keys()].map((name) => this.unfollow(name)));
  }

  async #drain(channelName: string, followed: Followed): Promise<void> {
    let unsaved: string | undefined;
    while (followed.queue.length > 0 && !this.#closed) {
      const { message, fresh, position } = followed.queue.shift() as Followed['queue'][number];
      const payload = fresh && message ? this.#payloadOf(channelName, message) : undefined;
      if (!payload) {
        if (position !== undefined) unsaved = position;
        continue;
      }
      await this.#deliver(channelName, payload);
      if (position === undefined) continue; // a catch-up's: saved once it is read whole
      await this.#positions.save(channelName, position);
      unsaved = undefined;
    }
    // Messages that were not controls: save past them too, so a restart does not read them again.
    if (unsaved !== undefined) await this.#positions.save(channelName, unsaved);
  }

  /**
   * True for a message the bridge has not read before. Live, that is a `create` (later operations
   * carry their message's older serial). In a catch-up, a message created after where the catch-up
   * began and not read in it yet, whatever its action and wherever it comes: one created and then
   * updated or appended to while the bridge was away arrives rolled up as an `update` or `append`,
   * after the messages created after it but changed before it, and is still a control never
   * delivered. After a new epoch, its messages up to `kept` are the ones read before (renamed).
   */
  #isNew(followed: Followed, message: Message, catchUp: CatchUp | undefined): boolean {
    const { serial } = message;
    if (catchUp) {
      if (catchUp.base !== undefined && compareSerials(serial, catchUp.base) <= 0) return false;
      if (catchUp.read.has(serial)) return false;
      catchUp.read.add(serial);
    } else if (followed.after !== undefined && compareSerials(serial, followed.after) <= 0) return false;
    if (followed.after === undefined || compareSerials(serial, followed.after) > 0) followed.after = serial;
    return true; // a tombstone (`delete`) is new too, and `readSessionMessage` reads it as nothing
  }

  #payloadOf(channel: string, message: Message): ControlPayload | undefined {
    if (message.name !== EVENT_INPUT && message.name !== EVENT_CONTROL) return undefined;
    const read = readSessionMessage(message);
    if (!read) return undefined;
    if (!read.ok) {
      this.emit('error', {
        channel,
        controlId: undefined,
        error: new TypeError(read.reason),
        retrying: false,
      });
      return undefined;
    }
    const base = {
      controlId: `${message.clientId ?? ''}/${message.id ?? message.serial}`,
      channel,
      serial: message.serial,
    };
    const payload =
      read.record.type === 'input'
        ? inputPayload(base, read.record)
        : read.record.type === 'control'
          ? controlPayload(base, read.record)
          : undefined;
    if (!payload || (this.#o.kinds && !this.#o.kinds.includes(payload.kind))) return undefined;
    if (payload.kind === 'handover' && !handoverAllowed(this.#o.operators, message.clientId))
      return undefined;
    return payload;
  }

  async #deliver(channel: string, payload: ControlPayload): Promise<void> {
    const workflowId = (this.#o.workflowId ?? ((c: string) => c))(channel);
    const { kind, ...body } = payload;
    let delay = this.#o.retry?.initial ?? 200;
    for (;;) {
      try {
        const handle = this.#o.workflows.getHandle(workflowId);
        if (kind === 'cancel' && this.#o.cancel === 'workflow') await handle.cancel();
        else if (this.#o.delivery === 'signal')
          await handle.signal(SIGNALS[kind] as SignalDefinition<[typeof body]>, body);
        else
          await handle.executeUpdate(UPDATES[kind] as UpdateDefinition<void, [typeof body]>, {
            args: [body],
            updateId: payload.controlId,
          });
        this.emit('delivered', {
          channel,
          workflowId,
          kind,
          controlId: payload.controlId,
          serial: payload.serial,
        });
        return;
      } catch (error) {
        const permanent =
          error instanceof WorkflowNotFoundError || error instanceof WorkflowUpdateFailedError;
        this.emit('error', { channel, controlId: payload.controlId, error, retrying: !permanent });
        if (permanent || this.#closed) return;
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, this.#o.retry?.max ?? 10_000);
      }
    }
  }
}

type Base = { controlId: string; channel: string; serial: string };

function inputPayload(base: Base, record: InputRecord): ControlPayload {
  const payload: ControlPayload = {
    kind: 'input',
    ...base,
    inputId: record.id,
    message: record.message as never,
  };
  if (record.parent !== undefined) payload.parent = record.parent;
  if (record.forkOf !== undefined) payload.forkOf = record.forkOf;
  if (record.clientId !== undefined) payload.clientId = record.clientId;
  return payload;
}

function controlPayload(base: Base, record: ControlRecord): ControlPayload | undefined {
  const c = record.control;
  switch (c.type) {
    case 'cancel':
      return c.runId === undefined
        ? { kind: 'cancel', ...base }
        : { kind: 'cancel', ...base, runId: c.runId };
    case 'steer':
      return { kind: 'steer', ...base, runId: c.runId, message: c.message as never };
    case 'tool-approval': {
      const payload: ControlPayload = {
        kind: 'approval',
        ...base,
        approvalId: c.approvalId,
        approved: c.approved,
      };
      if (c.runId !== undefined) payload.runId = c.runId;
      if (c.reason !== undefined) payload.reason = c.reason;
      return payload;
    }
    case 'tool-output': {
      const payload: ControlPayload = {
        kind: 'tool-output',
        ...base,
        runId: c.runId,
        toolCallId: c.toolCallId,
      };
      if (c.output !== undefined) payload.output = c.output;
      if (c.errorText !== undefined) payload.errorText = c.errorText;
      return payload;
    }
    case 'handover':
      return c.operator === undefined
        ? { kind: 'handover', ...base, to: c.to }
        : { kind: 'handover', ...base, to: c.to, operator: c.operator };
    case 'regenerate':
      return c.runId === undefined
        ? { kind: 'regenerate', ...base, inputId: c.inputId }
        : { kind: 'regenerate', ...base, inputId: c.inputId, runId: c.runId };
    case 'select':
      return undefined;
  }
}
