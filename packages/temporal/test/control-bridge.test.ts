// The control bridge against a real Mooring server and a fake of the Temporal client surface it uses:
// controls from a user's device reach the session's workflow as typed updates (or signals) in order,
// each once — across a bridge restart (its saved position) and a crash between delivering and saving
// (the control id as update id) — transient failures are retried, permanent ones skipped.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { UserSession } from '@mooring/ai';
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { BridgeWorkflowClient, ControlBridgeOptions } from '../src/control-bridge.ts';
import { ControlBridge } from '../src/control-bridge.ts';
import type { PositionStore } from '../src/position-store.ts';
import { filePositions, memoryPositions } from '../src/position-store.ts';
import { FakeWorkflows } from './helpers/fake-workflows.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

// The real client's `client.workflow` must fit the surface the bridge asks for (checked by tsc).
const fits: (workflows: Client['workflow']) => BridgeWorkflowClient = (workflows) => workflows;
void fits;

async function setup(t: TestContext) {
  const server = await realServer(t);
  const name = sessionName();
  const user = new UserSession({
    channel: client(t, server.url, { clientId: 'alice' }).channels.get(name, { start: true }),
  });
  t.after(() => user.close());
  await user.start();
  const workflows = new FakeWorkflows();
  const bridge = (options: Partial<ControlBridgeOptions> = {}) => {
    const b = new ControlBridge({
      mooring: client(t, server.url, { clientId: 'bridge' }),
      workflows,
      workflowId: (channel) => `wf-${channel}`,
      retry: { initial: 10, max: 50 },
      ...options,
    });
    t.after(() => b.close());
    return b;
  };
  return { server, name, user, workflows, bridge, workflowId: `wf-${name}` };
}

