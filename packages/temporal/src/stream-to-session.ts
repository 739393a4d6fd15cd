/**
 * The streaming activity helper: inside a Temporal activity, publish a model's `UIMessageChunk`s into
 * a session as one run that every attempt of the activity shares.
 *
 *   attempt 1  ── create run (running, lease) ── text… ✗ throws / worker killed
 *                                                 │ run stays `running`: its lease spans the backoff
 *   attempt 2  ── create run → duplicate ── resume in place: re-sent text that is already stored is
 *                 skipped (compared, not counted), a diverging part is replaced ── … ── end complete
 *   attempt 3  ── the run is already complete: nothing is published, the model is not called
 *
 * Guarantees:
 * - One run per activity (id from workflow id, workflow run id, activity id and `step`: see
 *   `deriveRunId`), so a retried attempt resumes the run in place: one assistant message, no
 *   duplicated text (`@mooring/ai`'s retried-run rules, PROTOCOL.md §13.2).
 * - A run already ended `complete` (or `cancelled`) is never published again.
 * - A failed attempt that Temporal will retry leaves the run `running` and stops renewing its lease:
 *   the lease (default 120 s) covers the retry backoff; if no attempt comes back within it (the workflow
 *   gave up, the worker died on the last attempt) the server ends the run `abandoned`. A failure on the
 *   last attempt ends the run `error` at once.
 * - Heartbeats while the stream is open (details: `StreamHeartbeat`), so a worker crash is detected
 *   by `heartbeatTimeout` and cancellation reaches the activity even while the model is silent.
 * - A cancellation (the workflow cancelled the activity) stops the stream, ends the run `cancelled`
 *   and rejects with Temporal's `CancelledFailure`.
 */

import type { EndOptions, PublisherTimers, RunPublisherOptions } from '@mooring/ai';
import { loadSession, RunPublisher, readChunks, restSink } from '@mooring/ai';
import type { Rest } from '@mooring/client';
import type { JsonValue } from '@mooring/protocol';
import type { FinalRunStatus } from '@mooring/protocol/ai';
import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import type { UIMessageChunk } from 'ai';
import { deriveRunId } from './derive-run-id.ts';
import { willRetry } from './will-retry.ts';

/** Default lease on a streaming activity's run, ms: above Temporal's default maximum backoff (100 s). */
export const DEFAULT_ACTIVITY_LEASE_MS = 120_000;

export type ChunkSource = ReadableStream<UIMessageChunk> | AsyncIterable<UIMessageChunk>;

export interface StreamToSessionOptions {
  /** `client.rest` of a Mooring client (`autoConnect: false`). Give each worker the same `clientId`. */
  rest: Rest;
  /** The session's channel name. */
  channel: string;
  /** The input the run answers. */
  input: string;
  /**
   * Produces the model's chunk stream, e.g. `({ signal }) => toUIMessageStream({ stream:
   * streamText({ model, messages, abortSignal: signal }).stream })`. Not called when the run is
   * already complete. `signal` fires when the activity is cancelled.
   */
  stream: (context: {
    runId: string;
    signal: AbortSignal;
    attempt: number;
  }) => ChunkSource | Promise<ChunkSource>;
  /** Default: derived from the activity (`deriveRunId`). Pass one the workflow computed to address the run from the workflow. */
  runId?: string;
  /** Several runs in one activity: a different step for each (part of the derived run id). */
  step?: string | number;
  /** Default 'assistant'. */
  agent?: string;
  replaces?: string;
  metadata?: JsonValue;
  /** The run's lease, ms: keep it above the retry policy's maximum interval plus the heartbeat timeout. Default 120 000. */
  lease?: number;
  /** Window within which deltas are merged, ms. Default 40. */
  coalesceMs?: number;
  /** Most time between heartbeats, ms. Default: a third of the heartbeat timeout, at most 1 000. */
  heartbeatEvery?: number;
  /** The session's agents' clientIds (PROTOCOL.md §13.5), when members other than agents may publish. */
  agents?: readonly string[];
}

/** What the activity heartbeats: enough for an operator (or the next attempt) to see the progress. */
export interface StreamHeartbeat {
  runId: string;
  attempt: number;
  /** Chunks read from the model by this attempt. */
  chunks: number;
}

export interface StreamedRun {
  runId: string;
  status: FinalRunStatus;
  reason: string | undefined;
  /** True when an earlier attempt had already ended the run: nothing was published. */
  alreadyEnded: boolean;
}

