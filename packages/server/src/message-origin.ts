/**
 * Which connection published a stored operation, known only on the node that stored it and only
 * for as long as the operation's `Message` object lives (a WeakMap keyed by the very object the hub
 * hands to every attachment). It lets an `echo: false` attachment leave out its own connection's
 * operations (PROTOCOL.md §6.2 "Echo") without a field on the wire or in the store. An operation
 * whose origin is unknown (read back from the store, another node's) is simply delivered.
 */
import type { Message } from '@mooring/protocol';

const origins = new WeakMap<Message, string>();

/** Records that `connectionId` published these messages (the store's answer to its publish). */
export function markOrigin(messages: readonly Message[], connectionId: string): void {
  for (const message of messages) origins.set(message, connectionId);
}

/** The connection that published `message` on this node, if known. */
export function originOf(message: Message): string | undefined {
  return origins.get(message);
}
