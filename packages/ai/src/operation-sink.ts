/**
 * Where a run's operations go: a realtime channel (an agent holding a connection) or REST (a
 * serverless function). The run publisher only needs "publish these operations atomically and tell
 * me their serials", so both fit one small interface.
 */
import type { Channel, Rest } from '@mooring/client';
import type { OperationInput } from '@mooring/protocol';
import { parseSerial } from '@mooring/protocol';

export interface PublishedOperation {
  serial: string;
  /** True when the server already held the operation's id (a retry); unknown is `undefined`. */
  duplicate?: boolean;
}

export interface OperationSink {
  /** Publishes the operations atomically; resolves once they are stored. */
  publish(ops: OperationInput[]): Promise<PublishedOperation[]>;
  /** Operations per publish the server accepts (PROTOCOL.md §10, `maxOpsPerPublish`). */
  readonly maxOpsPerPublish: number;
}

/**
 * A sink over a realtime channel. Duplicates are recognised when the channel is subscribed: a new
 * operation always gets a serial above the channel's head, so an answer at or below the position the
 * channel had already reached when the publish was sent can only be an id the server held before.
 * (The client's `publishBatch` returns serials only; see the package README.)
 */
export function channelSink(channel: Channel, maxOpsPerPublish = 100): OperationSink {
  return {
    maxOpsPerPublish,
    async publish(ops) {
      const before = channel.position;
      const serials = await channel.publishBatch(ops);
      const epoch = parseSerial(before)?.epoch;
      return serials.map((serial) => {
        const duplicate = epoch !== undefined && parseSerial(serial)?.epoch === epoch && serial <= before;
        return duplicate ? { serial, duplicate: true } : { serial };
      });
    },
  };
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
