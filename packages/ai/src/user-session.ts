/**
 * The user side of a session (ARCHITECTURE.md §11): the channel folded into a conversation tree, a view (one
 * path with branch navigation), each run's assistant `UIMessage` and status, and the actions a user
 * (or an operator) takes — send, edit, regenerate, cancel, steer, approve a tool, hand over, select a
 * branch, reply as a human.
 *
 * Every device and tab runs this same fold over the same log, so joining mid-run, reloading (the
 * channel from `start`) and reconnecting mid-run (the channel resumes from its position) all
 * converge to the same view. When the server cannot resume the channel (`continuityLost`: the log
 * was recreated or trimmed), the session reloads itself from history and carries on live.
 *
 * Run messages are rebuilt by the AI SDK's own processor (see `run-message.ts`) asynchronously, and
 * only for a session whose messages someone reads: until the first `view()`, `messages`, `run()`,
 * `siblings()` or `on('change')`, a change only marks the run's message stale (`settled` and
 * `ready()` rebuild what is stale then). A rebuild replays the run's parts — O(text) per token — which a client that only reads
 * `stream(runId)` never needs. Once read, every change rebuilds as it happens: a `change` event
 * follows each change and each rebuild, the view stays the last settled one while a rebuild runs,
 * and `ready()` waits for them.
 */
import type { Channel, ContinuityLost } from '@mooring/client';
import { Emitter } from '@mooring/client';
import type { JsonValue } from '@mooring/protocol';
import type { UIMessage, UIMessageChunk } from 'ai';
import type { Handover, InputNode, RunNode, TreeChange, TreeNode } from './conversation-tree.ts';
import { ConversationTree } from './conversation-tree.ts';
import { MooringAiError } from './errors.ts';
import { randomId } from './ids.ts';
import { channelSink } from './operation-sink.ts';
import type { RunStreamOptions, RunStreamSource } from './run-chunk-stream.ts';
import { runChunkStream } from './run-chunk-stream.ts';
import { buildRunMessage, emptyRunMessage } from './run-message.ts';
import { RunPublisher } from './run-publisher.ts';
import { listenerErrors, SessionFeed } from './session-feed.ts';
import type { ControlData, FinalRunStatus, InputData, RunStatus } from './wire.ts';
import { asJson, controlHeaders, EVENT_CONTROL, EVENT_INPUT } from './wire.ts';

export interface UserSessionOptions {
  /** The session's channel. Get it with `{ start: true }` so the whole conversation is folded. */
  channel: Channel;
  /**
   * Share branch selection across devices: `select()` publishes a `select` control and every
   * session with this option follows the selections on the channel. Default false (local only).
   */
  sharedSelection?: boolean;
  /**
   * The clientIds of the session's agents (PROTOCOL.md §13.5): runs started by anyone else are not
   * shown (and are reported as `malformed_message` errors), so a member who publishes a fake run
   * with an agent's next run id first cannot hide the agent's real run. Without it, every member may
   * start a run and the earliest claim of a run id is the run. Operator runs (`reply()`) are always
   * accepted from the operator's own clientId.
   */
  agents?: readonly string[];
  /**
   * The clientIds allowed to hand the session over (PROTOCOL.md §13.5): a handover by anyone else is
   * not shown and does not change who holds the session. Default: every clientId.
   */
  operators?: readonly string[];
  /** This client's clientId: the default handover operator, and the author of `reply()` runs. */
  clientId?: string;
  /** Lease on `reply()` runs, ms. Default 30 000. */
  lease?: number;
  /**
   * This device's id, written on the inputs it sends: client-side tools (`onToolCall`) of the runs
   * answering them run on this device only. Default: a new id per session object. Keep one per tab
   * (e.g. in `sessionStorage`) so a reloaded tab still runs the tool calls of what it sent.
   */
  device?: string;
}

/** A message to send: text, or the parts of a user UIMessage (an id is made when absent). */
export type OutgoingMessage<M extends UIMessage = UIMessage> =
  | string
  | (Omit<M, 'id' | 'role'> & { id?: string; role?: 'user' });

export interface ViewInput<M extends UIMessage = UIMessage> {
  kind: 'input';
  id: string;
  message: M;
  clientId: string | undefined;
  /** Ids of the alternatives (edits), this one included, oldest first. */
  siblings: string[];
}

export interface ViewRun<M extends UIMessage = UIMessage> {
  kind: 'run';
  id: string;
  agent: string;
  /** The input it answers. */
  input: string;
  status: RunStatus;
  reason: string | undefined;
  finishReason: string | undefined;
  /** The assistant message rebuilt from the run's parts (id = run id). */
  message: M;
  /** Ids of the alternatives (regenerations), this one included, oldest first. */
  siblings: string[];
}

