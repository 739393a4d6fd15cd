// The pure connection state machine (ARCHITECTURE.md §5): every cell of the table, the retry schedule,
// suspension after connectionStateTtl, and no retry loop after a permanent error.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnectionState, MachineEvent, MachineState } from '../src/connection-state-machine.ts';
import {
  CONNECTION_STATES,
  INITIAL_STATE,
  TRANSITIONS,
  transition,
} from '../src/connection-state-machine.ts';
import { MooringError } from '../src/errors.ts';
import { DEFAULT_CLIENT_TIMINGS, retryDelay } from '../src/timings.ts';

const NOW = 1_000_000;
const timings = DEFAULT_CLIENT_TIMINGS;
const ctx = (now = NOW, random = () => 0.5) => ({ now, random, timings });
const lost: MachineEvent = { type: 'lost', error: new MooringError('disconnected', 'dropped') };
const fatal: MachineEvent = { type: 'fatal', error: new MooringError('unauthorized', 'bad key') };

const EVENTS: MachineEvent[] = [
  { type: 'connect' },
  { type: 'opened' },
  lost,
  fatal,
  { type: 'retryDue' },
  { type: 'online' },
  { type: 'close' },
  { type: 'closed' },
];

function at(state: ConnectionState, extra: Partial<MachineState> = {}): MachineState {
  return { ...INITIAL_STATE, state, since: state === 'connecting' ? NOW : undefined, ...extra };
}

describe('connection state machine table', () => {
  for (const state of CONNECTION_STATES) {
    for (const event of EVENTS) {
      const target = TRANSITIONS[state][event.type];
      it(`${state} + ${event.type} → ${target ?? '(ignored)'}`, () => {
        const next = transition(at(state), event, ctx());
        if (target === undefined) {
          assert.equal(next, undefined);
          return;
        }
        assert.ok(next);
        if (target === 'retry') assert.ok(next.state === 'disconnected' || next.state === 'suspended');
        else assert.equal(next.state, target);
      });
    }
  }

  it('covers every state', () => {
    assert.deepEqual(Object.keys(TRANSITIONS).sort(), [...CONNECTION_STATES].sort());
  });
});

