/**
 * A channel log in memory for unit tests of the publisher and the fold: an OperationSink that stores
 * operations with serials like the server (dedup by id, appends to string data), and gives back the
 * live operations or the rolled-up messages a catch-up would deliver (PROTOCOL.md §4, §6.2).
 */
import { applyMessage } from '@mooring/client';
import type { Message, OperationInput } from '@mooring/protocol';
import { formatSerial } from '@mooring/protocol';
import type { OperationSink, PublishedOperation } from '../../src/operation-sink.ts';

export class MemoryLog implements OperationSink {
  readonly maxOpsPerPublish = 100;
  readonly live: Message[] = [];
  readonly ops: OperationInput[][] = [];
  readonly #ids = new Map<string, string>();
  #seq = 0;
  /** Make the next publishes fail with these errors (then succeed). */
  failures: unknown[] = [];
  /** Resolve publishes only when `release()` is called (to let operations pile up). */
  hold = false;
  readonly #held: Array<() => void> = [];

  release(): void {
    for (const go of this.#held.splice(0)) go();
  }

  async publish(ops: OperationInput[], after?: string): Promise<PublishedOperation[]> {
    // as the server: a publish carries 1 to maxOpsPerPublish operations (bad_request, for good)
    if (ops.length === 0 || ops.length > this.maxOpsPerPublish)
      throw Object.assign(new Error(`a publish of ${ops.length} operations`), { code: 'bad_request' });
    if (this.hold) await new Promise<void>((r) => this.#held.push(r));
    const failure = this.failures.shift();
    if (failure !== undefined) throw failure;
    // as the server: a precondition not met stores nothing (a resend of a stored batch is answered)
    const fresh = ops.some((op) => op.id === undefined || !this.#ids.has(op.id));
    if (after !== undefined && fresh && !this.#ids.has(after))
      throw Object.assign(new Error(`'${after}' is not stored`), {
        code: 'out_of_order',
        retryable: true,
        refused: true,
      });
    this.ops.push(ops);
    return ops.map((op) => {
      const known = op.id === undefined ? undefined : this.#ids.get(op.id);
      if (known !== undefined) return { serial: known, duplicate: true };
      const version = formatSerial('aaaaaaaaaaaa', ++this.#seq);
      if (op.id !== undefined) this.#ids.set(op.id, version);
      const action = op.action ?? 'create';
      const message: Message = {
        serial: action === 'create' ? version : (op.serial ?? ''),
        version,
        action,
        id: op.id ?? version,
        timestamp: this.#seq,
      };
      if (op.name !== undefined) message.name = op.name;
      if (op.data !== undefined) message.data = op.data;
      if (op.headers !== undefined) message.headers = op.headers;
      this.live.push(message);
      return { serial: version };
    });
  }

  /** Every message rolled up, in `version` order (what a catch-up from the start delivers). */
  rolledUp(): Message[] {
    const held = new Map<string, Message>();
    for (const m of this.live) held.set(m.serial, applyMessage(held.get(m.serial), m));
    return [...held.values()]
      .map((m) => (m.version === m.serial ? m : { ...m, action: 'update' as const }))
      .sort((a, b) => (a.version < b.version ? -1 : 1));
  }
}
