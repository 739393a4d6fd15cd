/**
 * Publishes not yet acknowledged (ARCHITECTURE.md §4.1, §5 "Offline publishing"; PROTOCOL.md §7).
 *
 * Every publish stays here, in the order it was made, until its `ack` (or a permanent `error`)
 * arrives. On each new connection the whole queue is sent again, in order, with the same operation
 * ids: what the server already stored comes back as `duplicate`, so the effect is exactly once.
 * While the connection is down the queue is bounded (`maxQueuedOps`); beyond it publishes are
 * rejected at once with `queue_full` instead of growing memory without limit.
 *
 * A publish whose frame is above the server's `maxFrameSize` is never sent (the server would close
 * the connection with 1009, and the resend on the next connection would be closed again, for ever):
 * it is rejected with `frame_too_large` when made, against the limits last announced (the default
 * before any), and again, exactly, before each send, against the current connection's.
 */
import type {
  AckFrame,
  ClientFrame,
  ErrorFrame,
  OperationInput,
  PublishResult,
  Ref,
} from '@mooring/protocol';
import { utf8Length } from '@mooring/protocol';
import { MooringError } from './errors.ts';
import { encode, frameTooLarge } from './frame-size.ts';

interface PendingPublish {
  channel: string;
  ops: OperationInput[];
  /** The publish's precondition (PROTOCOL.md §7), if any. */
  after: string | undefined;
  /** `ops` as JSON, and its bytes: the bulk of the frame, written and measured once. */
  opsJson: string;
  opsBytes: number;
  /** The ref of the latest send, and on which connection it went out. */
  ref: Ref | undefined;
  generation: number;
  resolve(results: PublishResult[]): void;
  reject(error: MooringError): void;
}

export interface PublishQueueDeps {
  /**
   * Sends a frame on the current connection (`json`: the frame as JSON, sent as is by transports
   * that send text); false when there is none (or it just died).
   */
  send(frame: ClientFrame, json: string): boolean;
  nextRef(): Ref;
  maxQueuedOps: number;
  /** The largest frame the server takes (`connected.limits.maxFrameSize`, or the default before any). */
  maxFrameSize(): number;
  /**
   * Whether the current connection's server takes a publish's precondition (`connected.publishAfter`):
   * an older one refuses the field, so it is left out there (the publish is then stored without it).
   */
  takesAfter(): boolean;
}

export class PublishQueue {
  readonly #deps: PublishQueueDeps;
  readonly #entries: PendingPublish[] = [];
  readonly #byRef = new Map<Ref, PendingPublish>();
  /** Incremented on each new connection; an entry is (re)sent once per generation. */
  #generation = 0;
  #connected = false;

  constructor(deps: PublishQueueDeps) {
    this.#deps = deps;
  }

