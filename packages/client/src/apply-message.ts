/**
 * The client rule of PROTOCOL.md §4.2 for one message: fold an incoming object (a live operation or a
 * rolled-up message) into the copy an application holds. Exported so that applications (and `ai`)
 * can keep message state the same way the protocol defines it.
 *
 *   held       incoming                      result
 *   any        version ≤ held.version        held, unchanged (already applied)
 *   —/any      create                        the incoming message
 *   string     append (data = delta)         data = held.data + delta; headers replaced if present
 *   —/any      rolled-up update              the incoming message: it is whole (§4.1)
 *   any        live update                   data (+encoding) and headers replaced when present
 *   any        delete                        a tombstone: no data, no headers
 *
 * A folded message has `action: 'update'` (changed since creation) or `'delete'`, like a rolled-up
 * one, and `version` = the incoming version. A live operation keeps the held copy's `id`, `clientId`
 * and `timestamp` (the creator's, when the copy began with the `create`); a rolled-up object brings
 * its own, so a copy that began from a live append, whose `create` was never seen, takes the
 * creator's from the first rolled-up object.
 *
 * Nothing in a `Message` says whether it is live or rolled up: an `update` is either a live
 * operation, which carries only what it changes, or a message's whole state (§4.1). Where it arrived
 * says: rolled up are a catch-up (before `attached`), a `rolledUp` frame and history. The client
 * remembers which objects it delivered so (`isRolledUp`), and `applyMessage` asks it by default; an
 * application that builds or copies messages itself passes `rolledUp`.
 */
import { appendText, type Message } from '@mooring/protocol';

/** Objects the client received rolled up, as delivered (not copies of them). */
const rolledUpObjects = new WeakSet<Message>();

/** Records `messages` as rolled up (PROTOCOL.md §4.1): a catch-up, a `rolledUp` frame, a history page. */
export function markRolledUp(messages: Iterable<Message>): void {
  for (const message of messages) rolledUpObjects.add(message);
}

/** True when the client delivered this very object rolled up (a copy of it is not known). */
export function isRolledUp(message: Message): boolean {
  return rolledUpObjects.has(message);
}

/**
 * Folds `incoming` into `held` (§4.2). `rolledUp`: whether `incoming` is a rolled-up object (the whole
 * message) rather than a live operation; by default, whether the client delivered it rolled up.
 */
export function applyMessage(
  held: Message | undefined,
  incoming: Message,
  rolledUp: boolean = isRolledUp(incoming),
): Message {
  if (held !== undefined && incoming.version <= held.version) return held;
  switch (incoming.action) {
    case 'create':
      return { ...incoming };
    case 'append': {
      if (held === undefined) return { ...incoming, action: 'update' };
      const base = typeof held.data === 'string' ? held.data : '';
      const delta = typeof incoming.data === 'string' ? incoming.data : '';
      const next: Message = {
        ...held,
        action: 'update',
        version: incoming.version,
        data: appendText(base, delta),
      };
      if (incoming.headers !== undefined) next.headers = incoming.headers;
      return next;
    }
    case 'update': {
      // rolled up: the whole message, replacing the held copy, partial or not (§4.2)
      if (held === undefined || rolledUp) return { ...incoming };
      const next: Message = { ...held, action: 'update', version: incoming.version };
      if (incoming.name !== undefined) next.name = incoming.name;
      if (incoming.data !== undefined) {
        next.data = incoming.data;
        if (incoming.encoding !== undefined) next.encoding = incoming.encoding;
        else delete next.encoding;
      }
      if (incoming.headers !== undefined) next.headers = incoming.headers;
      return next;
    }
    case 'delete': {
      // A live delete is the deleting operation (its id, time and publisher): the identity stays the
      // held copy's. A rolled-up one is the message's tombstone: its identity is the creator's.
      const source = held === undefined || rolledUp ? incoming : held;
      const tombstone: Message = {
        serial: incoming.serial,
        version: incoming.version,
        action: 'delete',
        id: source.id,
        timestamp: source.timestamp,
      };
      // a name never changes; a rolled-up tombstone leaves it out
      const name = source.name ?? held?.name;
      if (name !== undefined) tombstone.name = name;
      if (source.clientId !== undefined) tombstone.clientId = source.clientId;
      return tombstone;
    }
  }
}
