/**
 * One run as the agent's handler sees it: the input it answers, an `AbortSignal` that a `cancel`
 * control from any client fires, steering and tool-approval events, and ways to put output into the
 * session — pipe an AI SDK `UIMessageChunk` stream, or write chunks by hand.
 *
 *   running ──handler returns──────────────▶ complete   (or error / cancelled if the stream said so)
 *      │    ──handler throws / error chunk─▶ error      (reason: the message)
 *      │    ──cancel control───────────────▶ cancelled  (at once: the signal fires, later writes are dropped)
 *      └──── agent process dies ───────────▶ abandoned  (by the server, when the lease runs out)
 */

import type { ListenerErrorHandler } from '@mooring/client';
import { Emitter } from '@mooring/client';
import type { Experimental_Steering as Steering, UIMessage, UIMessageChunk } from 'ai';
import { convertToModelMessages, experimental_createSteering } from 'ai';
import { errorText, MooringAiError } from './errors.ts';
import { readChunks } from './read-chunks.ts';
import type { RunPublisher } from './run-publisher.ts';

import type { FinalRunStatus, RunStatus } from './wire.ts';

/** The input a run answers. */
export interface AgentInput<M extends UIMessage = UIMessage> {
  /** The input id (the user message's id). */
  id: string;
  /** The user's message. */
  message: M;
  /** The run this input follows in the conversation (absent for the first input). */
  parent: string | undefined;
  /** For an edit: the input it replaces. */
  forkOf: string | undefined;
  /** Who sent it (the stamped clientId). */
  clientId: string | undefined;
  /** For a regeneration: the run this new run is an alternative to. */
  replaces: string | undefined;
  /**
   * The conversation from its first message up to and including this input, as UIMessages (user
   * inputs and the assistant messages of the runs on the way) — ready for `convertToModelMessages`.
   */
  history(): Promise<M[]>;
}

export interface ToolApproval {
  approvalId: string;
  approved: boolean;
  reason: string | undefined;
}

/** The result of a client-side tool (`addToolOutput` in the chat): an output, or an error text. */
export interface ToolOutput {
  toolCallId: string;
  output: unknown;
  errorText: string | undefined;
}

export type AgentRunEvents<M extends UIMessage = UIMessage> = {
  /** A user steered the run (PROTOCOL.md §13.4 `steer`). */
  steer: M;
  /** A user answered a tool approval request of this run. */
  approval: ToolApproval;
  /** A client-side tool of this run returned (PROTOCOL.md §13.4 `tool-output`). */
  toolOutput: ToolOutput;
  /** The run ended. */
  end: FinalRunStatus;
};

export class AgentRun<M extends UIMessage = UIMessage> {
  readonly runId: string;
  readonly agent: string;
  readonly input: AgentInput<M>;
  readonly #publisher: RunPublisher;
  readonly #abort = new AbortController();
  readonly #emitter: Emitter<AgentRunEvents<M>>;
  readonly #approvals = new Map<string, ToolApproval>();
  readonly #approvalWaiters = new Map<string, Array<(a: ToolApproval) => void>>();
  readonly #toolOutputs = new Map<string, ToolOutput>();
  readonly #toolOutputWaiters = new Map<string, Array<(o: ToolOutput) => void>>();
  readonly #pendingSteers: M[] = [];
  readonly #onError: (error: Error) => void;
  #steering: Steering | undefined;
  #status: RunStatus = 'running';
  #ending: Promise<void> | undefined;
  #error: string | undefined;
  #textParts = 0;

  /**
   * `onError` hears what goes wrong outside the handler's reach (a steer the AI SDK could not take);
   * `AgentSession` passes its `error` event. Default: ignored.
   */
  constructor(options: {
    runId: string;
    agent: string;
    input: AgentInput<M>;
    publisher: RunPublisher;
    onError?: (error: Error) => void;
    /** Where an exception thrown by a listener of the run goes. Default: re-thrown asynchronously. */
    onListenerError?: ListenerErrorHandler;
  }) {
    this.#emitter = new Emitter(options.onListenerError);
    this.runId = options.runId;
    this.agent = options.agent;
    this.input = options.input;
    this.#publisher = options.publisher;
    this.#onError = options.onError ?? (() => {});
  }

