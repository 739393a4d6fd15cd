/**
 * Workflows (bundled by the worker into Temporal's sandbox: they import only `@temporalio/workflow`
 * and `@mooring/temporal/workflow`).
 *
 * `travelAgent` serves one session: for each user message it asks two sub-agents (child workflows
 * `subAgent`, both streaming into the session at once), then proposes a booking that waits for the
 * user's approval, and confirms or drops it. A `cancel` from any device cancels the named run's scope;
 * a `handover` to a human pauses the loop until the session is handed back.
 */

import type { SubAgentArgs } from '@mooring/temporal/workflow';
import { answerWithSubAgents, runIdFor, useMooringSession } from '@mooring/temporal/workflow';
import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type * as activities from './activities.ts';

const { answer } = proxyActivities<typeof activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 5 },
});

export async function subAgent(args: SubAgentArgs): Promise<string> {
  const text =
    args.agent === 'researcher'
      ? 'Lisbon in spring: mild weather, trams up to Alfama, pastel de nata in Belém. '
      : 'Watch out: hotels near Baixa fill up early on weekends; book soon. ';
  return answer({ ...args, text });
}

export async function travelAgent({ channel }: { channel: string }): Promise<void> {
  const session = useMooringSession();
  const { workflowId } = workflowInfo();
  for (;;) {
    const next = await session.nextInput();
    const input = next.inputId;
    const key = next.controlId; // a regeneration of an input is a new answer: new runs
    await answerWithSubAgents(session, subAgent, {
      channel,
      input,
      key,
      agents: ['researcher', 'critic'],
      parentWorkflowId: workflowId,
    });

    const proposal = runIdFor(workflowId, key, 'booker');
    const approvalId = `${proposal}:book`;
    const status = await session.run(proposal, () =>
      answer({
        channel,
        input,
        runId: proposal,
        agent: 'booker',
        text: 'I can book Hotel Alfama for Saturday. Shall I? ',
        approval: { approvalId, toolName: 'bookHotel', input: { hotel: 'Hotel Alfama', night: 'Saturday' } },
      }),
    );
    if (status !== 'complete') continue; // cancelled: no booking
    const { approved } = await session.waitForApproval(approvalId);
    const confirmation = runIdFor(workflowId, approvalId, 'booker');
    await session.run(confirmation, () =>
      answer({
        channel,
        input,
        runId: confirmation,
        agent: 'booker',
        text: approved ? 'Booked: Hotel Alfama, Saturday night. ' : 'Fine, I did not book anything. ',
      }),
    );
  }
}
