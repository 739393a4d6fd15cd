/**
 * The client rule of PROTOCOL.md §4.2 for one message: fold an incoming object (a live operation or a
 * rolled-up message) into the copy an application holds. Exported so that applications (and `ai`)
 * can keep message state the same way the protocol defines it.
 *
 *   held       incoming                      result
 *   any        version ≤ held.version        held, unchanged (already applied)
 *   —/any      create                        the incoming message
 *   string     append (data = delta)         data = held.data + delta; headers replaced if present
 *   any        update                        each field present replaced (a rolled-up update is whole)
 *   any        delete                        a tombstone: no data, no headers
 *
 * A folded message has `action: 'update'` (changed since creation) or `'delete'`, like a rolled-up
 * one, and `version` = the incoming version. `id`, `clientId` and `timestamp` stay the creator's.
 */
import { appendText, type Message } from '@mooring/protocol';

export function applyMessage(held: Message | undefined, incoming: Message): Message {
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
      if (held === undefined) return { ...incoming };
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
      const source = held ?? incoming;
      const tombstone: Message = {
        serial: incoming.serial,
        version: incoming.version,
        action: 'delete',
        id: source.id,
        timestamp: source.timestamp,
      };
      if (source.name !== undefined) tombstone.name = source.name;
      if (source.clientId !== undefined) tombstone.clientId = source.clientId;
      return tombstone;
    }
  }
}
