// The workflow side in Temporal's real workflow sandbox, without a server: `Worker.runReplayHistory`
// replays hand-built histories of a session workflow (`fixtures/session-workflow.ts`) and fails on any
// command the history does not hold (a nondeterminism error). It proves that `useMooringSession`'s
// handlers take the bridge's signals, that an input schedules the answering activity, and that a
// `cancel` of that run requests the activity's cancellation — while the workflow itself carries on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { within } from '@mooring/testkit';
import { defaultPayloadConverter } from '@temporalio/common';
import proto from '@temporalio/proto';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { runIdFor } from '../src/workflow/mooring-session.ts';

const { temporal } = proto;
Runtime.install({ logger: new DefaultLogger('WARN') });
/** A history event as proto JSON-ish object (numbers for int64s): `History.fromObject` converts it. */
type Event = { eventType: number } & Record<string, unknown>;
const T = temporal.api.enums.v1.EventType;
const WORKFLOWS = fileURLToPath(new URL('./fixtures/session-workflow.ts', import.meta.url));
const WORKFLOW_ID = 'session:replay';
const QUEUE = { name: 'q' };
const payloads = (...values: unknown[]) => ({
  payloads: values.map((v) => defaultPayloadConverter.toPayload(v)),
});

/** Numbers the events and fills the workflow task triples. */
class HistoryBuilder {
  readonly events: Event[] = [];
  add(event: Event): number {
    const eventId = this.events.length + 1;
    this.events.push({ ...event, eventId, eventTime: { seconds: 1_700_000_000 + eventId } });
    return eventId;
  }
  workflowTask(): number {
    const scheduled = this.add({
      eventType: T.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
      workflowTaskScheduledEventAttributes: {
        taskQueue: QUEUE,
        startToCloseTimeout: { seconds: 10 },
        attempt: 1,
      },
    });
    const started = this.add({
      eventType: T.EVENT_TYPE_WORKFLOW_TASK_STARTED,
      workflowTaskStartedEventAttributes: {
        scheduledEventId: scheduled,
        identity: 'test',
        requestId: `r${scheduled}`,
      },
    });
    return this.add({
      eventType: T.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
      workflowTaskCompletedEventAttributes: {
        scheduledEventId: scheduled,
        startedEventId: started,
        identity: 'test',
      },
    });
  }
  signal(name: string, payload: unknown): void {
    this.add({
      eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
      workflowExecutionSignaledEventAttributes: {
        signalName: name,
        input: payloads(payload),
        identity: 'bridge',
      },
    });
  }
  history() {
    return temporal.api.history.v1.History.fromObject({ events: this.events });
  }
}

function started(workflowType = 'sessionAgent'): HistoryBuilder {
  const h = new HistoryBuilder();
  h.add({
    eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    workflowExecutionStartedEventAttributes: {
      workflowType: { name: workflowType },
      taskQueue: QUEUE,
      input: payloads({ channel: WORKFLOW_ID }),
      workflowTaskTimeout: { seconds: 10 },
      originalExecutionRunId: 'run-1',
      firstExecutionRunId: 'run-1',
      attempt: 1,
      identity: 'test',
    },
  });
  h.workflowTask();
  return h;
}

const input = {
  controlId: 'alice/op-1',
  channel: WORKFLOW_ID,
  serial: 's1',
  inputId: 'msg_1',
  message: { id: 'msg_1', role: 'user', parts: [{ type: 'text', text: 'hello' }] },
};
const runId = runIdFor(WORKFLOW_ID, input.controlId); // what the fixture workflow computes

function scheduleAnswer(h: HistoryBuilder, completedTask: number): number {
  return h.add({
    eventType: T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    activityTaskScheduledEventAttributes: {
      activityId: '1',
      activityType: { name: 'answer' },
      taskQueue: QUEUE,
      input: payloads({ channel: WORKFLOW_ID, input: 'msg_1', runId }),
      startToCloseTimeout: { seconds: 60 },
      heartbeatTimeout: { seconds: 10 },
      workflowTaskCompletedEventId: completedTask,
    },
  });
}

