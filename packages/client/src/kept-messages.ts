/**
 * What a client holds after its channel's log went on in a new epoch (a Redis restart, a SQLite file
 * after a power loss): `continuityLost` with `kept` at the sequence of the position it resumed from
 * means the new log kept every message the client had, under the same sequences in the new epoch,
 * and delivered what changed after `kept` just before the event. Renaming the held copies into the
 * new epoch (and keeping the newer copy where the catch-up brought one) is then the whole reload —
 * no history read. Used by `@mooring/ai` sessions and `@mooring/react`'s `useChannel`.
 */
import { formatSerial, type Message, parseSerial } from '@mooring/protocol';
import type { ContinuityLost } from './channel.ts';

/**
 * The `held` messages (folded copies, any order) renamed into the epoch of `lost.kept`, one per
 * serial, in version order; undefined when that is not the whole truth: no `kept`, `kept` before
 * the position (the log lost messages the client had), or a copy held under another epoch or past
 * `kept` (an own operation applied before the position moved over it may be one the log lost).
 */
export function keptMessages(held: Iterable<Message>, lost: ContinuityLost): Message[] | undefined {
  const from = parseSerial(lost.previousPosition);
  const kept = lost.kept === undefined ? undefined : parseSerial(lost.kept);
  if (!from || !kept || kept.seq !== from.seq) return undefined;
  const messages = new Map<string, Message>();
  for (const copy of held) {
    const serial = parseSerial(copy.serial);
    const version = parseSerial(copy.version);
    if (!serial || !version || serial.epoch !== version.epoch) return undefined;
    let message = copy;
    if (serial.epoch === from.epoch) {
      if (version.seq > kept.seq) return undefined;
      message = {
        ...copy,
        serial: formatSerial(kept.epoch, serial.seq),
        version: formatSerial(kept.epoch, version.seq),
      };
    } else if (serial.epoch !== kept.epoch) return undefined;
    // a kept message the catch-up brought again (changed after `kept`): its newer copy
    const other = messages.get(message.serial);
    if (other === undefined || other.version < message.version) messages.set(message.serial, message);
  }
  return [...messages.values()].sort((a, b) => (a.version < b.version ? -1 : 1));
}
