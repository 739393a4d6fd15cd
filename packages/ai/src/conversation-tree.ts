/**
 * The fold of an AI session channel into a conversation tree (PROTOCOL.md §13.1). Every client —
 * user devices, tabs, agents — folds the same log with this code, so they all converge to the same
 * tree whatever order of live operations and rolled-up catch-up they received.
 *
 *   input I1 ─┬─ run A1 ─┬─ input I2 ── run A3        nodes: inputs (user messages) and runs
 *             │          └─ input I2' (edit of I2)     edges: run → the input it answers,
 *             ├─ run A2 (replaces A1: regenerate)             input → the run it follows
 *             └─ run B1 (another agent, shown too)
 *
 * An input sent before the previous input had an answer follows that input (its `parent` is an
 * input id); the view shows it after the previous input's answers.
 *
 * Sibling groups (the alternatives a user navigates):
 *   - inputs with the same parent (an edit adds one);
 *   - runs under the same input linked by `replaces` (a regenerate adds one). Runs of different agents
 *     answering one input, or several operator messages, are separate groups and are all shown.
 *
 * The view is one path from a root: at each step the most recent alternative wins, where a node's
 * recency is its serial or the latest selection of it (or of a node below it), whichever is later.
 * So new things (a regenerate, an edit, a new message) show up, and a selection holds until
 * something newer appears in its group. Shared selections (`select` controls) carry their serial, so
 * every device computes the same view; local ones use the channel position at the time.
 *
 * Who may write what (PROTOCOL.md §13.5): op ids are unique per publisher, so several clientIds may
 * claim one run id. A run id names the earliest claim from an accepted publisher — an operator run
 * (`agent: human:<X>`) only from clientId X, an agent run from the `agents` clientIds when the
 * reader names them — and a run's parts are only those created by that claim's clientId. The server
 * stamps clientIds, so an impostor can neither take over a named agent's run id nor write into a run.
 */
import type { ListenerErrorHandler } from '@mooring/client';
import { applyMessage, Emitter } from '@mooring/client';
import type { Message } from '@mooring/protocol';
import { sameEpoch, serialSeq } from '@mooring/protocol';
import { handoverAllowed } from '@mooring/protocol/ai';
import type { ControlData, ControlRecord, InputRecord, PartRecord, RunRecord } from './wire.ts';
import { readSessionMessage } from './wire.ts';

export interface InputNode extends Omit<InputRecord, 'type'> {
  kind: 'input';
}

export interface RunNode extends Omit<RunRecord, 'type' | 'runId'> {
  kind: 'run';
  /** The run id (also the assistant UIMessage id). */
  id: string;
}

export type TreeNode = InputNode | RunNode;

/** Who holds the session (PROTOCOL.md §13.4 `handover`). */
export interface Handover {
  holder: 'ai' | 'human';
  operator: string | undefined;
  /** Serial of the control that set it ('' when never handed over). */
  serial: string;
}

export type TreeChange =
  | { kind: 'input'; node: InputNode }
  | { kind: 'run'; node: RunNode; previous: RunNode | undefined }
  | { kind: 'part'; runId: string; part: PartRecord }
  | { kind: 'control'; control: ControlRecord }
  | { kind: 'removed'; serial: string }
  | { kind: 'reset' };

export type TreeEvents = {
  change: TreeChange;
  malformed: string;
};

/**
 * What a tree is built with. An option given as undefined takes its default, so `UserSession`
 * hands its own options over as they are, and `AgentSession` and `loadSession` name theirs without
 * checking each: the tree's constructor is the one place that reads them.
 */
