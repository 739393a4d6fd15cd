/**
 * An agent in its own process, for the crash tests: it answers each input with a slow stream of
 * `token<i> ` deltas that never finishes on its own. Configured by environment: MOORING_URL,
 * MOORING_CHANNEL, MOORING_LEASE (ms), MOORING_FIXED_RUN_ID ("1": run id `run-for-<input id>`, so a
 * restarted agent resumes the same run). Prints "ready" once attached.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Mooring } from '@mooring/client';
import { AgentSession } from '../../src/agent-session.ts';
import { KEY } from './fixture.ts';

const url = process.env.MOORING_URL ?? '';
const channelName = process.env.MOORING_CHANNEL ?? '';
const lease = Number(process.env.MOORING_LEASE ?? '500');

const client = new Mooring({ url, key: KEY, clientId: 'crashing-agent', environment: null });
const agent = new AgentSession({
  channel: client.channels.get(channelName, { start: true }),
  agent: 'assistant',
  lease,
  coalesceMs: 0,
  ...(process.env.MOORING_FIXED_RUN_ID === '1'
    ? { runId: (input: { id: string }) => `run-for-${input.id}` }
    : {}),
  onInput: async (_input, run) => {
    run.write({ type: 'text-start', id: 't' });
    for (let i = 0; !run.signal.aborted; i++) {
      run.write({ type: 'text-delta', id: 't', delta: `token${i} ` });
      await sleep(10);
    }
  },
});
await agent.start();
process.stdout.write('ready\n');
