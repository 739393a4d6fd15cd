/**
 * Presence (DESIGN §8) — not built yet: the server side is not specified in PROTOCOL.md v1. This is
 * the seam `channel.presence` will fill (enter / update / leave, a snapshot on attach, then events);
 * every method rejects with `unsupported` so that code written against it fails loudly, not silently.
 */
import { MooringError } from './errors.ts';

export class Presence {
  readonly channel: string;

  constructor(channel: string) {
    this.channel = channel;
  }

  enter(_data?: unknown): Promise<void> {
    return Promise.reject(this.#unsupported());
  }

  update(_data?: unknown): Promise<void> {
    return Promise.reject(this.#unsupported());
  }

  leave(_data?: unknown): Promise<void> {
    return Promise.reject(this.#unsupported());
  }

  get(): Promise<never[]> {
    return Promise.reject(this.#unsupported());
  }

  #unsupported(): MooringError {
    return new MooringError(
      'unsupported',
      'presence is not available yet: the protocol (v1) does not define it. Track it in the project issues',
    );
  }
}
