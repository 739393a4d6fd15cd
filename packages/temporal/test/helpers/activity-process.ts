/**
 * A worker process running attempt 1 of the streaming activity, for the crash test: it streams the
 * scripted answer and stalls half-way (the model goes quiet), so the test can SIGKILL it mid-run.
 * MOORING_URL, MOORING_CHANNEL, MOORING_INPUT, WORKFLOW_ID. Prints "streaming" once the first text is
 * stored.
 */
import { Mooring } from '@mooring/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { streamToSession } from '../../src/stream-to-session.ts';
import { KEY, scriptedModel } from './fixture.ts';

const rest = new Mooring({
  url: process.env.MOORING_URL ?? '',
  key: KEY,
  clientId: 'worker',
  autoConnect: false,
  environment: null,
}).rest;
const env = new MockActivityEnvironment({
  attempt: 1,
  activityId: 'answer',
  workflowExecution: { workflowId: process.env.WORKFLOW_ID ?? '', runId: 'wf-run-1' },
});
let told = false;
env.on('heartbeat', (details: { chunks: number }) => {
  if (!told && details.chunks >= 4) {
    told = true;
    setTimeout(() => process.stdout.write('streaming\n'), 100);
  }
});
await env.run(() =>
  streamToSession({
    rest,
    channel: process.env.MOORING_CHANNEL ?? '',
    input: process.env.MOORING_INPUT ?? '',
    coalesceMs: 0,
    heartbeatEvery: 10,
    stream: () => scriptedModel({ stallAfter: 5 }).stream,
  }),
);
