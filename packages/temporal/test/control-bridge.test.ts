// The control bridge against a real Mooring server and a fake of the Temporal client surface it uses:
// controls from a user's device reach the session's workflow as typed updates (or signals) in order,
// each once — across a bridge restart (its saved position) and a crash between delivering and saving
// (the control id as update id) — transient failures are retried, permanent ones skipped.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import { UserSession } from '@mooring/ai';
import type { Message } from '@mooring/protocol';
import { EVENT_CONTROL, EVENT_RUN } from '@mooring/protocol/ai';
import type { MooringServer } from '@mooring/server';
import { redisSkipReason, startRedis } from '@mooring/testkit';
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import { EPOCH, fakeClient, sent, serial } from '../../client/test/helpers/fake-client.ts';
import type { FakeTransport } from '../../client/test/helpers/fake-transport.ts';
import { flush } from '../../client/test/helpers/fake-transport.ts';
import { lossyNodes } from '../../server/test/support/redis-fixtures.ts';
import type { BridgeWorkflowClient, ControlBridgeOptions } from '../src/control-bridge.ts';
import { ControlBridge } from '../src/control-bridge.ts';
import type { PositionStore } from '../src/position-store.ts';
import { filePositions, memoryPositions } from '../src/position-store.ts';
import { FakeWorkflows } from './helpers/fake-workflows.ts';
import { client, realServer, restartRedis, sessionName, waitFor } from './helpers/fixture.ts';

// The real client's `client.workflow` must fit the surface the bridge asks for (checked by tsc).
const fits: (workflows: Client['workflow']) => BridgeWorkflowClient = (workflows) => workflows;
void fits;

/** A scripted `cancel` control: created at sequence `created`, last changed at `version`. */
function cancelControl(version: number, created: number, runId: string, epoch = EPOCH): Message {
  return {
    serial: serial(created, epoch),
    version: serial(version, epoch),
    action: version === created ? 'create' : 'update',
    id: `c${created}`,
    clientId: 'alice',
    name: EVENT_CONTROL,
    data: { type: 'cancel', runId },
    timestamp: created,
  };
}

/** The run a delivered control names, if any. */
const runOf = (payload: unknown) => (payload as { runId?: string } | undefined)?.runId;

async function setup(t: TestContext, options: Parameters<typeof realServer>[1] = {}) {
  const server = await realServer(t, options);
  return { server, ...(await sessionOn(t, server, server)) };
}

/**
 * `setup` on a redis-server of the test's own that keeps every write (`appendonly always`), so that
 * `restartRedis` brings it back with its log; undefined (the test skipped) without redis-server.
 */
async function redisSetup(t: TestContext) {
  const skip = redisSkipReason();
  if (skip) {
    t.skip(skip);
    return undefined;
  }
  const redis = await startRedis({ appendonly: 'always' });
  t.after(() => redis.close());
  return { redis, ...(await setup(t, { store: { kind: 'redis', url: redis.url } })) };
}

/**
 * A fresh session, alice's `UserSession` on it started on `userNode`; `bridge(options)` makes a bridge
 * on `bridgeNode` (closed when the test ends) that delivers to `workflows`.
 */
async function sessionOn(t: TestContext, userNode: MooringServer, bridgeNode: MooringServer) {
  const name = sessionName();
  const user = new UserSession({
    channel: client(t, userNode.url, { clientId: 'alice' }).channels.get(name, { start: true }),
  });
  t.after(() => user.close());
  await user.start();
  const workflows = new FakeWorkflows();
  const bridge = (options: Partial<ControlBridgeOptions> = {}) => {
    const b = new ControlBridge({
      mooring: client(t, bridgeNode.url, { clientId: 'bridge' }),
      workflows,
      workflowId: (channel) => `wf-${channel}`,
      retry: { initial: 10, max: 50 },
      ...options,
    });
    t.after(() => b.close());
    return b;
  };
  return { name, user, workflows, bridge, workflowId: `wf-${name}` };
}

/** A page of a node's read-back on the scripted connection `t`: `messages`, rolled up, after `after`. */
function readBack(t: FakeTransport, channel: string, after: string, ...messages: Message[]): void {
  t.frame({ type: 'messages', channel, messages, after, rolledUp: true });
}