export type ViewNode<M extends UIMessage = UIMessage> = ViewInput<M> | ViewRun<M>;

export type UserSessionEvents = {
  /** The view or a run's message changed (coalesced per microtask). */
  change: undefined;
  /** A run appeared (from this device or any other). */
  run: RunNode;
  /** A run ended. */
  runEnd: RunNode;
  /**
   * The session reloaded from history after continuity was lost — or, without `history`
   * (`history_required`), kept its conversation as it was, after an `error` with code `history_gap`.
   */
  reloaded: ContinuityLost;
  error: Error;
};

interface RunMessageState<M> {
  message: M | undefined;
  /** The run as it was when `message` was built: a view shows both from the same moment. */
  at: Pick<RunNode, 'status' | 'reason' | 'finishReason'> | undefined;
  building: boolean;
  dirty: boolean;
}

export class UserSession<M extends UIMessage = UIMessage> implements RunStreamSource {
  readonly channel: Channel;
  readonly tree: ConversationTree;
  readonly #o: UserSessionOptions;
  readonly #feed: SessionFeed;
  readonly #emitter: Emitter<UserSessionEvents>;
  readonly #messages = new Map<string, RunMessageState<M>>();
  readonly #idle: Array<() => void> = [];
  readonly #cancelling = new Set<string>();
  /** The last view handed out, its messages, and whether something changed since. */
  #view: ViewNode<M>[] | undefined;
  #viewMessages: M[] | undefined;
  #viewStale = true;
  /** A local change (a branch selection) shows even while the session is not settled. */
  #viewLocal = false;
  #building = 0;
  /** Whether anything read the run messages yet (see the module header). */
  #watched = false;
  #started: Promise<void> | undefined;
  #changeQueued = false;
  #closed = false;
  #offs: Array<() => void> = [];

  constructor(options: UserSessionOptions) {
    this.#o = options;
    this.channel = options.channel;
    const onListenerError = listenerErrors(this.channel);
    this.#emitter = new Emitter(onListenerError);
    this.tree = new ConversationTree({ ...options, onListenerError });
    this.#feed = new SessionFeed(this.channel, this.tree);
    this.device = options.device ?? randomId('dev_');
  }

  /** This device's id (see `UserSessionOptions.device`). */
  readonly device: string;

  on<K extends keyof UserSessionEvents>(
    event: K,
    listener: (value: UserSessionEvents[K]) => void,
  ): () => void {
    if (event === 'change') this.#watch();
    return this.#emitter.on(event, listener);
  }

  /** True while the channel is attached (not catching up) and the session is not reloading. */
  get live(): boolean {
    return this.#feed.live;
  }

  /** True when live and no run message is stale or being rebuilt (the view is up to date with the fold). */
  get settled(): boolean {
    this.#buildStale();
    return this.live && this.#building === 0;
  }

