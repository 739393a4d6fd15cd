/**
 * What one client has received of one response: the time each token arrived (the machine's monotonic clock, compared
 * with the model stub's emit times afterwards), and its wire bytes over time, so that the catch-up
 * after a gap can be cut at the moment the client was back at the live edge.
 */
import { ByteMeter } from '../clients/byte-meter.ts';
import { sharedClockMs } from '../clock.ts';
import { tokenEnds } from './model-tokens.ts';

export class TokenTracker {
  readonly response: number;
  readonly ends: Uint32Array;
  /** Arrival per token (wall ms); 0 = not (yet) received by this client. */
  readonly arrived: Float64Array;
  readonly meter = new ByteMeter();
  /** (wall ms, bytes read) after each text event, for cutting a catch-up at its end. */
  readonly progress: number[] = [];
  #next = 0;

  constructor(response: number, tokens: number) {
    this.response = response;
    this.ends = tokenEnds(response, tokens);
    this.arrived = new Float64Array(tokens);
  }

  get complete(): boolean {
    return this.#next >= this.ends.length;
  }

  get tokensReceived(): number {
    return this.#next;
  }

  /**
   * The stream being read now has `length` characters of the response text. A stream that starts
   * again from the beginning (a replay after a reconnect) records nothing until it passes what an
   * earlier stream of this client had already delivered.
   */
  onLength(length: number): void {
    if (length < (this.ends[this.#next] ?? Number.POSITIVE_INFINITY)) return;
    const now = sharedClockMs();
    while (this.#next < this.ends.length && this.ends[this.#next]! <= length)
      this.arrived[this.#next++] = now;
    this.progress.push(now, this.meter.totals().read);
  }

  /** Bytes read by this client's sockets up to wall time `t` (from the progress log). */
  bytesAt(t: number): number {
    let bytes = 0;
    for (let i = 0; i < this.progress.length; i += 2) {
      if (this.progress[i]! > t) break;
      bytes = this.progress[i + 1]!;
    }
    return bytes;
  }
}
