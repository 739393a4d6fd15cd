/**
 * Which connection published a stored operation, known only on the node that stored it and only
 * for as long as the operation's `Message` object lives: a symbol-keyed property on the very object
 * the hub hands to every attachment. It lets an `echo: false` attachment leave out its own
 * connection's operations (PROTOCOL.md §6.2 "Echo") without a field on the wire or in the store
 * (`JSON.stringify` skips symbol keys). An operation whose origin is unknown (read back from the
 * store, another node's) is simply delivered.
 *
 * A property rather than a `WeakMap`: one store per token on the object's own shape, where a weak
 * map's entry is a hash insert and an ephemeron the garbage collector must trace.
 */
import type { Message } from '@mooring/protocol';

const ORIGIN = Symbol('mooring.origin');

type WithOrigin = Message & { [ORIGIN]?: string };

/** Records that `connectionId` published these messages (the store's answer to its publish). */
export function markOrigin(messages: readonly Message[], connectionId: string): void {
  for (let i = 0; i < messages.length; i++) (messages[i] as WithOrigin)[ORIGIN] = connectionId;
}

/** The connection that published `message` on this node, if known. */
export function originOf(message: Message): string | undefined {
  return (message as WithOrigin)[ORIGIN];
}
