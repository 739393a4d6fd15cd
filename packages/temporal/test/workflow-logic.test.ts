// The workflow side as pure functions (no Temporal server here): how a workflow folds its session's
// controls (`SessionState`, what `useMooringSession`'s handlers apply) and how a parent plans its
// sub-agents (`planSubAgents`). Deterministic: a replay computes the same.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ControlPayload } from '../src/workflow/definitions.ts';
import { runIdFor } from '../src/workflow/mooring-session.ts';
import { SessionState } from '../src/workflow/session-state.ts';
import { planSubAgents } from '../src/workflow/sub-agents.ts';

const base = (n: number) => ({ controlId: `alice/c${n}`, channel: 'session:s', serial: `s${n}` });
const message = (text: string) => ({
  id: `m-${text}`,
  role: 'user' as const,
  parts: [{ type: 'text' as const, text }],
});

describe('SessionState (the workflow fold of controls)', () => {
  it('queues inputs in order and hands none out while a human holds the session', () => {
    const state = new SessionState();
    state.apply({ kind: 'input', ...base(1), inputId: 'i1', message: message('one') });
    state.apply({ kind: 'handover', ...base(2), to: 'human', operator: 'op' });
    state.apply({ kind: 'input', ...base(3), inputId: 'i2', message: message('two') });
    assert.equal(state.ready, false);
    assert.equal(state.takeInput(), undefined);
    assert.equal(state.operator, 'op');
    state.apply({ kind: 'handover', ...base(4), to: 'ai' });
    assert.equal(state.ready, true);
    assert.equal((state.takeInput() as { inputId: string }).inputId, 'i1');
    assert.equal((state.takeInput() as { inputId: string }).inputId, 'i2');
    assert.equal(state.takeInput(), undefined);
  });

  it('is ready only while an input waits and the agent holds the session', () => {
    const state = new SessionState();
    assert.equal(state.ready, false, 'nothing waits yet');
    state.apply({ kind: 'input', ...base(1), inputId: 'i1', message: message('one') });
    assert.equal(state.ready, true);
    state.takeInput();
    assert.equal(state.ready, false, 'the only input was taken');
  });

  it('applies each control id once (a re-delivered update or signal changes nothing)', () => {
    const state = new SessionState();
    const input: ControlPayload = { kind: 'input', ...base(1), inputId: 'i1', message: message('one') };
    assert.deepEqual(state.apply(input), { kind: 'none' });
    assert.deepEqual(state.apply(input), { kind: 'duplicate' });
    assert.equal(state.pending.length, 1);
    const cancel: ControlPayload = { kind: 'cancel', ...base(2), runId: 'r1' };
    assert.deepEqual(state.apply(cancel), { kind: 'cancel', runId: 'r1' });
    assert.deepEqual(state.apply(cancel), { kind: 'duplicate' }, 'a duplicate cancel cancels nothing again');
  });

  it('cancels name a run or every run; approvals and steers wait for the run that asks', () => {
    const state = new SessionState();
    assert.deepEqual(state.apply({ kind: 'cancel', ...base(1) }), { kind: 'cancel', runId: undefined });
    assert.equal(
      state.isCancelled('r1'),
      false,
      'a cancel of every run is an effect on the runs then running',
    );
    state.apply({ kind: 'cancel', ...base(2), runId: 'r1' });
    assert.equal(state.isCancelled('r1'), true);
    state.apply({ kind: 'approval', ...base(3), approvalId: 'a1', approved: false, reason: 'too costly' });
    assert.deepEqual(state.approval('a1'), { approved: false, reason: 'too costly' });
    assert.equal(state.approval('a2'), undefined);
    state.apply({ kind: 'steer', ...base(4), runId: 'r2', message: message('shorter') });
    state.apply({ kind: 'steer', ...base(5), runId: 'r2', message: message('in French') });
    assert.deepEqual(
      state.takeSteers('r2').map((m) => m.id),
      ['m-shorter', 'm-in French'],
    );
    assert.deepEqual(state.takeSteers('r2'), [], 'each steer is taken once');
  });

  it('a regeneration waits like an input', () => {
    const state = new SessionState();
    state.apply({ kind: 'regenerate', ...base(1), inputId: 'i1', runId: 'r1' });
    assert.deepEqual(state.takeInput(), { ...base(1), inputId: 'i1', runId: 'r1', regenerate: true });
  });
});

describe('planSubAgents (parent workflow → child workflows)', () => {
  it('one child workflow and one run per agent, derived from the parent and the input', () => {
    const plan = planSubAgents({
      parentWorkflowId: 'trip-42',
      input: 'msg_1',
      agents: ['researcher', 'critic'],
    });
    assert.deepEqual(plan, [
      {
        agent: 'researcher',
        workflowId: 'trip-42/msg_1/researcher',
        runId: runIdFor('trip-42', 'msg_1', 'researcher'),
      },
      { agent: 'critic', workflowId: 'trip-42/msg_1/critic', runId: runIdFor('trip-42', 'msg_1', 'critic') },
    ]);
    assert.deepEqual(
      planSubAgents({ parentWorkflowId: 'trip-42', input: 'msg_1', agents: ['researcher', 'critic'] }),
      plan,
      'deterministic: a replay plans the same children',
    );
    assert.notEqual(plan[0]?.runId, plan[1]?.runId);
  });

  it('a regeneration of an answered input, keyed by its control id, plans new children and new runs', () => {
    // what nextInput() hands out: the input, then a regeneration of the same input
    const state = new SessionState();
    state.apply({ kind: 'input', ...base(1), inputId: 'msg_1', message: message('one') });
    state.apply({ kind: 'regenerate', ...base(2), inputId: 'msg_1', runId: 'r1' });
    const first = state.takeInput()!;
    const again = state.takeInput()!;
    assert.equal(first.inputId, again.inputId, 'the same input');
    const plan = (next: typeof first) =>
      planSubAgents({
        parentWorkflowId: 'trip-42',
        input: next.inputId,
        key: next.controlId,
        agents: ['researcher'],
      });
    assert.deepEqual(plan(first), [
      {
        agent: 'researcher',
        workflowId: 'trip-42/alice/c1/researcher',
        runId: runIdFor('trip-42', 'alice/c1', 'researcher'),
      },
    ]);
    const [answered] = plan(first);
    const [regenerated] = plan(again);
    assert.notEqual(regenerated?.runId, answered?.runId, 'a new run, not the answered one');
    assert.notEqual(regenerated?.workflowId, answered?.workflowId, 'new child workflows');
    assert.notEqual(runIdFor('trip-42', again.controlId), runIdFor('trip-42', first.controlId));
  });

  it('refuses an agent listed twice (two runs would claim one answer)', () => {
    assert.throws(
      () => planSubAgents({ parentWorkflowId: 'p', input: 'i', agents: ['a', 'a'] }),
      /listed twice/,
    );
  });
});
