// A response's deltas go out pipelined: several publishes in flight, each naming the one before as
// its precondition (`after`, PROTOCOL.md §7). When the store refuses one for a moment (down, then
// back) with the next already on its way, the next is refused too, and both are resent in order: a
// live reader sees the text grow by appends in order — never a later delta before an earlier one,
// then the whole text again as a repair. (A real server on the memory store, whose append refuses
// one publish just as the next reaches it.)
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Message } from '@mooring/protocol';
import { MemoryStore, type Store, StoreError } from '@mooring/server';
import { AgentSession } from '../src/agent-session.ts';
import { UserSession } from '../src/user-session.ts';
import { textOf } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';

const WORDS = Array.from({ length: 24 }, (_, i) => `w${i} `);

/**
 * A memory store whose `refused`-th publish of plain appends (a response's deltas) is held until the
 * next publish reaches the store, then refused `store_unavailable`; what happened to that next one
 * is kept in `overtaker`.
 */
function refusingStore(refused: number) {
  const inner = new MemoryStore();
  let plain = 0;
  let held: (() => void) | undefined;
  const seen: { overtaker?: string } = {};
  const append: Store['append'] = (channel, ops, options) => {
    if (held !== undefined) {
      const refuse = held;
      held = undefined;
      refuse();
      const next = inner.append(channel, ops, options);
      next.then(
        () => {
          seen.overtaker = 'stored';
        },
        (error: unknown) => {
          seen.overtaker = (error as StoreError).code;
        },
      );
      return next;
    }
    const isPlain = ops.every((op) => op.action === 'append' && op.headers === undefined && op.data !== '');
    if (isPlain && ++plain === refused) {
      return new Promise((_, reject) => {
        held = () => reject(new StoreError('store_unavailable', 'the store cannot write (test)'));
      });
    }
    return inner.append(channel, ops, options);
  };
  const store = new Proxy(inner, {
    get(target, key) {
      if (key === 'append') return append;
      const value = Reflect.get(target, key, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { store, seen };
}

it("a delta refused for a moment is not overtaken by the next: live readers see the response's text appended in order", async (t) => {
  const { store, seen } = refusingStore(5);
  const server = await realServer(t, { store });
  const name = sessionName();
  const agent = new AgentSession({
    channel: client(t, server.url, { clientId: 'agent' }).channels.get(name, { start: true }),
    agent: 'assistant',
    coalesceMs: 0,
    onInput: async (_input, run) => {
      run.write({ type: 'text-start', id: 't' });
      for (const word of WORDS) {
        run.write({ type: 'text-delta', id: 't', delta: word });
        await new Promise((resolve) => setTimeout(resolve, 1)); // a token per turn: publishes pipeline
      }
      run.write({ type: 'text-end', id: 't' });
    },
  });
  t.after(() => agent.close());
  await agent.start();
  const live: Message[] = [];
  const reader = client(t, server.url, { clientId: 'reader' }).channels.get(name, { start: true });
  await reader.subscribe((message) => live.push(message));
  const user = new UserSession({
    channel: client(t, server.url, { clientId: 'user' }).channels.get(name, { start: true }),
  });
  t.after(() => user.close());
  await user.start();
  await user.send('go');
  const run = await waitFor(() => user.tree.runs.find((r) => r.status === 'complete'));
  await waitFor(() => textOf(user.run(run.id)?.message) === WORDS.join(''), {
    message: `the user's message reads ${JSON.stringify(textOf(user.run(run.id)?.message))}`,
  });
  assert.equal(seen.overtaker, 'out_of_order', 'the publish sent behind the refused one reached the store');

  // the part holding the text: the message most appended to
  const appends = new Map<string, number>();
  for (const m of live) if (m.action === 'append') appends.set(m.serial, (appends.get(m.serial) ?? 0) + 1);
  const part = [...appends].sort((a, b) => b[1] - a[1])[0]![0];
  const ops = live.filter((m) => m.serial === part);
  await waitFor(() => live.some((m) => m.serial === part && m.headers !== undefined));
  assert.deepEqual(
    ops.filter((m) => m.action !== 'create' && m.action !== 'append').map((m) => `${m.action} ${m.id}`),
    [],
    'no repair: nothing replaced the text',
  );
  const text = ops.map((m) => (typeof m.data === 'string' ? m.data : '')).join('');
  assert.equal(text, WORDS.join(''), 'the appends, in the order delivered, are the text');
});
