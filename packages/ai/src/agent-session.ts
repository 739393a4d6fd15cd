/**
 * The agent side of a session (ARCHITECTURE.md §11): turns each `ai.input` into a run for the handler the app
 * supplies, and routes `ai.control`s to runs — cancel fires the run's signal, steer and tool
 * approvals reach it as events — while a human holds the session (handover) it answers nothing.
 *
 *   ai.input (live) ─▶ handover held by a human? ─yes─▶ skipped ('skip' event)
 *                         │ no
 *                         ▼
 *                      accepts(input)? ─no─▶ skipped
 *                         │ yes
 *                         ▼
 *                      create ai.run {status: running, lease} ─▶ onInput(input, run) ─▶ end
 *
 * The session folds the whole channel (the same `ConversationTree` and `SessionFeed` as the user
 * side), so it knows who holds the session, and each input comes with its conversation history. Get
 * the channel with `{ start: true, echo: false }`: `echo: false` spares the agent receiving every
 * token it publishes back (its own operations are folded from its acks instead), and `start` makes
 * the fold start from the session's beginning: what was
 * on the channel before the first attach is read as history and not answered (unless
 * `answerMissed`); everything after — including what arrives while reconnecting — is answered. After
 * a lost continuity (the log was recreated or trimmed while the agent was away) the tree is reloaded
 * from history and the inputs no run of this agent answers, at the end of their branch, are answered.
 *
 * Several AgentSessions (different `agent` names) may serve one channel: each answers the inputs it
 * accepts, each run is its own node, and every client shows them all.
 *
 * A listener that throws (of the session, its runs, its tree — where `accepts`, `runId` and
 * `onControl` run) goes to the channel's client's `onListenerError`; without one it is re-thrown
 * asynchronously, an `uncaughtException` that ends a Node agent. Set it on an agent's client.
 */
import type { Channel } from '@mooring/client';
import { Emitter } from '@mooring/client';
import type { Message } from '@mooring/protocol';
import type { UIMessage } from 'ai';
import type { AgentInput, ToolApproval } from './agent-run.ts';
import { AgentRun } from './agent-run.ts';
import type { InputNode, RunNode, TreeChange } from './conversation-tree.ts';
import { ConversationTree } from './conversation-tree.ts';
import { errorText, MooringAiError } from './errors.ts';
import { randomId } from './ids.ts';
import type { OperationSink } from './operation-sink.ts';
import { channelSink } from './operation-sink.ts';
import { historyOf } from './run-message.ts';
import type { PublisherTimers } from './run-publisher.ts';
import { RunPublisher } from './run-publisher.ts';
import { listenerErrors, SessionFeed } from './session-feed.ts';
import type { ControlData, ControlRecord } from './wire.ts';

export interface AgentSessionOptions<M extends UIMessage = UIMessage> {
  /** The session's channel; get it with `{ start: true, echo: false }` (see the module comment). */
  channel: Channel;
  /** This agent's name, carried by its runs (`agent` header). */
  agent: string;
  /** Answers one input. The run ends when the returned promise settles (see `AgentRun`). */
  onInput(input: AgentInput<M>, run: AgentRun<M>): void | Promise<void>;
  /** Which inputs this agent answers. Default: all. */
  accepts?(input: AgentInput<M>): boolean;
  /** Every control, after the session acted on it. */
  onControl?(control: ControlData, record: ControlRecord): void;
  /** Run ids. Default: random (`run_` and 22 base64url characters). A deterministic id makes a retried run dedupe. */
  runId?(input: AgentInput<M>): string;
  /** Lease on each run message, ms (PROTOCOL.md §7.1). Default 30 000. */
  lease?: number;
  /** Window within which deltas are merged, ms; 0 = every delta its own operation. Default 40. */
  coalesceMs?: number;
  /**
   * On start, also answer the inputs already in the log that no run of this agent answers and that
   * are the last input on their branch. Default false.
   */
  answerMissed?: boolean;
  /**
   * The clientIds of the session's agents, this one's own included (PROTOCOL.md §13.5): runs started
   * by anyone else are left out of this agent's fold (reported as `error`), so a member's fake run
   * neither takes an agent's run id nor reaches the model as an earlier answer in an input's
   * history. Give every reader of the session the same list. Default: every clientId (the earliest
   * claim of a run id is the run).
   */
  agents?: readonly string[];
  /**
   * The clientIds allowed to hand the session over (PROTOCOL.md §13.5): a handover by anyone else is
   * ignored, so it cannot stop this agent. Give every reader of the session the same list. Default:
   * every clientId.
   */
  operators?: readonly string[];
  /** Where operations go. Default: the channel. */
  sink?: OperationSink;
  timers?: PublisherTimers;
}

