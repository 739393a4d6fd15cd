/**
 * What a client holds after its channel's log went on in a new epoch (a Redis restart, a SQLite file
 * after a power loss): `continuityLost` with `kept` says the new log has every message up to `kept`
 * as it was, under the same sequences in the new epoch, and delivered what changed after `kept` just
 * before the event. So most of what a client holds is still true, renamed:
 *
 *   held copy (old epoch)                         in the new log
 *   version ≤ kept                                the same message: renamed
 *   created after kept                            lost (another message may have its sequence): dropped
 *   created up to kept, changed after it          an older state: read again (`reread`)
 *   (a copy the catch-up brought, new epoch)      kept; the newer copy of a serial wins
 *   old serial, new version (an own operation     right only as far as the catch-up brought that
 *   folded from its ack, `echo: false`)            message; else it cannot be told
 *
 * With `kept` at the position resumed from (a restart that lost nothing this client had: every
 * restart of an AOF `always` Redis) nothing is read again. Used by `@mooring/ai` sessions and
 * `@mooring/react`'s `useChannel`, so a store restart is not a herd of history reads.
 */
import { formatSerial, type Message, parseSerial } from '@mooring/protocol';
import type { ContinuityLost } from './channel.ts';

export interface KeptMessages {
  /** What the new log has as held: the copies renamed into its epoch, one per serial, in version order. */
  messages: Message[];
  /**
   * The first serial (new epoch) of the messages the new log has in another state than held
   * (changed or deleted in what it lost): read the history from here up to `kept` again. Undefined:
   * nothing to read.
   */
  reread?: string;
}

/**
 * The `held` messages (folded copies, tombstones included, any order) as the new log of `lost` has
 * them; undefined when that cannot be told (no `kept`; a copy of an epoch that is neither the
 * position's nor the new one; an own operation of the new log folded onto an old copy further than
 * the catch-up brought that message): reload from history.
 */
export function keptMessages(held: Iterable<Message>, lost: ContinuityLost): KeptMessages | undefined {
  const from = parseSerial(lost.previousPosition);
  const kept = lost.kept === undefined ? undefined : parseSerial(lost.kept);
  if (!from || !kept) return undefined;
  const messages = new Map<string, Message>();
  const stale: number[] = [];
  const mixed: Message[] = [];
  for (const copy of held) {
    const serial = parseSerial(copy.serial);
    const version = parseSerial(copy.version);
    if (!serial || !version) return undefined;
    if (serial.epoch !== version.epoch) {
      // an own operation stored in the new log, folded onto the copy held under the old serial
      // (`echo: false`): right only if the catch-up brought that message at least as far (below)
      if (serial.epoch !== from.epoch || version.epoch !== kept.epoch) return undefined;
      mixed.push({ ...copy, serial: formatSerial(kept.epoch, serial.seq) });
      continue;
    }
    let message = copy;
    if (serial.epoch === from.epoch) {
      if (serial.seq > kept.seq) continue; // created in what the log lost
      if (version.seq > kept.seq) {
        stale.push(serial.seq);
        continue;
      }
      message = {
        ...copy,
        serial: formatSerial(kept.epoch, serial.seq),
        version: formatSerial(kept.epoch, version.seq),
      };
    } else if (serial.epoch !== kept.epoch) return undefined;
    const other = messages.get(message.serial);
    if (other === undefined || other.version < message.version) messages.set(message.serial, message);
  }
  for (const copy of mixed) {
    const caught = messages.get(copy.serial);
    if (caught === undefined || caught.version < copy.version) return undefined;
  }
  // a stale copy the catch-up brought again (changed after `kept` in the new log) is whole already
  const reread = stale.filter((seq) => !messages.has(formatSerial(kept.epoch, seq)));
  const result: KeptMessages = {
    messages: [...messages.values()].sort((a, b) => (a.version < b.version ? -1 : 1)),
  };
  if (reread.length > 0) result.reread = formatSerial(kept.epoch, Math.min(...reread));
  return result;
}
