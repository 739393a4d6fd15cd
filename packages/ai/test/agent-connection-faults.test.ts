// The AGENT's own connection failing mid-run (ARCHITECTURE.md §4, §11): reset, blackholed, or killed (reset and
// refused for a while) through a FaultProxy, for an agent publishing over WebSocket (AgentSession)
// and for a function publishing over REST (publishUIMessageStream). The user is connected directly.
// However the agent's network fails, the run ends with exactly the model's message, once: nothing
// lost (unacknowledged publishes are resent), nothing doubled (resent ids are stored once).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FaultProxy } from '@mooring/testkit';
import type { UIMessageChunk } from 'ai';
import { convertToModelMessages, streamText, toUIMessageStream } from 'ai';
import { AgentSession } from '../src/agent-session.ts';
import { publishUIMessageStream } from '../src/publish-ui-message-stream.ts';
import { UserSession } from '../src/user-session.ts';
import { client, proxyTo, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import { collect, finish, messageFrom, normalize, scriptedModel, textParts } from './helpers/models.ts';

const TEXT =
  'A long answer streamed word by word while the agent network fails under it: every word must ' +
  'reach every screen once and in order, whether its publish was acknowledged, lost on the way, or ' +
  'stored and then unacknowledged because the answer was the part that got lost. '.repeat(2);

type Fault = 'reset' | 'blackhole' | 'kill';

/**
 * Fault injection tied to the model's progress: at chunks 10, 30 and 50 (of ~90), one outage at a
 * time (a fault point waits for the previous outage to end), so each run sees three distinct ones.
 * An outage is not awaited by the model, which keeps producing while the agent's connection is down.
 */
function faults(
  proxy: FaultProxy,
  fault: Fault,
  down: () => Promise<unknown>,
  up: () => Promise<unknown> = async () => {},
) {
  const injected: Promise<void>[] = [];
  const at = new Set([10, 30, 50]);
  let previous: Promise<void> = Promise.resolve();
  return {
    injected,
    gate: async (index: number) => {
      await sleep(1);
      if (!at.has(index)) return;
      await previous;
      previous = (async () => {
        if (fault === 'reset') await proxy.reset();
        else if (fault === 'blackhole') {
          proxy.blackhole();
          await down(); // until the agent noticed the silence (heartbeats, request timeout)
          proxy.pass();
        } else {
          proxy.refuse();
          await proxy.reset();
          await sleep(300); // reconnects are refused for a while
          proxy.pass();
        }
        await up(); // the outage ends once the agent is back
      })();
      injected.push(previous);
    },
  };
}

async function userOn(t: Parameters<typeof client>[0], url: string, name: string) {
  const user = new UserSession({
    channel: client(t, url, { clientId: 'user' }).channels.get(name, { start: true }),
  });
  t.after(() => user.close());
  const streamed: Promise<UIMessageChunk[]>[] = [];
  user.on('run', (node) => streamed.push(collect(user.stream(node.id))));
  await user.start();
  return { user, streamed };
}

async function assertOnce(
  user: UserSession,
  streamed: Promise<UIMessageChunk[]>[],
  runId: string,
  produced: UIMessageChunk[],
) {
  await waitFor(() => user.run(runId)?.status === 'complete', { message: 'the run never completed' });
  await user.ready();
  assert.equal(user.tree.runs.length, 1, 'one run');
  const expected = await messageFrom(produced, runId);
  assert.deepEqual(normalize(user.run(runId)?.message), expected, 'the session message is the model’s');
  const chunks = await streamed[0]!;
  assert.equal(chunks.filter((c) => c.type === 'start').length, 1);
  const text = chunks
    .filter((c): c is Extract<UIMessageChunk, { type: 'text-delta' }> => c.type === 'text-delta')
    .map((c) => c.delta)
    .join('');
  assert.equal(text, TEXT, 'the streamed text, once, in order');
}

describe("the agent's own connection failing mid-run", () => {
  for (const fault of ['reset', 'blackhole', 'kill'] as const) {
    it(`WebSocket agent, connection ${fault}: the run ends with exactly the model's message`, async (t) => {
      const server = await realServer(t, { heartbeatInterval: 200 });
      const proxy = await proxyTo(t, server);
      const name = sessionName();
      const agentClient = client(t, proxy.url('/'), {
        clientId: 'agent',
        transports: ['websocket'],
        idleGrace: 200,
        realtimeRequestTimeout: 1_000,
      });
      let drops = 0;
      agentClient.connection.on('statechange', (c) => {
        if (c.previous === 'connected') drops++;
      });
      const lost = async () => {
        await waitFor(() => agentClient.connection.state !== 'connected', { timeout: 10_000 });
      };
      const plan = faults(proxy, fault, lost, () =>
        waitFor(() => agentClient.connection.state === 'connected', { timeout: 10_000 }),
      );
      const produced: Promise<UIMessageChunk[]>[] = [];
      const agent = new AgentSession({
        channel: agentClient.channels.get(name, { start: true }),
        agent: 'assistant',
        coalesceMs: 5,
        onInput: async (input, run) => {
          const result = streamText({
            model: scriptedModel([[...textParts('t', TEXT), finish()]], { gate: plan.gate }),
            messages: await convertToModelMessages(await input.history()),
            abortSignal: run.signal,
          });
          const [toSession, toTest] = toUIMessageStream({ stream: result.stream }).tee();
          produced.push(collect(toTest));
          await run.pipe(toSession);
        },
      });
      t.after(() => agent.close());
      await agent.start();
      const { user, streamed } = await userOn(t, server.url, name);
      await user.send('Tell me something long.');
      const runId = await waitFor(() => user.tree.runs[0]?.id);
      await assertOnce(user, streamed, runId, await waitFor(() => produced[0]).then((p) => p));
      await Promise.all(plan.injected);
      assert.equal(plan.injected.length, 3, 'three faults were injected mid-run');
      assert.ok(drops >= 3, `the agent's connection dropped ${drops} times, not at every fault`);
    });
  }

  for (const fault of ['reset', 'blackhole', 'kill'] as const) {
    it(`REST publisher (publishUIMessageStream), connection ${fault}: the run ends with exactly the model's message`, async (t) => {
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      const name = sessionName();
      const { user, streamed } = await userOn(t, server.url, name);
      const inputId = await user.send('Tell me something long.');
      // A request that gets no answer (blackhole) is given up after a second, then retried with the
      // same body.
      let timeouts = 0;
      const rest = client(t, proxy.url('/'), {
        autoConnect: false,
        clientId: 'fn',
        fetch: (url, init) =>
          fetch(url, { ...init, signal: AbortSignal.timeout(1_000) }).catch((err: unknown) => {
            if (err instanceof DOMException && err.name === 'TimeoutError') timeouts++;
            throw err;
          }),
      }).rest;
      // a blackhole lasts until a request of the function has been cut off by it
      const plan = faults(proxy, fault, async () => {
        const mark = timeouts;
        await waitFor(() => timeouts > mark, { timeout: 10_000 });
      });
      const result = streamText({
        model: scriptedModel([[...textParts('t', TEXT), finish()]], { gate: plan.gate }),
        messages: [{ role: 'user', content: 'Tell me something long.' }],
      });
      const [toSession, toTest] = toUIMessageStream({ stream: result.stream }).tee();
      const produced = collect(toTest);
      const published = await publishUIMessageStream({
        rest,
        channel: name,
        input: inputId,
        stream: toSession,
        runId: 'rest-run',
        coalesceMs: 5,
      });
      assert.equal(published.status, 'complete');
      await assertOnce(user, streamed, published.runId, await produced);
      await Promise.all(plan.injected);
      assert.equal(plan.injected.length, 3, 'three faults were injected mid-run');
      if (fault === 'blackhole') assert.ok(timeouts >= 3, `${timeouts} requests lost in the black hole`);
      else assert.ok(proxy.stats.reset >= 1, 'the faults cut live connections');
    });
  }
});
