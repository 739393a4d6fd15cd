/**
 * A channel's presence set as this client knows it (PROTOCOL.md §6.4): members keyed by
 * `connectionId`, replaced by each `sync` snapshot and changed by each event.
 *
 * Every change is returned as an event, so listeners always see exactly how the set changed: a
 * snapshot after a re-attach is compared with the set held before it, and only the difference comes
 * out (a member who left while this client was away leaves; nobody who stayed "re-enters"). Actions
 * are normalised on the set: `enter` of a known member is an `update`, `leave` of an unknown one is
 * nothing, and an `enter` or `update` that brings a member's state as it is held is nothing too.
 */
import type { PresenceMember } from '@mooring/protocol';

export type PresenceAction = 'enter' | 'update' | 'leave';

/** One change of a channel's presence set. */
export interface PresenceEvent {
  action: PresenceAction;
  member: PresenceMember;
}

export class PresenceMembers {
  readonly #members = new Map<string, PresenceMember>();

  get size(): number {
    return this.#members.size;
  }

  has(connectionId: string): boolean {
    return this.#members.has(connectionId);
  }

  /** Copies of the members, in the order they were first seen. */
  list(): PresenceMember[] {
    return [...this.#members.values()].map(copy);
  }

  /** Applies one event from the server; returns the change it made, if any. */
  apply(action: PresenceAction, member: PresenceMember): PresenceEvent | undefined {
    const held = this.#members.get(member.connectionId);
    if (action === 'leave') {
      if (held === undefined) return undefined;
      this.#members.delete(member.connectionId);
      return { action: 'leave', member: copy(member) };
    }
    // the same state again (a change the server sends right after a `sync` that already held it,
    // PROTOCOL.md §6.4): nothing changed, so nothing to tell
    if (held !== undefined && sameState(held, member)) return undefined;
    this.#members.set(member.connectionId, copy(member));
    return { action: held === undefined ? 'enter' : 'update', member: copy(member) };
  }

  /** Replaces the set with a snapshot; returns the changes from the set held before (leaves first). */
  sync(members: PresenceMember[]): PresenceEvent[] {
    const next = new Map(members.map((m) => [m.connectionId, m]));
    const events: PresenceEvent[] = [];
    for (const [id, held] of this.#members) {
      if (!next.has(id)) events.push({ action: 'leave', member: copy(held) });
    }
    for (const [id, member] of next) {
      const held = this.#members.get(id);
      if (!held) events.push({ action: 'enter', member: copy(member) });
      else if (!sameState(held, member)) events.push({ action: 'update', member: copy(member) });
    }
    this.#members.clear();
    for (const [id, member] of next) this.#members.set(id, copy(member));
    return events;
  }

  clear(): void {
    this.#members.clear();
  }
}

function sameState(a: PresenceMember, b: PresenceMember): boolean {
  return a.timestamp === b.timestamp && JSON.stringify(a.data) === JSON.stringify(b.data);
}

function copy(member: PresenceMember): PresenceMember {
  const out: PresenceMember = {
    clientId: member.clientId,
    connectionId: member.connectionId,
    timestamp: member.timestamp,
  };
  if (member.data !== undefined) out.data = member.data;
  return out;
}