export interface ConversationTreeOptions {
  /** Follow `select` controls on the channel (shared branch selection). Default false. */
  sharedSelection?: boolean | undefined;
  /**
   * The clientIds allowed to start agent runs (PROTOCOL.md §13.5). A run started by any other
   * clientId is ignored and reported (`malformed`), so it can neither show nor take a run id first.
   * Default: every clientId (the earliest claim of a run id wins).
   */
  agents?: readonly string[] | undefined;
  /**
   * The clientIds allowed to hand the session over (`handover` controls, PROTOCOL.md §13.5). A
   * handover from any other clientId is ignored and reported (`malformed`): it neither stops the
   * agents nor gives the session back. Default: every clientId.
   */
  operators?: readonly string[] | undefined;
  /**
   * Where an exception thrown by a listener of the tree goes. The sessions pass their channel's
   * (`channel.reportListenerError`: the client's `onListenerError`). Default: re-thrown
   * asynchronously, the other listeners going on.
   */
  onListenerError?: ListenerErrorHandler | undefined;
}

/**
 * The selections of one node: every position it was selected at (a deleted shared selection gives
 * way to the one before it), and the latest of them, the only one the view reads.
 */
interface Selections {
  at: string[];
  latest: string;
}

export class ConversationTree {
  readonly #emitter: Emitter<TreeEvents>;
  readonly #messages = new Map<string, Message>();
  /** What each serial was read as, to unindex it on delete. */
  readonly #bySerial = new Map<
    string,
    { type: 'input' | 'run' | 'part' | 'control'; id: string; key?: string }
  >();
  readonly #inputs = new Map<string, InputNode>();
  /** Each run id's accepted claim (what `run(id)` and the view show). */
  readonly #runs = new Map<string, RunNode>();
  /** Every well-formed claim, by `claimKey(clientId, runId)`. */
  readonly #claims = new Map<string, RunNode>();
  readonly #runsByInput = new Map<string, Set<string>>();
  readonly #inputsByParent = new Map<string, Set<string>>();
  /** Parts by `claimKey(creator clientId, run header)`: a run reads only its own publisher's. */
  readonly #parts = new Map<string, Map<string, PartRecord>>();
  readonly #sortedParts = new Map<string, PartRecord[]>();
  /** Serials already reported as refused, so a refused message's later operations stay quiet. */
  readonly #refused = new Set<string>();
  readonly #agents: ReadonlySet<string> | undefined;
  readonly #operators: readonly string[] | undefined;
  readonly #controls: ControlRecord[] = [];
  /** Selections by node: a member repeating `select` on one node adds no work to the view. */
  readonly #selections = new Map<string, Selections>();
  #handover: Handover = { holder: 'ai', operator: undefined, serial: '' };
  #sharedSelection: boolean;
  #view: TreeNode[] | undefined;
  /**
   * Where the view stood when a gap opened (`markGap`: continuity lost, no history to fill it): the
   * node ids ('' for the root). Inputs whose parent the tree lacks — it was in the gap — follow there.
   */
  readonly #gaps = new Set<string>();

  constructor(options: ConversationTreeOptions = {}) {
    this.#emitter = new Emitter(options.onListenerError);
    this.#sharedSelection = options.sharedSelection ?? false;
    this.#agents = options.agents === undefined ? undefined : new Set(options.agents);
    this.#operators = options.operators;
  }

  on<K extends keyof TreeEvents>(event: K, listener: (value: TreeEvents[K]) => void): () => void {
    return this.#emitter.on(event, listener);
  }

