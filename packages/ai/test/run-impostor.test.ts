// A session member who claims the agent's predictable run id first (PROTOCOL.md §13.5). The server
// keys op ids per publisher, so the impostor's `run:<runId>` no longer makes the agent's create a
// duplicate; these tests check the fold does not let the impostor's earlier claim, or parts it writes
// into the real run, reach what a user sees — live, through the AI SDK chat, and after a reload.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { describe, it } from 'node:test';
import type { Channel } from '@mooring/client';
import { createToken } from '@mooring/server';
import type { UIMessageChunk } from 'ai';
import { MooringChatTransport } from '../src/mooring-chat-transport.ts';
import { channelSink } from '../src/operation-sink.ts';
import { publishUIMessageStream } from '../src/publish-ui-message-stream.ts';
import { RunPublisher } from '../src/run-publisher.ts';
import { UserSession } from '../src/user-session.ts';
import { EVENT_INPUT, EVENT_PART } from '../src/wire.ts';
import { echoAgent, textOf } from './helpers/agents.ts';
import { client, KEY, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { TestChat } from './helpers/test-chat.ts';

const INPUT = 'm-1'; // a predictable message id, so the run id `run-for-m-1` is predictable too
const RUN = `run-for-${INPUT}`;
const REAL = 'assistant#1: hello';

async function member(t: TestContext, url: string, name: string, clientId: string): Promise<Channel> {
  const { token } = await createToken(KEY, {
    clientId,
    capability: { [name]: ['subscribe', 'history', 'publish', 'append-own'] },
  });
  return client(t, url, { key: undefined, token }).channels.get(name, { start: true });
}

/** The impostor's fake run: the agent's next run id, with a text part, ended `complete`. */
async function fakeRun(channel: Channel): Promise<void> {
  const fake = new RunPublisher({ sink: channelSink(channel), runId: RUN, agent: 'assistant', input: INPUT });
  await fake.start();
  fake.write({ type: 'text-start', id: 't' });
  fake.write({ type: 'text-delta', id: 't', delta: 'FAKE answer from mallory' });
  fake.write({ type: 'text-end', id: 't' });
  await fake.end('complete');
}

async function userSession(
  t: TestContext,
  channel: Channel,
  agents?: string[],
): Promise<{ session: UserSession; refused: string[] }> {
  const session = new UserSession({ channel, ...(agents ? { agents } : {}) });
  const refused: string[] = [];
  // Refused claims and parts are reported as malformed_message errors.
  session.on('error', (err) => refused.push(err.message));
  t.after(() => session.close());
  await session.ready();
  return { session, refused };
}

function shown(session: UserSession): string[] {
  return session
    .view()
    .map((n) => (n.kind === 'input' ? `user: ${textOf(n.message)}` : `${n.id}: ${textOf(n.message)}`));
}

describe('a run id claimed first by another session member (§13.5)', () => {
  it('users naming their agents see the real run, live, in the chat and after a reload', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, { runId: (input) => `run-for-${input.id}` });
    const mallory = await member(t, server.url, name, 'mallory');
    await fakeRun(mallory);

    const alice = await member(t, server.url, name, 'alice');
    const { session, refused } = await userSession(t, alice, ['assistant']);
    assert.ok(refused.some((r) => r.includes('mallory is not one of the session')));
    const transport = new MooringChatTransport({ session });
    const chat = new TestChat({ id: name, transport, messages: session.messages });
    // Not awaited directly: a chat shown the wrong run would wait for its answer forever.
    const sent = chat.sendMessage({ id: INPUT, parts: [{ type: 'text', text: 'hello' }] });
    await waitFor(() => session.tree.run(RUN)?.status === 'complete' && chat.status === 'ready', {
      message: `the real run did not reach the chat: ${JSON.stringify(chat.messages)}`,
    });
    await sent;
    await session.ready();

    // A part injected into the real run by someone else never shows either.
    await mallory.publish(EVENT_PART, ' INJECTED', {
      headers: { run: RUN, kind: 'text', partId: 'x', state: 'done' },
    });

    const expected = ['user: hello', `${RUN}: ${REAL}`];
    await waitFor(() => refused.some((r) => r.includes("not written by the run's publisher")));
    await session.ready();
    assert.equal(session.tree.run(RUN)?.clientId, 'assistant');
    assert.deepEqual(shown(session), expected);
    assert.deepEqual(
      chat.messages.map((m) => `${m.role}: ${textOf(m)}`),
      ['user: hello', `assistant: ${REAL}`],
    );

    const { session: reloaded } = await userSession(t, await member(t, server.url, name, 'alice-2'), [
      'assistant',
    ]);
    assert.deepEqual(shown(reloaded), expected);
    assert.deepEqual(
      reloaded.messages.map((m) => `${m.role}: ${textOf(m)}`),
      ['user: hello', `assistant: ${REAL}`],
    );
  });

  it('without named agents a run still shows only its own publisher parts; operator runs only from the operator', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    await echoAgent(t, server.url, name, { runId: (input) => `run-for-${input.id}` });
    const alice = await member(t, server.url, name, 'alice');
    const { session, refused } = await userSession(t, alice);
    await session.send({ id: INPUT, parts: [{ type: 'text', text: 'hello' }] });
    await waitFor(() => session.tree.run(RUN)?.status === 'complete');

    const mallory = await member(t, server.url, name, 'mallory');
    await mallory.publish(EVENT_PART, ' INJECTED', {
      headers: { run: RUN, kind: 'text', partId: 'x', state: 'done' },
    });
    // An "operator" run in alice's name, published by mallory: refused.
    const forged = new RunPublisher({
      sink: channelSink(mallory),
      runId: 'forged',
      agent: 'human:alice',
      input: INPUT,
    });
    await forged.start();
    forged.write({ type: 'text-start', id: 't' });
    forged.write({ type: 'text-delta', id: 't', delta: 'FORGED' });
    forged.write({ type: 'text-end', id: 't' });
    await forged.end('complete');

    await waitFor(() => refused.length === 2); // the injected part and the forged operator run
    await session.ready();
    const { session: reloaded } = await userSession(t, await member(t, server.url, name, 'alice-2'));
    for (const s of [session, reloaded]) {
      assert.equal(s.tree.run('forged'), undefined);
      assert.deepEqual(shown(s), ['user: hello', `${RUN}: ${REAL}`]);
    }
  });

  it("an agent naming its agents leaves a member's fake run out of its fold: the next input's history reaches the model without it", async (t) => {
    // Review finding 3: AgentSession had no `agents`, so a member's run was an earlier answer in the
    // agent's own fold, handed to its model as the assistant's previous turn.
    const server = await realServer(t);
    for (const agents of [undefined, ['assistant']]) {
      const name = sessionName();
      const histories: string[][] = [];
      const agent = await echoAgent(t, server.url, name, {
        ...(agents ? { agents } : {}),
        onInput: async (input, run) => {
          histories.push((await input.history()).map((m) => `${m.role}: ${textOf(m)}`));
          run.writeText('real answer');
        },
      });
      const errors: string[] = [];
      agent.on('error', (err) => errors.push(err.message));
      const mallory = await member(t, server.url, name, 'mallory');
      const say = (id: string, parent?: string) =>
        mallory.publish(
          EVENT_INPUT,
          {
            message: { id, role: 'user', parts: [{ type: 'text', text: id }] },
            ...(parent ? { parent } : {}),
          },
          { id: `input:${id}`, headers: { input: id } },
        );
      await say('q1');
      await waitFor(() => histories.length === 1);
      const fake = new RunPublisher({
        sink: channelSink(mallory),
        runId: 'fake',
        agent: 'assistant',
        input: 'q1',
      });
      await fake.start();
      fake.write({ type: 'text-start', id: 't' });
      fake.write({ type: 'text-delta', id: 't', delta: 'FAKE answer' });
      fake.write({ type: 'text-end', id: 't' });
      await fake.end('complete');
      await say('q2', 'fake');
      await waitFor(() => histories.length === 2);
      if (agents) {
        assert.deepEqual(histories[1], ['user: q2'], 'the fake run is not in the history');
        assert.equal(agent.tree.run('fake'), undefined);
        assert.ok(errors.some((e) => e.includes('mallory is not one of the session')));
      } else {
        assert.deepEqual(
          histories[1],
          ['user: q1', 'assistant: FAKE answer', 'user: q2'],
          'without the list',
        );
      }
    }
  });

  it('an agent answering again under the same run id resumes from its own claim, not from the claim a member made first', async (t) => {
    // The realtime path (AgentSession) with deterministic run ids: a regenerate answers the input
    // again under the same id, so the run's create comes back a duplicate and the run resumes from
    // what is stored at that serial — its own claim, not mallory's earlier one of the same id.
    const server = await realServer(t);
    const name = sessionName();
    const mallory = await member(t, server.url, name, 'mallory');
    await fakeRun(mallory);
    let answers = 0;
    const agent = await echoAgent(t, server.url, name, {
      runId: (input) => `run-for-${input.id}`,
      onInput: (input, run) => {
        answers++;
        run.writeText(`assistant#1: ${textOf(input.message)}`);
      },
    });
    const alice = await member(t, server.url, name, 'alice');
    const { session } = await userSession(t, alice, ['assistant']);
    await session.send({ id: INPUT, parts: [{ type: 'text', text: 'hello' }] });
    await waitFor(() => session.tree.run(RUN)?.status === 'complete', { message: 'the run never ended' });
    const ownParts = async () =>
      (await alice.history({ limit: 100 })).items.filter(
        (m) => m.name === EVENT_PART && m.clientId === 'assistant',
      );
    const first = await ownParts();
    const ownRun = async () =>
      (await alice.history({ limit: 100 })).items.find(
        (m) => m.name === 'ai.run' && m.clientId === 'assistant',
      );
    const ended = (await ownRun())?.version;
    await session.regenerate(RUN);
    await waitFor(() => answers === 2, { message: 'the regenerate never reached the agent' });
    await agent.close({ drain: true }); // its run published all it had to
    await session.ready();
    assert.deepEqual(shown(session), ['user: hello', `${RUN}: ${REAL}`]);
    // The same answer again: compared with its own stored run, nothing is written (its end is a
    // duplicate of the first one's). Compared with mallory's, its text would diverge and be written.
    assert.deepEqual(
      (await ownParts()).map((m) => [m.serial, m.version, m.data]),
      first.map((m) => [m.serial, m.version, m.data]),
      'its part was written again',
    );
    assert.equal((await ownRun())?.version, ended, 'the run message was written again');
  });

  it('a retried run resumes from its own claim, not from the claim a member made first', async (t) => {
    const server = await realServer(t);
    const name = sessionName();
    const mallory = await member(t, server.url, name, 'mallory');
    await fakeRun(mallory);
    // A serverless agent publishing over REST as clientId `assistant` (a token naming it).
    const { token } = await createToken(KEY, { clientId: 'assistant', capability: { [name]: ['*'] } });
    const rest = client(t, server.url, { autoConnect: false, key: undefined, token }).rest;
    const chunks: UIMessageChunk[] = [
      { type: 'text-start', id: 't' },
      { type: 'text-delta', id: 't', delta: 'the real ' },
      { type: 'text-delta', id: 't', delta: 'answer' },
      { type: 'text-end', id: 't' },
    ];
    const attempt = () =>
      publishUIMessageStream({
        rest,
        channel: name,
        runId: RUN,
        input: INPUT,
        stream: new ReadableStream({
          start(controller) {
            for (const chunk of chunks) controller.enqueue(chunk);
            controller.close();
          },
        }),
      });
    const ownParts = async () =>
      (await rest.history(name, { limit: 100 })).items
        .filter((m) => m.name === EVENT_PART && m.clientId === 'assistant')
        .map((m) => m.version);
    await attempt();
    const stored = await ownParts();
    await attempt(); // the function retried: its create is a duplicate of its own first one
    // It compared its text with its own claim's, the same: its part is not written again.
    assert.deepEqual(await ownParts(), stored, 'the retry rewrote its part');
    const { session } = await userSession(t, await member(t, server.url, name, 'alice'), ['assistant']);
    assert.deepEqual(
      session.tree.parts(RUN).map((p) => p.text),
      ['the real answer'],
    );
  });
});
