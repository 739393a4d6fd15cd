// A full run while the user's connection is reset at random chunk boundaries (FaultProxy): the
// assistant message the user session rebuilds, and the chunk stream a ChatTransport would hand to
// the AI SDK, both equal what the model produced — nothing lost, nothing duplicated (ARCHITECTURE.md §4, §11).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { UIMessageChunk } from 'ai';
import { jsonSchema, tool } from 'ai';
import { UserSession } from '../src/user-session.ts';
import { modelAgent } from './helpers/agents.ts';
import { client, proxyTo, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import type { LanguageModelV4StreamPart } from './helpers/models.ts';
import { collect, finish, messageFrom, normalize, scriptedModel, textParts } from './helpers/models.ts';

const weather = tool({
  inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } } }),
  execute: async ({ city }) => ({ city, temperature: 21, forecast: ['sun', 'sun', 'clouds'] }),
});

const LOREM =
  'Paris in spring is mild. Mornings start cool, around nine degrees, and the afternoons reach ' +
  'eighteen or twenty. Rain comes in short showers, rarely for a whole day; carry a light coat. ' +
  'The Seine quays are best at dusk, when the light turns gold over the Louvre — 🌇 worth the walk.';

function steps(): LanguageModelV4StreamPart[][] {
  return [
    [
      { type: 'stream-start', warnings: [] },
      { type: 'reasoning-start', id: 'r' },
      ...('Think about the city, the season, then call the tool.'.match(/\S+\s*/g) ?? []).map(
        (delta): LanguageModelV4StreamPart => ({ type: 'reasoning-delta', id: 'r', delta }),
      ),
      { type: 'reasoning-end', id: 'r' },
      { type: 'source', sourceType: 'url', id: 'src-1', url: 'https://example.com/paris', title: 'Paris' },
      { type: 'tool-input-start', id: 'call-1', toolName: 'weather' },
      ...['{"ci', 'ty":', '"Pa', 'ris"', '}'].map(
        (delta): LanguageModelV4StreamPart => ({ type: 'tool-input-delta', id: 'call-1', delta }),
      ),
      { type: 'tool-input-end', id: 'call-1' },
      { type: 'tool-call', toolCallId: 'call-1', toolName: 'weather', input: '{"city":"Paris"}' },
      finish('tool-calls'),
    ],
    [...textParts('t', LOREM), finish()],
  ];
}

/** A small deterministic generator, so a failing seed can be replayed. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('a run through disconnects', () => {
  for (const seed of [1, 7, 42]) {
    it(`converges to the model's message with resets at random chunk boundaries (seed ${seed})`, async (t) => {
      const server = await realServer(t);
      const proxy = await proxyTo(t, server);
      const name = sessionName();
      const rnd = random(seed);
      let resets = 0;
      const model = scriptedModel(steps(), {
        gate: async () => {
          await sleep(2);
          if (rnd() < 0.15) {
            resets++;
            await proxy.reset();
          }
        },
      });
      const { produced } = await modelAgent(t, server.url, name, model, {
        tools: { weather },
        coalesceMs: 5,
      });

      const userClient = client(t, proxy.url('/'), { clientId: 'user' });
      const user = new UserSession({ channel: userClient.channels.get(name, { start: true }) });
      t.after(() => user.close());
      const streamed: Promise<UIMessageChunk[]>[] = [];
      user.on('run', (node) => streamed.push(collect(user.stream(node.id))));
      let attaches = 0;
      userClient.channels.get(name).on('attached', () => attaches++);
      await user.start();
      await user.send('What is spring like in Paris?');
      const runId = await waitFor(() => user.tree.runs[0]?.id);
      await waitFor(() => user.run(runId)?.status === 'complete', { message: 'the run never completed' });
      await user.ready();

      assert.ok(resets > 0, 'no reset happened: the test would prove nothing');
      assert.ok(attaches > 1, 'the user session never re-attached');
      const expected = await messageFrom((await produced[0])!, runId);
      assert.deepEqual(normalize(user.run(runId)?.message), expected, 'the session message');
      const chunks = await streamed[0]!;
      assert.equal(chunks.filter((c) => c.type === 'start').length, 1);
      assert.deepEqual(await messageFrom(chunks, runId), expected, 'the rebuilt chunk stream');
      const text = chunks
        .filter((c): c is Extract<UIMessageChunk, { type: 'text-delta' }> => c.type === 'text-delta')
        .map((c) => c.delta)
        .join('');
      assert.equal(text, LOREM, 'the streamed text, once, in order');
    });
  }
});