describe('retry schedule', () => {
  it('retries at once after losing a live connection', () => {
    const next = transition(at('connected'), lost, ctx());
    assert.deepEqual(
      { state: next?.state, retryIn: next?.retryIn, attempt: next?.attempt, since: next?.since },
      { state: 'disconnected', retryIn: 0, attempt: 0, since: NOW },
    );
    assert.equal(next?.reason, (lost as { error: MooringError }).error);
  });

  it('spreads the first retry over [0, initialRetryDelay) when the server ended the live connection (a shutdown ends every client at once)', () => {
    const ended: MachineEvent = {
      type: 'lost',
      error: new MooringError('shutting_down', 'the server is stopping'),
      serverEnded: true,
    };
    for (const [random, expected] of [
      [() => 0, 0],
      [() => 0.5, 500],
      [() => 0.999999, 999],
    ] as const) {
      const next = transition(at('connected'), ended, ctx(NOW, random));
      assert.deepEqual(
        { state: next?.state, retryIn: next?.retryIn, attempt: next?.attempt, since: next?.since },
        { state: 'disconnected', retryIn: expected, attempt: 0, since: NOW },
      );
    }
    // capped like every retry: a backoff ceiling below initialRetryDelay bounds it
    const capped = { ...timings, initialRetryDelay: 5_000, disconnectedRetryTimeout: 2_000 };
    const next = transition(at('connected'), ended, { now: NOW, random: () => 0.999999, timings: capped });
    assert.equal(next?.retryIn, 1_999);
    // a failed attempt after it goes on with the usual schedule
    const retrying = transition(
      transition(at('connected'), ended, ctx()) as MachineState,
      { type: 'retryDue' },
      ctx(),
    ) as MachineState;
    assert.equal(
      transition(
        retrying,
        ended,
        ctx(NOW, () => 0.5),
      )?.retryIn,
      500,
    );
    assert.equal(
      transition(
        at('connected'),
        lost,
        ctx(NOW, () => 0.999999),
      )?.retryIn,
      0,
      'a drop still retries at once',
    );
  });

  it('backs off exponentially with full jitter, capped at disconnectedRetryTimeout', () => {
    const almostOne = () => 0.999999;
    for (let attempt = 1; attempt <= 12; attempt++) {
      const ceiling = Math.min(
        timings.disconnectedRetryTimeout,
        timings.initialRetryDelay * 2 ** (attempt - 1),
      );
      assert.equal(
        retryDelay(attempt, timings, () => 0),
        0,
        'full jitter reaches down to 0',
      );
      const high = retryDelay(attempt, timings, almostOne);
      assert.ok(high < ceiling && high >= ceiling - 1, `attempt ${attempt}: ${high} just below ${ceiling}`);
    }
    assert.ok(retryDelay(50, timings, almostOne) < timings.disconnectedRetryTimeout);
  });

  it('counts failed attempts and keeps the start of the run', () => {
    let state = transition(at('connected'), lost, ctx()) as MachineState;
    for (let i = 1; i <= 4; i++) {
      state = transition(state, { type: 'retryDue' }, ctx(NOW + i)) as MachineState;
      assert.equal(state.state, 'connecting');
      state = transition(
        state,
        lost,
        ctx(NOW + i, () => 0.5),
      ) as MachineState;
      assert.equal(state.state, 'disconnected');
      assert.equal(state.attempt, i);
      assert.equal(state.since, NOW);
      assert.equal(state.retryIn, Math.floor(0.5 * Math.min(15_000, 1_000 * 2 ** (i - 1))));
    }
  });

  it('is suspended once retries have failed for connectionStateTtl, then retries every suspendedRetryTimeout', () => {
    const connecting = at('connecting', { since: NOW, attempt: 7 });
    const before = transition(connecting, lost, ctx(NOW + timings.connectionStateTtl - 1));
    assert.equal(before?.state, 'disconnected');
    const after = transition(connecting, lost, ctx(NOW + timings.connectionStateTtl));
    assert.equal(after?.state, 'suspended');
    assert.equal(after?.retryIn, timings.suspendedRetryTimeout);

    // A failed retry from suspended goes back to suspended, whatever the clock says.
    const retrying = transition(after as MachineState, { type: 'retryDue' }, ctx()) as MachineState;
    assert.equal(retrying.state, 'connecting');
    const again = transition(retrying, lost, ctx(NOW + timings.connectionStateTtl + 1));
    assert.equal(again?.state, 'suspended');
    assert.equal(again?.retryIn, timings.suspendedRetryTimeout);
  });

  it('connect() in suspended retries now, and a success ends the run', () => {
    const suspended = at('suspended', { since: NOW, suspended: true, attempt: 9 });
    const connecting = transition(suspended, { type: 'connect' }, ctx()) as MachineState;
    assert.equal(connecting.state, 'connecting');
    const connected = transition(connecting, { type: 'opened' }, ctx()) as MachineState;
    assert.deepEqual(connected, { ...INITIAL_STATE, state: 'connected' });
  });

  it('connect() after failed or closed starts a fresh run', () => {
    for (const state of ['failed', 'closed', 'initialized'] as const) {
      const next = transition(at(state, { suspended: true, attempt: 5 }), { type: 'connect' }, ctx());
      assert.deepEqual(
        { state: next?.state, attempt: next?.attempt, suspended: next?.suspended, since: next?.since },
        { state: 'connecting', attempt: 0, suspended: false, since: NOW },
      );
    }
  });
});

describe('permanent errors', () => {
  it('go to failed with the error, from connecting and from connected', () => {
    for (const state of ['connecting', 'connected'] as const) {
      const next = transition(at(state), fatal, ctx());
      assert.equal(next?.state, 'failed');
      assert.equal(next?.reason, (fatal as { error: MooringError }).error);
      assert.equal(next?.retryIn, undefined);
    }
  });

  it('are not retried: failed ignores timers, network changes and losses', () => {
    const failed = at('failed');
    for (const event of [{ type: 'retryDue' }, { type: 'online' }, lost, fatal] as MachineEvent[]) {
      assert.equal(transition(failed, event, ctx()), undefined, event.type);
    }
  });
});