  /** Operations waiting for an ack (sent or not). */
  get size(): number {
    let n = 0;
    for (const entry of this.#entries) n += entry.ops.length;
    return n;
  }

  add(channel: string, ops: OperationInput[], after?: string): Promise<PublishResult[]> {
    const opsJson = encode(ops, 'publish');
    if (opsJson instanceof MooringError) return Promise.reject(opsJson);
    const opsBytes = utf8Length(opsJson);
    // the smallest ref: a frame too large with it is too large with any (the send checks exactly)
    const bytes = publishFrameBytes(publishHead(channel, 0, after), opsBytes);
    const max = this.#deps.maxFrameSize();
    if (bytes > max) return Promise.reject(frameTooLarge('publish', bytes, max));
    if (!this.#connected && this.size + ops.length > this.#deps.maxQueuedOps) {
      return Promise.reject(
        new MooringError(
          'queue_full',
          `${this.size} operations are already waiting for the connection (maxQueuedOps ${this.#deps.maxQueuedOps}); ` +
            'wait for the connection to come back (connection.on("connected")) and publish again',
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const entry: PendingPublish = {
        channel,
        ops,
        after,
        opsJson,
        opsBytes,
        ref: undefined,
        generation: -1,
        resolve,
        reject,
      };
      this.#entries.push(entry);
      if (this.#connected) this.#send(entry);
    });
  }

  /** A new connection is up: resend everything still unacknowledged, in order. */
  onConnected(): void {
    this.#generation += 1;
    this.#connected = true;
    this.#byRef.clear();
    for (const entry of [...this.#entries]) {
      if (!this.#connected) break; // a send failed: the connection is down again
      this.#send(entry);
    }
  }

  onDisconnected(): void {
    this.#connected = false;
  }

  /** Handles an ack; false when it is not one of ours. */
  onAck(frame: AckFrame): boolean {
    const entry = frame.ref === undefined ? undefined : this.#byRef.get(frame.ref);
    if (!entry) return false;
    this.#remove(entry);
    entry.resolve(frame.results);
    return true;
  }

  /** Handles an error answering a publish; false when it is not one of ours. */
  onError(frame: ErrorFrame): boolean {
    const entry = frame.ref === undefined ? undefined : this.#byRef.get(frame.ref);
    if (!entry) return false;
    if (frame.error.code === 'shutting_down') {
      // Not stored; the server is going away. Keep it: it is resent on the next connection.
      this.#byRef.delete(frame.ref as Ref);
      entry.ref = undefined;
      return true;
    }
    this.#remove(entry);
    entry.reject(MooringError.fromInfo(frame.error));
    return true;
  }

  /**
   * Rejects everything pending (suspended, failed, closed), each with its operation ids: one sent
   * may have been stored, and republished with them it is stored at most once.
   */
  rejectAll(error: MooringError): void {
    const entries = this.#entries.splice(0);
    this.#byRef.clear();
    for (const entry of entries)
      entry.reject(error.forPublish(entry.ops.flatMap((op) => (op.id === undefined ? [] : [op.id]))));
  }

  #send(entry: PendingPublish): void {
    if (entry.generation === this.#generation) return;
    const ref = this.#deps.nextRef();
    // the frame as JSON, its ops written once (when published): `{…,"ops":[]}` with them put in
    const after = this.#deps.takesAfter() ? entry.after : undefined;
    const head = publishHead(entry.channel, ref, after);
    const bytes = publishFrameBytes(head, entry.opsBytes);
    const max = this.#deps.maxFrameSize();
    if (bytes > max) {
      // Never sent, so never resent: the connection stays up and the publishes after it go out.
      this.#remove(entry);
      entry.reject(frameTooLarge('publish', bytes, max));
      return;
    }
    const json = `${head.slice(0, -'[]}'.length)}${entry.opsJson}}`;
    if (!this.#deps.send(publishFrame(entry.channel, ref, entry.ops, after), json)) {
      this.#connected = false;
      return;
    }
    entry.ref = ref;
    entry.generation = this.#generation;
    this.#byRef.set(ref, entry);
  }

  #remove(entry: PendingPublish): void {
    const i = this.#entries.indexOf(entry);
    if (i >= 0) this.#entries.splice(i, 1);
    if (entry.ref !== undefined) this.#byRef.delete(entry.ref);
  }
}

/** The frame; `ops` last (its JSON is put in by `#send`). */
function publishFrame(
  channel: string,
  ref: Ref,
  ops: OperationInput[],
  after: string | undefined,
): ClientFrame {
  return after === undefined
    ? { type: 'publish', ref, channel, ops }
    : { type: 'publish', ref, channel, after, ops };
}

/** `publishFrame(channel, ref, [], after)` as JSON: the frame around its operations, `{…,"ops":[]}`. */
function publishHead(channel: string, ref: Ref, after: string | undefined): string {
  return JSON.stringify(publishFrame(channel, ref, [], after));
}

/** Bytes of the publish frame as sent, given its `head` and the bytes of its operations as JSON. */
function publishFrameBytes(head: string, opsBytes: number): number {
  return utf8Length(head) - '[]'.length + opsBytes;
}
