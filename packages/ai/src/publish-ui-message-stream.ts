/**
 * Serverless publishing (ARCHITECTURE.md §1: hosts that cannot hold a socket): a function that answers an
 * input publishes its run over REST, and the users' devices — which hold the realtime connections —
 * see it stream like any other run.
 *
 *   export async function POST(req) {                        // e.g. a Vercel function
 *     const { channel, inputId } = await req.json();
 *     const tree = await loadSession({ rest, channel });       // the conversation, over REST
 *     const result = streamText({ model, messages: await convertToModelMessages(await historyOf(tree, inputId)) });
 *     await publishUIMessageStream({ rest, channel, input: inputId, stream: toUIMessageStream({ stream: result.stream }) });
 *   }
 *
 * The same publisher as the agent side (coalesced appends, deterministic ids, retried requests
 * stored once), one HTTP request per batch. A REST publisher holds its run's lease by activity, so
 * the lease is renewed every lease/3 while the run lasts: if the function dies, the run ends
 * `abandoned` one lease later.
 */
import type { Rest } from '@mooring/client';
import type { JsonValue } from '@mooring/protocol';
import type { UIMessageChunk } from 'ai';
import { errorText } from './errors.ts';
import { randomId } from './ids.ts';
import { loadSession } from './load-session.ts';
import { restSink } from './operation-sink.ts';
import { readChunks } from './read-chunks.ts';
import type { RunPublisherOptions } from './run-publisher.ts';
import { RunPublisher } from './run-publisher.ts';
import type { FinalRunStatus } from './wire.ts';

export interface PublishUIMessageStreamOptions {
  /** `client.rest` of a Mooring client (use `autoConnect: false`: REST needs no connection). */
  rest: Rest;
  /** The session's channel name. */
  channel: string;
  /** The input this run answers. */
  input: string;
  /** The stream to publish, e.g. `toUIMessageStream({ stream: result.stream })`. */
  stream: ReadableStream<UIMessageChunk> | AsyncIterable<UIMessageChunk>;
  /** Default: random. Pass a stable id (e.g. from the request) so a retried function dedupes. */
  runId?: string;
  /** Default 'assistant'. */
  agent?: string;
  /** For a regeneration: the run this one is an alternative to. */
  replaces?: string;
  metadata?: JsonValue;
  /** Lease on the run, ms (renewed by activity). Default 30 000. */
  lease?: number;
  /** Window within which deltas are merged, ms. Default 40. */
  coalesceMs?: number;
  /** Aborting stops reading the stream and ends the run `cancelled`. */
  signal?: AbortSignal;
}

export interface PublishedRun {
  runId: string;
  status: FinalRunStatus;
  reason: string | undefined;
}

/** Publishes a whole run over REST; resolves once its end is stored. */
export async function publishUIMessageStream(options: PublishUIMessageStreamOptions): Promise<PublishedRun> {
  const runId = options.runId ?? randomId('run_');
  let failure: unknown;
  const publisherOptions: RunPublisherOptions = {
    sink: restSink(options.rest, options.channel),
    runId,
    agent: options.agent ?? 'assistant',
    input: options.input,
    renewLease: true,
    // A retried function re-running the same run id: read what the earlier attempt stored.
    stored: async (serial) => {
      const tree = await loadSession({ rest: options.rest, channel: options.channel });
      const stored = tree.claimAt(serial);
      return stored && { status: stored.run.status, parts: stored.parts };
    },
    onError: (err) => {
      failure ??= err;
    },
  };
  if (options.replaces !== undefined) publisherOptions.replaces = options.replaces;
  if (options.metadata !== undefined) publisherOptions.metadata = options.metadata;
  if (options.lease !== undefined) publisherOptions.lease = options.lease;
  if (options.coalesceMs !== undefined) publisherOptions.coalesceMs = options.coalesceMs;
  const publisher = new RunPublisher(publisherOptions);
  await publisher.start();

  let streamFailure: string | undefined;
  const iterator = readChunks(options.stream);
  const stop = () => iterator.stop();
  options.signal?.addEventListener('abort', stop, { once: true });
  try {
    while (!options.signal?.aborted && failure === undefined) {
      const next = await iterator.next();
      if (next.done) break;
      publisher.write(next.value);
      if (publisher.streamError !== undefined) break;
    }
  } catch (err) {
    if (!options.signal?.aborted) streamFailure = errorText(err);
  } finally {
    options.signal?.removeEventListener('abort', stop);
  }
  const error = publisher.streamError ?? streamFailure;
  const status: FinalRunStatus =
    options.signal?.aborted || publisher.streamAbort
      ? 'cancelled'
      : error !== undefined
        ? 'error'
        : 'complete';
  const reason =
    status === 'error' ? error : status === 'cancelled' ? publisher.streamAbort?.reason : undefined;
  await publisher.end(status, reason === undefined ? {} : { reason });
  if (failure !== undefined) throw failure;
  return { runId, status, reason };
}
