// The fold itself, without a server: malformed §13 messages are reported and left out, an input sent
// before the previous one was answered follows it, a deleted node leaves the view, and the view picks
// among alternatives by recency and selection (PROTOCOL.md §13.1) whatever a member writes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Headers, JsonValue, Message } from '@mooring/protocol';
import type { UIMessage } from 'ai';
import { ConversationTree } from '../src/conversation-tree.ts';

let seq = 0;
/** The next serial of the channel (also a position to select at). */
function nextSerial(): string {
  return `aaaaaaaaaaaa.${String(++seq).padStart(16, '0')}`;
}
function message(name: string, data: JsonValue, headers: Headers = {}): Message {
  const serial = nextSerial();
  return { serial, version: serial, action: 'create', id: serial, name, data, headers, timestamp: seq };
}
/** The live delete of a message (a later version). */
function deletion(of: Message): Message {
  return { serial: of.serial, version: nextSerial(), action: 'delete', id: of.id, timestamp: seq };
}
const input = (id: string, parent?: string, forkOf?: string) =>
  message('ai.input', {
    message: { id, role: 'user', parts: [{ type: 'text', text: id }] },
    ...(parent ? { parent } : {}),
    ...(forkOf ? { forkOf } : {}),
  });
/** A run's message: created with the id `run:<runId>` (PROTOCOL.md §13.2), as every reader requires. */
const run = (runId: string, inputId: string, replaces?: string) => ({
  ...message(
    'ai.run',
    { runId, agent: 'a', input: inputId, ...(replaces ? { replaces } : {}) },
    { run: runId, agent: 'a', status: 'running' },
  ),
  id: `run:${runId}`,
});
const ids = (nodes: readonly { id: string }[]) => nodes.map((n) => n.id);

function textOf(message: UIMessage): string {
  return message.parts.map((p) => (p.type === 'text' ? p.text : '')).join('');
}