  /** Folds one message (live operation or rolled-up) into the tree. Ignores what is not §13. */
  apply(incoming: Message): void {
    const held = this.#messages.get(incoming.serial);
    const folded = applyMessage(held, incoming);
    if (folded === held) return;
    if (folded.action === 'delete') {
      this.#messages.set(incoming.serial, folded); // its tombstone: what it was is known after a restart
      this.#remove(incoming.serial);
      return;
    }
    const result = readSessionMessage(folded);
    if (result === undefined) return;
    this.#messages.set(incoming.serial, folded);
    if (!result.ok) {
      this.#emitter.emit('malformed', result.reason);
      return;
    }
    const record = result.record;
    // Only inputs, runs and shared selections change the view (its nodes are the run and input
    // objects, so a run's new status is a new node); parts and other controls never do, and a
    // streamed answer's every token would otherwise make each reader compute the view again.
    if (record.type === 'input' || record.type === 'run') this.#view = undefined;
    switch (record.type) {
      case 'input': {
        const input = this.#sameInputLinks(record);
        if (this.#inputs.has(input.id) && this.#inputs.get(input.id)?.serial !== input.serial) return;
        const { type: _t, ...rest } = input;
        const node: InputNode = { kind: 'input', ...rest };
        this.#inputs.set(node.id, node);
        addTo(this.#inputsByParent, node.parent ?? '', node.id);
        this.#bySerial.set(input.serial, { type: 'input', id: node.id });
        this.#emitter.emit('change', { kind: 'input', node });
        return;
      }
      case 'run': {
        const { type: _t, runId, ...rest } = this.#sameRunLinks(record);
        const node: RunNode = { kind: 'run', id: runId, ...rest };
        const key = claimKey(record.clientId, runId);
        const claim = this.#claims.get(key);
        if (claim && claim.serial !== record.serial) return; // the same publisher claiming it twice
        this.#claims.set(key, node);
        this.#bySerial.set(record.serial, { type: 'run', id: runId, key });
        const refusal = this.#refusal(record);
        if (refusal !== undefined) {
          this.#refuse(record.serial, refusal);
          return;
        }
        const previous = this.#runs.get(runId);
        if (previous && previous.serial !== record.serial) {
          // Another publisher claimed the id: the earliest claim (by serial) is the run, whatever
          // order a catch-up delivered them in (rolled-up messages come in `version` order).
          if (previous.serial < record.serial) {
            this.#refuse(
              record.serial,
              `run ${runId} already started by ${previous.clientId ?? 'anonymous'}`,
            );
            return;
          }
          this.#runsByInput.get(previous.input)?.delete(runId);
          this.#refuse(previous.serial, `run ${runId} already started by ${record.clientId ?? 'anonymous'}`);
        }
        this.#runs.set(runId, node);
        addTo(this.#runsByInput, node.input, runId);
        this.#emitter.emit('change', { kind: 'run', node, previous });
        return;
      }
      case 'part': {
        // a part grown by appends (a token each) keeps the key its create computed
        const known = this.#bySerial.get(record.serial);
        const key =
          known?.type === 'part' && known.id === record.runId && known.key !== undefined
            ? known.key
            : claimKey(folded.clientId, record.runId);
        let parts = this.#parts.get(key);
        if (!parts) {
          parts = new Map();
          this.#parts.set(key, parts);
        }
        const isNew = !parts.has(record.serial);
        parts.set(record.serial, record);
        const sorted = this.#sortedParts.get(key);
        if (sorted) {
          if (isNew && (sorted.length === 0 || sorted[sorted.length - 1]!.serial < record.serial))
            sorted.push(record);
          else if (isNew) this.#sortedParts.delete(key);
          else {
            const i = sorted.findIndex((p) => p.serial === record.serial);
            if (i >= 0) sorted[i] = record;
          }
        }
        if (known?.key !== key) this.#bySerial.set(record.serial, { type: 'part', id: record.runId, key });
        const run = this.#runs.get(record.runId);
        // the run's claim key is (its clientId, its id), and its id is the part's runId
        if (run && (run.clientId ?? '') !== (folded.clientId ?? '')) {
          this.#refuse(record.serial, `part of run ${record.runId} not written by the run's publisher`);
          return;
        }
        this.#emitter.emit('change', { kind: 'part', runId: record.runId, part: record });
        return;
      }
      case 'control': {
        if (this.#bySerial.has(record.serial)) return;
        if (record.control.type === 'handover' && !handoverAllowed(this.#operators, record.clientId)) {
          this.#refuse(
            record.serial,
            `handover by ${record.clientId ?? 'anonymous'}: not one of the session's operators`,
          );
          return;
        }
        this.#bySerial.set(record.serial, { type: 'control', id: record.serial });
        insertSorted(this.#controls, record);
        const c = record.control;
        if (c.type === 'handover' && record.serial > this.#handover.serial)
          this.#handover = { holder: c.to, operator: c.operator, serial: record.serial };
        if (c.type === 'select' && this.#sharedSelection) this.#addSelection(c.node, record.serial);
        this.#emitter.emit('change', { kind: 'control', control: record });
        return;
      }
    }
  }

  /** Forgets everything (before reloading from history). */
  reset(): void {
    this.#messages.clear();
    this.#bySerial.clear();
    this.#inputs.clear();
    this.#runs.clear();
    this.#claims.clear();
    this.#refused.clear();
    this.#runsByInput.clear();
    this.#inputsByParent.clear();
    this.#parts.clear();
    this.#sortedParts.clear();
    this.#controls.length = 0;
    this.#selections.clear();
    this.#handover = { holder: 'ai', operator: undefined, serial: '' };
    this.#gaps.clear();
    this.#view = undefined;
    this.#emitter.emit('change', { kind: 'reset' });
  }

  /**
   * Messages are missing from here on and cannot be read (continuity lost without `history`): an
   * input that follows a node in the gap is shown after the view's last node as it is now, so what
   * comes next is seen rather than hung under a parent that never comes.
   */
  markGap(): void {
    this.#gaps.add(this.last()?.id ?? '');
    this.#view = undefined;
  }

  /** Inputs whose parent is not in the tree (only after a gap: else a parent still to come). */
  #afterGap(): InputNode[] {
    const orphans: InputNode[] = [];
    for (const [parent, ids] of this.#inputsByParent)
      if (parent !== '' && !this.node(parent)) for (const id of ids) orphans.push(this.#inputs.get(id)!);
    return orphans.sort(bySerial);
  }

  // ------------------------------------------------------------------------------------- reading

  input(id: string): InputNode | undefined {
    return this.#inputs.get(id);
  }

  run(id: string): RunNode | undefined {
    return this.#runs.get(id);
  }

  node(id: string): TreeNode | undefined {
    return this.#inputs.get(id) ?? this.#runs.get(id);
  }

  /**
   * The session messages the tree holds, each folded (rolled up) as far as it has them, and the
   * tombstones of those deleted; any order.
   */
  held(): Message[] {
    return [...this.#messages.values()];
  }

  get inputs(): InputNode[] {
    return [...this.#inputs.values()].sort(bySerial);
  }

  get runs(): RunNode[] {
    return [...this.#runs.values()].sort(bySerial);
  }

  /** Runs whose status is `running`, in serial order. */
  running(): RunNode[] {
    return this.runs.filter((r) => r.status === 'running');
  }

  /**
   * The run's parts in serial order (the order the agent produced them): only those its publisher
   * wrote (§13.5). Empty for an unknown run.
   */
  parts(runId: string): PartRecord[] {
    const run = this.#runs.get(runId);
    return run ? this.#partsOf(claimKey(run.clientId, runId)) : [];
  }

  /**
   * The claim of a run id stored as the message `serial`, whether or not it is the run the view
   * shows, with its own parts: how a publisher finds the run it created itself (a retried run
   * resuming in place) even when another publisher claimed the id first.
   */
  claimAt(serial: string): { run: RunNode; parts: PartRecord[] } | undefined {
    const what = this.#bySerial.get(serial) ?? this.#keptClaim(serial);
    if (what?.type !== 'run' || what.key === undefined) return undefined;
    const run = this.#claims.get(what.key);
    return run && { run, parts: this.#partsOf(what.key) };
  }

  /**
   * The claim this tree holds under an older epoch's serial with `serial`'s sequence: the log went on
   * in a new epoch keeping its messages under their sequences (a Redis restart), and a duplicate is
   * answered with the new epoch's serial before this tree has renamed what it holds. (A duplicate
   * means the store still had the op id, so it still has the message at that sequence.)
   */
  #keptClaim(serial: string): { type: 'run'; id: string; key: string } | undefined {
    const seq = serialSeq(serial);
    if (seq < 0) return undefined;
    for (const [key, run] of this.#claims)
      if (serialSeq(run.serial) === seq && run.serial < serial && !sameEpoch(run.serial, serial))
        return { type: 'run', id: run.id, key };
    return undefined;
  }

  #partsOf(key: string): PartRecord[] {
    let sorted = this.#sortedParts.get(key);
    if (!sorted) {
      sorted = [...(this.#parts.get(key)?.values() ?? [])].sort(bySerial);
      this.#sortedParts.set(key, sorted);
    }
    return sorted;
  }

  /**
   * A later version of a run claim this tree holds, with the claim's `agent` and `input` kept as its
   * first version set them: an update that changes them is reported and taken for the rest (its
   * status, reason, metadata). Moving a run to another input, or under another agent's name, after
   * the fact would let its publisher place an old claim (an old serial: it sorts first) where it was
   * never written. The run id cannot change: it is bound to the message id (`readRun`).
   */
  #sameRunLinks(record: RunRecord): RunRecord {
    const known = this.#bySerial.get(record.serial);
    const first = known?.type === 'run' && known.key !== undefined ? this.#claims.get(known.key) : undefined;
    if (!first || (first.agent === record.agent && first.input === record.input)) return record;
    this.#emitter.emit(
      'malformed',
      `ai.run ${record.serial}: an update may not change run ${record.runId}'s agent or input`,
    );
    return { ...record, agent: first.agent, input: first.input };
  }

  /**
   * A later version of an input this tree holds, with its id, `parent` and `forkOf` kept as its first
   * version set them (inputs are one create, §13.2): an update that changes them is reported, and
   * its message is taken only if it keeps the id. A re-parented input would otherwise move in the
   * tree, and be indexed under both parents.
   */
  #sameInputLinks(record: InputRecord): InputRecord {
    const known = this.#bySerial.get(record.serial);
    const first = known?.type === 'input' ? this.#inputs.get(known.id) : undefined;
    if (
      !first ||
      (first.id === record.id && first.parent === record.parent && first.forkOf === record.forkOf)
    )
      return record;
    this.#emitter.emit(
      'malformed',
      `ai.input ${record.serial}: an update may not change input ${first.id}'s id, parent or forkOf`,
    );
    const message = first.id === record.id ? record.message : first.message;
    return { ...record, id: first.id, message, parent: first.parent, forkOf: first.forkOf };
  }

  /** Why a run claim is not accepted (§13.5), or undefined. */
  #refusal(record: RunRecord): string | undefined {
    if (record.agent.startsWith('human:')) {
      return record.clientId === record.agent.slice('human:'.length)
        ? undefined
        : `run ${record.runId}: operator run ${record.agent} published by ${record.clientId ?? 'anonymous'}`;
    }
    if (this.#agents === undefined) return undefined;
    return record.clientId !== undefined && this.#agents.has(record.clientId)
      ? undefined
      : `run ${record.runId}: ${record.clientId ?? 'anonymous'} is not one of the session's agents`;
  }

  /** Reports a message the fold does not take (once per message), through the malformed path. */
  #refuse(serial: string, reason: string): void {
    if (this.#refused.has(serial)) return;
    this.#refused.add(serial);
    this.#emitter.emit('malformed', reason);
  }

  get controls(): readonly ControlRecord[] {
    return this.#controls;
  }

  get handover(): Handover {
    return this.#handover;
  }

  /** Runs answering an input, in serial order. */
  runsOf(inputId: string): RunNode[] {
    const ids = this.#runsByInput.get(inputId);
    return ids ? [...ids].map((id) => this.#runs.get(id)!).sort(bySerial) : [];
  }

  /** Inputs following a run (or the roots, for `undefined`), in serial order. */
  inputsAfter(runId: string | undefined): InputNode[] {
    const ids = this.#inputsByParent.get(runId ?? '');
    return ids ? [...ids].map((id) => this.#inputs.get(id)!).sort(bySerial) : [];
  }

  /** The alternatives of a node, itself included, in serial order. */
  siblings(id: string): TreeNode[] {
    const input = this.#inputs.get(id);
    if (input) return this.inputsAfter(input.parent);
    const run = this.#runs.get(id);
    if (!run) return [];
    const group = this.#groupOf(run);
    return this.runsOf(run.input).filter((r) => this.#groupOf(r) === group);
  }

  /** The nodes from the root to `id` (inclusive); empty when `id` is unknown. */
  ancestry(id: string): TreeNode[] {
    const path: TreeNode[] = [];
    const seen = new Set<string>();
    let node = this.node(id);
    while (node && !seen.has(node.id)) {
      seen.add(node.id);
      path.push(node);
      node = this.#parentOf(node);
    }
    return path.reverse();
  }

  /** The node a node follows: a run's input; an input's parent (a run, or an input). */
  #parentOf(node: TreeNode): TreeNode | undefined {
    if (node.kind === 'run') return this.#inputs.get(node.input);
    return node.parent === undefined ? undefined : this.node(node.parent);
  }

  /** Records a selection: `node` (and its ancestors) count as touched at serial `at`. */
  select(node: string, at: string): void {
    this.#addSelection(node, at);
  }

  /** The path shown (PROTOCOL.md §13.1): inputs and runs from the root, in order. */
  view(): TreeNode[] {
    if (this.#view) return this.#view;
    const touched = this.#touched();
    const recency = (n: TreeNode): string => {
      const t = touched.get(n.id);
      return t !== undefined && t > n.serial ? t : n.serial;
    };
    const pick = <T extends TreeNode>(candidates: T[]): T | undefined => {
      let best: T | undefined;
      for (const c of candidates) {
        if (!best) best = c;
        else {
          const a = recency(c);
          const b = recency(best);
          if (a > b || (a === b && touched.has(c.id) && !touched.has(best.id))) best = c;
        }
      }
      return best;
    };
    const path: TreeNode[] = [];
    const seen = new Set<string>();
    const orphans = this.#gaps.size > 0 ? this.#afterGap() : [];
    const bridged = (nodes: TreeNode[]) =>
      orphans.length > 0 && nodes.some((n) => this.#gaps.has(n.id)) ? orphans : [];
    let candidates: InputNode[] = [...this.inputsAfter(undefined), ...(this.#gaps.has('') ? orphans : [])];
    while (candidates.length > 0) {
      const input = pick(candidates);
      if (!input || seen.has(input.id)) break;
      seen.add(input.id);
      path.push(input);
      const groups = new Map<string, RunNode[]>();
      for (const run of this.runsOf(input.id)) {
        const g = this.#groupOf(run);
        groups.set(g, [...(groups.get(g) ?? []), run]);
      }
      const shown = [...groups.values()].map((g) => pick(g)!).sort(bySerial);
      path.push(...shown);
      // An input sent before the previous one had an answer follows that input directly.
      candidates = [
        ...shown.flatMap((r) => this.inputsAfter(r.id)),
        ...this.inputsAfter(input.id),
        ...bridged([input, ...shown]),
      ];
    }
    this.#view = path;
    return path;
  }

  /** The last node on the view: what a new input follows (a run, or an input not answered yet). */
  last(): TreeNode | undefined {
    const view = this.view();
    return view[view.length - 1];
  }

  /** The input whose answers are last on the view. */
  lastInput(): InputNode | undefined {
    const view = this.view();
    for (let i = view.length - 1; i >= 0; i--) {
      const n = view[i]!;
      if (n.kind === 'input') return n;
    }
    return undefined;
  }

  /** The latest control of a type (by serial). */
  lastControl<T extends ControlData['type']>(type: T): ControlRecord | undefined {
    for (let i = this.#controls.length - 1; i >= 0; i--)
      if (this.#controls[i]!.control.type === type) return this.#controls[i];
    return undefined;
  }

  #groupOf(run: RunNode): string {
    const seen = new Set<string>();
    let current = run;
    while (current.replaces !== undefined && !seen.has(current.id)) {
      seen.add(current.id);
      const replaced = this.#runs.get(current.replaces);
      if (!replaced || replaced.input !== run.input) break;
      current = replaced;
    }
    return current.id;
  }

  #addSelection(node: string, at: string): void {
    const held = this.#selections.get(node);
    if (!held) this.#selections.set(node, { at: [at], latest: at });
    else {
      held.at.push(at);
      if (at > held.latest) held.latest = at;
    }
    this.#view = undefined;
  }

  #removeSelection(node: string, at: string): void {
    const held = this.#selections.get(node);
    const i = held ? held.at.indexOf(at) : -1;
    if (!held || i < 0) return;
    held.at.splice(i, 1);
    if (held.at.length === 0) this.#selections.delete(node);
    else held.latest = held.at.reduce((a, b) => (b > a ? b : a));
    this.#view = undefined;
  }

  /**
   * For each node, the latest selection at or below it. One pass: the selected nodes from the latest
   * selection down, each walking up its ancestors until it meets a node already touched — that node
   * and all above it hold a later (or equal) selection already. So every node is stepped on once
   * however many selections there are, and however deep the chain a member built (finding 7: a walk
   * per selection cost seconds a view).
   */
  #touched(): Map<string, string> {
    const touched = new Map<string, string>();
    const latestFirst = [...this.#selections].sort(([, a], [, b]) =>
      a.latest > b.latest ? -1 : a.latest < b.latest ? 1 : 0,
    );
    for (const [id, { latest }] of latestFirst) {
      let node = this.node(id);
      while (node && !touched.has(node.id)) {
        touched.set(node.id, latest);
        node = this.#parentOf(node);
      }
    }
    return touched;
  }

  /** The latest handover left among the controls, or the AI's by default. */
  #latestHandover(): Handover {
    for (let i = this.#controls.length - 1; i >= 0; i--) {
      const { control, serial } = this.#controls[i]!;
      if (control.type === 'handover') return { holder: control.to, operator: control.operator, serial };
    }
    return { holder: 'ai', operator: undefined, serial: '' };
  }

  #remove(serial: string): void {
    const what = this.#bySerial.get(serial);
    if (!what) return;
    this.#bySerial.delete(serial);
    this.#view = undefined;
    if (what.type === 'input') {
      const node = this.#inputs.get(what.id);
      this.#inputs.delete(what.id);
      if (node) this.#inputsByParent.get(node.parent ?? '')?.delete(what.id);
    } else if (what.type === 'run') {
      if (what.key !== undefined) this.#claims.delete(what.key);
      this.#refused.delete(serial);
      const node = this.#runs.get(what.id);
      if (node?.serial === serial) {
        this.#runs.delete(what.id);
        this.#runsByInput.get(node.input)?.delete(what.id);
      }
    } else if (what.type === 'part') {
      const key = what.key ?? what.id;
      this.#parts.get(key)?.delete(serial);
      this.#sortedParts.delete(key);
    } else {
      const i = this.#controls.findIndex((c) => c.serial === serial);
      const removed = i >= 0 ? this.#controls.splice(i, 1)[0]!.control : undefined;
      // what a deleted control did is undone: the handover before it holds again, a shared
      // selection it made no longer counts
      if (removed?.type === 'handover' && serial === this.#handover.serial)
        this.#handover = this.#latestHandover();
      if (removed?.type === 'select') this.#removeSelection(removed.node, serial);
    }
    this.#emitter.emit('change', { kind: 'removed', serial });
  }
}

function bySerial(a: { serial: string }, b: { serial: string }): number {
  return a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0;
}

/** A run id as claimed by one publisher (a clientId contains no whitespace, so the space is a border). */
function claimKey(clientId: string | undefined, runId: string): string {
  return `${clientId ?? ''} ${runId}`;
}

function addTo(index: Map<string, Set<string>>, key: string, id: string): void {
  let set = index.get(key);
  if (!set) {
    set = new Set();
    index.set(key, set);
  }
  set.add(id);
}

function insertSorted(list: ControlRecord[], record: ControlRecord): void {
  let i = list.length;
  while (i > 0 && list[i - 1]!.serial > record.serial) i--;
  list.splice(i, 0, record);
}