/** Streams into the session as the current activity's run (call it inside an activity). */
export async function streamToSession(options: StreamToSessionOptions): Promise<StreamedRun> {
  const context = Context.current();
  const info = context.info;
  const runId = options.runId ?? runIdOf(info, options.step);
  const heartbeat: StreamHeartbeat = { runId, attempt: info.attempt, chunks: 0 };
  context.heartbeat({ ...heartbeat });

  // An earlier attempt may have finished the run and failed only afterwards (a crash before the
  // activity's result was recorded): never publish it again, never call the model again.
  const loadOptions = options.agents ? { agents: options.agents } : {};
  const before = (await loadSession({ rest: options.rest, channel: options.channel, ...loadOptions })).run(
    runId,
  );
  if (before && (before.status === 'complete' || before.status === 'cancelled'))
    return { runId, status: before.status, reason: before.reason, alreadyEnded: true };

  const timers = detachableTimers();
  let failure: unknown;
  const publisherOptions: RunPublisherOptions = {
    sink: restSink(options.rest, options.channel),
    runId,
    agent: options.agent ?? 'assistant',
    input: options.input,
    lease: options.lease ?? DEFAULT_ACTIVITY_LEASE_MS,
    renewLease: true,
    timers,
    stored: async (serial) => {
      const tree = await loadSession({ rest: options.rest, channel: options.channel, ...loadOptions });
      const stored = tree.claimAt(serial);
      return stored && { status: stored.run.status, parts: stored.parts };
    },
    onError: (err) => {
      failure ??= err;
    },
  };
  if (options.replaces !== undefined) publisherOptions.replaces = options.replaces;
  if (options.metadata !== undefined) publisherOptions.metadata = options.metadata;
  if (options.coalesceMs !== undefined) publisherOptions.coalesceMs = options.coalesceMs;
  const publisher = new RunPublisher(publisherOptions);

  const signal = context.cancellationSignal;
  const every = options.heartbeatEvery ?? Math.min(1000, (info.heartbeatTimeoutMs ?? 3000) / 3);
  let lastBeat = Date.now();
  const beat = () => {
    lastBeat = Date.now();
    context.heartbeat({ ...heartbeat });
  };
  // Heartbeats also while the model is silent (a long tool call): cancellation is delivered through them.
  const beating = setInterval(beat, Math.max(10, every));

  // boxed: a stream may throw anything, `undefined` and `null` included, and that is still a failure
  let thrown: { error: unknown } | undefined;
  let stopListening = () => {};
  try {
    await publisher.start();
    const source = await options.stream({ runId, signal, attempt: info.attempt });
    const reader = readChunks(source);
    // A cancellation stops a model that is mid-silence too: the read is raced against the signal.
    const aborted = new Promise<IteratorResult<UIMessageChunk>>((resolve) => {
      const stop = () => {
        reader.stop();
        resolve({ done: true, value: undefined });
      };
      if (signal.aborted) stop();
      else signal.addEventListener('abort', stop, { once: true });
      stopListening = () => signal.removeEventListener('abort', stop);
    });
    try {
      while (!signal.aborted && failure === undefined) {
        const next = await Promise.race([reader.next(), aborted]);
        if (next.done) break;
        publisher.write(next.value);
        heartbeat.chunks++;
        if (Date.now() - lastBeat >= every) beat();
        if (publisher.streamError !== undefined) break;
      }
    } finally {
      stopListening();
    }
  } catch (err) {
    if (!signal.aborted) thrown = { error: err };
  } finally {
    clearInterval(beating);
  }

  if (signal.aborted) {
    await publisher.end('cancelled', { reason: 'activity cancelled' });
    timers.detach();
    throw new CancelledFailure('the run was cancelled');
  }
  const error =
    (thrown && (thrown.error ?? streamFailure(`the model stream threw ${String(thrown.error)}`))) ??
    failure ??
    (publisher.streamError !== undefined ? streamFailure(publisher.streamError) : undefined);
  if (error !== undefined) {
    if (willRetry(info, error) && failure === undefined) {
      // The next attempt resumes this run: store what this one produced, stop renewing the lease.
      await publisher.flush();
      timers.detach();
    } else {
      const end: EndOptions = { reason: error instanceof Error ? error.message : String(error) };
      await publisher.end('error', end);
      timers.detach();
    }
    throw error;
  }
  const status: FinalRunStatus = publisher.streamAbort ? 'cancelled' : 'complete';
  const reason = publisher.streamAbort?.reason;
  await publisher.end(status, reason === undefined ? {} : { reason });
  timers.detach();
  if (failure !== undefined) throw failure;
  beat();
  return { runId, status, reason, alreadyEnded: false };
}

function streamFailure(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: 'ModelStreamError' });
}

function runIdOf(info: Context['info'], step: string | number | undefined): string {
  const execution = info.workflowExecution;
  if (!execution)
    throw ApplicationFailure.nonRetryable(
      'streamToSession needs a workflow activity (or a runId): this activity has no workflow execution',
      'MooringNoWorkflow',
    );
  const parts = {
    workflowId: execution.workflowId,
    workflowRunId: execution.runId,
    activityId: info.activityId,
  };
  return deriveRunId(step === undefined ? parts : { ...parts, step });
}

/**
 * The publisher's timers (coalescing, lease renewal), with a switch: once the attempt is over, nothing
 * of it may run on — in particular no lease renewal keeping a run alive that this worker gave up.
 */
function detachableTimers(): PublisherTimers & { detach(): void } {
  const pending = new Set<ReturnType<typeof setTimeout>>();
  let detached = false;
  return {
    setTimeout(fn, ms) {
      if (detached) return undefined;
      const handle = setTimeout(() => {
        pending.delete(handle);
        fn();
      }, ms);
      pending.add(handle);
      return handle;
    },
    clearTimeout(handle) {
      if (handle === undefined) return;
      clearTimeout(handle as ReturnType<typeof setTimeout>);
      pending.delete(handle as ReturnType<typeof setTimeout>);
    },
    detach() {
      detached = true;
      for (const handle of pending) clearTimeout(handle);
      pending.clear();
    },
  };
}