export type AgentSessionEvents<M extends UIMessage = UIMessage> = {
  /** A run started. */
  run: AgentRun<M>;
  /** An input was not answered, and why. */
  skip: { input: AgentInput<M>; reason: 'handover' | 'not_accepted' };
  /**
   * Something went wrong outside a run's handler (a malformed message, a failed publish, a steer
   * the AI SDK could not take).
   */
  error: Error;
};

export class AgentSession<M extends UIMessage = UIMessage> {
  readonly agent: string;
  readonly channel: Channel;
  /** The session folded into a conversation tree (read-only use). */
  readonly tree: ConversationTree;
  readonly #o: AgentSessionOptions<M>;
  readonly #sink: OperationSink;
  readonly #emitter: Emitter<AgentSessionEvents<M>>;
  readonly #active = new Map<string, AgentRun<M>>();
  /** Runs this session drove to their end: an `abandoned` seen for one later is a stale expiry. */
  readonly #finished = new Set<string>();
  readonly #handled = new Set<string>();
  readonly #settled = new Set<Promise<void>>();
  readonly #feed: SessionFeed;
  #live = false;
  #closed = false;
  #started: Promise<void> | undefined;
  #offs: Array<() => void> = [];

  constructor(options: AgentSessionOptions<M>) {
    this.#o = options;
    this.agent = options.agent;
    this.channel = options.channel;
    // a listener's exception (of the session, its runs, its tree: `accepts`, `onControl` run there)
    // goes where the channel's client sends its own: `onListenerError` keeps the agent alive
    const onListenerError = listenerErrors(options.channel);
    this.#emitter = new Emitter(onListenerError);
    this.tree = new ConversationTree({
      agents: options.agents,
      operators: options.operators,
      onListenerError,
    });
    this.#feed = new SessionFeed(options.channel, this.tree);
    // With `echo: false` the server does not send the agent's own output back: the session folds
    // what it stored itself (each input's history holds the agent's earlier answers).
    const own = options.channel.echo ? undefined : (messages: Message[]) => this.#feed.applyOwn(messages);
    this.#sink = options.sink ?? channelSink(options.channel, undefined, own);
  }

  on<K extends keyof AgentSessionEvents<M>>(
    event: K,
    listener: (value: AgentSessionEvents<M>[K]) => void,
  ): () => void {
    return this.#emitter.on(event, listener);
  }

