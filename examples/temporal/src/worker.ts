/** The Temporal worker: runs the workflows and the activities on task queue `mooring-travel`. */
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from './activities.ts';

const connection = await NativeConnection.connect({
  address: process.env.TEMPORAL_ADDRESS ?? 'localhost:7233',
});
const worker = await Worker.create({
  connection,
  taskQueue: 'mooring-travel',
  workflowsPath: new URL('./workflows.ts', import.meta.url).pathname,
  activities,
});
await worker.run();