/** A worker picked up the activity scheduled at `scheduled`; the started event's id. */
function startActivity(h: HistoryBuilder, scheduled: number): number {
  return h.add({
    eventType: T.EVENT_TYPE_ACTIVITY_TASK_STARTED,
    activityTaskStartedEventAttributes: {
      scheduledEventId: scheduled,
      attempt: 1,
      identity: 'w',
      requestId: 'a',
    },
  });
}

/**
 * The workflow runs in a worker thread with a deadline per activation, so that a workflow looping
 * without yielding fails its replay ("Script execution timed out") instead of hanging. Replay's default
 * (`debugMode`) runs it on the test's own thread without a deadline: such a loop held the test past the
 * describe's 170 s timeout, which never fired; a deadline on this thread crashes Node instead (an async
 * id assertion). `debugMode` is left out of `ReplayWorkerOptions`' type, yet replay reads it: passed as
 * a variable, not a literal.
 */
const REPLAY_OPTIONS = {
  workflowsPath: WORKFLOWS,
  replayName: 'mooring-replay',
  debugMode: false,
  isolateExecutionTimeout: '10s',
} as const;

/** Replays `h`; the outer bound catches anything else that never ends. */
const replay = (h: HistoryBuilder) =>
  within(Worker.runReplayHistory(REPLAY_OPTIONS, h.history(), WORKFLOW_ID), {
    timeout: 30_000,
    message: 'the replay never ended',
  });