  /** Subscribes; resolves once attached with the session folded. Idempotent. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  /** Resolves once started and every run message is rebuilt. */
  async ready(): Promise<void> {
    await this.start();
    this.#buildStale();
    while (this.#building > 0 || this.#feed.reloading) {
      await new Promise<void>((r) => this.#idle.push(r));
      this.#buildStale();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#feed.close();
    for (const off of this.#offs) off();
  }

  /** Tree changes, and `{ kind: 'live' }` each time the session becomes live (see `SessionFeed`). */
  watch(fn: (change: TreeChange | { kind: 'live' }) => void): () => void {
    return this.#feed.watch(fn);
  }

  // ----------------------------------------------------------------------------------- reading

  /**
   * The path shown, with messages and sibling ids: one consistent snapshot. It is the same array
   * (and the same node objects) until something on it changed, so `useSyncExternalStore` can read it
   * directly; while the session catches up or rebuilds a message it stays the last settled one, and
   * each run's status comes from the moment its message was built (a run never shows `complete`
   * with an earlier rebuild's text).
   */
  view(): ViewNode<M>[] {
    this.#watch();
    if (this.#view && (!this.#viewStale || (!this.settled && !this.#viewLocal))) return this.#view;
    this.#viewLocal = false;
    const previous = new Map((this.#view ?? []).map((n) => [n.id, n]));
    let same = this.#view !== undefined;
    const next = this.#built(this.tree.view()).map((n, i) => {
      const fresh = this.#viewNode(n);
      const old = previous.get(n.id);
      const node = old && sameViewNode(old, fresh) ? old : fresh;
      if (node !== this.#view?.[i]) same = false;
      return node;
    });
    if (!same || next.length !== this.#view?.length) this.#view = next;
    if (this.settled) this.#viewStale = false;
    return this.#view ?? next;
  }

  /**
   * The path up to its first run whose message was never built: read for the first time, a session
   * rebuilds its run messages asynchronously, and a run shown meanwhile would read `complete` with
   * no text (a component mounted on a live session would flash an empty answer).
   */
  #built(path: TreeNode[]): TreeNode[] {
    const first = path.findIndex((n) => {
      const state = n.kind === 'run' ? this.#messages.get(n.id) : undefined;
      return state !== undefined && state.message === undefined;
    });
    return first < 0 ? path : path.slice(0, first);
  }

  /** The UIMessages on the view, in order — what a chat shows. The same array until the view changes. */
  get messages(): M[] {
    const view = this.view();
    if (this.#viewMessages === undefined || this.#messagesOf !== view) {
      this.#viewMessages = view.map((n) => n.message);
      this.#messagesOf = view;
    }
    return this.#viewMessages;
  }

  #messagesOf: ViewNode<M>[] | undefined;

  /** True between this device's cancel of a run (or `stop()`) and the run's end. */
  cancelling(runId: string): boolean {
    return this.#cancelling.has(runId) && this.tree.run(runId)?.status === 'running';
  }

  /** A run with its current message, or undefined. */
  run(runId: string): ViewRun<M> | undefined {
    const node = this.tree.run(runId);
    return node ? (this.#viewNode(node) as ViewRun<M>) : undefined;
  }

  /** The alternatives of a node (edits of an input, regenerations of a run), itself included. */
  siblings(nodeId: string): ViewNode<M>[] {
    return this.tree.siblings(nodeId).map((n) => this.#viewNode(n));
  }

  /** Who holds the session (`handover` controls). */
  get holder(): Handover {
    return this.tree.handover;
  }

  /** Runs in progress, in serial order. */
  running(): RunNode[] {
    return this.tree.running();
  }

  /** A run's UIMessageChunk stream rebuilt from the channel (see `run-chunk-stream.ts`). */
  stream(runId: string, options: RunStreamOptions = {}): ReadableStream<UIMessageChunk> {
    return runChunkStream(this, runId, options);
  }

  // ----------------------------------------------------------------------------------- actions

  /** Sends a user message after the last node of the view (or `parent`). Resolves with its input id. */
  async send(message: OutgoingMessage<M>, options: { parent?: string } = {}): Promise<string> {
    const parent = options.parent ?? this.tree.last()?.id;
    return this.#publishInput(toUserMessage(message), parent, undefined);
  }

  /** Edits an input: a sibling input with the same parent (the view switches to it). */
  async edit(inputId: string, message: OutgoingMessage<M>): Promise<string> {
    const input = this.#input(inputId);
    const next = toUserMessage(message);
    if (next.id === inputId) next.id = newId();
    return this.#publishInput(next, input.parent, inputId);
  }

  /**
   * Regenerates a run (its agent answers the same input again, as an alternative), or every answer
   * the view shows for an input — or, when the input has none, asks the agents to answer it.
   */
  async regenerate(nodeId: string): Promise<void> {
    const run = this.tree.run(nodeId);
    if (run) {
      await this.#control({ type: 'regenerate', inputId: run.input, runId: run.id });
      return;
    }
    this.#input(nodeId);
    const shown = this.tree.view().filter((n): n is RunNode => n.kind === 'run' && n.input === nodeId);
    if (shown.length === 0) await this.#control({ type: 'regenerate', inputId: nodeId });
    else
      await Promise.all(
        shown.map((r) => this.#control({ type: 'regenerate', inputId: nodeId, runId: r.id })),
      );
  }

  /** Cancels a run, or every run in progress. */
  async cancel(runId?: string): Promise<void> {
    for (const run of runId === undefined ? this.tree.running() : [{ id: runId }])
      this.#cancelling.add(run.id);
    this.#changed();
    await this.#control(runId === undefined ? { type: 'cancel' } : { type: 'cancel', runId });
  }

  /**
   * The user pressed stop: cancels every run in progress on the view (whoever started it, on any
   * device). Resolves once the cancels are stored; each run then ends `cancelled` on every device.
   */
  async stop(): Promise<void> {
    const running = this.tree.view().filter((n) => n.kind === 'run' && n.status === 'running');
    await Promise.all(running.map((r) => this.cancel(r.id)));
  }

  /** Sends a message into a running run (barge-in). */
  async steer(runId: string, message: OutgoingMessage<M>): Promise<void> {
    await this.#control({ type: 'steer', runId, message: toUserMessage(message) });
  }

  /** Answers a `tool-approval-request`. */
  async approveTool(answer: {
    runId?: string;
    approvalId: string;
    approved: boolean;
    reason?: string;
  }): Promise<void> {
    const control: ControlData = {
      type: 'tool-approval',
      approvalId: answer.approvalId,
      approved: answer.approved,
    };
    if (answer.runId !== undefined) control.runId = answer.runId;
    if (answer.reason !== undefined) control.reason = answer.reason;
    await this.#control(control);
  }

  /** Returns the result of a client-side tool call to the run that made it (`tool-output` control). */
  async toolOutput(result: {
    runId: string;
    toolCallId: string;
    output?: unknown;
    errorText?: string;
  }): Promise<void> {
    const control: ControlData =
      result.errorText !== undefined
        ? {
            type: 'tool-output',
            runId: result.runId,
            toolCallId: result.toolCallId,
            errorText: result.errorText,
          }
        : {
            type: 'tool-output',
            runId: result.runId,
            toolCallId: result.toolCallId,
            output: asJson(result.output ?? null),
          };
    await this.#control(control);
  }

  /** Hands the session to a human operator (agents stop answering) or back to the AI. */
  async handover(to: 'human' | 'ai', options: { operator?: string } = {}): Promise<void> {
    const operator = options.operator ?? (to === 'human' ? this.#o.clientId : undefined);
    await this.#control(
      operator === undefined ? { type: 'handover', to } : { type: 'handover', to, operator },
    );
  }

  /**
   * Selects a node: the view goes through it (and its ancestors) until something newer appears in
   * its sibling group. With `sharedSelection`, every device follows.
   */
  async select(nodeId: string): Promise<void> {
    if (!this.tree.node(nodeId))
      throw new MooringAiError('unknown_node', `no input or run ${nodeId} in the session`);
    this.tree.select(nodeId, this.channel.position);
    this.#viewLocal = true;
    this.#changed();
    if (this.#o.sharedSelection) await this.#control({ type: 'select', node: nodeId });
  }

  /**
   * Replies as a human operator: a run by `human:<clientId>` with one text part, answering the last
   * input of the view (or `input`). Resolves with the run id once stored.
   */
  async reply(text: string, options: { input?: string; status?: FinalRunStatus } = {}): Promise<string> {
    const clientId = this.#o.clientId;
    if (clientId === undefined)
      throw new MooringAiError('no_input', 'reply() needs options.clientId on the session');
    const input = options.input ?? this.tree.lastInput()?.id;
    if (input === undefined) throw new MooringAiError('no_input', 'there is no input to reply to');
    const runId = randomId('run_');
    const publisher = new RunPublisher({
      sink: channelSink(this.channel),
      runId,
      agent: `human:${clientId}`,
      input,
      lease: this.#o.lease ?? 30_000,
      coalesceMs: 0,
    });
    publisher.write({ type: 'text-start', id: 'text-0' });
    publisher.write({ type: 'text-delta', id: 'text-0', delta: text });
    publisher.write({ type: 'text-end', id: 'text-0' });
    await publisher.end(options.status ?? 'complete');
    if (publisher.failure !== undefined) throw publisher.failure;
    return runId;
  }

  // ---------------------------------------------------------------------------------- internals

  async #start(): Promise<void> {
    this.#offs.push(
      this.#feed.watch((change) => {
        if (change.kind === 'live') this.#becameLive();
        else this.#onChange(change);
      }),
      this.tree.on('malformed', (reason) =>
        this.#emitter.emit('error', new MooringAiError('malformed_message', reason)),
      ),
      this.#feed.on('reloaded', (lost) => {
        this.#emitter.emit('reloaded', lost);
        this.#settle();
      }),
      this.#feed.on('error', (err) => this.#emitter.emit('error', err)),
    );
    await this.#feed.start();
  }

  #becameLive(): void {
    if (this.#watched) this.#buildStale();
    this.#changed();
  }

  #onChange(change: TreeChange): void {
    switch (change.kind) {
      case 'run':
        if (!change.previous) this.#emitter.emit('run', change.node);
        else if (change.previous.status === 'running' && change.node.status !== 'running')
          this.#emitter.emit('runEnd', change.node);
        this.#invalidate(change.node.id);
        break;
      case 'part':
        this.#invalidate(change.runId);
        break;
      case 'reset':
        this.#messages.clear();
        break;
      default:
        break;
    }
    this.#changed();
  }

  /** A run's message is stale: rebuilt now if the session's messages are read, else when first read. */
  #invalidate(runId: string): void {
    const state = this.#messages.get(runId);
    if (state) state.dirty = true;
    else this.#messages.set(runId, { message: undefined, at: undefined, building: false, dirty: true });
    if (this.#watched) this.#rebuild(runId);
  }

  /** Someone reads the messages: rebuild what is stale, and from now on on every change. */
  #watch(): void {
    if (this.#watched) return;
    this.#watched = true;
    this.#buildStale();
  }

  /** Starts a rebuild of every stale run message (when live). */
  #buildStale(): void {
    for (const [runId, state] of this.#messages) if (state.dirty) this.#rebuild(runId);
  }

  /** Rebuilds a stale run's message now if live, one rebuild at a time (a reader asked for it). */
  #rebuild(runId: string): void {
    const state = this.#messages.get(runId);
    if (!state?.dirty || state.building || !this.live) return;
    const node = this.tree.run(runId);
    if (!node) return;
    state.building = true;
    state.dirty = false;
    this.#building++;
    const s = state;
    const at = { status: node.status, reason: node.reason, finishReason: node.finishReason };
    buildRunMessage<M>(node, this.tree.parts(runId))
      .then((message) => {
        if (this.#messages.get(runId) !== s) return;
        s.message = message;
        s.at = at;
      })
      .catch((err: unknown) => {
        // shown as an empty message rather than not at all (the view stops at a run never built)
        if (this.#messages.get(runId) === s && s.message === undefined) {
          s.message = emptyRunMessage<M>(runId);
          s.at = at;
        }
        this.#emitter.emit('error', err instanceof Error ? err : new Error(String(err)));
      })
      .finally(() => {
        s.building = false;
        this.#building--;
        if (s.dirty && this.#messages.get(runId) === s) this.#rebuild(runId);
        this.#changed();
        this.#settle();
      });
  }

  #settle(): void {
    if (this.#building > 0 || this.#feed.reloading) return;
    for (const resolve of this.#idle.splice(0)) resolve();
  }

  #changed(): void {
    this.#viewStale = true;
    if (this.#changeQueued) return;
    this.#changeQueued = true;
    queueMicrotask(() => {
      this.#changeQueued = false;
      this.#emitter.emit('change', undefined);
    });
  }

  #viewNode(n: TreeNode): ViewNode<M> {
    const siblings = this.tree.siblings(n.id).map((s) => s.id);
    if (n.kind === 'input')
      return { kind: 'input', id: n.id, message: n.message as M, clientId: n.clientId, siblings };
    this.#watch();
    const built = this.#messages.get(n.id);
    const at = built?.message !== undefined && built.at !== undefined ? built.at : n;
    return {
      kind: 'run',
      id: n.id,
      agent: n.agent,
      input: n.input,
      status: at.status,
      reason: at.reason,
      finishReason: at.finishReason,
      message: built?.message ?? emptyRunMessage<M>(n.id),
      siblings,
    };
  }

  #input(inputId: string): InputNode {
    const input = this.tree.input(inputId);
    if (!input) throw new MooringAiError('unknown_node', `no input ${inputId} in the session`);
    return input;
  }

  async #publishInput(
    message: UIMessage,
    parent: string | undefined,
    forkOf: string | undefined,
  ): Promise<string> {
    const data: InputData = { message, device: this.device };
    if (parent !== undefined) data.parent = parent;
    if (forkOf !== undefined) data.forkOf = forkOf;
    await this.channel.publish(EVENT_INPUT, asJson(data), {
      id: `input:${message.id}`,
      headers: { input: message.id },
    });
    return message.id;
  }

  async #control(control: ControlData): Promise<string> {
    return this.channel.publish(EVENT_CONTROL, control as unknown as JsonValue, {
      headers: controlHeaders(control),
    });
  }
}

/** Same content (a node rebuilt with nothing new keeps its identity in the view). */
function sameViewNode<M extends UIMessage>(a: ViewNode<M>, b: ViewNode<M>): boolean {
  if (a.kind !== b.kind || a.message !== b.message || a.siblings.join() !== b.siblings.join()) return false;
  if (a.kind === 'input' || b.kind === 'input') return true;
  return a.status === b.status && a.reason === b.reason && a.finishReason === b.finishReason;
}

function newId(): string {
  return randomId('msg_');
}

/** A user UIMessage from text or parts; keeps a given id. */
export function toUserMessage<M extends UIMessage>(message: OutgoingMessage<M>): UIMessage {
  if (typeof message === 'string')
    return { id: newId(), role: 'user', parts: [{ type: 'text', text: message }] };
  const { id, role: _role, ...rest } = message;
  return { ...(rest as Omit<UIMessage, 'id' | 'role'>), id: id ?? newId(), role: 'user' };
}