describe('ConversationTree fold', () => {
  it('reports malformed session messages and leaves them out', () => {
    const tree = new ConversationTree();
    const problems: string[] = [];
    tree.on('malformed', (p) => problems.push(p));
    tree.apply(message('ai.input', { message: { id: 'x', role: 'assistant', parts: [] } }));
    tree.apply(message('ai.run', { runId: 'r' }, { status: 'running' }));
    tree.apply(message('ai.part', 'text', { run: 'r', kind: 'nonsense' }));
    tree.apply(message('ai.control', { type: 'explode' }));
    tree.apply(message('chat', 'not a session message'));
    assert.equal(problems.length, 4);
    assert.deepEqual(tree.view(), []);
  });

  it('shows an input sent before the previous one was answered after that input and its answer', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    tree.apply(input('i2', 'i1'));
    tree.apply(run('r1', 'i1'));
    tree.apply(run('r2', 'i2'));
    assert.deepEqual(
      tree.view().map((n) => n.id),
      ['i1', 'r1', 'i2', 'r2'],
    );
    assert.deepEqual(
      tree.ancestry('r2').map((n) => n.id),
      ['i1', 'i2', 'r2'],
    );
  });

  it('an input id written again by a later message keeps the first input, its text and its place', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    tree.apply(run('r1', 'i1'));
    // the same message id again, elsewhere in the tree and with other text (a replay, or a member
    // reusing an id): the input id names the first message
    tree.apply(
      message('ai.input', {
        message: { id: 'i1', role: 'user', parts: [{ type: 'text', text: 'again' }] },
        parent: 'r1',
      }),
    );
    assert.deepEqual(
      tree.inputs.map((n) => textOf(n.message)),
      ['i1'],
    );
    assert.equal(tree.input('i1')?.parent, undefined);
    assert.deepEqual(
      tree.view().map((n) => n.id),
      ['i1', 'r1'],
    );
  });

  it('a deleted part leaves its run', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    tree.apply(run('r1', 'i1'));
    const kept = message('ai.part', 'kept', { run: 'r1', kind: 'text', partId: 't1', state: 'done' });
    const gone = message('ai.part', 'gone', { run: 'r1', kind: 'text', partId: 't2', state: 'done' });
    tree.apply(kept);
    tree.apply(gone);
    tree.apply(deletion(gone));
    assert.deepEqual(
      tree.parts('r1').map((p) => p.text),
      ['kept'],
    );
  });

  it('the latest handover by serial holds, whatever order controls arrive in; other controls leave it', () => {
    const tree = new ConversationTree();
    const back = message('ai.control', { type: 'handover', to: 'ai' });
    const taken = message('ai.control', { type: 'handover', to: 'human', operator: 'op' });
    tree.apply(taken); // a catch-up may deliver the later handover first
    tree.apply(back);
    assert.deepEqual(tree.handover, { holder: 'human', operator: 'op', serial: taken.serial });
    // a later control of another type is no handover
    tree.apply(message('ai.control', { type: 'cancel' }));
    assert.deepEqual(tree.handover, { holder: 'human', operator: 'op', serial: taken.serial });
  });

  it('claimAt answers only for the serial of a run claim', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    const claim = run('r1', 'i1');
    tree.apply(claim);
    const part = message('ai.part', 'text', { run: 'r1', kind: 'text', partId: 't1', state: 'done' });
    tree.apply(part);
    assert.equal(tree.claimAt(claim.serial)?.run.id, 'r1');
    assert.equal(tree.claimAt(part.serial), undefined, 'a part is not a claim');
    assert.equal(tree.claimAt('aaaaaaaaaaaa.9999999999999999'), undefined, 'an unknown serial');
  });

  it('claimAt finds a claim held under an older epoch by the sequence a new epoch kept it at (a duplicate answered after a Redis restart)', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    const claim = run('r1', 'i1');
    tree.apply(claim);
    const seqOf = claim.serial.slice(13);
    assert.equal(tree.claimAt(`bbbbbbbbbbbb.${seqOf}`)?.run.id, 'r1', 'the same sequence in a newer epoch');
    assert.equal(tree.claimAt(`000000000000.${seqOf}`), undefined, 'not in an older epoch than the one held');
    const next = String(Number(seqOf) + 1).padStart(16, '0');
    assert.equal(tree.claimAt(`bbbbbbbbbbbb.${next}`), undefined, 'not another sequence');
  });

  it('a run deleted and then claimed again by its publisher shows the new claim', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    const first = run('r1', 'i1');
    tree.apply(first);
    tree.apply(deletion(first));
    assert.equal(tree.run('r1'), undefined);
    // the same publisher writes the run again (a retried run with a deterministic id)
    const again = run('r1', 'i1');
    tree.apply(again);
    assert.equal(tree.run('r1')?.serial, again.serial);
    assert.deepEqual(ids(tree.view()), ['i1', 'r1']);
  });

  it('a deleted control leaves the list of controls', () => {
    const tree = new ConversationTree();
    const first = message('ai.control', { type: 'cancel' });
    const second = message('ai.control', { type: 'cancel', runId: 'r1' });
    tree.apply(first);
    tree.apply(second);
    tree.apply(deletion(first));
    assert.deepEqual(
      tree.controls.map((c) => c.serial),
      [second.serial],
    );
  });

  it('a deleted handover gives the session back to the holder before it; a deleted shared selection stops holding', () => {
    const tree = new ConversationTree({ sharedSelection: true });
    const first = message('ai.control', { type: 'handover', to: 'human', operator: 'ann' });
    const taken = message('ai.control', { type: 'handover', to: 'human', operator: 'op' });
    const back = message('ai.control', { type: 'handover', to: 'ai' });
    tree.apply(first);
    tree.apply(taken);
    tree.apply(back);
    tree.apply(deletion(back)); // handed back by mistake: the latest operator holds it again
    assert.deepEqual(tree.handover, { holder: 'human', operator: 'op', serial: taken.serial });
    tree.apply(message('ai.control', { type: 'cancel' }));
    tree.apply(deletion(first)); // an earlier one deleted: the latest still holds
    assert.deepEqual(tree.handover, { holder: 'human', operator: 'op', serial: taken.serial });
    tree.apply(deletion(taken));
    assert.deepEqual(tree.handover, { holder: 'ai', operator: undefined, serial: '' }, 'none left: the AI');

    tree.apply(input('i1'));
    tree.apply(input('i2', undefined, 'i1')); // an edit: the newer alternative shows
    const select = message('ai.control', { type: 'select', node: 'i1' });
    tree.apply(select);
    assert.deepEqual(ids(tree.view()), ['i1'], 'the shared selection holds');
    tree.apply(deletion(select));
    assert.deepEqual(ids(tree.view()), ['i2'], 'once deleted, the newer alternative again');
  });

  it('a deleted handover gives the session back to the first control when that is the handover before it', () => {
    const tree = new ConversationTree();
    const first = message('ai.control', { type: 'handover', to: 'human', operator: 'ann' });
    const taken = message('ai.control', { type: 'handover', to: 'human', operator: 'op' });
    tree.apply(first);
    tree.apply(taken);
    tree.apply(deletion(taken));
    assert.deepEqual(tree.handover, { holder: 'human', operator: 'ann', serial: first.serial });
  });

  it('a deleted shared selection undoes only itself: an earlier selection of the same node stays as old as it was', () => {
    const tree = new ConversationTree({ sharedSelection: true });
    tree.apply(input('i1'));
    tree.apply(input('i2', undefined, 'i1'));
    const select = (node: string) => {
      const m = message('ai.control', { type: 'select', node });
      tree.apply(m);
      return m;
    };
    select('i1');
    select('i2');
    const again = select('i1');
    assert.deepEqual(ids(tree.view()), ['i1']);
    tree.apply(deletion(again));
    assert.deepEqual(ids(tree.view()), ['i2'], 'the selection of i2 is the latest left');
  });

  it('lastControl is the latest control of the type asked for, the first one included', () => {
    const tree = new ConversationTree();
    const handover = message('ai.control', { type: 'handover', to: 'human' });
    const cancel = message('ai.control', { type: 'cancel' });
    tree.apply(handover);
    tree.apply(cancel);
    assert.equal(tree.lastControl('handover')?.serial, handover.serial);
    assert.equal(tree.lastControl('cancel')?.serial, cancel.serial);
    assert.equal(tree.lastControl('select'), undefined);
  });

  it('drops a deleted node from the view', () => {
    const tree = new ConversationTree();
    const first = input('i1');
    tree.apply(first);
    const answer = run('r1', 'i1');
    tree.apply(answer);
    tree.apply(deletion(answer));
    assert.deepEqual(
      tree.view().map((n) => n.id),
      ['i1'],
    );
  });
});