  /** Subscribes and resolves once attached (the session's history folded). Idempotent. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  /** Runs in progress. */
  get runs(): AgentRun<M>[] {
    return [...this.#active.values()];
  }

  /** Who holds the session (`handover` controls). */
  get holder(): { holder: 'ai' | 'human'; operator: string | undefined } {
    const { holder, operator } = this.tree.handover;
    return { holder, operator };
  }

  /**
   * Stops answering: unsubscribes, then either waits for the runs in progress (`drain: true`) or
   * cancels them (default), and resolves once their end is stored.
   */
  async close(options: { drain?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#feed.close();
    for (const off of this.#offs) off();
    if (!options.drain) for (const run of this.#active.values()) void run.cancel('the agent stopped');
    await Promise.all([...this.#settled]);
  }

  async #start(): Promise<void> {
    this.#offs.push(
      this.tree.on('change', (change) => this.#onChange(change)),
      this.tree.on('malformed', (reason) =>
        this.#emitter.emit('error', new MooringAiError('malformed_message', reason)),
      ),
      // After a lost continuity the tree is reloaded from history (or refolded, after a new epoch),
      // and inputs may have been missed meanwhile: the unanswered ones at the end of their branch are
      // answered. So is a run of this agent abandoned meanwhile (its expiry folded with the reload —
      // the first write of a new epoch, say — where no change is acted on), as when it comes live.
      this.#feed.on('reloaded', () => {
        if (this.#closed) return;
        this.#answerMissed();
        if (this.#o.answerMissed) for (const run of this.tree.runs) this.#resumeAbandoned(run);
      }),
      this.#feed.on('error', (err) => this.#emitter.emit('error', err)),
    );
    await this.#feed.start();
    this.#live = true;
    this.#markAnswered();
  }

  /** What the tree holds now is history: answered already, or answered now if `answerMissed`. */
  #markAnswered(): void {
    if (this.#closed) return;
    if (this.#o.answerMissed) this.#answerMissed();
    else for (const input of this.tree.inputs) this.#handled.add(input.id);
  }

  /**
   * Answers the inputs at the end of their branch that no run of this agent answers — or whose
   * latest answer by this agent was abandoned (the agent crashed): that run is answered again, as an
   * alternative to it (or resumed in place when `runId` gives the same id again).
   */
  #answerMissed(): void {
    for (const input of this.tree.inputs) {
      if (this.#handled.has(input.id)) continue;
      const runs = this.tree.runsOf(input.id);
      const mine = runs.filter((r) => r.agent === this.agent);
      const latest = mine[mine.length - 1];
      const continued = runs.some((r) => this.tree.inputsAfter(r.id).length > 0);
      const replaced = this.tree.inputsAfter(input.parent).some((i) => i.forkOf === input.id);
      this.#handled.add(input.id);
      if (continued || replaced) continue;
      if (!latest) this.#answer(input, null);
      else if (latest.status === 'abandoned') this.#answer(input, latest.id);
    }
  }

  #onChange(change: TreeChange): void {
    if (!this.#live || this.#closed || this.#feed.reloading) return;
    if (change.kind === 'input') this.#answer(change.node, undefined);
    else if (change.kind === 'control') this.#onControl(change.control);
    else if (change.kind === 'run' && this.#o.answerMissed) this.#resumeAbandoned(change.node);
  }

  /**
   * With `answerMissed`: a run of this agent that nothing here drives, abandoned by the server while
   * this session is live, is answered again (resumed in place with a deterministic `runId`). That is
   * the agent restarted within the lease of its crashed predecessor: at start the run was still
   * `running`, so only its expiry says the predecessor is gone.
   */
  #resumeAbandoned(node: RunNode): void {
    if (node.status !== 'abandoned' || node.agent !== this.agent || this.#active.has(node.id)) return;
    // An expiry that raced this session's own end of the run (the end follows it in the log).
    if (this.#finished.has(node.id)) return;
    const input = this.tree.input(node.input);
    if (!input) return;
    const mine = this.tree.runsOf(input.id).filter((r) => r.agent === this.agent);
    if (mine[mine.length - 1]?.id !== node.id) return;
    const continued = this.tree.runsOf(input.id).some((r) => this.tree.inputsAfter(r.id).length > 0);
    const replaced = this.tree.inputsAfter(input.parent).some((i) => i.forkOf === input.id);
    if (!continued && !replaced) this.#answer(input, node.id);
  }

  #onControl(record: ControlRecord): void {
    const c = record.control;
    switch (c.type) {
      case 'cancel':
        for (const run of this.#active.values())
          if (c.runId === undefined || c.runId === run.runId) void run.cancel(undefined);
        break;
      case 'steer':
        this.#active.get(c.runId)?.steer(c.message as M);
        break;
      case 'tool-approval': {
        const approval: ToolApproval = { approvalId: c.approvalId, approved: c.approved, reason: c.reason };
        for (const run of this.#active.values())
          if (c.runId === undefined || c.runId === run.runId) run.approve(approval);
        break;
      }
      case 'tool-output':
        this.#active
          .get(c.runId)
          ?.toolOutput({ toolCallId: c.toolCallId, output: c.output, errorText: c.errorText });
        break;
      case 'regenerate': {
        const input = this.tree.input(c.inputId);
        if (!input) break;
        if (c.runId !== undefined) {
          const replaced = this.tree.run(c.runId);
          if (!replaced || replaced.agent !== this.agent) break;
        }
        this.#answer(input, c.runId ?? null);
        break;
      }
      default:
        break;
    }
    this.#o.onControl?.(c, record);
  }

  /** `replaces`: undefined = a new input; null = answer it again; a run id = regenerate that run. */
  #answer(node: InputNode, replaces: string | null | undefined): void {
    if (replaces === undefined) {
      if (this.#handled.has(node.id)) return;
      this.#handled.add(node.id);
    }
    const input = this.#inputOf(node, replaces ?? undefined);
    if (this.tree.handover.holder === 'human') {
      this.#emitter.emit('skip', { input, reason: 'handover' });
      return;
    }
    if (this.#o.accepts && !this.#o.accepts(input)) {
      this.#emitter.emit('skip', { input, reason: 'not_accepted' });
      return;
    }
    const runId = this.#o.runId?.(input) ?? randomId('run_');
    const publisherOptions: ConstructorParameters<typeof RunPublisher>[0] = {
      sink: this.#sink,
      runId,
      agent: this.agent,
      input: node.id,
      onError: (err) =>
        this.#emitter.emit(
          'error',
          err instanceof Error ? err : new Error(`run ${runId}: publishing failed: ${errorText(err)}`),
        ),
    };
    if (input.replaces !== undefined) publisherOptions.replaces = input.replaces;
    publisherOptions.stored = (serial) => {
      const stored = this.tree.claimAt(serial);
      return stored && { status: stored.run.status, parts: stored.parts };
    };
    if (this.#o.lease !== undefined) publisherOptions.lease = this.#o.lease;
    if (this.#o.coalesceMs !== undefined) publisherOptions.coalesceMs = this.#o.coalesceMs;
    if (this.#o.timers !== undefined) publisherOptions.timers = this.#o.timers;
    const publisher = new RunPublisher(publisherOptions);
    const run = new AgentRun<M>({
      runId,
      agent: this.agent,
      input,
      publisher,
      onError: (err) => this.#emitter.emit('error', err),
      onListenerError: listenerErrors(this.channel),
    });
    this.#active.set(runId, run);
    void publisher.start();
    this.#emitter.emit('run', run);
    const settled = this.#drive(run).finally(() => {
      if (this.#active.get(runId) === run) this.#active.delete(runId);
      this.#finished.add(runId);
      this.#settled.delete(settled);
    });
    this.#settled.add(settled);
  }

  async #drive(run: AgentRun<M>): Promise<void> {
    try {
      await this.#o.onInput(run.input, run);
      await run.end();
    } catch (err) {
      await run.end(
        run.signal.aborted ? 'cancelled' : 'error',
        run.signal.aborted ? undefined : errorText(err),
      );
    }
  }

  #inputOf(node: InputNode, replaces: string | undefined): AgentInput<M> {
    const tree = this.tree;
    return {
      id: node.id,
      message: node.message as M,
      parent: node.parent,
      forkOf: node.forkOf,
      clientId: node.clientId,
      replaces,
      history: () => historyOf<M>(tree, node.id),
    };
  }
}
