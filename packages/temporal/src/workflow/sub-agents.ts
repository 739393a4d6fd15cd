/**
 * Sub-agents: one input answered by several agents at once, each a child workflow with its own run in
 * the same session (PROTOCOL.md §13.3: every run carries its `agent`, every part its `run`, and each
 * device groups and orders them the same way — one coherent conversation, both answers live).
 *
 * `planSubAgents` is pure (unit-tested; deterministic, so replays plan the same children): a child
 * workflow id and a run id per agent, both derived from the parent workflow and the input. The
 * children are started by the workflow (`answerWithSubAgents`), each inside `session.run(runId)`, so
 * a `cancel` naming one sub-agent's run cancels that child only, and a `cancel` of every run cancels
 * both.
 */
import type { ChildWorkflowOptions } from '@temporalio/workflow';
import { executeChild } from '@temporalio/workflow';
import type { MooringWorkflowSession } from './mooring-session.ts';
import { runIdFor } from './mooring-session.ts';

export interface SubAgentTask {
  agent: string;
  /** The child workflow's id. */
  workflowId: string;
  /** The run the child publishes (pass it to its streaming activity as `runId`). */
  runId: string;
}

/** Arguments every sub-agent child workflow takes. */
export interface SubAgentArgs {
  channel: string;
  input: string;
  agent: string;
  runId: string;
}

export interface SubAgentPlanOptions {
  parentWorkflowId: string;
  /** The input the sub-agents answer. */
  input: string;
  /**
   * What this answer is for, unique per answer: the `controlId` of what `nextInput()` returned
   * (default: `input`). A regeneration answers the same input again, so keyed by the input it would
   * get the answered runs' ids back (and `streamToSession` would return them, publishing nothing).
   */
  key?: string;
  agents: readonly string[];
}

export function planSubAgents(options: SubAgentPlanOptions): SubAgentTask[] {
  const key = options.key ?? options.input;
  const seen = new Set<string>();
  return options.agents.map((agent) => {
    if (seen.has(agent)) throw new TypeError(`sub-agent "${agent}" is listed twice: each agent answers once`);
    seen.add(agent);
    return {
      agent,
      workflowId: `${options.parentWorkflowId}/${key}/${agent}`,
      runId: runIdFor(options.parentWorkflowId, key, agent),
    };
  });
}

/** Outcome of one sub-agent: its result, or `undefined` when its run was cancelled. */
export interface SubAgentResult<R> {
  agent: string;
  runId: string;
  result: R | undefined;
}

/**
 * Starts one child workflow per agent (concurrently) and waits for all of them. Workflow code only.
 */
export async function answerWithSubAgents<R>(
  session: MooringWorkflowSession,
  /** The child workflow (its function, or its type name). */
  child: string | ((args: SubAgentArgs) => Promise<R>),
  options: SubAgentPlanOptions & { channel: string },
  childOptions: Omit<ChildWorkflowOptions, 'workflowId' | 'args'> = {},
): Promise<SubAgentResult<R>[]> {
  const workflowType = typeof child === 'string' ? child : child.name;
  return Promise.all(
    planSubAgents(options).map(async (task) => {
      const args: SubAgentArgs = {
        channel: options.channel,
        input: options.input,
        agent: task.agent,
        runId: task.runId,
      };
      const result: R | undefined = await session.run(task.runId, () =>
        executeChild(workflowType, { ...childOptions, workflowId: task.workflowId, args: [args] }),
      );
      return { agent: task.agent, runId: task.runId, result };
    }),
  );
}