/**
 * A bridge on the scripted client (the test plays the server) following a fresh session, from a
 * saved position or from now: the `attach` it sends is answered by hand, resumed at `position`.
 */
async function scriptedBridge(from: { saved: string } | { startAt: 'now' }, position: string) {
  const { client: mooring, connect, timers } = fakeClient();
  const t1 = await connect();
  const name = sessionName();
  const workflows = new FakeWorkflows();
  const bridge = new ControlBridge({
    mooring,
    workflows,
    ...('saved' in from ? { positions: memoryPositions({ [name]: from.saved }) } : from),
    workflowId: (channel) => `wf-${channel}`,
  });
  const following = bridge.follow(name);
  await flush();
  const attach = sent(t1, 'attach')[0]!;
  t1.frame({ type: 'attached', ref: attach.ref, channel: name, resumed: true, epoch: EPOCH, position });
  await following;
  return { mooring, connect, timers, t1, name, workflows, bridge };
}

/** A bridge follows the session, delivers the input 'first', and stops: its saved position. */
async function deliveredFirstAndStopped(fixture: Awaited<ReturnType<typeof setup>>) {
  const { name, user, workflows, bridge } = fixture;
  const positions = memoryPositions();
  const first = bridge({ positions });
  await first.follow(name);
  await user.send('first');
  await waitFor(() => workflows.calls.length === 1);
  await first.idle();
  await first.close();
  return positions;
}

/**
 * A bridge delivered the input 'first' and stopped (its position saved in `positions`); while no
 * bridge runs, the user sends control b, then c, then changes b — a catch-up brings c first, b last.
 */
async function controlsSentWhileAway(t: TestContext) {
  const fixture = await setup(t);
  const { user } = fixture;
  const positions = await deliveredFirstAndStopped(fixture);
  const b = await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-b' });
  await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-c' });
  await user.channel.update(b, { headers: { edited: 'yes' } });
  return { ...fixture, positions };
}

