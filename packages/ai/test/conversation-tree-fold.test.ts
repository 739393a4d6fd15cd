// The fold itself, without a server: malformed §13 messages are reported and left out, an input sent
// before the previous one was answered follows it, and a deleted node leaves the view.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Headers, JsonValue, Message } from '@mooring/protocol';
import { ConversationTree } from '../src/conversation-tree.ts';

let seq = 0;
function message(name: string, data: JsonValue, headers: Headers = {}): Message {
  const serial = `aaaaaaaaaaaa.${String(++seq).padStart(16, '0')}`;
  return { serial, version: serial, action: 'create', id: serial, name, data, headers, timestamp: seq };
}
const input = (id: string, parent?: string) =>
  message('ai.input', {
    message: { id, role: 'user', parts: [{ type: 'text', text: id }] },
    ...(parent ? { parent } : {}),
  });
const run = (runId: string, inputId: string) =>
  message('ai.run', { runId, agent: 'a', input: inputId }, { run: runId, agent: 'a', status: 'running' });

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

  it('drops a deleted node from the view', () => {
    const tree = new ConversationTree();
    const first = input('i1');
    tree.apply(first);
    const answer = run('r1', 'i1');
    tree.apply(answer);
    const deletion = `aaaaaaaaaaaa.${String(++seq).padStart(16, '0')}`;
    tree.apply({ serial: answer.serial, version: deletion, action: 'delete', id: answer.id, timestamp: seq });
    assert.deepEqual(
      tree.view().map((n) => n.id),
      ['i1'],
    );
  });
});