describe('session workflow replay (Temporal workflow sandbox, no server)', { timeout: 170_000 }, () => {
  it('an input signal schedules the answering activity, and the loop waits for the next input', async () => {
    /** One input answered; its last workflow task's id. */
    const answered = (h: HistoryBuilder): number => {
      h.signal('mooring.input', input);
      const task = h.workflowTask();
      const scheduled = scheduleAnswer(h, task);
      const activityStarted = startActivity(h, scheduled);
      h.add({
        eventType: T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        activityTaskCompletedEventAttributes: {
          scheduledEventId: scheduled,
          startedEventId: activityStarted,
          result: payloads('complete'),
        },
      });
      return h.workflowTask(); // the loop waits for the next input: no command
    };
    const h = started();
    answered(h);
    await replay(h);

    // Replay notices a command in the history the workflow did not give, not one it gave that the
    // history lacks: "waits" is held by a history where it answered again, unasked, failing.
    const again = started();
    scheduleAnswer(again, answered(again));
    again.workflowTask();
    await assert.rejects(replay(again), /nondetermin/i, 'the loop answered again without a new input');
  });

  it('a cancel of the run requests the activity’s cancellation; the workflow serves on', async () => {
    await replayCancelled({ runId });
  });

  it('a cancel naming no run cancels the run in progress', async () => {
    await replayCancelled({});
  });

  /** An answer in progress, a cancel (`cancel`: what it names besides its id), the activity cancelled. */
  async function replayCancelled(cancel: { runId?: string }): Promise<void> {
    const h = started();
    h.signal('mooring.input', input);
    const task = h.workflowTask();
    const scheduled = scheduleAnswer(h, task);
    const activityStarted = startActivity(h, scheduled);
    h.signal('mooring.cancel', { controlId: 'alice/op-2', channel: WORKFLOW_ID, serial: 's2', ...cancel });
    const cancelTask = h.workflowTask();
    const requested = h.add({
      eventType: T.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
      activityTaskCancelRequestedEventAttributes: {
        scheduledEventId: scheduled,
        workflowTaskCompletedEventId: cancelTask,
      },
    });
    h.add({
      eventType: T.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
      activityTaskCanceledEventAttributes: {
        scheduledEventId: scheduled,
        startedEventId: activityStarted,
        latestCancelRequestedEventId: requested,
      },
    });
    h.workflowTask();
    await replay(h);
  }

  it('an answer that failed (not cancelled) fails the workflow: session.run does not take it for a cancel', async () => {
    const h = started();
    h.signal('mooring.input', input);
    const task = h.workflowTask();
    const scheduled = scheduleAnswer(h, task);
    const activityStarted = startActivity(h, scheduled);
    h.add({
      eventType: T.EVENT_TYPE_ACTIVITY_TASK_FAILED,
      activityTaskFailedEventAttributes: {
        scheduledEventId: scheduled,
        startedEventId: activityStarted,
        failure: {
          message: 'the model failed',
          applicationFailureInfo: { type: 'Error', nonRetryable: true },
        },
        retryState: 'RETRY_STATE_NON_RETRYABLE_FAILURE',
      },
    });
    const failedTask = h.workflowTask();
    h.add({
      eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
      workflowExecutionFailedEventAttributes: {
        failure: { message: 'Activity task failed' },
        workflowTaskCompletedEventId: failedTask,
      },
    });
    await replay(h);
  });

  it('waitForApproval and waitForToolOutput wait until the user and the device answered, and give what they said', async () => {
    const h = started('approvalAgent');
    const delivered = (n: number) => ({ controlId: `alice/op-${n}`, channel: WORKFLOW_ID, serial: `s${n}` });
    h.signal('mooring.approval', { ...delivered(1), approvalId: 'ap-1', approved: true });
    h.workflowTask(); // approved: now waiting for the tool output, no command
    h.signal('mooring.toolOutput', {
      ...delivered(2),
      runId: 'approval-run',
      toolCallId: 'call-1',
      output: 'done',
    });
    const task = h.workflowTask();
    h.add({
      eventType: T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
      activityTaskScheduledEventAttributes: {
        activityId: '1',
        activityType: { name: 'answer' },
        taskQueue: QUEUE,
        input: payloads({ channel: WORKFLOW_ID, input: 'true done', runId: 'approval-run' }),
        startToCloseTimeout: { seconds: 60 },
        heartbeatTimeout: { seconds: 10 },
        workflowTaskCompletedEventId: task,
      },
    });
    await replay(h);
  });

  it('while a human holds the session the agent answers nothing: a history where it did fails to replay', async () => {
    // No input arrived, yet the history says the workflow scheduled the activity.
    const h = started();
    h.signal('mooring.handover', { controlId: 'op/1', channel: WORKFLOW_ID, serial: 's1', to: 'human' });
    h.signal('mooring.input', input); // a human holds the session: the agent must not answer
    const task = h.workflowTask();
    scheduleAnswer(h, task);
    h.workflowTask();
    await assert.rejects(
      replay(h),
      /nondetermin/i,
      'the workflow must refuse to answer while a human holds the session (a nondeterminism error), not answer or loop',
    );
  });
  it('sub-agents named by workflow type (a string) start a child workflow per agent, and the parent serves on once both answered', async () => {
    // Replay matches each child's start with a command of the workflow by kind (not by id or type):
    // this holds that the string form starts the two children without failing the workflow task.
    const h = started('subAgentsParent');
    h.signal('mooring.input', input);
    const task = h.workflowTask();
    const children = ['researcher', 'critic'].map((agent) => {
      const workflowId = `${WORKFLOW_ID}/msg_1/${agent}`;
      const args = {
        channel: WORKFLOW_ID,
        input: 'msg_1',
        agent,
        runId: runIdFor(WORKFLOW_ID, 'msg_1', agent),
      };
      const initiated = h.add({
        eventType: T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        startChildWorkflowExecutionInitiatedEventAttributes: {
          namespace: 'default',
          workflowId,
          workflowType: { name: 'subAgent' },
          taskQueue: QUEUE,
          input: payloads(args),
          workflowTaskCompletedEventId: task,
        },
      });
      return { workflowId, initiated };
    });
    const startedIds = children.map(({ workflowId, initiated }) =>
      h.add({
        eventType: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED,
        childWorkflowExecutionStartedEventAttributes: {
          namespace: 'default',
          initiatedEventId: initiated,
          workflowExecution: { workflowId, runId: `${workflowId}-run` },
          workflowType: { name: 'subAgent' },
        },
      }),
    );
    h.workflowTask();
    for (const [i, { workflowId, initiated }] of children.entries()) {
      h.add({
        eventType: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
        childWorkflowExecutionCompletedEventAttributes: {
          namespace: 'default',
          initiatedEventId: initiated,
          startedEventId: startedIds[i],
          workflowExecution: { workflowId, runId: `${workflowId}-run` },
          workflowType: { name: 'subAgent' },
          result: payloads('complete'),
        },
      });
    }
    h.workflowTask(); // both answered: the loop waits for the next input, no command
    await replay(h);
  });
});
