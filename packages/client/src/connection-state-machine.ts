/**
 * The connection state machine (ARCHITECTURE.md §5), pure: a table of states × events → next state, and one
 * function, `transition`, that applies it and works out the retry schedule. No timers, no sockets:
 * the `Connection` class feeds it events and performs what the new state asks for.
 *
 *                 connect              opened
 *   initialized ──────────▶ connecting ───────▶ connected ──close──▶ closing ──closed──▶ closed
 *                             ▲   │ lost              │ lost                             │
 *           retryDue / online │   ▼                   ▼                                  │ connect
 *           / connect      disconnected ◀──(first retry at once, then backoff)           ▼
 *                             │  after connectionStateTtl of failed retries          connecting
 *                             ▼
 *                          suspended  (retry every suspendedRetryTimeout; connect() retries now)
 *
 *   fatal (4001, 4003, a 4xx other than rate limiting / token expiry) ──▶ failed   (connect() restarts)
 *
 * The first retry is spread over a random part of `initialRetryDelay` instead when the server ended
 * the connection (`serverEnded`: a shutdown ends every client's at once; see `firstRetryDelay`).
 */
import type { MooringError } from './errors.ts';
import type { Timings } from './timings.ts';
import { firstRetryDelay, retryDelay } from './timings.ts';

export const CONNECTION_STATES = [
  'initialized',
  'connecting',
  'connected',
  'disconnected',
  'suspended',
  'closing',
  'closed',
  'failed',
] as const;
export type ConnectionState = (typeof CONNECTION_STATES)[number];

export type MachineEvent =
  /** `connect()` was called. */
  | { type: 'connect' }
  /** The server's `connected` frame arrived. */
  | { type: 'opened' }
  /**
   * The transport is gone or unusable, and trying again may work. `serverEnded`: the server ended
   * it (a `disconnect` frame, close 1001 / 1012), as it ends every connection at once in a shutdown.
   */
  | { type: 'lost'; error: MooringError; serverEnded?: true }
  /** A permanent error: retrying with the same credentials cannot work. */
  | { type: 'fatal'; error: MooringError }
  /** The retry timer fired. */
  | { type: 'retryDue' }
  /** The network came back or the page became visible (browsers). */
  | { type: 'online' }
  /** `close()` was called. */
  | { type: 'close' }
  /** The transport finished closing (or the close timed out). */
  | { type: 'closed' };

export type MachineEventType = MachineEvent['type'];

/** `retry` is resolved to `disconnected` or `suspended` by how long retries have been failing. */
type Target = ConnectionState | 'retry';

/**
 * The whole machine. An event missing from a row is ignored in that state.
 *
 *                  connect        opened        lost      fatal     retryDue      online        close      closed
 */
export const TRANSITIONS: Record<ConnectionState, Partial<Record<MachineEventType, Target>>> = {
  initialized: { connect: 'connecting', close: 'closed' },
  connecting: { opened: 'connected', lost: 'retry', fatal: 'failed', close: 'closed' },
  connected: { lost: 'retry', fatal: 'failed', close: 'closing' },
  disconnected: { connect: 'connecting', retryDue: 'connecting', online: 'connecting', close: 'closed' },
  suspended: { connect: 'connecting', retryDue: 'connecting', online: 'connecting', close: 'closed' },
  closing: { connect: 'connecting', lost: 'closed', fatal: 'closed', closed: 'closed' },
  closed: { connect: 'connecting' },
  failed: { connect: 'connecting', close: 'closed' },
};

export interface MachineState {
  state: ConnectionState;
  /** When the current run of failed attempts began (ms); undefined while connected or at rest. */
  since: number | undefined;
  /** Failed attempts in the current run. */
  attempt: number;
  /** True once the current run went past `connectionStateTtl`: failures return to `suspended`. */
  suspended: boolean;
  /** Delay before the next automatic retry (disconnected, suspended). */
  retryIn: number | undefined;
  /** The error that caused this state, if any. */
  reason: MooringError | undefined;
}

export interface MachineContext {
  now: number;
  random: () => number;
  timings: Timings;
}

export const INITIAL_STATE: MachineState = {
  state: 'initialized',
  since: undefined,
  attempt: 0,
  suspended: false,
  retryIn: undefined,
  reason: undefined,
};

/** Applies `event`; returns the next state, or `undefined` when the event does not apply here. */
export function transition(
  from: MachineState,
  event: MachineEvent,
  ctx: MachineContext,
): MachineState | undefined {
  const target = TRANSITIONS[from.state][event.type];
  if (target === undefined) return undefined;
  const reason = event.type === 'lost' || event.type === 'fatal' ? event.error : undefined;

  if (target === 'retry')
    return retryState(from, reason, event.type === 'lost' && event.serverEnded === true, ctx);
  switch (target) {
    case 'connecting': {
      // A user's connect() from rest (or from failed/closed) starts a fresh run of attempts.
      const fresh = from.state === 'initialized' || from.state === 'closed' || from.state === 'failed';
      const restart = fresh || from.state === 'closing';
      return {
        state: 'connecting',
        since: restart ? ctx.now : from.since,
        attempt: restart ? 0 : from.attempt,
        suspended: restart ? false : from.suspended,
        retryIn: undefined,
        reason: undefined,
      };
    }
    case 'connected':
      return { ...INITIAL_STATE, state: 'connected' };
    default:
      return { ...INITIAL_STATE, state: target, reason };
  }
}

function retryState(
  from: MachineState,
  reason: MooringError | undefined,
  serverEnded: boolean,
  ctx: MachineContext,
): MachineState {
  if (from.state === 'connected') {
    // A live connection was lost: the first retry goes out at once — or, when the server ended it
    // (and so, most likely, every other client's), within a random part of initialRetryDelay.
    const retryIn = firstRetryDelay(serverEnded, ctx.timings, ctx.random);
    return { state: 'disconnected', since: ctx.now, attempt: 0, suspended: false, retryIn, reason };
  }
  const since = from.since ?? ctx.now;
  const attempt = from.attempt + 1;
  const suspended = from.suspended || ctx.now - since >= ctx.timings.connectionStateTtl;
  if (suspended) {
    return {
      state: 'suspended',
      since,
      attempt,
      suspended,
      retryIn: ctx.timings.suspendedRetryTimeout,
      reason,
    };
  }
  const retryIn = retryDelay(attempt, ctx.timings, ctx.random);
  return { state: 'disconnected', since, attempt, suspended, retryIn, reason };
}
