/**
 * A fake of the small Temporal client surface the bridge uses (`getHandle(id).signal / executeUpdate /
 * cancel`) — there is no Temporal server here. Each workflow folds what it receives with the real
 * workflow-side `SessionState`, and, like Temporal, keeps one update per update id (a second
 * `executeUpdate` with a known id returns the first one's outcome without running the handler).
 */
import type { SignalDefinition, UpdateDefinition } from '@temporalio/client';
import type { BridgeWorkflowClient, BridgeWorkflowHandle } from '../../src/control-bridge.ts';
import type { ControlKind, ControlPayload } from '../../src/workflow/definitions.ts';
import { CONTROL_NAMES } from '../../src/workflow/definitions.ts';
import { SessionState } from '../../src/workflow/session-state.ts';

export interface FakeCall {
  workflowId: string;
  method: 'signal' | 'executeUpdate' | 'cancel';
  name?: string;
  updateId?: string;
  payload?: Omit<ControlPayload, 'kind'>;
}

const KIND_OF = new Map<string, ControlKind>(
  Object.entries(CONTROL_NAMES).map(([kind, name]) => [name, kind as ControlKind]),
);

export class FakeWorkflows implements BridgeWorkflowClient {
  readonly calls: FakeCall[] = [];
  readonly states = new Map<string, SessionState>();
  readonly #updates = new Map<string, Set<string>>();
  /** Errors the next calls throw, in order (a transient outage, a missing workflow…). */
  readonly failures: Error[] = [];

  state(workflowId: string): SessionState {
    let state = this.states.get(workflowId);
    if (!state) {
      state = new SessionState();
      this.states.set(workflowId, state);
    }
    return state;
  }

  getHandle(workflowId: string): BridgeWorkflowHandle {
    const fail = () => {
      const error = this.failures.shift();
      if (error) throw error;
    };
    const apply = (name: string, payload: Omit<ControlPayload, 'kind'>) => {
      const kind = KIND_OF.get(name);
      if (!kind) throw new Error(`no handler for ${name}`);
      this.state(workflowId).apply({ ...payload, kind } as ControlPayload);
    };
    return {
      signal: async <Args extends unknown[]>(def: SignalDefinition<Args>, ...args: Args) => {
        const payload = args[0] as Omit<ControlPayload, 'kind'>;
        this.calls.push({ workflowId, method: 'signal', name: def.name, payload });
        fail();
        apply(def.name, payload);
      },
      executeUpdate: async <Ret, Args extends [unknown, ...unknown[]]>(
        def: UpdateDefinition<Ret, Args>,
        options: { args: Args; updateId?: string },
      ) => {
        const payload = options.args[0] as Omit<ControlPayload, 'kind'>;
        const call: FakeCall = { workflowId, method: 'executeUpdate', name: def.name, payload };
        if (options.updateId !== undefined) call.updateId = options.updateId;
        this.calls.push(call);
        fail();
        const seen = this.#updates.get(workflowId) ?? new Set<string>();
        this.#updates.set(workflowId, seen);
        if (options.updateId === undefined || !seen.has(options.updateId)) {
          if (options.updateId !== undefined) seen.add(options.updateId);
          apply(def.name, payload);
        }
        return undefined as Ret;
      },
      cancel: async () => {
        this.calls.push({ workflowId, method: 'cancel' });
        fail();
      },
    };
  }
}