describe('ControlBridge', () => {
  it('delivers inputs and controls as typed updates, in order, with the control id as update id', async (t) => {
    const { name, user, workflows, bridge, workflowId } = await setup(t);
    const b = bridge();
    const delivered: string[] = [];
    b.on('delivered', (d) => delivered.push(d.kind));
    await b.follow(name);

    const inputId = await user.send('Plan my trip');
    await user.steer('run-1', 'Make it cheaper');
    await user.approveTool({ runId: 'run-1', approvalId: 'ap-1', approved: true, reason: 'ok' });
    await user.handover('human', { operator: 'op-7' });
    await user.handover('ai');
    await user.regenerate(inputId);
    await user.cancel('run-1');
    await waitFor(() => delivered.length === 7);
    await b.idle();

    assert.deepEqual(delivered, [
      'input',
      'steer',
      'approval',
      'handover',
      'handover',
      'regenerate',
      'cancel',
    ]);
    const calls = workflows.calls;
    assert.ok(calls.every((c) => c.method === 'executeUpdate' && c.workflowId === workflowId));
    assert.deepEqual(
      calls.map((c) => c.name),
      [
        'mooring.input',
        'mooring.steer',
        'mooring.approval',
        'mooring.handover',
        'mooring.handover',
        'mooring.regenerate',
        'mooring.cancel',
      ],
    );
    for (const c of calls) {
      assert.equal(c.updateId, c.payload?.controlId);
      assert.match(c.updateId ?? '', /^alice\//, 'the id is scoped by its publisher');
      assert.equal(c.payload?.channel, name);
    }
    assert.equal(new Set(calls.map((c) => c.updateId)).size, 7);
    const [input, steer, approval, handover] = calls.map((c) => c.payload as Record<string, unknown>);
    assert.equal(input?.inputId, inputId);
    assert.equal((input?.message as { role: string }).role, 'user');
    assert.equal(steer?.runId, 'run-1');
    assert.deepEqual(
      { approvalId: approval?.approvalId, approved: approval?.approved, reason: approval?.reason },
      { approvalId: 'ap-1', approved: true, reason: 'ok' },
    );
    assert.deepEqual({ to: handover?.to, operator: handover?.operator }, { to: 'human', operator: 'op-7' });

    // The workflow's fold of them.
    const state = workflows.state(workflowId);
    assert.equal(state.applied, 7);
    assert.deepEqual(state.approval('ap-1'), { approved: true, reason: 'ok' });
    assert.equal(state.holder, 'ai');
    assert.equal(state.isCancelled('run-1'), true);
    assert.equal(state.pending.length, 2, 'the input and the regeneration wait for an answer');
  });

  it('following a session twice, at once or one after the other, delivers each control once; unfollow stops, also for a session never followed', async (t) => {
    const { name, user, workflows, bridge } = await setup(t);
    const b = bridge();
    await Promise.all([b.follow(name), b.follow(name)]);
    await b.follow(name);
    await user.cancel('run-1');
    await waitFor(() => workflows.calls.length >= 1);
    await b.idle();
    await user.cancel('run-2');
    await waitFor(() => workflows.calls.length >= 2);
    await b.idle();
    assert.deepEqual(
      workflows.calls.map((c) => (c.payload as { runId?: string }).runId),
      ['run-1', 'run-2'],
      'each control once',
    );
    await b.unfollow('session:never-followed');
    await b.unfollow(name);
    await user.cancel('run-3');
    await new Promise((r) => setTimeout(r, 200));
    await b.idle();
    assert.equal(workflows.calls.length, 2, 'nothing after unfollow');
  });

  it('a closed bridge follows nothing more', async (t) => {
    const { name, user, workflows, bridge } = await setup(t);
    const b = bridge();
    await b.close();
    await b.follow(name);
    await user.cancel('run-1');
    await new Promise((r) => setTimeout(r, 200));
    await b.idle();
    assert.equal(workflows.calls.length, 0);
  });

  it('a restarted bridge resumes from its saved position: nothing is delivered twice, nothing missed', async (t) => {
    const { name, user, workflows, bridge } = await setup(t);
    const dir = mkdtempSync(join(tmpdir(), 'mooring-bridge-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const positions = filePositions(join(dir, 'positions.json'));

    const first = bridge({ positions });
    await first.follow(name);
    await user.send('one');
    await user.cancel('run-a');
    await waitFor(() => workflows.calls.length === 2);
    await first.idle();
    await first.close();

    // While no bridge runs, the user goes on.
    await user.send('two');
    await user.approveTool({ approvalId: 'ap-9', approved: false });

    const second = bridge({ positions: filePositions(join(dir, 'positions.json')) });
    await second.follow(name);
    await waitFor(() => workflows.calls.length >= 4);
    await second.idle();
    await user.cancel('run-b');
    await waitFor(() => workflows.calls.length >= 5);
    await second.idle();

    const ids = workflows.calls.map((c) => c.updateId);
    assert.equal(ids.length, 5, 'each control delivered once');
    assert.equal(new Set(ids).size, 5);
    assert.deepEqual(
      workflows.calls.map((c) => c.name),
      ['mooring.input', 'mooring.cancel', 'mooring.input', 'mooring.approval', 'mooring.cancel'],
    );
  });

  it('a crash between delivering and saving re-delivers that control once more, and it applies once', async (t) => {
    for (const delivery of ['update', 'signal'] as const) {
      const { name, user, workflows, bridge, workflowId } = await setup(t);
      const saved = memoryPositions();
      let crash = true;
      // The first bridge "dies" right after delivering its first control: its save never happens.
      const dying: PositionStore = {
        load: (channel) => saved.load(channel),
        save: (channel, position) => {
          if (crash) return new Promise<void>(() => {});
          return saved.save(channel, position);
        },
      };
      const first = bridge({ positions: dying, delivery });
      await first.follow(name);
      await user.send('answer me once');
      await waitFor(() => workflows.calls.length === 1);
      void first.close();
      crash = false;

      const second = bridge({ positions: saved, delivery });
      await second.follow(name);
      await waitFor(() => workflows.calls.length === 2);
      await second.idle();
      const [a, b] = workflows.calls;
      assert.equal(a?.payload?.controlId, b?.payload?.controlId, `${delivery}: the same control, twice`);
      assert.equal(
        workflows.state(workflowId).pending.length,
        1,
        `${delivery}: one input to answer, not two`,
      );
    }
  });

  it('retries a transient failure in order; skips (and reports) a control the workflow cannot take', async (t) => {
    const { name, user, workflows, bridge } = await setup(t);
    workflows.failures.push(new Error('14 UNAVAILABLE: connection refused'), new Error('14 UNAVAILABLE'));
    const b = bridge();
    const errors: { retrying: boolean }[] = [];
    b.on('error', (e) => errors.push(e));
    await b.follow(name);
    await user.cancel('run-1');
    await user.cancel('run-2');
    await waitFor(() => workflows.calls.filter((c) => c.payload?.controlId).length === 4);
    await b.idle();
    assert.deepEqual(
      errors.map((e) => e.retrying),
      [true, true],
    );
    assert.deepEqual(
      workflows.calls.map((c) => (c.payload as { runId?: string }).runId),
      ['run-1', 'run-1', 'run-1', 'run-2'],
      'run-2 waited for run-1',
    );

    workflows.failures.push(new WorkflowNotFoundError('workflow not found', 'wf', undefined));
    await user.cancel('run-3');
    await user.cancel('run-4');
    await waitFor(() => workflows.calls.length === 6);
    await b.idle();
    assert.equal(errors.at(-1)?.retrying, false);
    assert.deepEqual(
      workflows.calls.slice(4).map((c) => (c.payload as { runId?: string }).runId),
      ['run-3', 'run-4'],
    );
  });

  it("`cancel: 'workflow'` cancels the workflow itself", async (t) => {
    const { name, user, workflows, bridge, workflowId } = await setup(t);
    const b = bridge({ cancel: 'workflow' });
    await b.follow(name);
    await user.cancel();
    await waitFor(() => workflows.calls.length === 1);
    assert.deepEqual(workflows.calls, [{ workflowId, method: 'cancel' }]);
  });
});
