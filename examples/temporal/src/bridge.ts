/**
 * The bridge process: follows the session, starts its workflow if needed, and turns inputs and
 * controls into updates on it. Positions are kept in `.mooring-bridge.json`, so a restarted bridge
 * resumes where it stopped.
 *
 *   node src/bridge.ts session:demo
 */
import { Mooring } from '@mooring/client';
import { ControlBridge, filePositions } from '@mooring/temporal';
import { Client, Connection, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';

const channel = process.argv[2] ?? 'session:demo';
const temporal = new Client({
  connection: await Connection.connect({ address: process.env.TEMPORAL_ADDRESS ?? 'localhost:7233' }),
});
try {
  await temporal.workflow.start('travelAgent', {
    taskQueue: 'mooring-travel',
    workflowId: channel,
    args: [{ channel }],
  });
} catch (err) {
  if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
}

const bridge = new ControlBridge({
  mooring: new Mooring({
    url: process.env.MOORING_URL ?? 'http://127.0.0.1:8080',
    key: process.env.MOORING_KEY ?? '',
    clientId: 'temporal-bridge',
  }),
  workflows: temporal.workflow,
  positions: filePositions('.mooring-bridge.json'),
});
bridge.on('delivered', (d) => console.log(`→ ${d.workflowId}: ${d.kind} (${d.controlId})`));
bridge.on('error', (e) =>
  console.error(`bridge: ${String(e.error)}${e.retrying ? ' (retrying)' : ' (skipped)'}`),
);
await bridge.follow(channel);
console.log(`following ${channel}`);
