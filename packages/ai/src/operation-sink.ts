/**
 * Where a run's operations go: a realtime channel (an agent holding a connection) or REST (a
 * serverless function). The run publisher only needs "publish these operations atomically and tell
 * me their serials", so both fit one small interface.
 */
import type { Channel, Rest } from '@mooring/client';
import type { Message, OperationInput } from '@mooring/protocol';
import { isErrorCode, sameEpoch, serialSeq } from '@mooring/protocol';

export interface PublishedOperation {
  serial: string;
  /** True when the server already held the operation's id (a retry); unknown is `undefined`. */
  duplicate?: boolean;
}

export interface OperationSink {
  /**
   * Publishes the operations atomically; resolves once they are stored. `after` (given only to a
   * sink with a `window` > 1, for a batch sent while earlier ones are in flight): the id of the last
   * operation sent before, which must be stored first — else the publish stores nothing and fails
   * with `out_of_order` (PROTOCOL.md §7). A sink that cannot pass it on must not pipeline.
   */
  publish(ops: OperationInput[], after?: string): Promise<PublishedOperation[]>;
  /** Operations per publish the server accepts (PROTOCOL.md §10, `maxOpsPerPublish`). */
  readonly maxOpsPerPublish: number;
  /**
   * Batches that may be in flight at once: only a sink that stores them in the order they were
   * published, resends included, may say more than 1 (see `operation-queue.ts`). Default 1.
   */
  readonly window?: number;
  /**
   * Whether a failed publish is known to have stored nothing (the server refused it). A sink with a
   * `window` > 1 says so: after a refusal, a later batch whose answer was lost (reported failed)
   * may have been stored, and resending both would store the refused one behind it. Without it,
   * every failure counts as "answer lost" (see `operation-queue.ts`).
   */
  refused?(error: unknown): boolean;
}

/** Batches a realtime channel sink keeps in flight: one connection keeps their order (PROTOCOL.md §7). */
export const CHANNEL_WINDOW = 8;

/**
 * A sink over a realtime channel. Duplicates are recognised when the channel is subscribed: a new
 * operation always gets a serial above the channel's head, so an answer at or below the position the
 * channel had already reached when the publish was sent can only be an id the server held before.
 * (The server's own `duplicate` also marks this publish's resend of an operation it stored after
 * that position — after a reconnect — which is not another attempt's: see `storedBefore`.)
 */
export function channelSink(
  channel: Channel,
  maxOpsPerPublish = 100,
  onStored?: (own: Message[]) => void,
): OperationSink {
  return {
    maxOpsPerPublish,
    window: CHANNEL_WINDOW,
    refused: storedNothing,
    async publish(ops, after) {
      const before = channel.position;
      const answers = await channel.publishResults(ops, after === undefined ? {} : { after });
      const results = answers.map(
        ({ serial, duplicate }): PublishedOperation =>
          storedBefore(serial, before, duplicate === true) ? { serial, duplicate: true } : { serial },
      );
      onStored?.(ownMessages(channel.clientId, ops, results));
      return results;
    },
  };
}

/**
 * Whether the operation answered at `serial` was stored before a publish sent when the channel's
 * position was `before` (another attempt's, not this publish's own resend). In one epoch: at or
 * below the position. When the log has gone on in a new epoch meanwhile (a Redis restart: its
 * messages kept under the same sequences, a duplicate answered with its sequence in the new epoch),
 * the server's `duplicate` and a sequence at or below the position's say it; `serial <= before`
 * cannot (epochs differ) and took every earlier attempt's operation for new — a run resumed across
 * a Redis restart then wrote over ids the earlier attempt had used, and its text was dropped as
 * their duplicates (found by the soak with Redis kills).
 */
function storedBefore(serial: string, before: string, duplicate: boolean): boolean {
  if (sameEpoch(serial, before)) return serial <= before;
  return duplicate && serialSeq(serial) <= serialSeq(before);
}

/**
 * Whether a channel publish that failed with `error` certainly stored nothing: the server answered
 * it with an error (a publish is atomic; `internal` excepted, which may come after the store), or the
 * client refused it before sending (`queue_full`). The client's own connection errors
 * (`connection_suspended`…) reject publishes whose answer never came: those may have been stored.
 */
export function storedNothing(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return code === 'queue_full' || (isErrorCode(code) && code !== 'internal');
}

/**
 * The operations just stored, as the channel would have delivered them live: what a publisher whose
 * channel is attached with `echo: false` folds itself instead of receiving it back. Duplicates are
 * left out (what is stored is the earlier attempt's, delivered to everyone, this client included).
 * The timestamp is this client's clock, not the server's.
 */
export function ownMessages(
  clientId: string | undefined,
  ops: OperationInput[],
  results: PublishedOperation[],
): Message[] {
  const now = Date.now();
  const out = new Array<Message>(ops.length); // sized up front: mostly one op; trimmed below
  let count = 0;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    const result = results[i];
    if (!result || result.duplicate) continue;
    const action = op.action ?? 'create';
    const message: Message = {
      serial: action === 'create' ? result.serial : (op.serial ?? result.serial),
      version: result.serial,
      action,
      id: op.id ?? '',
      timestamp: now,
    };
    if (op.name !== undefined) message.name = op.name;
    if (op.data !== undefined) message.data = op.data;
    if (op.encoding !== undefined) message.encoding = op.encoding;
    if (op.headers !== undefined) message.headers = op.headers;
    if (clientId !== undefined) message.clientId = clientId;
    out[count++] = message;
  }
  out.length = count;
  return out;
}

/** A sink over REST (PROTOCOL.md §11): one HTTP request per batch, retried with the same ids. */
export function restSink(rest: Rest, channel: string, maxOpsPerPublish = 100): OperationSink {
  return {
    maxOpsPerPublish,
    async publish(ops) {
      const results = await rest.publish(channel, ops);
      return results.map((r) => (r.duplicate ? { serial: r.serial, duplicate: true } : { serial: r.serial }));
    },
  };
}