describe('ControlBridge', () => {
  it('delivers a client-side tool output (and a tool failure) as mooring.toolOutput, for the workflow to wait on', async (t) => {
    const { name, user, workflows, bridge, workflowId } = await setup(t);
    const b = bridge();
    await b.follow(name);
    await user.toolOutput({ runId: 'run-1', toolCallId: 'call-1', output: { city: 'Lyon' } });
    await user.toolOutput({ runId: 'run-1', toolCallId: 'call-2', errorText: 'no GPS' });
    await waitFor(() => workflows.calls.length === 2);
    await b.idle();
    assert.deepEqual(
      workflows.calls.map((c) => [c.name, c.updateId === c.payload?.controlId]),
      [
        ['mooring.toolOutput', true],
        ['mooring.toolOutput', true],
      ],
    );
    const [ok, failed] = workflows.calls.map((c) => c.payload as Record<string, unknown>);
    assert.deepEqual(
      [ok?.runId, ok?.toolCallId, ok?.output, ok?.errorText],
      ['run-1', 'call-1', { city: 'Lyon' }, undefined],
    );
    assert.deepEqual(
      [failed?.toolCallId, failed?.errorText, 'output' in (failed ?? {})],
      ['call-2', 'no GPS', false],
    );
    const state = workflows.state(workflowId);
    assert.deepEqual(state.toolOutput('call-1'), {
      runId: 'run-1',
      output: { city: 'Lyon' },
      errorText: undefined,
    });
    assert.deepEqual(state.toolOutput('call-2'), { runId: 'run-1', output: undefined, errorText: 'no GPS' });
    assert.equal(state.toolOutput('call-3'), undefined);
  });

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

  it('across a Redis restart (the log goes on in a new epoch), the first input sent after it is delivered, once; none is delivered again', async (t) => {
    const fixture = await redisSetup(t);
    if (!fixture) return;
    const { redis, server, name, user, workflows } = fixture;
    const bridge = fixture.bridge();
    await bridge.follow(name);
    await user.send('before');
    await waitFor(() => workflows.calls.length === 1);

    await restartRedis(redis, server);
    // the first publish on the new Redis: it starts the new epoch, and the bridge's connection (which
    // stayed up) learns of that epoch from this very input
    await user.send('after');
    await waitFor(() => workflows.calls.length >= 2, {
      message: 'the input sent after the restart never arrived',
    });
    await user.send('later');
    await waitFor(() => workflows.calls.length >= 3);
    await bridge.idle();
    assert.deepEqual(
      workflows.calls.map(
        (c) => (c.payload as { message?: { parts?: { text?: string }[] } }).message?.parts?.[0]?.text,
      ),
      ['before', 'after', 'later'],
    );
  });

  it("across a Redis restart, a control created before `kept` and changed after it is not delivered again (`cancel: 'workflow'` does not cancel twice)", async (t) => {
    // the catch-up after the restart brings that control under its serial of the new epoch, which
    // sorts after every serial the bridge read: it is still the control it delivered. Delivered again,
    // a cancel would cancel whatever workflow serves the session then (no update id absorbs it)
    const fixture = await redisSetup(t);
    if (!fixture) return;
    const { redis, server, name, user, workflows, bridge } = fixture;
    const live = bridge({ cancel: 'workflow' });
    await live.follow(name);
    const control = await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-a' });
    await user.send('before');
    await waitFor(() => workflows.calls.length === 2);
    await live.idle();

    await restartRedis(redis, server);
    // the first publish on the new Redis changes the control: the bridge's connection (which stayed
    // up) learns of the new epoch from it and resumes (epoch_changed, kept): the control is in the catch-up
    await user.channel.update(control, { headers: { edited: 'yes' } });
    await user.send('after');
    await waitFor(() => workflows.calls.filter((c) => c.name === 'mooring.input').length === 2, {
      message: 'the input sent after the restart never arrived',
    });
    await live.idle();
    assert.deepEqual(
      workflows.calls.map((c) => c.name ?? c.method),
      ['cancel', 'mooring.input', 'mooring.input'],
      'the control was delivered again',
    );
  });

  it('across a Redis restart while the bridge was away: each control once, the one changed after a later one was sent included', async (t) => {
    const fixture = await redisSetup(t);
    if (!fixture) return;
    const { redis, server, name, user, workflows, bridge } = fixture;
    const positions = memoryPositions();
    const first = bridge({ positions });
    await first.follow(name);
    const delivered = await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-a' });
    await waitFor(() => workflows.calls.length === 1);
    await first.idle();
    await first.close();

    await restartRedis(redis, server);
    // in the new epoch, while no bridge runs: the delivered control changed, two controls sent, and
    // the first of them changed after the second was sent (the catch-up brings it after that one)
    await user.channel.update(delivered, { headers: { edited: 'yes' } });
    const b = await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-b' });
    await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-c' });
    await user.channel.update(b, { headers: { edited: 'yes' } });

    const second = bridge({ positions });
    await second.follow(name);
    await user.send('later'); // delivered after the catch-up: everything before it was handled
    await waitFor(() => workflows.calls.some((c) => c.name === 'mooring.input'), {
      message: 'the input sent after the catch-up never arrived',
    });
    await second.idle();
    assert.deepEqual(
      workflows.calls.map((c) => runOf(c.payload) ?? c.name),
      ['run-a', 'run-c', 'run-b', 'mooring.input'],
    );
  });

  it('a control sent while the bridge was away and changed after a later control was sent is delivered (the catch-up brings it last)', async (t) => {
    const { name, user, workflows, bridge, positions } = await controlsSentWhileAway(t);
    const second = bridge({ positions });
    await second.follow(name);
    await user.send('later');
    await waitFor(() => workflows.calls.length >= 3 && workflows.calls.at(-1)?.name === 'mooring.input', {
      message: 'the input sent after the catch-up never arrived',
    });
    await second.idle();
    assert.deepEqual(
      workflows.calls.map((c) => runOf(c.payload) ?? c.name),
      ['mooring.input', 'run-c', 'run-b', 'mooring.input'],
    );
  });

  it('a bridge stopped in the middle of a catch-up delivers on its restart the control the catch-up had not reached (created before one it delivered, changed after it)', async (t) => {
    const { name, workflows, bridge, positions } = await controlsSentWhileAway(t);
    // The second bridge stops for good while it delivers b (a crash): c was delivered before it.
    // (Its delivery of b is let go at the end, failed for good, so that its close can finish.)
    let letGo = (_: Error) => {};
    t.after(() => letGo(new WorkflowNotFoundError('gone', `wf-${name}`, undefined)));
    const stuck: BridgeWorkflowClient = {
      getHandle(id) {
        const handle = workflows.getHandle(id);
        return {
          ...handle,
          executeUpdate: (def, options) =>
            runOf(options.args[0]) === 'run-b'
              ? new Promise((_, reject) => {
                  letGo = reject;
                })
              : handle.executeUpdate(def, options),
        };
      },
    };
    const second = bridge({ positions, workflows: stuck });
    await second.follow(name);
    await waitFor(() => workflows.calls.some((c) => runOf(c.payload) === 'run-c'));
    await flush();

    const third = bridge({ positions });
    await third.follow(name);
    await waitFor(() => workflows.calls.some((c) => runOf(c.payload) === 'run-b'), {
      message: 'the control the stopped catch-up had not reached was never delivered',
    });
    await third.idle();
    // c again (the catch-up read again from its start: Temporal keeps one update per id), then b
    assert.deepEqual(
      workflows.calls.map((c) => runOf(c.payload) ?? c.name),
      ['mooring.input', 'run-c', 'run-c', 'run-b'],
    );
    assert.equal(workflows.calls[1]?.updateId, workflows.calls[2]?.updateId);
  });

  it('a catch-up read whole is saved: a bridge restarted after it (nothing live since) delivers none of its controls again', async (t) => {
    const fixture = await setup(t);
    const { name, user, workflows, bridge } = fixture;
    const positions = await deliveredFirstAndStopped(fixture);
    await user.cancel('run-a'); // while no bridge runs
    const second = bridge({ positions });
    await second.follow(name);
    await waitFor(() => workflows.calls.length === 2);
    await second.idle();
    await second.close();
    const third = bridge({ positions });
    await third.follow(name);
    await third.idle();
    await user.send('last');
    await waitFor(() => workflows.calls.length >= 3);
    await third.idle();
    assert.deepEqual(
      workflows.calls.map((c) => c.name),
      ['mooring.input', 'mooring.cancel', 'mooring.input'],
    );
  });

  it('live, a `rolledUp` frame (a node repairing a lost bus message) that brings a control after a later-created one still delivers it, once', async (t) => {
    // two nodes on one Redis; the bridge's node loses the bus messages marked LOST: a control, a
    // later control, then a change to the first. The next message shows the jump, and the node reads
    // back what it missed, rolled up in last-change order: the later control comes before the first
    const skip = redisSkipReason();
    if (skip) return t.skip(skip);
    const redis = await startRedis();
    t.after(() => redis.close());
    const { lossy, other, repairs } = await lossyNodes(t, redis.url);
    const { name, user, workflows, bridge: newBridge } = await sessionOn(t, other, lossy);
    const bridge = newBridge();
    await bridge.follow(name);
    await user.send('first');
    await waitFor(() => workflows.calls.length === 1);
    await bridge.idle();
    const repairsBefore = repairs();

    const a = await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-a-LOST' });
    await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-b-LOST' });
    await user.channel.update(a, { headers: { edited: 'LOST' } });
    await user.send('after'); // not lost: the jump
    await waitFor(() => workflows.calls.at(-1)?.name === 'mooring.input' && workflows.calls.length > 1, {
      message: 'the input sent after the lost messages never arrived',
    });
    await bridge.idle();
    assert.ok(repairs() > repairsBefore, 'the node read back what its bus lost');
    assert.deepEqual(
      workflows.calls.map((c) => runOf(c.payload) ?? c.name),
      ['mooring.input', 'run-b-LOST', 'run-a-LOST', 'mooring.input'],
      'a control the rolled-up frame brought was skipped (or delivered twice)',
    );
  });

  it('rolled-up frames read as one catch-up until a live operation: a control they bring in a later page, or that comes after a reconnect, is delivered; one read live before them is not again', async () => {
    // the client plays against a scripted server. A node's read-back comes in pages (and a
    // connection may drop between them): a control created before one read in an earlier page,
    // changed after it, comes only in a later page or in the catch-up that resumes after them
    const { mooring, connect, timers, t1, name, workflows, bridge } = await scriptedBridge(
      { saved: serial(1) },
      serial(1),
    );
    // a created at 2, b at 3, a changed at 4: read back in two pages
    readBack(t1, name, serial(1), cancelControl(3, 3, 'b'));
    readBack(t1, name, serial(3), cancelControl(4, 2, 'a'));
    t1.frame({ type: 'messages', channel: name, messages: [cancelControl(5, 5, 'c')] });
    // then c changed: read back alone, after the live c — not a new control
    readBack(t1, name, serial(5), cancelControl(6, 5, 'c'));
    // d created at 7, e at 8, d changed at 9: the connection drops after the page that brings e
    readBack(t1, name, serial(6), cancelControl(8, 8, 'e'));
    t1.end({ code: 1006, reason: '' });
    timers.advance(30_000);
    const t2 = await connect();
    const resume = sent(t2, 'attach').at(-1)!;
    assert.equal(resume.from, serial(8));
    t2.frame({ type: 'messages', channel: name, messages: [cancelControl(9, 7, 'd')] });
    t2.frame({
      type: 'attached',
      ref: resume.ref,
      channel: name,
      resumed: true,
      epoch: EPOCH,
      position: serial(9),
    });
    t2.frame({ type: 'messages', channel: name, messages: [cancelControl(10, 10, 'f')] });
    await flush();
    await bridge.idle();
    assert.deepEqual(
      workflows.calls.map((c) => runOf(c.payload)),
      ['b', 'a', 'c', 'e', 'd', 'f'],
    );
    await bridge.close();
    mooring.close();
  });

  it('live, a later change to a control already read is not a new control: the newest one read, an older one, one sent before a `startAt: now` follow', async () => {
    // `before` was sent at 1, before the bridge followed from now
    const { mooring, t1, name, workflows, bridge } = await scriptedBridge({ startAt: 'now' }, serial(1));
    t1.frame({ type: 'messages', channel: name, messages: [cancelControl(2, 1, 'before')] });
    t1.frame({
      type: 'messages',
      channel: name,
      messages: [cancelControl(3, 3, 'a'), cancelControl(4, 4, 'b')],
    });
    t1.frame({
      type: 'messages',
      channel: name,
      messages: [cancelControl(5, 4, 'b'), cancelControl(6, 3, 'a')],
    });
    t1.frame({ type: 'messages', channel: name, messages: [cancelControl(7, 7, 'c')] });
    await flush();
    await bridge.idle();
    assert.deepEqual(
      workflows.calls.map((c) => runOf(c.payload)),
      ['a', 'b', 'c'],
    );
    await bridge.close();
    mooring.close();
  });

  it('rolled-up frames that bring the same control twice (changed again while the node read back) deliver it once', async () => {
    const { mooring, t1, name, workflows, bridge } = await scriptedBridge({ saved: serial(1) }, serial(1));
    // `a` created at 2 and changed at 3, read back; changed again at 4 and read back again
    readBack(t1, name, serial(1), cancelControl(3, 2, 'a'));
    readBack(t1, name, serial(3), cancelControl(4, 2, 'a'));
    t1.frame({ type: 'messages', channel: name, messages: [cancelControl(5, 5, 'b')] });
    await flush();
    await bridge.idle();
    assert.deepEqual(
      workflows.calls.map((c) => runOf(c.payload)),
      ['a', 'b'],
    );
    await bridge.close();
    mooring.close();
  });

  it('after a new epoch with `kept`, a live change to a control read before it (under its new serial) is not a new control, also when the bridge had read none', async () => {
    // the new epoch sorts after the old one: its serials, kept ones included, sort after every
    // serial read before the restart
    const other = 'mz000000000a';
    for (const read of [true, false]) {
      // `a` created at 2: read live, or sent before the bridge followed (the attach's position)
      const { mooring, connect, timers, t1, name, workflows, bridge } = await scriptedBridge(
        { startAt: 'now' },
        serial(read ? 1 : 2),
      );
      if (read) t1.frame({ type: 'messages', channel: name, messages: [cancelControl(2, 2, 'a')] });
      await flush();
      await bridge.idle();
      t1.end({ code: 1006, reason: '' });
      timers.advance(30_000);
      const t2 = await connect();
      const resume = sent(t2, 'attach').at(-1)!;
      t2.frame({
        type: 'attached',
        ref: resume.ref,
        channel: name,
        resumed: false,
        reason: 'epoch_changed',
        kept: serial(2, other),
        epoch: other,
        position: serial(2, other),
      });
      t2.frame({ type: 'messages', channel: name, messages: [cancelControl(3, 2, 'a', other)] });
      t2.frame({ type: 'messages', channel: name, messages: [cancelControl(4, 4, 'b', other)] });
      await flush();
      await bridge.idle();
      assert.deepEqual(
        workflows.calls.map((c) => runOf(c.payload)),
        read ? ['a', 'b'] : ['b'],
        read ? 'read before the restart' : 'sent before the bridge followed',
      );
      await bridge.close();
      mooring.close();
    }
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

  it('a control created and then changed while the bridge was away is delivered once on resume (it comes back rolled up as an update); one delivered before is not delivered again', async (t) => {
    const { name, user, workflows, bridge } = await setup(t);
    const positions = memoryPositions();
    const first = bridge({ positions });
    await first.follow(name);
    const delivered = await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-a' });
    await waitFor(() => workflows.calls.length === 1);
    await first.idle();
    await first.close();

    // While no bridge runs: a control is sent and then changed by its sender, and the control the
    // bridge delivered is changed too.
    const away = await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-b' });
    await user.channel.update(away, { headers: { edited: 'yes' } });
    await user.channel.update(delivered, { headers: { edited: 'yes' } });
    // And one is sent and withdrawn (deleted): it comes back as a tombstone, not a control.
    await user.channel.delete(await user.channel.publish(EVENT_CONTROL, { type: 'cancel', runId: 'run-c' }));

    const second = bridge({ positions });
    const errors: unknown[] = [];
    second.on('error', (e) => errors.push(e));
    await second.follow(name);
    await waitFor(() => workflows.calls.length >= 2);
    await second.idle();
    // A live change of a control already delivered is not a new control either.
    await user.channel.update(away, { headers: { edited: 'twice' } });
    await user.cancel('run-z');
    await waitFor(() => workflows.calls.length >= 3);
    await second.idle();

    assert.deepEqual(
      workflows.calls.map((c) => [c.name, c.payload?.serial]),
      [
        ['mooring.cancel', delivered],
        ['mooring.cancel', away],
        ['mooring.cancel', workflows.calls[2]?.payload?.serial],
      ],
    );
    assert.notEqual(workflows.calls[2]?.payload?.serial, away);
    assert.deepEqual(errors, [], 'the tombstone is not read as a malformed control');
    assert.equal(new Set(workflows.calls.map((c) => c.updateId)).size, 3);
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

  it('an input carries its parent, the input it edits and its publisher; an approval and a regeneration their run', async (t) => {
    const { server, name, user, workflows, bridge } = await setup(t);
    const b = bridge();
    await b.follow(name);
    const first = await user.send('one');
    const second = await user.send('two');
    const edited = await user.edit(second, 'two, better');
    await user.approveTool({ runId: 'run-1', approvalId: 'ap-1', approved: false });
    // A regeneration of one answer names its run (what `regenerate(runId)` sends for a run in the view).
    const raw = client(t, server.url, { clientId: 'alice' }).channels.get(name);
    await raw.publish(EVENT_CONTROL, { type: 'regenerate', inputId: first, runId: 'run-1' });
    await waitFor(() => workflows.calls.length === 5);
    await b.idle();

    const payloads = workflows.calls.map((c) => c.payload as Record<string, unknown>);
    assert.deepEqual(
      payloads.slice(0, 3).map((p) => ({ inputId: p.inputId, parent: p.parent, forkOf: p.forkOf })),
      [
        { inputId: first, parent: undefined, forkOf: undefined },
        { inputId: second, parent: first, forkOf: undefined },
        { inputId: edited, parent: first, forkOf: second },
      ],
    );
    assert.ok(
      payloads.slice(0, 3).every((p) => p.clientId === 'alice'),
      'each input names its publisher',
    );
    assert.equal(payloads[3]?.runId, 'run-1', 'the approval names its run');
    assert.deepEqual(
      { inputId: payloads[4]?.inputId, runId: payloads[4]?.runId },
      { inputId: first, runId: 'run-1' },
      'the regeneration names the run it replaces',
    );
  });

  it('`kinds` forwards only those kinds; the others are passed over, and the position saved past them', async (t) => {
    const { name, user, workflows, bridge } = await setup(t);
    const positions = memoryPositions();
    const b = bridge({ kinds: ['cancel'], positions });
    const delivered: string[] = [];
    b.on('delivered', (d) => delivered.push(d.kind));
    await b.follow(name);
    await user.send('not forwarded');
    await user.cancel('run-1');
    await user.steer('run-1', 'not forwarded either');
    await waitFor(() => delivered.length === 1);
    await b.idle();
    assert.deepEqual(delivered, ['cancel']);
    assert.deepEqual(
      workflows.calls.map((c) => c.name),
      ['mooring.cancel'],
    );
    // The steer after the cancel was not delivered, but a restart must not read it again.
    const last = (await user.channel.history({ limit: 1 })).items[0];
    await waitFor(async () => (await positions.load(name)) === last?.version, {
      message: 'the position was not saved past the controls not forwarded',
    });
  });

  it("`operators` forwards a handover only from them, as the session's readers given the same list follow it", async (t) => {
    const { server, name, user, workflows, bridge } = await setup(t);
    const b = bridge({ operators: ['alice'] });
    await b.follow(name);
    const mallory = new UserSession({
      channel: client(t, server.url, { clientId: 'mallory' }).channels.get(name, { start: true }),
    });
    t.after(() => mallory.close());
    await mallory.start();
    await mallory.handover('human');
    await user.handover('human');
    await waitFor(() => workflows.calls.length === 1);
    await b.idle();
    assert.deepEqual(
      workflows.calls.map((c) => [
        c.name,
        (c.payload as { controlId?: string } | undefined)?.controlId?.split('/')[0],
      ]),
      [['mooring.handover', 'alice']],
    );
  });

  it("a malformed control is reported (not retried) and skipped, the next one delivered; a malformed message of another kind is not the bridge's to report", async (t) => {
    const { server, name, user, workflows, bridge } = await setup(t);
    const b = bridge();
    const errors: { controlId: string | undefined; retrying: boolean; error: unknown }[] = [];
    b.on('error', (e) => errors.push(e));
    await b.follow(name);
    const raw = client(t, server.url, { clientId: 'mallory' }).channels.get(name);
    await raw.publish(EVENT_RUN, 'not a run');
    await raw.publish(EVENT_CONTROL, { type: 'steer', runId: 'run-1' });
    await user.cancel('run-1');
    await waitFor(() => workflows.calls.length === 1);
    await b.idle();
    assert.equal(errors.length, 1);
    assert.equal(errors[0]?.retrying, false);
    assert.equal(errors[0]?.controlId, undefined);
    assert.ok(errors[0]?.error instanceof TypeError);
    assert.equal((workflows.calls[0]?.payload as { runId?: string }).runId, 'run-1');
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

describe('filePositions', () => {
  it('reads a file that holds no object (null, a string) as no positions, and saves over it a clean one', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-positions-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    for (const [i, content] of ['null', '"x"'].entries()) {
      const path = join(dir, `positions-${i}.json`);
      writeFileSync(path, content);
      const positions = filePositions(path);
      assert.equal(positions.load('session:a'), undefined, content);
      positions.save('session:a', 's1');
      assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { 'session:a': 's1' }, content);
      assert.equal(filePositions(path).load('session:a'), 's1', content);
    }
  });
});
