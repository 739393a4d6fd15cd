// An agent and a user session over a real server: the assistant UIMessage rebuilt on the user side
// equals the one the AI SDK builds from the model's own chunk stream (PROTOCOL.md §13.2).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonSchema, tool } from 'ai';
import { UserSession } from '../src/user-session.ts';
import { modelAgent } from './helpers/agents.ts';
import { client, realServer, sessionName, waitFor } from './helpers/fixture.ts';
import type { LanguageModelV4StreamPart } from './helpers/models.ts';
import { finish, messageFrom, normalize, scriptedModel, textParts } from './helpers/models.ts';

const weather = tool({
  inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } } }),
  execute: async ({ city }) => ({ city, temperature: 21, sky: 'clear' }),
});

export function richSteps(): LanguageModelV4StreamPart[][] {
  return [
    [
      { type: 'stream-start', warnings: [] },
      { type: 'reasoning-start', id: 'r1' },
      { type: 'reasoning-delta', id: 'r1', delta: 'The user wants ' },
      { type: 'reasoning-delta', id: 'r1', delta: 'the weather.' },
      { type: 'reasoning-end', id: 'r1', providerMetadata: { test: { signature: 'sig-1' } } },
      ...textParts('t1', 'Let me look that up for you, one moment please.'),
      { type: 'source', sourceType: 'url', id: 's1', url: 'https://example.com/weather', title: 'Weather' },
      { type: 'tool-input-start', id: 'call-1', toolName: 'weather' },
      { type: 'tool-input-delta', id: 'call-1', delta: '{"city":' },
      { type: 'tool-input-delta', id: 'call-1', delta: '"Paris"}' },
      { type: 'tool-input-end', id: 'call-1' },
      { type: 'tool-call', toolCallId: 'call-1', toolName: 'weather', input: '{"city":"Paris"}' },
      finish('tool-calls'),
    ],
    [
      ...textParts('t1', 'It is 21 °C and clear in Paris — a lovely day for a walk by the Seine. 🌤️'),
      finish(),
    ],
  ];
}

describe('agent ⇄ user session', () => {
  // the agent over WebSocket, and in the server's own process over the in-process transport
  for (const where of ['websocket', 'in-process'] as const)
    it(`rebuilds the assistant message exactly: text, reasoning, tool call with input and output, source (agent ${where})`, async (t) => {
      const server = await realServer(t);
      const name = sessionName();
      const model = scriptedModel(richSteps());
      const { produced } = await modelAgent(t, server.url, name, model, {
        tools: { weather },
        ...(where === 'in-process' ? { transport: server.localTransport } : {}),
      });

      const user = new UserSession({
        channel: client(t, server.url, { clientId: 'user' }).channels.get(name, { start: true }),
      });
      t.after(() => user.close());
      await user.start();
      const inputId = await user.send('What is the weather in Paris?');
      const run = await waitFor(() => user.running()[0] ?? user.tree.runs[0]);
      await waitFor(() => user.run(run.id)?.status === 'complete', { message: 'run never completed' });
      await user.ready();

      const expected = await messageFrom((await produced[0])!, run.id);
      assert.deepEqual(normalize(user.run(run.id)?.message), expected);
      assert.deepEqual(
        expected.parts.map((p) => p.type),
        ['step-start', 'reasoning', 'text', 'source-url', 'tool-weather', 'step-start', 'text'],
      );
      const view = user.view();
      assert.deepEqual(
        view.map((n) => [n.kind, n.id]),
        [
          ['input', inputId],
          ['run', run.id],
        ],
      );
      assert.equal(user.tree.run(run.id)?.finishReason, 'stop');
    });
});