  /** Fires when a `cancel` control reaches this run (or the session closes). Pass it to the model. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get status(): RunStatus {
    return this.#status;
  }

  on<K extends keyof AgentRunEvents<M>>(
    event: K,
    listener: (value: AgentRunEvents<M>[K]) => void,
  ): () => void {
    return this.#emitter.on(event, listener);
  }

  /**
   * An AI SDK steering object fed with this run's `steer` controls (experimental in the AI SDK): pass
   * it to `streamText({ experimental_steering: run.steering })` and user barge-ins reach the model at
   * the next step boundary. Steers received before it was first read are delivered to it then.
   */
  get steering(): Steering {
    if (!this.#steering) {
      this.#steering = experimental_createSteering();
      for (const message of this.#pendingSteers.splice(0)) this.#deliverSteer(message);
    }
    return this.#steering;
  }

  /**
   * Pipes a UIMessageChunk stream (e.g. `toUIMessageStream({ stream: result.stream })`) into the
   * session, and resolves once what it wrote is stored. Stops early when the run is cancelled. An
   * `error` chunk or a failing stream ends the run `error`. Does not end the run otherwise: the
   * handler may pipe several streams; the run ends when the handler returns.
   */
  async pipe(stream: ReadableStream<UIMessageChunk> | AsyncIterable<UIMessageChunk>): Promise<void> {
    const source = readChunks(stream);
    const stop = () => source.stop();
    if (this.#status !== 'running') return stop();
    this.signal.addEventListener('abort', stop, { once: true });
    let finished = false;
    try {
      for (;;) {
        const next = await source.next();
        if (next.done) {
          finished = true;
          break;
        }
        if (this.#status !== 'running') break;
        this.#publisher.write(next.value);
        if (this.#publisher.streamError !== undefined) break;
      }
    } catch (err) {
      if (!this.signal.aborted) this.#error ??= errorText(err);
    } finally {
      this.signal.removeEventListener('abort', stop);
      // let go of what is left (an error, an `error` chunk, a run ended meanwhile): the stream is
      // cancelled, so the model call behind it stops
      if (!finished) stop();
    }
    await this.#publisher.flush();
    const failed = this.#publisher.streamError ?? this.#error;
    if (failed !== undefined) await this.end('error', failed);
  }

  /** Writes one chunk by hand (queued; use `flush()` to wait until stored). */
  write(chunk: UIMessageChunk): void {
    if (this.#status !== 'running') return;
    this.#publisher.write(chunk);
  }

  /** Writes a whole text part. */
  writeText(text: string, options: { id?: string } = {}): void {
    const id = options.id ?? `text-${this.#textParts++}`;
    this.write({ type: 'text-start', id });
    this.write({ type: 'text-delta', id, delta: text });
    this.write({ type: 'text-end', id });
  }

  /** Resolves once everything written so far is stored. */
  flush(): Promise<void> {
    return this.#publisher.flush();
  }

  /**
   * Waits for the user's answer to a `tool-approval-request` this run wrote (a `tool-approval` control).
   * Rejects with the signal's reason if the run is cancelled first.
   */
  waitForApproval(approvalId: string): Promise<ToolApproval> {
    return waitFor(this.signal, this.#approvals, this.#approvalWaiters, approvalId);
  }

  /**
   * Waits for the output of a client-side tool call this run wrote (a `tool-input-available` chunk
   * for a tool without `execute`): the chat's `addToolOutput` on the sending device publishes a
   * `tool-output` control. Keep the run open meanwhile, as for approvals. Rejects with the signal's
   * reason if the run is cancelled first.
   */
  waitForToolOutput(toolCallId: string): Promise<ToolOutput> {
    return waitFor(this.signal, this.#toolOutputs, this.#toolOutputWaiters, toolCallId);
  }

  /**
   * Ends the run (idempotent). Without a status: `cancelled` if the run was cancelled or the stream
   * aborted, `error` if the stream failed, else `complete`.
   */
  end(status?: FinalRunStatus, reason?: string): Promise<void> {
    if (this.#ending) return this.#ending;
    const abort = this.#publisher.streamAbort;
    const failed = this.#publisher.streamError ?? this.#error;
    const final: FinalRunStatus =
      status ?? (this.signal.aborted || abort ? 'cancelled' : failed !== undefined ? 'error' : 'complete');
    const why = reason ?? (final === 'error' ? failed : final === 'cancelled' ? abort?.reason : undefined);
    this.#status = final;
    this.#ending = this.#publisher.end(final, why === undefined ? {} : { reason: why }).then(() => {
      this.#emitter.emit('end', final);
    });
    return this.#ending;
  }

  // ------------------------------------------------------------- called by the AgentSession

  /** A cancel control: fire the signal and end the run `cancelled` at once. */
  cancel(reason: string | undefined): Promise<void> {
    if (!this.#abort.signal.aborted) this.#abort.abort(new CancelledError(reason));
    return this.end('cancelled', reason);
  }

  /** A steer control for this run. */
  steer(message: M): void {
    if (this.#status !== 'running') return;
    this.#emitter.emit('steer', message);
    if (this.#steering) this.#deliverSteer(message);
    else this.#pendingSteers.push(message);
  }

  /** A tool-approval control for this run. */
  approve(approval: ToolApproval): void {
    if (this.#approvals.has(approval.approvalId)) return;
    this.#approvals.set(approval.approvalId, approval);
    if (this.#status === 'running') {
      const chunk: UIMessageChunk = {
        type: 'tool-approval-response',
        approvalId: approval.approvalId,
        approved: approval.approved,
      };
      if (approval.reason !== undefined) chunk.reason = approval.reason;
      this.#publisher.write(chunk);
    }
    this.#emitter.emit('approval', approval);
    for (const waiter of this.#approvalWaiters.get(approval.approvalId) ?? []) waiter(approval);
    this.#approvalWaiters.delete(approval.approvalId);
  }

  /**
   * A tool-output control for this run: written into the run as a `tool-output-available` (or
   * `-error`) chunk, so every device and every later replay shows the result.
   */
  toolOutput(result: ToolOutput): void {
    if (this.#toolOutputs.has(result.toolCallId)) return;
    this.#toolOutputs.set(result.toolCallId, result);
    if (this.#status === 'running')
      this.#publisher.write(
        result.errorText !== undefined
          ? { type: 'tool-output-error', toolCallId: result.toolCallId, errorText: result.errorText }
          : { type: 'tool-output-available', toolCallId: result.toolCallId, output: result.output },
      );
    this.#emitter.emit('toolOutput', result);
    for (const waiter of this.#toolOutputWaiters.get(result.toolCallId) ?? []) waiter(result);
    this.#toolOutputWaiters.delete(result.toolCallId);
  }

  /**
   * Hands a steer to the AI SDK's steering. Nothing awaits it (a control arrives from the channel,
   * outside any handler), so a failure — a message `convertToModelMessages` cannot read — is
   * reported, never left as a rejection: an unhandled one ends the agent process, and with it every
   * run it serves. The run goes on without the steer.
   */
  #deliverSteer(message: M): void {
    this.#steer(message).catch((err: unknown) =>
      this.#onError(
        new MooringAiError(
          'malformed_message',
          `run ${this.runId}: steer ${message.id} not delivered: ${errorText(err)}`,
          { cause: err },
        ),
      ),
    );
  }

  async #steer(message: M): Promise<void> {
    const [model] = await convertToModelMessages([{ role: 'user', parts: message.parts }]);
    if (model?.role === 'user') await this.steering.steer(model, { id: message.id });
  }
}

/** Resolves with `known.get(key)` once it is set (by a control), or rejects when `signal` aborts. */
function waitFor<T>(
  signal: AbortSignal,
  known: Map<string, T>,
  waiters: Map<string, Array<(value: T) => void>>,
  key: string,
): Promise<T> {
  const value = known.get(key);
  if (value !== undefined) return Promise.resolve(value);
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const list = waiters.get(key) ?? [];
    list.push((v) => {
      signal.removeEventListener('abort', onAbort);
      resolve(v);
    });
    waiters.set(key, list);
  });
}

/** The reason of a run's signal when a user cancelled it. */
export class CancelledError extends Error {
  constructor(reason: string | undefined) {
    super(reason ?? 'the run was cancelled');
    this.name = 'AbortError';
  }
}