describe('ConversationTree view', () => {
  it('lastInput is the input whose answers end the view, also when it is the first one', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    assert.equal(tree.lastInput()?.id, 'i1');
    tree.apply(run('r1', 'i1'));
    assert.equal(tree.lastInput()?.id, 'i1');
  });

  it('a selection made while its newer alternative is the latest message holds (an edit not answered yet)', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    tree.apply(run('r1', 'i1'));
    tree.apply(input('i2', 'r1'));
    const edit = input('i2b', 'r1', 'i2');
    tree.apply(edit);
    assert.deepEqual(ids(tree.view()), ['i1', 'r1', 'i2b']);
    // the channel's position is still the edit itself: the selection's recency ties with it
    tree.select('i2', edit.serial);
    assert.deepEqual(ids(tree.view()), ['i1', 'r1', 'i2']);
  });

  it('a selection holds until something newer appears among the inputs that may follow', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    tree.apply(input('i3', 'i1')); // sent before i1 had an answer: it follows i1 itself
    tree.apply(run('r1', 'i1'));
    tree.select('i3', nextSerial());
    assert.deepEqual(ids(tree.view()), ['i1', 'r1', 'i3']);
    // another device sends a message after r1: newer than the selection, so it shows
    tree.apply(input('i2', 'r1'));
    assert.deepEqual(ids(tree.view()), ['i1', 'r1', 'i2']);
  });

  it('a selection at a position older than the node it selects never makes that node look older', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    const stale = nextSerial(); // a position taken before either run was folded
    tree.apply(run('r1', 'i1'));
    tree.apply(run('r2', 'i1', 'r1'));
    tree.select('r2', stale);
    assert.deepEqual(ids(tree.view()), ['i1', 'r2']);
  });

  it('a regenerated run whose original was deleted still shows', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    const original = run('r1', 'i1');
    tree.apply(original);
    tree.apply(run('r2', 'i1', 'r1'));
    tree.apply(deletion(original));
    assert.deepEqual(ids(tree.view()), ['i1', 'r2']);
    assert.deepEqual(ids(tree.siblings('r2')), ['r2']);
  });

  it('runs that name each other as replaced (a member writing nonsense) do not hang the view', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    tree.apply(run('r1', 'i1', 'r2'));
    tree.apply(run('r2', 'i1', 'r1'));
    assert.equal(tree.view()[0]?.id, 'i1');
    assert.ok(tree.view().length <= 3);
  });

  it('a run named after an earlier input (a member writing nonsense) does not make the view loop', () => {
    const tree = new ConversationTree();
    tree.apply(input('i1'));
    tree.apply(input('i2', 'i1'));
    // a run whose id is "i1": the inputs following it are those following the input i1, i2 again
    tree.apply(run('i1', 'i2'));
    assert.deepEqual(ids(tree.view()), ['i1', 'i2', 'i1']);
  });

  // Review finding 3: with `update-own`, a member updated an early, invisible message of hers into a
  // claim of the agent's run id once she had seen it. Her message kept its older serial, so it was
  // the earliest claim, and its parts replaced the agent's — live and on every later catch-up.
  it("an update cannot turn a member's earlier message into a claim of a run id seen later: live and on a later catch-up", () => {
    const as = (clientId: string, m: Message): Message => ({ ...m, clientId });
    const update = (of: Message, data: JsonValue, headers: Headers): Message => ({
      ...of,
      version: nextSerial(),
      action: 'update',
      data,
      headers,
    });
    const live = new ConversationTree();
    const problems: string[] = [];
    live.on('malformed', (p) => problems.push(p));
    // an invisible placeholder (no valid status), and a visible run of her own under another id
    const hidden = as('mallory', { ...message('ai.run', { runId: 'ph', agent: 'x', input: 'x' }), id: 'ph' });
    const visible = as('mallory', run('mine', 'q0'));
    const q1 = as('alice', input('q1'));
    const real = as('assistant', run('run_secret', 'q1'));
    const realPart = as(
      'assistant',
      message('ai.part', 'Refunds within 14 days.', {
        run: 'run_secret',
        kind: 'text',
        partId: 't0',
        state: 'done',
      }),
    );
    for (const m of [hidden, visible, q1, real, realPart]) live.apply(m);
    const claim = { runId: 'run_secret', agent: 'assistant', input: 'q1' };
    const headers = { run: 'run_secret', agent: 'assistant', status: 'complete' };
    const fakePart = as(
      'mallory',
      message('ai.part', 'All sales are final.', {
        run: 'run_secret',
        kind: 'text',
        partId: 't0',
        state: 'done',
      }),
    );
    for (const m of [update(hidden, claim, headers), update(visible, claim, headers), fakePart])
      live.apply(m);
    assert.equal(problems.filter((p) => /id must be run:<runId>/.test(p)).length, 3);

    // a reader loading the session now gets each message rolled up: the updates as their whole state
    const later = new ConversationTree();
    for (const m of [...live.held()].sort((a, b) => (a.version < b.version ? -1 : 1))) later.apply(m);
    for (const tree of [live, later]) {
      assert.equal(tree.run('run_secret')?.clientId, 'assistant');
      assert.deepEqual(
        tree.parts('run_secret').map((p) => p.text),
        ['Refunds within 14 days.'],
      );
    }
    // Her own run, made malformed by her update: a reader that held it keeps its earlier version (as
    // for any malformed update); one that catches up later reads only the malformed one.
    assert.equal(live.run('mine')?.input, 'q0');
    assert.equal(later.run('mine'), undefined);
  });

  it("an update may not change a run claim's agent or input: reported, the first ones kept, the rest of the update taken", () => {
    const tree = new ConversationTree();
    const problems: string[] = [];
    tree.on('malformed', (p) => problems.push(p));
    tree.apply(input('i1'));
    tree.apply(input('i2'));
    const r1 = run('r1', 'i1');
    tree.apply(r1);
    tree.apply({
      ...r1,
      version: nextSerial(),
      action: 'update',
      data: { runId: 'r1', agent: 'b', input: 'i2', finishReason: 'stop' },
      headers: { run: 'r1', agent: 'b', status: 'complete' },
    });
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /may not change run r1's agent or input/);
    const node = tree.run('r1')!;
    assert.deepEqual(
      [node.agent, node.input, node.status, node.finishReason],
      ['a', 'i1', 'complete', 'stop'],
    );
    assert.deepEqual(ids(tree.runsOf('i1')), ['r1']);
    assert.deepEqual(ids(tree.runsOf('i2')), [], 'not indexed under the second input too');
  });

  it("an update may not change an input's id, parent or forkOf: reported, the input stays where it was, indexed once", () => {
    const tree = new ConversationTree();
    const problems: string[] = [];
    tree.on('malformed', (p) => problems.push(p));
    tree.apply(input('i1'));
    tree.apply(run('r1', 'i1'));
    tree.apply(input('i3'));
    const i2 = input('i2', 'r1');
    tree.apply(i2);
    const moved = (data: JsonValue): Message => ({ ...i2, version: nextSerial(), action: 'update', data });
    const text = (id: string, t: string) => ({ id, role: 'user', parts: [{ type: 'text', text: t }] });
    tree.apply(moved({ message: text('i2', 'edited'), parent: 'i3' }));
    tree.apply(moved({ message: text('i2', 'edited'), parent: 'r1', forkOf: 'i1' }));
    tree.apply(moved({ message: text('i9', 'renamed'), parent: 'r1' }));
    assert.equal(problems.length, 3);
    assert.ok(problems.every((p) => /may not change input i2's id, parent or forkOf/.test(p)));
    assert.deepEqual(ids(tree.inputsAfter('r1')), ['i2']);
    assert.deepEqual(ids(tree.inputsAfter('i3')), [], 'not indexed under the second parent too');
    assert.equal(tree.input('i9'), undefined);
    const node = tree.input('i2')!;
    assert.deepEqual(
      [node.parent, node.forkOf, textOf(node.message as UIMessage)],
      ['r1', undefined, 'edited'],
    );
    assert.deepEqual(ids(tree.ancestry('i2')), ['i1', 'r1', 'i2']);
  });

  // Review finding 7: with shared selections, every `select` a member published walked its node's
  // whole ancestry on every view, and every part made the view stale: seconds per view on a deep
  // chain. Work is counted here by the tree's node look-ups (each ancestry step is one), not time.
  it('the view with many shared selections on a deep chain takes work linear in nodes and selections', () => {
    const stepsFor = (depth: number, selects: number): number => {
      const tree = new ConversationTree({ sharedSelection: true });
      let parent: string | undefined;
      for (let i = 0; i < depth; i++) {
        tree.apply(input(`d${i}`, parent));
        parent = `d${i}`;
      }
      // a member selecting the deepest node over and over, and nodes along the chain
      for (let i = 0; i < selects; i++)
        tree.apply(message('ai.control', { type: 'select', node: i % 2 ? parent! : `d${i % depth}` }));
      let steps = 0;
      const node = tree.node.bind(tree);
      tree.node = (id) => {
        steps++;
        return node(id);
      };
      assert.equal(tree.view().length, depth);
      return steps;
    };
    const small = stepsFor(200, 1000);
    const large = stepsFor(400, 2000);
    // one step per node touched, one per selected node, one per walk's stop: under 2 × (D + S)
    assert.ok(small <= 2 * (200 + 1000), `${small} steps for 200 nodes and 1000 selections`);
    assert.ok(large <= 2.2 * small, `${large} steps for twice as much, against ${small}: not linear`);
  });

  it('a part, or a control other than a shared selection, leaves the computed view as it is; a run, an input or a shared selection makes it new', () => {
    for (const sharedSelection of [false, true]) {
      const tree = new ConversationTree({ sharedSelection });
      tree.apply(input('i1'));
      tree.apply(run('r1', 'i1'));
      tree.apply(input('i2', 'i1'));
      const before = tree.view();
      tree.apply(message('ai.part', 'token', { run: 'r1', kind: 'text', partId: 't', state: 'streaming' }));
      tree.apply(message('ai.control', { type: 'cancel', runId: 'r1' }));
      tree.apply(message('ai.control', { type: 'handover', to: 'human' }));
      assert.equal(tree.view(), before, 'parts and other controls do not recompute the view');
      tree.apply(message('ai.control', { type: 'select', node: 'r1' }));
      if (sharedSelection) assert.notEqual(tree.view(), before, 'a shared selection does');
      else assert.equal(tree.view(), before, 'a select control is not followed without sharedSelection');
      const shown = tree.view();
      const r2 = run('r2', 'i2');
      tree.apply(r2);
      assert.notEqual(tree.view(), shown, 'a new run does');
      const withRun = tree.view();
      tree.apply({
        ...r2,
        version: nextSerial(),
        action: 'update',
        headers: { run: 'r2', agent: 'a', status: 'complete' },
      });
      assert.notEqual(tree.view(), withRun, "a run's new status does (the view holds its node)");
      assert.equal(
        tree.view().at(-1)?.kind === 'run' && (tree.view().at(-1) as { status: string }).status,
        'complete',
      );
    }
  });
});
